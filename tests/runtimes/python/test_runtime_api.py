"""The runtime's side of the Runtime API, against a scripted fake server: request shapes,
headers the RIE does not send, and how the runtime reacts to a failing API."""

import json
import os
import select
import struct
import time

import pytest

from fake_runtime_api import FakeRuntimeApi
from runtime_harness import FUNCTIONS, FakeApiRuntime

API = "/2018-06-01/runtime"


def test_next_and_response_requests(fake_api, start_runtime):
    start_runtime("app.echo")
    request_id = fake_api.push(b'{"hello": "world"}')
    result = fake_api.next_result()
    assert result.method == "POST"
    assert result.path == "%s/invocation/%s/response" % (API, request_id)
    assert result.headers["content-type"] == "application/json"
    assert result.headers["content-length"] == str(len(result.body))
    assert result.body == b'{"hello": "world"}'
    get = fake_api.requests[0]
    assert (get.method, get.path) == ("GET", API + "/invocation/next")
    assert get.headers["host"] == fake_api.address
    # Both went over one kept-alive connection, and the runtime is waiting on /next again.
    assert len(fake_api.connections) == 1
    time.sleep(0.05)
    assert fake_api.requests[-1].path == API + "/invocation/next"


def test_bytes_result_content_type(fake_api, start_runtime):
    start_runtime("app.return_bytes")
    fake_api.push()
    result = fake_api.next_result()
    assert result.headers["content-type"] == "application/unknown"
    assert result.body == b"\x00raw\xffbytes"


def call_context_fields(fake_api, **push):
    fake_api.push(**push)
    result = fake_api.next_result()
    assert result.path.endswith("/response"), result.body
    return result.json()


def test_trace_id_is_set_per_invoke_and_cleared(fake_api, start_runtime):
    start_runtime("app.context_fields")
    trace = "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"
    first = call_context_fields(fake_api, headers={"Lambda-Runtime-Trace-Id": trace})
    assert first["env"]["_X_AMZN_TRACE_ID"] == trace
    second = call_context_fields(fake_api)
    assert second["env"]["_X_AMZN_TRACE_ID"] is None


def test_context_from_headers(fake_api, start_runtime):
    start_runtime("app.context_fields")
    deadline = int(time.time() * 1000) + 12_000
    ctx = call_context_fields(
        fake_api, request_id="req-1", deadline_ms=deadline,
        arn="arn:aws:lambda:us-east-1:123456789012:function:f:live",
        headers={
            "Lambda-Runtime-Client-Context": json.dumps(
                {"client": {"installation_id": "i-1", "app_title": "T"},
                 "custom": {"a": 1}, "env": {"locale": "en"}}),
            "Lambda-Runtime-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "cid", "cognitoIdentityPoolId": "pool"}),
            "Lambda-Runtime-Aws-Tenant-Id": "tenant-7",
        })
    assert ctx["aws_request_id"] == "req-1"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:f:live"
    assert 10_000 < ctx["remaining_ms"] <= 12_000
    assert ctx["client_context"] == {"installation_id": "i-1", "app_title": "T",
                                     "custom": {"a": 1}, "env": {"locale": "en"}}
    assert ctx["identity"] == ["cid", "pool"]
    assert ctx["tenant_id"] == "tenant-7"
    assert ctx["function_name"] == "kappa-test-function"
    assert ctx["memory_limit_in_mb"] == "128"
    assert ctx["log_group_name"] == "/aws/lambda/kappa-test-function"
    assert ctx["log_stream_name"] == "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef"


def test_missing_optional_headers(fake_api, start_runtime):
    start_runtime("app.context_fields")
    ctx = call_context_fields(fake_api, omit=("Lambda-Runtime-Deadline-Ms",
                                              "Lambda-Runtime-Invoked-Function-Arn"))
    assert ctx["remaining_ms"] == 0
    assert ctx["invoked_function_arn"] == ""
    assert ctx["client_context"] is None
    assert ctx["identity"] == [None, None]


@pytest.mark.parametrize("content_type, event_repr", [
    ("application/json", "{'a': 1}"),
    (None, "{'a': 1}"),  # header absent: JSON, as the Runtime API's default
    ("text/plain", "b'{\"a\": 1}'"),
    ("application/json; charset=utf-8", "b'{\"a\": 1}'"),  # only the exact value is JSON
])
def test_event_content_types(fake_api, start_runtime, content_type, event_repr):
    start_runtime("app.context_fields")
    ctx = call_context_fields(fake_api, body=b'{"a": 1}', content_type=content_type)
    assert ctx["event_repr"] == event_repr


def test_chunked_next_body(fake_api, start_runtime):
    start_runtime("app.echo")
    fake_api.push(b'{"a chunked": "event body of some length"}', chunked=True)
    assert fake_api.next_result().json() == {"a chunked": "event body of some length"}


@pytest.mark.parametrize("header, message", [
    ("Lambda-Runtime-Client-Context", "Unable to parse Client Context JSON: Expecting value: "
                                      "line 1 column 1 (char 0)"),
    ("Lambda-Runtime-Cognito-Identity", "Unable to parse Cognito Identity JSON: Expecting "
                                        "value: line 1 column 1 (char 0)"),
])
def test_malformed_context_headers(fake_api, start_runtime, header, message):
    start_runtime("app.context_fields")
    request_id = fake_api.push(headers={header: "not json"})
    result = fake_api.next_result()
    assert result.path == "%s/invocation/%s/error" % (API, request_id)
    assert result.json() == {"errorMessage": message,
                             "errorType": "Runtime.LambdaContextUnmarshalError",
                             "requestId": request_id, "stackTrace": []}


def test_error_request(fake_api, start_runtime):
    start_runtime("app.boom")
    request_id = fake_api.push()
    result = fake_api.next_result()
    assert result.path == "%s/invocation/%s/error" % (API, request_id)
    assert result.headers["content-type"] == "application/json"
    # Like Lambda's Python runtime: no error-type header on /error, an X-Ray cause instead.
    assert "lambda-runtime-function-error-type" not in result.headers
    cause = json.loads(result.headers["lambda-runtime-function-xray-error-cause"])
    app = os.path.join(FUNCTIONS, "app.py")
    assert cause["working_directory"] == FUNCTIONS
    assert cause["paths"] == [app]
    assert cause["exceptions"][0]["message"] == "kaboom"
    assert cause["exceptions"][0]["type"] == "ValueError"
    assert [frame["label"] for frame in cause["exceptions"][0]["stack"]] == ["boom", "inner"]
    body = result.json()
    assert (body["errorType"], body["requestId"]) == ("ValueError", request_id)


def test_init_error_request(fake_api, start_runtime):
    runtime = start_runtime("no_such_module.handler")
    result = fake_api.next_result()
    assert (result.method, result.path) == ("POST", API + "/init/error")
    assert result.headers["lambda-runtime-function-error-type"] == "Runtime.ImportModuleError"
    assert result.json() == {
        "errorMessage": "Unable to import module 'no_such_module': No module named "
                        "'no_such_module'",
        "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}
    status, _ = runtime.wait_exit()
    assert status == 1
    assert [r.path for r in fake_api.requests] == [API + "/init/error"]


def test_failed_post_ends_the_runtime(start_runtime_on):
    api, runtime = start_runtime_on(FakeRuntimeApi(response_status=500), "app.echo")
    api.push()
    status, output = runtime.wait_exit()
    assert status == 1
    assert "failed to post invocation response: HTTP 500" in output


def test_dropped_next_ends_the_runtime(fake_api, start_runtime):
    runtime = start_runtime("app.echo")
    fake_api.push_disconnect()
    status, output = runtime.wait_exit()
    assert status == 1
    assert "LAMBDA_RUNTIME" in output and "/invocation/next" in output


def test_reconnects_when_the_server_closed_an_idle_connection(start_runtime_on):
    api, runtime = start_runtime_on(FakeRuntimeApi(close_after_post=True), "app.count")
    for expected in (1, 2, 3):
        api.push()
        assert api.next_result().json()["invokes"] == expected
    assert runtime.process.poll() is None
    assert len(api.connections) >= 3


def read_frames(fd, until, timeout=10):
    """Telemetry frames (type, timestamp µs, text) read from ``fd`` until ``until(frames)``."""
    frames, data = [], b""
    deadline = time.monotonic() + timeout
    while not until(frames):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, "timed out reading telemetry frames; got %r" % frames
        chunk = os.read(fd, 65536)
        assert chunk, "telemetry fd closed; got %r" % frames
        data += chunk
        while len(data) >= 16:
            frame_type, length, micros = struct.unpack(">IIQ", data[:16])
            if len(data) < 16 + length:
                break
            frames.append((frame_type, micros, data[16:16 + length].decode()))
            data = data[16 + length:]
    return frames


@pytest.fixture
def telemetry_pipe():
    """(read fd, write fd) of a pipe standing in for the platform's telemetry fd."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def test_telemetry_fd_frames(fake_api, start_runtime, telemetry_pipe):
    read_fd, write_fd = telemetry_pipe
    start_runtime("app.log_everything", pass_fds=(write_fd,),
                  env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd)})
    fake_api.push()
    assert fake_api.next_result().json() == "logged"
    frames = read_frames(read_fd, lambda frames: any(
        text == "via context.log" for _, _, text in frames))
    by_text = {text.split("\t")[-1].split("\n")[0]: frame_type for frame_type, _, text in frames}
    # Text records without AWS_LAMBDA_LOG_LEVEL carry no level bits; multi-line records
    # keep their newlines inside one frame.
    assert by_text["warning message 42"] == 0xA55A0003
    assert any(text.endswith("\tmulti\nline\nmessage\n") for _, _, text in frames)
    assert by_text["via context.log"] == 0xA55A0003
    assert all(abs(micros / 1e6 - time.time()) < 60 for _, micros, _ in frames)


def test_telemetry_fd_levels(fake_api, start_runtime, telemetry_pipe):
    read_fd, write_fd = telemetry_pipe
    start_runtime("app.log_everything", pass_fds=(write_fd,),
                  env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd), "AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    fake_api.push()
    fake_api.next_result()
    frames = read_frames(read_fd, lambda frames: any(
        text == "via context.log" for _, _, text in frames))
    types = {text.split("]")[0]: frame_type for frame_type, _, text in frames}
    assert types == {"[DEBUG": 0xA55A000B, "[INFO": 0xA55A000F, "[WARNING": 0xA55A0013,
                     "[ERROR": 0xA55A0017, "[CRITICAL": 0xA55A001B, "via context.log": 0xA55A0003}


def test_telemetry_fd_json_levels_and_error_frame(fake_api, start_runtime, telemetry_pipe):
    read_fd, write_fd = telemetry_pipe
    start_runtime("jsonlogs.fail", pass_fds=(write_fd,),
                  env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd), "AWS_LAMBDA_LOG_FORMAT": "JSON"})
    fake_api.push()
    fake_api.next_result()
    frames = read_frames(read_fd, lambda frames: len(frames) >= 2)
    assert frames[0][0] == 0xA55A0012  # JSON, WARN: the init-time warning
    assert json.loads(frames[0][2])["message"] == "init-time warning"
    assert frames[1][0] == 0xA55A0016  # JSON, ERROR: the reported error
    assert json.loads(frames[1][2])["errorType"] == "ValueError"


def test_telemetry_fd_variable_is_removed(fake_api, start_runtime, telemetry_pipe):
    _, write_fd = telemetry_pipe
    start_runtime("app.runtime_state", pass_fds=(write_fd,),
                  env={"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd)})
    fake_api.push()
    assert fake_api.next_result().json()["telemetry_fd_var"] is None


def test_exec_wrapper(fake_api, start_runtime, tmp_path):
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\nexport WRAPPED_BY="wrapper with $# args"\nexec "$@"\n')
    wrapper.chmod(0o755)
    start_runtime("app.runtime_state", env={"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})
    fake_api.push()
    state = fake_api.next_result().json()
    assert state["wrapped_by"] == "wrapper with 2 args"  # the interpreter and bootstrap.py
    assert state["exec_wrapper_marker"] is None


def test_missing_exec_wrapper(fake_api, start_runtime, tmp_path):
    runtime = start_runtime("app.echo", env={"AWS_LAMBDA_EXEC_WRAPPER": str(tmp_path / "nope")})
    status, output = runtime.wait_exit()
    assert status == 127
    assert output == "%s: does not exist\n" % (tmp_path / "nope")


@pytest.fixture
def start_runtime_on():
    """start_runtime_on(api, handler) -> (api, runtime) for a specially configured API."""
    started = []

    def start(api, handler, **kwargs):
        runtime = FakeApiRuntime(api, handler, **kwargs)
        started.append((api, runtime))
        return api, runtime

    yield start
    for api, runtime in started:
        runtime.stop()
        api.close()
