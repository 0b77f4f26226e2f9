"""Invocations through the RIE: results, the context object, handler lookup, errors."""

import json
import os
import re
import threading

from runtime_harness import BOOTSTRAP, FUNCTION_NAME, FUNCTIONS, RUNTIME_VERSION

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
APP = os.path.join(FUNCTIONS, "app.py")


def test_echo_returns_the_event(start_rie):
    rie = start_rie("app.echo")
    event = {"a": 1, "nested": {"list": [1, 2.5, None, True]}, "text": "h\u00e9llo"}
    status, body = rie.invoke_json(event)
    assert status == 200
    assert body == event


def test_scalar_and_null_results(start_rie):
    rie = start_rie("app.echo")
    assert rie.invoke(b'"Hello, world!"') == (200, b'"Hello, world!"')
    assert rie.invoke(b"[1, 2]") == (200, b"[1, 2]")
    rie2 = start_rie("app.return_none")
    assert rie2.invoke() == (200, b"null")


def test_context_fields(start_rie):
    rie = start_rie("app.context_fields")
    status, ctx = rie.invoke_json({}, client_context={
        "client": {"installation_id": "install-1", "app_title": "Kappa App"},
        "custom": {"k": "v"}, "env": {"platform": "linux"}})
    assert status == 200
    assert UUID.match(ctx["aws_request_id"])
    assert ctx["function_name"] == FUNCTION_NAME
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"].endswith(":function:" + FUNCTION_NAME)
    # A string, as on Lambda (the value of AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["memory_limit_type"] == "str"
    assert ctx["log_group_name"] == ctx["env"]["AWS_LAMBDA_LOG_GROUP_NAME"]
    assert ctx["log_stream_name"] == ctx["env"]["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert 25_000 < ctx["remaining_ms"] <= 30_000
    assert ctx["identity"] == [None, None]
    assert ctx["client_context"] == {"installation_id": "install-1", "app_title": "Kappa App",
                                     "custom": {"k": "v"}, "env": {"platform": "linux"}}
    assert ctx["tenant_id"] is None
    assert ctx["repr"].startswith("LambdaContext([aws_request_id=%s,log_group_name="
                                  % ctx["aws_request_id"])
    assert "client_context=ClientContext([custom={'k': 'v'},env={'platform': 'linux'}," \
           "client=Client([installation_id=install-1,app_title=Kappa App," in ctx["repr"]
    assert ctx["repr"].endswith(
        "identity=CognitoIdentity([cognito_identity_id=None,cognito_identity_pool_id=None]),"
        "tenant_id=None])")


def test_cognito_identity_reaches_the_context(start_rie):
    rie = start_rie("app.context_fields")
    identity = json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"})
    _, ctx = rie.invoke_json({}, headers={"X-Amz-Cognito-Identity": identity})
    assert ctx["identity"] == ["id-1", "pool-1"]
    assert ctx["client_context"] is None


def test_remaining_time_counts_down(start_rie):
    rie = start_rie("app.sleep_then_report", timeout_s=3)
    status, remaining = rie.invoke_json({"seconds": 1})
    assert status == 200
    assert 1000 < remaining < 2100


def test_module_imported_once_and_globals_persist(start_rie):
    rie = start_rie("app.count")
    results = [rie.invoke_json()[1] for _ in range(5)]
    assert [r["invokes"] for r in results] == [1, 2, 3, 4, 5]
    assert all(r["imports"] == 1 for r in results)
    assert len({r["pid"] for r in results}) == 1
    assert rie.lines().count("app: module imported") == 1


def test_dotted_package_handler(start_rie):
    rie = start_rie("pkg.sub.mod.handler")
    status, body = rie.invoke_json()
    assert status == 200
    assert body == {"module": "pkg.sub.mod",
                    "file": os.path.join(FUNCTIONS, "pkg", "sub", "mod.py")}


def test_slash_path_handler(start_rie):
    rie = start_rie("nested/deeper/mod.handler")
    status, body = rie.invoke_json()
    assert status == 200
    assert body == {"module": "nested.deeper.mod",
                    "file": os.path.join(FUNCTIONS, "nested", "deeper", "mod.py")}


def test_handler_exception(start_rie):
    rie = start_rie("app.boom")
    status, error = rie.invoke_json()
    assert status == 200
    with open(APP) as source:
        lines = source.read().split("\n")
    call_line = lines.index("    inner()") + 1
    raise_line = lines.index('        raise ValueError("kaboom")') + 1
    assert list(error) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert error["errorMessage"] == "kaboom"
    assert error["errorType"] == "ValueError"
    assert UUID.match(error["requestId"])
    assert error["stackTrace"] == [
        '  File "%s", line %d, in boom\n    inner()\n' % (APP, call_line),
        '  File "%s", line %d, in inner\n    raise ValueError("kaboom")\n' % (APP, raise_line),
    ]
    logged = rie.wait_for_line(lambda line: line.startswith("[ERROR] ValueError"))
    assert logged == (
        "[ERROR] ValueError: kaboom\rTraceback (most recent call last):\r"
        '\u00a0\u00a0File "%s", line %d, in boom\r\u00a0\u00a0\u00a0\u00a0inner()\r'
        '\u00a0\u00a0File "%s", line %d, in inner\r'
        '\u00a0\u00a0\u00a0\u00a0raise ValueError("kaboom")' % (APP, call_line, APP, raise_line))


def test_exception_types_and_messages(start_rie):
    rie = start_rie("app.custom_error")
    _, error = rie.invoke_json()
    assert (error["errorType"], error["errorMessage"]) == ("CustomError", "first line\nsecond line")
    # The logged error stays one log line however many lines its message has.
    logged = rie.wait_for_line(lambda line: line.startswith("[ERROR] CustomError"))
    assert logged.startswith("[ERROR] CustomError: first line\rsecond line\rTraceback")
    rie2 = start_rie("app.key_error")
    _, error = rie2.invoke_json()
    assert (error["errorType"], error["errorMessage"]) == ("KeyError", "'missing'")


def test_handler_that_is_not_callable(start_rie):
    rie = start_rie("app.not_callable")
    _, error = rie.invoke_json()
    assert error["errorType"] == "TypeError"
    assert error["errorMessage"] == "'int' object is not callable"
    assert len(error["stackTrace"]) == 1  # the runtime's call of the handler


def test_unserializable_result_is_a_marshal_error(start_rie):
    rie = start_rie("app.return_set")
    status, error = rie.invoke_json()
    assert status == 200
    assert error == {"errorMessage": "Unable to marshal response: Object of type set is not "
                                     "JSON serializable",
                     "errorType": "Runtime.MarshalError", "requestId": error["requestId"],
                     "stackTrace": []}
    rie.wait_for_line(lambda line: line == (
        "[ERROR] Runtime.MarshalError: Unable to marshal response: Object of type set is not "
        "JSON serializable\rTraceback (most recent call last):"))


def test_bytes_result_is_sent_raw(start_rie):
    rie = start_rie("app.return_bytes")
    assert rie.invoke() == (200, b"\x00raw\xffbytes")


def test_results_encoded_as_lambda_does(start_rie):
    rie = start_rie("app.return_special")
    status, body = rie.invoke()
    assert status == 200
    # Decimals keep their exact digits, named tuples become objects, nested bytes become
    # text, NaN is allowed, and before python3.12 non-ASCII text is \u-escaped.
    assert body == (b'{"decimal": 1.10, "decimal_int": 3, "point": {"x": 1, "y": 2}, '
                    b'"nested_bytes": "text", "nan": NaN, "unicode": "h\\u00e9llo \\u2603"}')


def test_python312_results_keep_unicode(start_rie):
    rie = start_rie("app.return_special", env={"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12"})
    _, body = rie.invoke()
    assert body.endswith('"unicode": "h\u00e9llo \u2603"}'.encode())


def test_invalid_json_event_is_an_unmarshal_error(start_rie):
    rie = start_rie("app.echo")
    status, error = rie.invoke_json(b"{not json")
    assert status == 200
    assert error["errorType"] == "Runtime.UnmarshalError"
    assert error["errorMessage"] == ("Unable to unmarshal input: Expecting property name "
                                     "enclosed in double quotes: line 1 column 2 (char 1)")
    _, error = rie.invoke_json(b'{"a": NaN}')
    assert error["errorMessage"] == ("Unable to unmarshal input: Expecting value: "
                                     "line 1 column 7 (char 6)")


def test_stdout_is_unbuffered(start_rie, tmp_path):
    rie = start_rie("app.print_then_wait")
    release = tmp_path / "release"
    result = {}
    invoker = threading.Thread(target=lambda: result.update(
        response=rie.invoke_json({"marker": "m1", "release_file": str(release)})))
    invoker.start()
    try:
        # The handler is still running, and wrote no newline: only unbuffered output shows.
        rie.wait_for_line(lambda line: "marker-m1" in line)
    finally:
        release.write_text("go")
        invoker.join(20)
    assert result["response"] == (200, "released")


def test_exit_in_handler_ends_the_runtime(start_rie):
    rie = start_rie("app.exit_process")
    status, error = rie.invoke_json()
    assert status == 502  # the RIE's status for a runtime that died
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")


def test_sys_path_and_logging_setup(start_rie):
    rie = start_rie("app.runtime_state")
    _, state = rie.invoke_json()
    version = "python%d.%d" % RUNTIME_VERSION
    layer_site = "/opt/python/lib/%s/site-packages" % version
    assert state["sys_path"][:4] == [FUNCTIONS, layer_site, "/opt/python",
                                     os.path.dirname(BOOTSTRAP)]
    assert state["sys_path"][-2:] == [layer_site, "/opt/python"]
    assert state["root_level"] == 30  # WARNING, Python's default, unless a log level is set
    assert state["handlers"] == ["LambdaLoggerHandler"]
    assert state["formatter"] == [
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"]
    assert state["converter_is_gmtime"] is True


def test_large_event_and_result(start_rie):
    rie = start_rie("app.echo")
    event = {"blob": "x" * (5 * 1024 * 1024), "list": list(range(10000))}
    status, body = rie.invoke_json(event)
    assert status == 200
    assert body == event


def test_function_modules_named_like_runtime_modules(start_rie):
    # The runtime's modules live in their own package, so they never shadow the function's.
    rie = start_rie("context.handler")
    status, body = rie.invoke_json()
    assert status == 200
    assert body == {"module": "context", "file": os.path.join(FUNCTIONS, "context.py")}
