"""Fixtures for the Kappa integration suite.

Each test module gets its own `kappa server` process on a free port with a fresh data dir
(`server` fixture, module scope). The binary is KAPPA_BIN or target/debug/kappa.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kappa_helpers as h


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kappa-logs")


@pytest.fixture(scope="session")
def kappa_binary() -> Path:
    binary = h.kappa_bin()
    if not binary.exists():
        pytest.fail(f"kappa binary not found at {binary}: run `cargo build` at {h.REPO_ROOT} or set KAPPA_BIN")
    return binary


@pytest.fixture
def server_factory(tmp_path_factory, log_dir, kappa_binary):
    """Start extra servers inside one test; all are stopped (SIGKILL if needed) afterwards."""
    started: list[h.KappaServer] = []

    def make(data_dir: Path | None = None, start: bool = True, **kwargs) -> h.KappaServer:
        srv = h.KappaServer(data_dir or tmp_path_factory.mktemp("kappa-data"), log_dir, **kwargs)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        if srv.alive():
            srv.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, log_dir, kappa_binary):
    srv = h.KappaServer(tmp_path_factory.mktemp("kappa-data"), log_dir)
    srv.start()
    yield srv
    crashed = not srv.alive()
    code = srv.stop()
    if crashed:
        pytest.fail(
            f"kappa server died during the module (exit {code}); log {srv.log_path}:\n{srv.log_text()[-4000:]}"
        )


@pytest.fixture(scope="module")
def client(server):
    """boto3 Lambda client with client-side parameter validation (normal use)."""
    return server.client(validate=True)


@pytest.fixture(scope="module")
def raw_client(server):
    """boto3 Lambda client without client-side validation, so invalid values reach the server."""
    return server.client(validate=False, read_timeout=180)


@pytest.fixture
def fn_name(request) -> str:
    """A fresh, valid function name derived from the test's name."""
    return h.new_name(request.node.name[:30])


# ---- large deployment packages, generated once per session on first use --------------------


@pytest.fixture(scope="session")
def big_zip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("big-zips")


@pytest.fixture(scope="session")
def zipped_limit_zips(big_zip_dir) -> dict[str, Path]:
    """Stored zips of exactly 52428800 bytes ('ok') and 52428801 bytes ('over')."""
    random_data = os.urandom(h.ZIPPED_LIMIT + 16)
    paths = {"ok": big_zip_dir / "zipped-ok.zip", "over": big_zip_dir / "zipped-over.zip"}
    h.write_stored_zip_of_size(paths["ok"], h.ZIPPED_LIMIT, random_data)
    h.write_stored_zip_of_size(paths["over"], h.ZIPPED_LIMIT + 1, random_data)
    assert paths["ok"].stat().st_size == h.ZIPPED_LIMIT
    assert paths["over"].stat().st_size == h.ZIPPED_LIMIT + 1
    return paths


@pytest.fixture(scope="session")
def unzipped_limit_zips(big_zip_dir) -> dict[str, Path]:
    """Small deflated zips that unzip to exactly 262144000 ('ok') and 262144001 ('over') bytes."""
    paths = {"ok": big_zip_dir / "unzipped-ok.zip", "over": big_zip_dir / "unzipped-over.zip"}
    h.write_zero_filled_zip(paths["ok"], h.UNZIPPED_LIMIT)
    h.write_zero_filled_zip(paths["over"], h.UNZIPPED_LIMIT + 1)
    return paths
