"""AWS's own runtime interface clients, unchanged, as provided.al2023 bootstraps:

- awslambdaric (PyPI), installed with pip into the package and run by the host's Python;
- lambda_runtime (the official Rust crate), a tiny Rust function in fixtures/rust_echo built with cargo.

The sandbox sees the host's file system except /var, /opt and /tmp, so the interpreter must live
elsewhere (the test venv's base interpreter does).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import kappa_helpers as h

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUST_ECHO = FIXTURES / "rust_echo"

RIC_APP = '''\
import os

INIT_PID = os.getpid()
CALLS = 0
print("app module initialised")


def handler(event, context):
    global CALLS
    CALLS += 1
    print(f"hello from awslambdaric {context.aws_request_id}")
    if "fail" in event:
        raise ValueError(event["fail"])
    client_context = None
    if context.client_context is not None:
        client_context = context.client_context.custom
    return {
        "echo": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_context_custom": client_context,
        "calls": CALLS,
        "pid": INIT_PID,
        "cwd": os.getcwd(),
    }
'''


def sandbox_python() -> str:
    """An interpreter functions can run: the host's system Python, shown inside every sandbox
    with the rest of /usr (a pyenv or venv interpreter under /root is not)."""
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.fail(f"{python} is missing: install the distribution's python3 (custom runtimes run it)")
    return python


@pytest.fixture(scope="session")
def ric_zip(tmp_path_factory) -> bytes:
    python = sandbox_python()
    version = subprocess.run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    stage = tmp_path_factory.mktemp("ric-stage")
    pkgs = stage / "pkgs"
    # Wheels for the sandbox's interpreter, installed by the test venv's pip.
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(pkgs),
           "--python-version", version, "--only-binary=:all:", "awslambdaric"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip install awslambdaric failed:\n{proc.stdout}\n{proc.stderr}"
    bootstrap = f'#!/bin/sh\nexport PYTHONPATH=/var/task/pkgs\nexec {python} -m awslambdaric "$_HANDLER"\n'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in (("bootstrap", bootstrap, 0o755), ("app.py", RIC_APP, 0o644)):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        h.add_tree_to_zip(zf, pkgs, "pkgs")
    return buf.getvalue()


@pytest.fixture(scope="module")
def ric_fn(client, ric_zip):
    name = h.new_name("ric")
    h.create_function(client, name, ric_zip, Runtime="provided.al2023", Handler="app.handler", Timeout=20)
    return name


def test_awslambdaric_echo_and_context(client, server, ric_fn):
    before = time.time()
    result = h.invoke_ok(client, ric_fn, {"hello": "ric", "n": [1, 2]})
    assert result.cold
    body = result.json()
    assert body["echo"] == {"hello": "ric", "n": [1, 2]}
    assert body["aws_request_id"] == result.request_id
    assert body["function_name"] == ric_fn
    assert body["function_version"] == "$LATEST"
    assert str(body["memory_limit_in_mb"]) == "128"
    assert body["invoked_function_arn"] == server.function_arn(ric_fn)
    assert body["log_group_name"] == f"/aws/lambda/{ric_fn}"
    assert h.LOG_STREAM_RE.match(body["log_stream_name"]), body
    assert body["cwd"] == "/var/task"
    elapsed_ms = (time.time() - before) * 1000
    assert 20_000 - elapsed_ms - 1000 <= body["remaining_ms"] <= 20_000, body["remaining_ms"]
    assert f"hello from awslambdaric {result.request_id}" in result.log, result.log
    assert "app module initialised" in result.log, "init output belongs to the cold start's log"


def test_awslambdaric_warm_invocations_keep_the_process(client, ric_fn):
    results = [h.invoke_ok(client, ric_fn, {"i": i}) for i in range(25)]
    bodies = [r.json() for r in results]
    assert [b["echo"] for b in bodies] == [{"i": i} for i in range(25)]
    assert len({b["pid"] for b in bodies}) == 1, "the runtime process was restarted"
    calls = [b["calls"] for b in bodies]
    assert calls == list(range(calls[0], calls[0] + 25)), calls
    assert not any(r.cold for r in results)
    assert len({b["aws_request_id"] for b in bodies}) == 25


def test_awslambdaric_client_context(client, ric_fn):
    context = {"custom": {"tenant": "t-1"}, "client": {"installation_id": "i-1"}, "env": {}}
    result = h.invoke_ok(client, ric_fn, {}, ClientContext=base64.b64encode(json.dumps(context).encode()).decode())
    assert result.json()["client_context_custom"] == {"tenant": "t-1"}


def test_awslambdaric_exception(client, ric_fn):
    result = h.invoke(client, ric_fn, {"fail": "kaboom"})
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "ValueError", body
    assert body["errorMessage"] == "kaboom", body
    assert body["requestId"] == result.request_id, body
    assert isinstance(body["stackTrace"], list) and body["stackTrace"], body
    assert all(isinstance(frame, str) for frame in body["stackTrace"]), body
    assert any('File "/var/task/app.py"' in frame and "raise ValueError" in frame for frame in body["stackTrace"]), body
    assert "kaboom" in result.log, result.log
    # The environment survives a handled exception.
    after = h.invoke_ok(client, ric_fn, {"ok": True})
    assert not after.cold
    assert after.json()["echo"] == {"ok": True}


def test_awslambdaric_import_error(client, ric_zip):
    name = h.new_name("ricbad")
    h.create_function(client, name, ric_zip, Runtime="provided.al2023", Handler="nomodule.handler")
    result = h.invoke(client, name, {})
    assert result.status == 200 and result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "Runtime.ImportModuleError", body
    assert body["errorMessage"] == "Unable to import module 'nomodule': No module named 'nomodule'", body
    assert body["requestId"] == "", body


# ---- Rust: lambda_runtime ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rust_bootstrap() -> bytes:
    env = dict(os.environ, CARGO_TARGET_DIR=str(RUST_ECHO / "target"))
    cmd = ["cargo", "build", "--release", "--quiet", "--manifest-path", str(RUST_ECHO / "Cargo.toml")]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    except FileNotFoundError:
        pytest.fail("cargo is not installed: it is needed to build fixtures/rust_echo")
    assert proc.returncode == 0, f"building fixtures/rust_echo failed:\n{proc.stdout}\n{proc.stderr}"
    binary = RUST_ECHO / "target" / "release" / "bootstrap"
    assert binary.exists(), binary
    return binary.read_bytes()


@pytest.fixture(scope="module")
def rust_fn(client, rust_bootstrap):
    name = h.new_name("rust")
    h.create_custom_function(client, name, None, files={"bootstrap": rust_bootstrap}, Timeout=15)
    return name


def test_rust_echo_and_context(client, server, rust_fn):
    before_ms = time.time() * 1000
    result = h.invoke_ok(client, rust_fn, {"hello": "rust", "list": [1, "two", None]})
    after_ms = time.time() * 1000
    body = result.json()
    assert body["echo"] == {"hello": "rust", "list": [1, "two", None]}
    assert body["request_id"] == result.request_id
    assert body["function_arn"] == server.function_arn(rust_fn)
    assert body["function_name"] == rust_fn
    assert body["memory"] == 128
    assert body["version"] == "$LATEST"
    assert body["client_context_custom"] is None
    assert before_ms + 15_000 - 1000 <= body["deadline_ms"] <= after_ms + 15_000 + 250, body
    assert f"rust_echo handling {result.request_id}" in result.log, result.log


def test_rust_warm_invocations(client, rust_fn):
    h.invoke_ok(client, rust_fn, {})
    results = [h.invoke_ok(client, rust_fn, {"i": i}) for i in range(25)]
    assert [r.json()["echo"] for r in results] == [{"i": i} for i in range(25)]
    assert not any(r.cold for r in results)


def test_rust_error(client, rust_fn):
    result = h.invoke(client, rust_fn, {"fail": "rust says no"})
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorMessage"] == "rust says no", body
    assert isinstance(body.get("errorType"), str) and body["errorType"], body
    # The environment survives the error.
    after = h.invoke_ok(client, rust_fn, {"after": 1})
    assert after.json()["echo"] == {"after": 1}
    assert not after.cold


def test_rust_client_context_and_qualifier(client, server, rust_fn):
    # lambda_runtime requires every field of a present "client" (AWS Mobile SDK shape).
    context = {
        "client": {"installationId": "inst-1", "appTitle": "Kappa", "appVersionName": "1.0",
                   "appVersionCode": "1", "appPackageName": "dev.kappa.tests"},
        "custom": {"a": "b"},
        "env": {"platform": "test"},
    }
    result = h.invoke_ok(client, rust_fn, {"q": 1}, Qualifier="$LATEST",
                         ClientContext=base64.b64encode(json.dumps(context).encode()).decode())
    body = result.json()
    assert body["echo"] == {"q": 1}
    assert body["client_context_custom"] == {"a": "b"}
    assert body["function_arn"] == server.function_arn(rust_fn, "$LATEST")
