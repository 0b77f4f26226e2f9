"""Init failures: what the caller gets through the RIE and what is logged."""

import json
import os
import re

import pytest

from runtime_harness import FUNCTIONS

LAMBDA_WARNING_PREFIX = "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue"


def init_error(start_rie, handler, **kwargs):
    rie = start_rie(handler, **kwargs)
    status, body = rie.invoke_json()
    assert status == 502  # how the RIE answers an invoke whose init failed
    return rie, body


@pytest.mark.parametrize("handler, error_type, message", [
    ("no_such_module.handler", "Runtime.ImportModuleError",
     "Unable to import module 'no_such_module': No module named 'no_such_module'"),
    ("imports_missing.handler", "Runtime.ImportModuleError",
     "Unable to import module 'imports_missing': No module named 'kappa_no_such_dependency'"),
    ("nested/deeper/nope.handler", "Runtime.ImportModuleError",
     "Unable to import module 'nested/deeper/nope': No module named 'nested.deeper.nope'"),
    ("app.no_such_function", "Runtime.HandlerNotFound",
     "Handler 'no_such_function' missing on module 'app'"),
    ("handler_without_dot", "Runtime.MalformedHandlerName",
     "Bad handler 'handler_without_dot': not enough values to unpack (expected 2, got 1)"),
    ("sys.handler", "Runtime.BuiltInModuleConflict",
     "Cannot use built-in module sys as a handler module"),
])
def test_init_error_documents(start_rie, handler, error_type, message):
    rie, body = init_error(start_rie, handler)
    assert body == {"errorMessage": message, "errorType": error_type, "requestId": "",
                    "stackTrace": []}
    rie.wait_for_line(lambda line: line == "[ERROR] %s: %s\rTraceback (most recent call last):"
                      % (error_type, message))
    # Logged before the error, through the root logger, with an empty request id.
    warnings = [line for line in rie.lines() if LAMBDA_WARNING_PREFIX in line]
    assert len(warnings) == 1
    assert re.fullmatch(r"\[WARNING\]\t[0-9T:.-]+Z\t\tLAMBDA_WARNING: .*/runtimes-update\.html\r",
                        warnings[0])


def test_syntax_error(start_rie):
    _, body = init_error(start_rie, "badsyntax.handler")
    path = os.path.join(FUNCTIONS, "badsyntax.py")
    assert body["errorType"] == "Runtime.UserCodeSyntaxError"
    assert body["errorMessage"] == ("Syntax error in module 'badsyntax': invalid syntax "
                                    "(badsyntax.py, line 2)")
    assert body["requestId"] == ""
    assert body["stackTrace"] == ['  File "%s" Line 2\n    def broken(:\n' % path]


def test_exception_while_importing(start_rie):
    rie, body = init_error(start_rie, "raises_on_import.handler")
    path = os.path.join(FUNCTIONS, "raises_on_import.py")
    assert body["errorType"] == "RuntimeError"
    assert body["errorMessage"] == "failed during init"
    assert body["requestId"] == ""
    # The trace starts in importlib (the runtime's own frames are left out) and ends in
    # the function's module.
    assert "importlib" in body["stackTrace"][0]
    assert body["stackTrace"][-2:] == [
        '  File "%s", line 5, in <module>\n    helper()\n' % path,
        '  File "%s", line 2, in helper\n    raise RuntimeError("failed during init")\n' % path,
    ]
    assert not any("kappa_python_runtime" in frame for frame in body["stackTrace"])
    rie.wait_for_line(lambda line: line.startswith(
        "[ERROR] RuntimeError: failed during init\rTraceback (most recent call last):\r"))


def test_init_error_in_json_log_format(start_rie):
    rie, body = init_error(start_rie, "no_such_module.handler",
                           env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    logged = json.loads(rie.wait_for_line(lambda line: '"errorType"' in line))
    assert list(logged) == ["timestamp", "level", "errorMessage", "errorType", "requestId",
                            "stackTrace"]
    assert logged["level"] == "ERROR"
    assert logged["errorType"] == "Runtime.ImportModuleError"
    assert logged["requestId"] == ""
    warning = json.loads(rie.wait_for_line(lambda line: LAMBDA_WARNING_PREFIX in line))
    assert warning["level"] == "WARNING" and warning["logger"] == "root"
