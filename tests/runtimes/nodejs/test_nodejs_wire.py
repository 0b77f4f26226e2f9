"""Exact Runtime API traffic of the bootstrap, against an in-process fake Runtime API.

These check what the RIE hides: request headers, the init-error header, trailers of streamed
errors, the X-Ray cause, the telemetry log fd framing, keep-alive reuse and fatal exits.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time

import pytest

import nodejs_runtime_helpers as h

INIT_ERROR = "/2018-06-01/runtime/init/error"


def test_response_request_shape(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.echo")
    rid = fake_api.push({"a": 1})
    rec = fake_api.result_for(rid)
    assert rec.path == f"/2018-06-01/runtime/invocation/{rid}/response"
    assert rec.headers["content-type"] == "application/json"
    assert int(rec.headers["content-length"]) == len(rec.body)
    assert rec.headers["user-agent"].startswith("aws-lambda-nodejs/v")
    body = rec.json()
    assert body["event"] == {"a": 1}
    assert body["context"]["awsRequestId"] == rid
    assert body["context"]["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:node-fixture"
    assert proc.proc.poll() is None


def test_one_keep_alive_connection_for_many_invokes(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    ids = [fake_api.push({"i": i}) for i in range(100)]
    results = [fake_api.result_for(rid).json() for rid in ids]
    assert [r["invocations"] for r in results] == list(range(1, 101))
    assert len({r["pid"] for r in results}) == 1
    peers = fake_api.next_peers | {r.peer for r in fake_api.requests}
    assert len(peers) == 1, f"expected one pooled socket, saw {peers}"


def test_deadline_and_remaining_time(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    rid = fake_api.push({}, deadline_in_ms=7_000)
    remaining = fake_api.result_for(rid).json()["context"]["remainingTimeInMillis"]
    assert 5_000 < remaining <= 7_000


def test_missing_deadline_gives_negative_remaining_time(fake_api, bootstrap_process):
    # Lambda's native client substitutes 0 for a missing deadline.
    bootstrap_process("cjs", "index.echo")
    rid = fake_api.push({}, headers={"Lambda-Runtime-Deadline-Ms": None})
    assert fake_api.result_for(rid).json()["context"]["remainingTimeInMillis"] < 0


def test_trace_id_is_exported_and_cleared(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    traced = fake_api.push({})
    untraced = fake_api.push({}, headers={"Lambda-Runtime-Trace-Id": None})
    assert fake_api.result_for(traced).json()["traceId"] == (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    assert fake_api.result_for(untraced).json()["traceId"] is None


def test_cognito_identity_and_client_context(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    cc = {"custom": {"a": "b"}}
    rid = fake_api.push(
        {},
        headers={
            "Lambda-Runtime-Cognito-Identity": json.dumps(identity),
            "Lambda-Runtime-Client-Context": json.dumps(cc),
        },
    )
    ctx = fake_api.result_for(rid).json()["context"]
    assert ctx["identity"] == identity
    assert ctx["clientContext"] == cc


def test_invalid_client_context_is_a_function_error(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.echo")
    bad = fake_api.push({}, headers={"Lambda-Runtime-Client-Context": "{nope"})
    rec = fake_api.result_for(bad)
    assert rec.path.endswith("/error")
    body = rec.json()
    assert body["errorType"] == "Error"
    assert body["errorMessage"].startswith("Cannot parse ClientContext as json: SyntaxError: ")
    good = fake_api.push({"ok": True})
    assert fake_api.result_for(good).json()["event"] == {"ok": True}
    assert proc.proc.poll() is None


def test_invalid_json_event_is_a_function_error(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    rid = fake_api.push(raw=b"{not json")
    body = fake_api.result_for(rid).json()
    assert body["errorType"] == "SyntaxError"
    assert "JSON" in body["errorMessage"]


def test_request_id_is_url_encoded_in_paths(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.echo")
    rid = "odd id/with?chars"
    fake_api.push({}, request_id=rid)
    rec = fake_api.wait_request(lambda r: r.path.endswith("/response"))
    assert rec.path == "/2018-06-01/runtime/invocation/odd%20id%2Fwith%3Fchars/response"


def test_invoke_error_request_shape(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.throwError")
    rid = fake_api.push({})
    rec = fake_api.result_for(rid)
    assert rec.path == f"/2018-06-01/runtime/invocation/{rid}/error"
    assert rec.headers["content-type"] == "application/json"
    # Lambda's Node client sends no error-type header on /error (only on /init/error).
    assert "lambda-runtime-function-error-type" not in rec.headers
    body = rec.json()
    assert list(body) == ["errorType", "errorMessage", "trace"]
    assert (body["errorType"], body["errorMessage"]) == ("TypeError", "boom")
    cause = json.loads(rec.headers["lambda-runtime-function-xray-error-cause"])
    assert cause["working_directory"] == str(h.FIXTURES / "cjs")
    assert cause["exceptions"][0]["type"] == "TypeError"
    assert cause["exceptions"][0]["message"] == "boom"
    frame = cause["exceptions"][0]["stack"][0]
    assert frame["path"].endswith("fixtures/cjs/index.js") and frame["line"] > 0
    assert frame["path"] in cause["paths"]


def test_init_error_request_and_exit(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "missing.handler")
    rec = fake_api.wait_request(lambda r: r.path == INIT_ERROR)
    assert rec.headers["content-type"] == "application/json"
    assert rec.headers["lambda-runtime-function-error-type"] == "Runtime.ImportModuleError"
    body = rec.json()
    assert list(body) == ["errorType", "errorMessage", "trace"]
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert proc.wait() == 129
    assert fake_api.next_calls == 0


@pytest.mark.parametrize(
    "handler,error_type",
    [
        ("syntax.handler", "Runtime.UserCodeSyntaxError"),
        ("index.nope", "Runtime.HandlerNotFound"),
        ("index", "Runtime.MalformedHandlerName"),
        ("throws-at-init.handler", "Error"),
    ],
)
def test_init_error_type_header(fake_api, bootstrap_process, handler, error_type):
    proc = bootstrap_process("cjs", handler)
    rec = fake_api.wait_request(lambda r: r.path == INIT_ERROR)
    assert rec.headers["lambda-runtime-function-error-type"] == error_type
    assert rec.json()["errorType"] == error_type
    assert proc.wait() == 129


def test_unhandled_rejection_posts_and_exits_128(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.unhandledRejection")
    rid = fake_api.push({})
    body = fake_api.result_for(rid).json()
    assert body["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert proc.wait() == 128


def test_uncaught_exception_posts_and_exits_129(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.uncaughtException")
    rid = fake_api.push({})
    assert fake_api.result_for(rid).json()["errorMessage"] == "thrown from a timer"
    assert proc.wait() == 129


def test_failed_next_is_fatal(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.echo")
    fake_api.next_status = 500
    fake_api.push({})
    assert proc.wait() != 0


def test_unreachable_runtime_api_is_fatal(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.echo", env={"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{h.free_port()}"})
    assert proc.wait() != 0


def test_missing_runtime_api_variable(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.echo", env={"AWS_LAMBDA_RUNTIME_API": None})
    assert proc.wait() == 1
    assert "AWS_LAMBDA_RUNTIME_API is not set" in proc.output()


def test_streaming_request_shape(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.stream")
    rid = fake_api.push({})
    rec = fake_api.result_for(rid)
    assert rec.path.endswith("/response")
    assert rec.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert rec.headers["transfer-encoding"] == "chunked"
    assert rec.headers["content-type"] == "application/octet-stream"
    assert rec.headers["trailer"] == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    assert rec.body == b"chunk-1;chunk-2;end"
    assert rec.trailers == {}


def test_streaming_http_integration_content_type(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.streamHttp")
    rec = fake_api.result_for(fake_api.push({}))
    assert rec.headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert rec.body.startswith(b'{"statusCode":201,')
    assert b"\x00" * 8 + b"hello world" in rec.body


def test_streaming_error_goes_in_trailers(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.streamFail")
    rid = fake_api.push({})
    rec = fake_api.result_for(rid)
    assert rec.body == b"partial"
    assert rec.trailers["lambda-runtime-function-error-type"] == "Error"
    err = json.loads(base64.b64decode(rec.trailers["lambda-runtime-function-error-body"]))
    assert (err["errorType"], err["errorMessage"]) == ("Error", "stream broke")
    assert err["trace"][0] == "Error: stream broke"
    # The runtime keeps serving.
    fake_api.push({})
    fake_api.wait_next_calls(3)
    assert proc.proc.poll() is None


def test_telemetry_fd_frames(fake_api, bootstrap_process):
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        bootstrap_process("cjs", "index.logs", env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd)}, pass_fds=(write_fd,))
        os.close(write_fd)
        write_fd = -1
        before_us = int(time.time() * 1_000_000)
        rid = fake_api.push({})
        fake_api.result_for(rid)
        data = b""
        frames = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(b"undefined" in f[3] for f in frames):
            try:
                chunk = os.read(read_fd, 65536)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            data += chunk
            while len(data) >= 16:
                ftype, length, ts = struct.unpack(">IIq", data[:16])
                if len(data) < 16 + length:
                    break
                frames.append((ftype, length, ts, data[16 : 16 + length]))
                data = data[16 + length :]
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    by_text = {f[3].decode(): f for f in frames}
    info = next(f for t, f in by_text.items() if "\tINFO\tlog line { a: 1 }" in t)
    assert info[0] == 0xA55A0003 | 0b01100
    assert info[3].endswith(b"\n")
    assert abs(info[2] - before_us) < 10_000_000
    multi = next(t for t in by_text if "\tINFO\tfirst" in t)
    assert multi.endswith("first\nsecond\nthird\n"), "frames keep newlines (no \\r substitution)"
    assert next(f for t, f in by_text.items() if "\tERROR\t" in t)[0] == 0xA55A0003 | 0b10100
    assert next(f for t, f in by_text.items() if "\tWARN\t" in t)[0] == 0xA55A0003 | 0b10000


def test_telemetry_fd_variable_is_removed(fake_api, bootstrap_process):
    read_fd, write_fd = os.pipe()
    try:
        bootstrap_process("cjs", "index.environment", env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd)},
                          pass_fds=(write_fd,))
        rid = fake_api.push({})
        assert fake_api.result_for(rid).json()["telemetryFdVisible"] is False
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_streaming_pipeline(fake_api, bootstrap_process):
    bootstrap_process("cjs", "index.streamPipeline")
    assert fake_api.result_for(fake_api.push({})).body == b"abc"


def test_streaming_handler_that_does_not_end_the_stream(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.streamNotEnded")
    rec = fake_api.result_for(fake_api.push({}))
    assert rec.body == b"never ended"
    assert rec.trailers["lambda-runtime-function-error-type"] == "string"
    err = json.loads(base64.b64decode(rec.trailers["lambda-runtime-function-error-body"]))
    assert err == {"errorType": "string", "errorMessage": "Response stream is not finished.", "trace": []}
    fake_api.push({})
    fake_api.wait_next_calls(3)
    assert proc.proc.poll() is None


def test_streaming_handler_destroying_the_stream_does_not_kill_the_runtime(fake_api, bootstrap_process):
    proc = bootstrap_process("cjs", "index.streamDestroy")
    fake_api.push({})
    fake_api.wait_next_calls(2)  # it moved on to the next event
    fake_api.push({})
    fake_api.wait_next_calls(3)
    assert proc.proc.poll() is None
