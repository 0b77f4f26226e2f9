"""Handler resolution, invocation styles and the context object, end to end through the RIE."""

from __future__ import annotations

import json
import shutil
import time

import pytest

import nodejs_runtime_helpers as h


def test_cjs_echo_returns_event_and_context(rie_function):
    fn = rie_function("cjs", "index.echo")
    r = fn.invoke({"hello": "world", "n": [1, 2, 3]})
    assert r.status == 200
    out = r.json()
    assert out["event"] == {"hello": "world", "n": [1, 2, 3]}
    assert out["moduleType"] == "commonjs"
    ctx = out["context"]
    assert ctx["functionName"] == "node-fixture"
    assert ctx["functionVersion"] == "$LATEST"
    assert ctx["memoryLimitInMB"] == "256"  # a string, as in Lambda
    assert ctx["logGroupName"] == "/aws/lambda/node-fixture"
    assert ctx["logStreamName"] == "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
    assert ctx["invokedFunctionArn"].startswith("arn:aws:lambda:") and ctx["invokedFunctionArn"].endswith(
        ":function:node-fixture"
    )
    assert len(ctx["awsRequestId"]) == 36
    assert 0 < ctx["remainingTimeInMillis"] <= 20_000
    assert ctx["callbackWaitsForEmptyEventLoop"] is True
    assert ctx["hasLegacyMethods"] is True
    assert "identity" not in ctx or ctx["identity"] is None


def test_client_context_is_parsed(rie_function):
    fn = rie_function("cjs", "index.echo")
    cc = {"client": {"installation_id": "i"}, "custom": {"k": "v"}, "env": {"platform": "x"}}
    r = fn.invoke({}, headers={"X-Amz-Client-Context": h.b64(json.dumps(cc))})
    assert r.json()["context"]["clientContext"] == cc


def test_globals_persist_across_warm_invokes(rie_function):
    fn = rie_function("cjs", "index.echo")
    outs = [fn.invoke({"i": i}).json() for i in range(5)]
    assert [o["invocations"] for o in outs] == [1, 2, 3, 4, 5]
    assert len({o["pid"] for o in outs}) == 1
    assert len({o["loadedAt"] for o in outs}) == 1
    assert len({o["context"]["awsRequestId"] for o in outs}) == 5


def test_esm_mjs_echo(rie_function):
    fn = rie_function("esm", "index.handler")
    first = fn.invoke({"esm": True}).json()
    second = fn.invoke({"esm": 2}).json()
    assert first["event"] == {"esm": True}
    assert first["moduleType"] == "esm"
    assert first["url"].startswith("file://") and first["url"].endswith("/esm/index.mjs")
    assert second["invocations"] == 2


def test_esm_default_export_nested_path(rie_function):
    fn = rie_function("esm", "index.default.nested")
    assert fn.invoke({}).json() == "default export"


def test_esm_top_level_await(rie_function):
    fn = rie_function("esm", "top-level-await.handler")
    assert fn.invoke({}).json() == {"ready": True}


def test_js_in_type_module_package_loads_as_esm(rie_function):
    fn = rie_function("esm-pkg", "index.handler")
    assert fn.invoke({"x": 1}).json() == {"event": {"x": 1}, "moduleType": "esm"}


def test_cjs_extension(rie_function):
    fn = rie_function("cjs", "lib.handler")
    assert fn.invoke({}).json() == {"where": "lib.cjs"}


def test_extensionless_file(rie_function):
    fn = rie_function("cjs", "extensionless.handler")
    assert fn.invoke({}).json() == {"where": "extensionless"}


def test_nested_directory_handler(rie_function):
    fn = rie_function("cjs", "src/handlers/app.handler")
    assert fn.invoke({"k": "v"}).json() == {"where": "src/handlers/app.js", "event": {"k": "v"}}


def test_nested_export_path(rie_function):
    fn = rie_function("cjs", "index.nested.deep.handler")
    assert fn.invoke({"a": 1}).json() == {"nested": True, "event": {"a": 1}}


def test_environment_node_path_and_execution_env(rie_function, node_bin):
    fn = rie_function("cjs", "index.environment")
    out = fn.invoke({}).json()
    major = out["AWS_EXECUTION_ENV"].removeprefix("AWS_Lambda_nodejs").removesuffix(".x")
    assert major.isdigit() and int(major) >= 18
    assert out["NODE_PATH"].split(":") == [
        f"/opt/nodejs/node{major}/node_modules",
        "/opt/nodejs/node_modules",
        f"{h.RUNTIME_DIR}/node_modules",
        str(h.RUNTIME_DIR),
        str(h.FIXTURES / "cjs"),
    ]
    assert out["cwd"] == str(h.FIXTURES / "cjs")
    assert out["hasAwslambdaGlobal"] is True


def test_packages_resolve_through_node_path(rie_function, tmp_path):
    """A package in <runtime dir>/node_modules (like /var/runtime/node_modules) is found."""
    runtime = tmp_path / "var-runtime"
    runtime.mkdir()
    for f in h.RUNTIME_DIR.glob("*.mjs"):
        shutil.copy(f, runtime / f.name)
    shutil.copytree(h.FIXTURES / "layers" / "runtime-lib" / "node_modules", runtime / "node_modules")
    fn = rie_function("cjs", "uses-layer.handler", bootstrap=runtime / "bootstrap.mjs")
    assert fn.invoke({}).json() == "hello from NODE_PATH"


def test_preset_node_path_is_respected(rie_function):
    fn = rie_function("cjs", "index.environment", env={"NODE_PATH": "/custom/path"})
    assert fn.invoke({}).json()["NODE_PATH"] == "/custom/path"


def test_callback_waits_for_empty_event_loop(rie_function):
    fn = rie_function("cjs", "index.callbackWaits")
    start = time.monotonic()
    r = fn.invoke({})
    elapsed = time.monotonic() - start
    assert r.json() == {"style": "callback", "waited": True}
    assert elapsed >= 0.3, "the response must wait for the pending 300 ms timer"
    # The timer's log line belongs to this invocation: it comes before END.
    fn.wait_for_log("END RequestId")
    logs = fn.logs()
    assert logs.index("timer fired") < logs.index("END RequestId")


def test_callback_without_waiting_for_event_loop(rie_function):
    fn = rie_function("cjs", "index.callbackNoWait")
    fn.invoke({})  # cold start
    start = time.monotonic()
    r = fn.invoke({})
    elapsed = time.monotonic() - start
    assert r.json() == {"style": "callback", "waited": False}
    assert elapsed < 1.0, "callbackWaitsForEmptyEventLoop=false responds at the callback"


def test_callback_error_does_not_wait(rie_function):
    fn = rie_function("cjs", "index.callbackError")
    fn.invoke({})
    start = time.monotonic()
    r = fn.invoke({})
    assert time.monotonic() - start < 1.0
    body = r.json()
    assert body["errorType"] == "Error"
    assert body["errorMessage"] == "callback failure"


def test_only_first_callback_counts(rie_function):
    fn = rie_function("cjs", "index.callbackTwice")
    assert fn.invoke({}).json() == "first"
    assert fn.invoke({}).json() == "first"


def test_sync_handler_without_callback_returns_null(rie_function):
    fn = rie_function("cjs", "index.syncNoCallback")
    r = fn.invoke({})
    assert r.status == 200
    assert r.body == b"null"
    assert "work done" in fn.wait_for_log("work done")


@pytest.mark.parametrize(
    "handler,expected",
    [
        ("index.legacyDone", {"legacy": "done"}),
        ("index.legacySucceed", {"legacy": "succeed"}),
    ],
)
def test_legacy_context_success_methods(rie_function, handler, expected):
    fn = rie_function("cjs", handler)
    assert fn.invoke({}).json() == expected


def test_legacy_context_fail(rie_function):
    fn = rie_function("cjs", "index.legacyFail")
    body = fn.invoke({}).json()
    assert body["errorType"] == "Error"
    assert body["errorMessage"] == "legacy failure"


def test_legacy_context_fail_without_error(rie_function):
    fn = rie_function("cjs", "index.legacyFailNothing")
    assert fn.invoke({}).json() == {"errorType": "string", "errorMessage": "handled", "trace": []}


def test_undefined_result_is_null(rie_function):
    fn = rie_function("cjs", "index.returnUndefined")
    assert fn.invoke({}).body == b"null"


def test_string_result_is_json_text(rie_function):
    fn = rie_function("cjs", "index.returnString")
    assert fn.invoke({}).body == b'"Hello, world!"'


def test_large_payload_round_trip(rie_function):
    fn = rie_function("cjs", "index.echo")
    blob = "x" * (1024 * 1024)
    assert fn.invoke({"blob": blob}).json()["event"]["blob"] == blob


def test_streaming_response(rie_function):
    fn = rie_function("cjs", "index.stream")
    r = fn.invoke({})
    assert r.status == 200
    assert r.body == b"chunk-1;chunk-2;end"


def test_streaming_http_integration_prelude(rie_function):
    fn = rie_function("cjs", "index.streamHttp")
    r = fn.invoke({})
    prelude, sep, body = r.body.partition(b"\x00" * 8)
    assert sep, r.body
    assert json.loads(prelude) == {"statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["a=1"]}
    assert body == b"hello world"


def test_awslambda_global_can_be_disabled(rie_function):
    assert rie_function("esm", "globals.handler").invoke({}).json() == {"awslambda": "object"}
    fn = rie_function("esm", "globals.handler", env={"AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA": "true"})
    assert fn.invoke({}).json() == {"awslambda": "undefined"}


def test_response_size_limit_just_under_and_over(rie_function):
    """6,291,556 bytes is the buffered limit; the runtime survives the RIE's 413."""
    fn = rie_function("cjs", "index.bigResult")
    limit = 6_291_556
    under = fn.invoke({"size": limit - 2})  # + 2 quote characters = exactly the limit
    assert under.status == 200 and len(under.body) == limit
    over = fn.invoke({"size": limit - 1})
    assert over.json() == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }
    assert fn.invoke({"size": 3}).body == b'"xxx"'
