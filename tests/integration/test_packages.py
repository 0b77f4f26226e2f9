"""Deployment package checks: zipped and unzipped size limits, corrupt zips, path traversal and
symlinks. Every rejected CreateFunction must leave nothing behind (GetFunction 404, not listed,
no new files under DATA_DIR/blobs)."""

from __future__ import annotations

import hashlib
import os
import zipfile
import io

import pytest

import kappa_helpers as h


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- zipped size: 52428800 bytes ------------------------------------------------------------


@pytest.mark.slow
def test_zip_of_exactly_50mb_is_accepted(server, raw_client, zipped_limit_zips, fn_name):
    data = zipped_limit_zips["ok"].read_bytes()
    assert len(data) == h.ZIPPED_LIMIT
    cfg = h.create_function(raw_client, fn_name, data)
    assert cfg["CodeSize"] == h.ZIPPED_LIMIT
    assert cfg["CodeSha256"] == h.code_sha256(data)
    got = raw_client.get_function(FunctionName=fn_name)
    downloaded = h.http_get_bytes(got["Code"]["Location"], timeout=120)
    assert len(downloaded) == len(data)
    assert sha256_hex(downloaded) == sha256_hex(data)
    raw_client.delete_function(FunctionName=fn_name)


@pytest.mark.slow
def test_zip_one_byte_over_50mb_is_rejected(server, raw_client, zipped_limit_zips, fn_name):
    data = zipped_limit_zips["over"].read_bytes()
    assert len(data) == h.ZIPPED_LIMIT + 1
    err = h.assert_create_rejected(server, raw_client, h.create_params(fn_name, data), 413,
                                   "RequestEntityTooLargeException")
    assert "Zipped size must be smaller than 52428800 bytes" in err.message, err.message


# ---- unzipped size: 262144000 bytes ---------------------------------------------------------


@pytest.mark.slow
def test_unzipped_size_of_exactly_250mb_is_accepted(raw_client, unzipped_limit_zips, fn_name):
    data = unzipped_limit_zips["ok"].read_bytes()
    cfg = h.create_function(raw_client, fn_name, data)
    assert cfg["CodeSize"] == len(data)
    assert cfg["CodeSha256"] == h.code_sha256(data)
    raw_client.delete_function(FunctionName=fn_name)


@pytest.mark.slow
def test_unzipped_size_one_byte_over_250mb_is_rejected(server, raw_client, unzipped_limit_zips, fn_name):
    data = unzipped_limit_zips["over"].read_bytes()
    err = h.assert_create_rejected(server, raw_client, h.create_params(fn_name, data), 400,
                                   "InvalidParameterValueException")
    assert "Unzipped size must be smaller than 262144000 bytes" in err.message, err.message


# ---- corrupt packages -----------------------------------------------------------------------


def truncated_zip() -> bytes:
    data = h.build_zip({"app.py": h.HANDLER_SOURCE, "lib/data.bin": os.urandom(4096)})
    return data[: len(data) // 2]


def zip_with_bad_crc() -> bytes:
    data = bytearray(h.build_zip({"app.py": h.HANDLER_SOURCE * 50}, compression=zipfile.ZIP_STORED))
    # Flip one byte of the stored file content (after the 30-byte local header + name).
    offset = 30 + len("app.py") + 10
    data[offset] ^= 0xFF
    return bytes(data)


CORRUPT = {
    "random-bytes": lambda: os.urandom(2048),
    "truncated-zip": truncated_zip,
    "text": lambda: b"PK this is not really a zip",
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_zip_is_rejected(server, raw_client, case):
    name = h.new_name("corrupt-" + case)
    err = h.assert_create_rejected(server, raw_client, h.create_params(name, CORRUPT[case]()), 400,
                                   "InvalidParameterValueException")
    assert err.message == h.UNZIP_MESSAGE


@pytest.mark.extra
def test_zip_with_bad_crc_is_rejected(server, raw_client):
    name = h.new_name("badcrc")
    err = h.assert_create_rejected(server, raw_client, h.create_params(name, zip_with_bad_crc()), 400,
                                   "InvalidParameterValueException")
    assert err.message == h.UNZIP_MESSAGE


# ---- path traversal and symlinks --------------------------------------------------------------


def entry_names(entries) -> list[str]:
    return [e.name if isinstance(e, h.Symlink) else e[0] for e in entries]


EXTRA = pytest.mark.extra
UNSAFE = [
    pytest.param([("app.py", h.HANDLER_SOURCE), ("../evil", b"x")], id="dotdot"),
    pytest.param([("app.py", h.HANDLER_SOURCE), ("/abs/path", b"x")], id="absolute"),
    pytest.param([("app.py", h.HANDLER_SOURCE), ("lib/../../evil", b"x")], id="nested-dotdot", marks=EXTRA),
    pytest.param([("app.py", h.HANDLER_SOURCE), h.Symlink("passwd", "../../etc/passwd")], id="symlink-dotdot"),
    pytest.param([("app.py", h.HANDLER_SOURCE), h.Symlink("passwd", "/etc/passwd")], id="symlink-absolute"),
    pytest.param([("app.py", h.HANDLER_SOURCE), ("lib/x.py", b"x = 1\n"), h.Symlink("lib/up", "../../outside")],
                 id="symlink-nested-escape", marks=EXTRA),
]


@pytest.mark.parametrize("entries", UNSAFE)
def test_unsafe_entries_are_rejected(server, raw_client, entries, request):
    data = h.build_zip(entries)
    # Make sure the zip really carries the unsafe name (zipfile must not have sanitised it).
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert [i.filename for i in zf.infolist()] == entry_names(entries)
    name = h.new_name("unsafe-" + request.node.callspec.id)
    h.assert_create_rejected(server, raw_client, h.create_params(name, data), 400, "InvalidParameterValueException")


SAFE_SYMLINKS = [
    pytest.param([("app.py", h.HANDLER_SOURCE), ("lib/x.py", b"x = 1\n"), h.Symlink("link.py", "lib/x.py")],
                 id="symlink-inside"),
    pytest.param([("app.py", h.HANDLER_SOURCE), ("lib/x.py", b"x = 1\n"), h.Symlink("lib/app_link.py", "../app.py")],
                 id="symlink-up-but-inside", marks=EXTRA),
]


@pytest.mark.parametrize("entries", SAFE_SYMLINKS)
def test_symlink_staying_inside_is_accepted(raw_client, entries, request):
    data = h.build_zip(entries)
    name = h.new_name("safe-" + request.node.callspec.id)
    cfg = h.create_function(raw_client, name, data)
    assert cfg["CodeSha256"] == h.code_sha256(data)
    got = raw_client.get_function(FunctionName=name)
    assert h.http_get_bytes(got["Code"]["Location"]) == data
