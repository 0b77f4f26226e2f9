"""The runtime on every CPython from 3.9 to 3.13 found on this machine."""

import os
import re

import pytest

from runtime_harness import FUNCTIONS, FakeApiRuntime, available_pythons

VERSIONS = [(3, minor) for minor in range(9, 14)]
_FOUND = available_pythons()


@pytest.fixture(params=VERSIONS, ids=["python3.%d" % minor for _, minor in VERSIONS])
def python(request):
    path = _FOUND.get(request.param)
    if path is None:
        pytest.skip("python%d.%d is not installed" % request.param)
    return path


def test_invokes_errors_and_logs(fake_api, python):
    runtime = FakeApiRuntime(fake_api, "app.log_everything", python=python)
    try:
        fake_api.push()
        assert fake_api.next_result().json() == "logged"
    finally:
        output = runtime.stop()
    assert re.search(r"^\[WARNING\]\t\S+Z\t[0-9a-f-]{36}\twarning message 42$", output, re.M)
    assert re.search(r"\tmulti\rline\rmessage$", output, re.M)

    runtime = FakeApiRuntime(fake_api, "app.boom", python=python)
    try:
        request_id = fake_api.push(b'{"k": [1, 2]}')
        error = fake_api.next_result().json()
    finally:
        runtime.stop()
    assert error["errorType"] == "ValueError"
    assert error["requestId"] == request_id
    assert error["stackTrace"][-1].endswith('    raise ValueError("kaboom")\n')

    runtime = FakeApiRuntime(fake_api, "app.return_special", python=python)
    try:
        fake_api.push()
        body = fake_api.next_result().body
    finally:
        runtime.stop()
    assert body.startswith(b'{"decimal": 1.10, "decimal_int": 3, "point": {"x": 1, "y": 2}')


def test_init_errors(fake_api, python):
    runtime = FakeApiRuntime(fake_api, "badsyntax.handler", python=python)
    result = fake_api.next_result()
    status, _ = runtime.wait_exit()
    assert status == 1
    assert result.headers["lambda-runtime-function-error-type"] == "Runtime.UserCodeSyntaxError"
    error = result.json()
    assert error["errorMessage"].startswith("Syntax error in module 'badsyntax': ")
    assert error["stackTrace"] == ['  File "%s" Line 2\n    def broken(:\n'
                                   % os.path.join(FUNCTIONS, "badsyntax.py")]

    runtime = FakeApiRuntime(fake_api, "nested/deeper/mod.missing", python=python)
    result = fake_api.next_result()
    runtime.wait_exit()
    assert result.json()["errorMessage"] == (
        "Handler 'missing' missing on module 'nested/deeper/mod'")
