"""Init and invoke failures, end to end through the RIE: bodies exactly as Lambda's Node runtime.

The RIE answers init failures and runtime crashes with 502 and handled function errors with
200; real Lambda answers both with 200 + X-Amz-Function-Error. The body is what matters here.
"""

from __future__ import annotations

import re

import pytest

import nodejs_runtime_helpers as h

RUNTIME_INDEX = f"{h.RUNTIME_DIR}/index.mjs"


def assert_trace_starts(body: dict, *first_lines: str) -> None:
    assert isinstance(body["trace"], list)
    assert body["trace"][: len(first_lines)] == list(first_lines)


# --- init errors --------------------------------------------------------------------------


def test_missing_module_is_import_module_error(rie_function):
    fn = rie_function("cjs", "missing.handler")
    r = fn.invoke({})
    body = r.json()
    assert set(body) == {"errorType", "errorMessage", "trace"}
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == f"Error: Cannot find module 'missing'\nRequire stack:\n- {RUNTIME_INDEX}"
    assert_trace_starts(
        body,
        "Runtime.ImportModuleError: Error: Cannot find module 'missing'",
        "Require stack:",
        f"- {RUNTIME_INDEX}",
    )
    # Logged as Lambda does, with request id "undefined" during init.
    log = fn.wait_for_log("Uncaught Exception")
    assert re.search(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tundefined\tERROR\tUncaught Exception \t\{\"errorType\":\"Runtime.ImportModuleError\"",
        log,
        re.M,
    )


def test_missing_dependency_of_cjs_module(rie_function):
    fn = rie_function("cjs", "broken-dep.handler")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == (
        "Error: Cannot find module 'kappa-no-such-dependency'\nRequire stack:\n"
        f"- {h.FIXTURES}/cjs/broken-dep.js\n- {RUNTIME_INDEX}"
    )


def test_missing_package_of_esm_module_is_plain_error(rie_function):
    # ES module resolution failures are not MODULE_NOT_FOUND: Lambda reports them unchanged.
    fn = rie_function("esm", "missing-pkg.handler")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Error"
    assert body["errorMessage"].startswith("Cannot find package 'kappa-no-such-package' imported from ")
    assert body["trace"][0].startswith("Error [ERR_MODULE_NOT_FOUND]: Cannot find package")


@pytest.mark.parametrize("task,handler", [("cjs", "syntax.handler"), ("esm", "syntax.handler")])
def test_syntax_error_is_user_code_syntax_error(rie_function, task, handler):
    fn = rie_function(task, handler)
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.UserCodeSyntaxError"
    assert body["errorMessage"].startswith("SyntaxError: ")
    assert body["trace"][0] == f"Runtime.UserCodeSyntaxError: {body['errorMessage']}"


def test_handler_not_exported(rie_function):
    fn = rie_function("cjs", "index.nope")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.HandlerNotFound"
    assert body["errorMessage"] == "index.nope is undefined or not exported"
    assert body["trace"][0] == "Runtime.HandlerNotFound: index.nope is undefined or not exported"


def test_handler_not_a_function(rie_function):
    fn = rie_function("cjs", "index.notAFunction")
    body = fn.invoke({}).json()
    assert body == {**body, "errorType": "Runtime.HandlerNotFound", "errorMessage": "index.notAFunction is not a function"}


def test_handler_without_dot_is_malformed(rie_function):
    fn = rie_function("cjs", "index")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.MalformedHandlerName"
    assert body["errorMessage"] == "Bad handler"


def test_handler_with_parent_path_is_malformed(rie_function):
    fn = rie_function("cjs", "../cjs/index.echo")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.MalformedHandlerName"
    assert body["errorMessage"] == (
        "'../cjs/index.echo' is not a valid handler name. "
        "Use absolute paths when specifying root directories in handler names."
    )


def test_module_throwing_at_init(rie_function):
    fn = rie_function("cjs", "throws-at-init.handler")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Error"
    assert body["errorMessage"] == "init went wrong"
    assert body["trace"][0] == "Error: init went wrong"


def test_init_error_is_retried_on_next_invoke(rie_function):
    fn = rie_function("cjs", "missing.handler")
    first = fn.invoke({}).json()
    second = fn.invoke({}).json()
    assert first["errorType"] == second["errorType"] == "Runtime.ImportModuleError"


# --- invoke errors ------------------------------------------------------------------------


def test_async_throw(rie_function):
    fn = rie_function("cjs", "index.throwError")
    r = fn.invoke({})
    assert r.status == 200
    body = r.json()
    assert list(body) == ["errorType", "errorMessage", "trace"]
    assert body["errorType"] == "TypeError"
    assert body["errorMessage"] == "boom"
    assert body["trace"][0] == "TypeError: boom"
    assert any("fixtures/cjs/index.js" in line for line in body["trace"][1:])
    log = fn.wait_for_log("Invoke Error")
    line = next(l for l in log.split("\n") if "Invoke Error" in l)
    ts, rid, level, msg = line.split("\t", 3)
    assert level == "ERROR" and len(rid) == 36
    assert msg.startswith('Invoke Error \t{"errorType":"TypeError","errorMessage":"boom","stack":["TypeError: boom",')


def test_custom_error_name_and_fields(rie_function):
    fn = rie_function("cjs", "index.throwCustom")
    body = fn.invoke({}).json()
    assert body["errorType"] == "ValidationError"
    assert body["errorMessage"] == "bad input"
    log = fn.wait_for_log("Invoke Error")
    assert '"errorType":"ValidationError","errorMessage":"bad input","code":"E_BAD"' in log


def test_sync_throw(rie_function):
    fn = rie_function("cjs", "index.syncThrow")
    body = fn.invoke({}).json()
    assert (body["errorType"], body["errorMessage"]) == ("RangeError", "sync boom")


@pytest.mark.parametrize(
    "handler,expected",
    [
        ("index.throwString", {"errorType": "string", "errorMessage": "plain string", "trace": []}),
        ("index.throwObject", {"errorType": "object", "errorMessage": "[object Object]", "trace": []}),
        ("index.throwUndefined", {"errorType": "string", "errorMessage": "handled", "trace": []}),
    ],
)
def test_thrown_non_error_values(rie_function, handler, expected):
    fn = rie_function("cjs", handler)
    assert fn.invoke({}).json() == expected


def test_unserializable_result(rie_function):
    fn = rie_function("cjs", "index.circular")
    body = fn.invoke({}).json()
    assert (body["errorType"], body["errorMessage"]) == ("Error", "Unable to stringify response body")


def test_async_handler_that_never_settles(rie_function):
    fn = rie_function("cjs", "index.asyncNeverResolves")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.NodeJsExit"
    assert body["errorMessage"].startswith("The Lambda runtime client detected an unexpected Node.js exit code.")
    # The runtime keeps serving.
    assert fn.invoke({}).json()["errorType"] == "Runtime.NodeJsExit"


def test_unhandled_rejection_fails_invoke_and_restarts(rie_function):
    fn = rie_function("cjs", "index.unhandledRejection")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert body["errorMessage"] == "Error: background rejection"
    assert body["trace"][0] == "Runtime.UnhandledPromiseRejection: Error: background rejection"
    log = fn.wait_for_log("exit status 128")
    assert "\tERROR\tUnhandled Promise Rejection \t" in log
    # The environment is re-initialised and serves the next invoke.
    assert fn.invoke({}).json()["errorType"] == "Runtime.UnhandledPromiseRejection"


def test_uncaught_exception_fails_invoke_and_exits(rie_function):
    fn = rie_function("cjs", "index.uncaughtException")
    body = fn.invoke({}).json()
    assert (body["errorType"], body["errorMessage"]) == ("Error", "thrown from a timer")
    log = fn.wait_for_log("exit status 129")
    assert "\tERROR\tUncaught Exception \t" in log


def test_invalid_json_event_is_rejected_before_the_runtime(rie_function):
    # Lambda (and the RIE) only deliver JSON; make sure a bad payload never wedges the runtime.
    fn = rie_function("cjs", "index.echo")
    fn.invoke(raw=b"not json")
    assert fn.invoke({"ok": 1}).json()["event"] == {"ok": 1}
