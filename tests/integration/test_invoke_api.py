"""Invoke (POST /2015-03-31/functions/{name}/invocations) through boto3 and the AWS CLI v1.

The functions are provided.al2023 custom runtimes written in sh + curl (kappa_helpers.SHELL_RUNTIME).
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import kappa_helpers as h

# Answers with the payload, after printing a line to the log.
PRINTING_ECHO = 'echo "hello from the function $REQUEST_ID"\nrespond "$EVENT"'
# Answers with the client context and the invoked ARN it received.
CONTEXT_HANDLER = r"""
  {
    printf 'arn=%s\n' "$(header Lambda-Runtime-Invoked-Function-Arn)"
    if grep -qi '^Lambda-Runtime-Client-Context:' "$HEADERS"; then
      printf 'client_context=%s\n' "$(header Lambda-Runtime-Client-Context)"
    else
      printf 'client_context_absent=1\n'
    fi
  } > "$RESPONSE"
  respond "$RESPONSE"
"""


@pytest.fixture(scope="module")
def echo_fn(client):
    name = h.new_name("echo")
    h.create_custom_function(client, name, h.shell_bootstrap(PRINTING_ECHO))
    return name


def test_invoke_echoes_payload(client, echo_fn):
    payload = {"hello": "world", "n": [1, 2.5, None, True], "nested": {"ü": "✓"}}
    result = h.invoke(client, echo_fn, payload)
    assert result.status == 200, result.describe()
    assert result.function_error is None, result.describe()
    assert result.json() == payload
    assert result.executed_version == "$LATEST"
    assert result.headers.get("x-amz-executed-version") == "$LATEST"


@pytest.mark.parametrize("payload", [b'"just a string"', b"42", b"[1,2,3]", b"null", b" {\"a\" : 1} \n",
                                     '{"s": "\u00fc \u2713 \U0001f600"}'.encode()])
def test_any_json_value_is_a_valid_payload(client, echo_fn, payload):
    result = h.invoke_ok(client, echo_fn, payload)
    assert result.payload == payload, "the payload must reach the function byte for byte"


def test_empty_payload_reaches_function_as_empty_object(client, echo_fn):
    result = h.invoke_ok(client, echo_fn, None)
    assert result.json() == {}
    result = h.invoke_ok(client, echo_fn, b"")
    assert result.json() == {}


def test_log_tail_has_start_output_end_report(client, echo_fn):
    result = h.invoke_ok(client, echo_fn, {"x": 1})
    log = result.log
    request_id = result.request_id
    assert h.UUID_RE.match(request_id), request_id
    lines = log.splitlines()
    start = f"START RequestId: {request_id} Version: $LATEST"
    output = f"hello from the function {request_id}"
    end = f"END RequestId: {request_id}"
    for line in (start, output, end):
        assert line in lines, f"{line!r} missing from LogResult:\n{log}"
    assert lines.index(start) < lines.index(output) < lines.index(end), log
    report_lines = [line for line in lines if line.startswith("REPORT ")]
    assert len(report_lines) == 1, log
    assert lines.index(report_lines[0]) > lines.index(end), log
    assert log.endswith(report_lines[0] + "\n"), f"LogResult must end with the REPORT line:\n{log!r}"
    report = result.report()
    assert report["id"] == request_id
    assert report["memory"] == "128"
    assert report["rest"] == "", f"unexpected fields after the REPORT metrics: {report['rest']!r}"
    duration = float(report["duration"])
    billed = int(report["billed"])
    init = float(report["init"]) if report["init"] else 0.0
    assert billed >= 1
    assert math.floor(duration + init) <= billed <= math.ceil(duration + init) + 1, report
    assert int(report["used"]) >= 1, report


def test_init_duration_only_on_cold_start(client):
    name = h.new_name("cold")
    h.create_custom_function(client, name, h.shell_bootstrap())
    first = h.invoke_ok(client, name, {})
    assert first.cold, f"first invoke must report Init Duration:\n{first.log}"
    assert "INIT_START" in first.log, f"a cold start's log begins with INIT_START:\n{first.log}"
    second = h.invoke_ok(client, name, {})
    assert not second.cold, f"a warm invoke must not report Init Duration:\n{second.log}"
    assert "INIT_START" not in second.log, second.log
    assert second.request_id != first.request_id


def test_memory_size_in_report(client):
    name = h.new_name("mem")
    h.create_custom_function(client, name, h.shell_bootstrap(), MemorySize=256)
    result = h.invoke_ok(client, name, {})
    assert result.report()["memory"] == "256", result.log


def test_log_tail_is_last_4096_bytes(client):
    name = h.new_name("biglog")
    # About 12 KB of output: the tail keeps the end of it and the END/REPORT lines.
    handler = (
        'i=0; while [ $i -lt 200 ]; do echo "line $i of the output, padded to be long enough ......"; i=$((i+1)); done\n'
        'respond "$EVENT"'
    )
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    result = h.invoke_ok(client, name, {})
    raw = base64.b64decode(result.headers["x-amz-log-result"])
    assert len(raw) == h.LOG_TAIL_BYTES, f"LogResult decodes to {len(raw)} bytes, want exactly 4096"
    text = raw.decode()
    assert "START RequestId" not in text, "the START line is more than 4 KB before the end"
    assert "line 199 of the output" in text
    assert re.search(r"END RequestId: \S+\nREPORT RequestId: .*\n$", text), text[-600:]


def test_output_without_trailing_newline_keeps_platform_lines_intact(client):
    name = h.new_name("partial")
    h.create_custom_function(client, name, h.shell_bootstrap("printf 'no newline at the end'\nrespond \"$EVENT\""))
    for _ in range(2):
        result = h.invoke_ok(client, name, {})
        lines = result.log.splitlines()
        assert f"END RequestId: {result.request_id}" in lines, result.log
        assert any(line.startswith(f"REPORT RequestId: {result.request_id}\t") for line in lines), result.log
        assert "no newline at the end" in result.log, result.log


def test_heavy_output_does_not_block_the_function(client):
    name = h.new_name("chatty")
    # About 8 MB of log output in one invocation.
    handler = 'head -c 6000000 /dev/zero | tr "\\0" "x" | fold -w 1000\nrespond "$EVENT"'
    h.create_custom_function(client, name, h.shell_bootstrap(handler), Timeout=60)
    result = h.invoke_ok(client, name, {"after": "output"})
    assert result.json() == {"after": "output"}
    assert result.elapsed < 30, f"the invoke took {result.elapsed:.1f} s"
    raw = base64.b64decode(result.headers["x-amz-log-result"])
    assert len(raw) == h.LOG_TAIL_BYTES
    assert re.search(r"END RequestId: \S+\nREPORT RequestId: .*\n$", raw.decode()), raw[-400:]
    assert "x" * 1000 + "\n" in raw.decode()
    # The environment is still usable, and warm.
    assert not h.invoke_ok(client, name, {}).cold


def test_no_log_result_without_tail(client, echo_fn):
    result = h.invoke(client, echo_fn, {"a": 1}, tail=False)
    assert result.status == 200
    assert result.log is None
    assert "x-amz-log-result" not in result.headers
    result = h.invoke(client, echo_fn, {"a": 1}, tail=False, LogType="None")
    assert result.log is None


def test_dry_run_returns_204_and_runs_nothing(client):
    name = h.new_name("dry")
    h.create_custom_function(client, name, h.shell_bootstrap())
    result = h.invoke(client, name, {"a": 1}, tail=False, InvocationType="DryRun")
    assert result.status == 204, result.describe()
    assert result.payload == b""
    assert result.function_error is None
    # No environment was started: the first real invoke is a cold start.
    assert h.invoke_ok(client, name, {}).cold


def test_dry_run_of_unknown_function_is_404(client):
    h.api_error(client, lambda: client.invoke(FunctionName=h.new_name("nope"), InvocationType="DryRun"),
                404, "ResourceNotFoundException")


def test_event_invocation_is_rejected_cleanly_or_queued(client):
    """Asynchronous invocation is not part of this contract yet: it must be refused with a clean
    400 InvalidParameterValueException. Once async lands, Lambda's own contract applies instead:
    202 with an empty body."""
    name = h.new_name("event")
    h.create_custom_function(client, name, h.shell_bootstrap())
    try:
        resp = client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    except client.exceptions.ClientError:
        err = h.api_error(client, lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}"),
                          400, "InvalidParameterValueException")
        assert "not available" in err.message.lower(), err
        # Nothing ran, and the function still works synchronously (from a cold start).
        assert h.invoke_ok(client, name, {}).cold
        return
    assert resp["StatusCode"] == 202, h.strip_meta(resp)
    assert resp["Payload"].read() == b""
    assert "FunctionError" not in resp and "LogResult" not in resp, h.strip_meta(resp)


def test_unknown_function_is_404(client):
    name = h.new_name("missing")
    err = h.api_error(client, lambda: client.invoke(FunctionName=name, Payload=b"{}"), 404, "ResourceNotFoundException")
    assert f"arn:aws:lambda:us-east-1:000000000000:function:{name}" in err.message, err


def test_invalid_json_payload_is_rejected(client, echo_fn):
    for payload in (b"{not json", b"hello", b'{"a": 1', b"\xff\xfe"):
        err = h.api_error(client, lambda: client.invoke(FunctionName=echo_fn, Payload=payload),
                          400, "InvalidRequestContentException")
        assert err.message, err


def test_payload_of_exactly_6291456_bytes_is_accepted(raw_client):
    name = h.new_name("maxpayload")
    h.create_custom_function(raw_client, name, h.shell_bootstrap())
    payload = b'"' + b"a" * (h.MAX_SYNC_PAYLOAD - 2) + b'"'
    assert len(payload) == h.MAX_SYNC_PAYLOAD
    result = h.invoke_ok(raw_client, name, payload, tail=False)
    assert len(result.payload) == len(payload)
    assert result.payload == payload


def test_payload_over_6291456_bytes_is_413(raw_client, echo_fn):
    payload = b'"' + b"a" * (h.MAX_SYNC_PAYLOAD - 1) + b'"'
    assert len(payload) == h.MAX_SYNC_PAYLOAD + 1
    err = h.api_error(raw_client, lambda: raw_client.invoke(FunctionName=echo_fn, Payload=payload),
                      413, "RequestEntityTooLargeException")
    assert err.message == "Request must be smaller than 6291456 bytes for the InvokeFunction operation", err


def test_client_context_reaches_the_function(client):
    name = h.new_name("ctx")
    h.create_custom_function(client, name, h.shell_bootstrap(CONTEXT_HANDLER))
    context = {"client": {"installation_id": "inst-1", "app_title": "Kappa tests"},
               "custom": {"k": "v", "n": 1}, "env": {"locale": "en"}}
    text = json.dumps(context)
    result = h.invoke_ok(client, name, {}, ClientContext=base64.b64encode(text.encode()).decode())
    match = re.search(rb"^client_context=(.*)$", result.payload, re.M)
    assert match, result.payload
    assert match.group(1).decode() == text, "the client context must reach the function as sent"
    assert json.loads(match.group(1)) == context
    # Without a client context the header is absent (not empty).
    result = h.invoke_ok(client, name, {})
    assert b"client_context_absent=1" in result.payload, result.payload


def test_invoked_arn_follows_how_the_function_was_named(client, server):
    name = h.new_name("arn")
    h.create_custom_function(client, name, h.shell_bootstrap(CONTEXT_HANDLER))
    arn = server.function_arn(name)

    def seen_arn(**kwargs) -> str:
        result = h.invoke_ok(client, kwargs.pop("FunctionName", name), {}, **kwargs)
        assert result.executed_version == "$LATEST"
        match = re.search(rb"^arn=(.*)$", result.payload, re.M)
        assert match, result.payload
        return match.group(1).decode()

    assert seen_arn() == arn
    assert seen_arn(Qualifier="$LATEST") == f"{arn}:$LATEST"
    assert seen_arn(FunctionName=arn) == arn
    assert seen_arn(FunctionName=f"{arn}:$LATEST") == f"{arn}:$LATEST"
    assert seen_arn(FunctionName=f"000000000000:function:{name}") == arn


def test_unknown_qualifier_is_404(client, echo_fn):
    for qualifier in ("7", "no-such-alias"):
        err = h.api_error(client, lambda: client.invoke(FunctionName=echo_fn, Qualifier=qualifier, Payload=b"{}"),
                          404, "ResourceNotFoundException")
        assert echo_fn in err.message, err


def test_function_error_is_200_unhandled_with_error_body(client):
    name = h.new_name("fnerr")
    doc = '{"errorMessage":"it broke","errorType":"MyError","stackTrace":["frame 1","frame 2"]}'
    h.create_custom_function(client, name, h.shell_bootstrap(f"fail '{doc}'"))
    result = h.invoke(client, name, {"x": 1})
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    assert result.headers.get("x-amz-function-error") == "Unhandled"
    assert result.payload == doc.encode(), "the runtime's error document must be returned verbatim"
    assert result.executed_version == "$LATEST"


# ---- AWS CLI v1 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    return tmp_path_factory.mktemp("aws-cli-home")


def test_cli_invoke_with_tail(server, echo_fn, cli_home, tmp_path):
    out = tmp_path / "out.json"
    result = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", echo_fn,
                       "--payload", '{"from": "cli"}', "--log-type", "Tail", str(out))
    assert result["StatusCode"] == 200, result
    assert result["ExecutedVersion"] == "$LATEST", result
    assert "FunctionError" not in result, result
    assert json.loads(out.read_bytes()) == {"from": "cli"}
    log = base64.b64decode(result["LogResult"]).decode()
    assert re.search(r"^START RequestId: \S+ Version: \$LATEST$", log, re.M), log
    assert "hello from the function" in log
    assert re.search(r"^REPORT RequestId: ", log, re.M), log


def test_cli_invoke_function_error_and_dry_run(server, client, cli_home, tmp_path):
    name = h.new_name("clierr")
    doc = '{"errorMessage":"cli saw this","errorType":"CliError"}'
    h.create_custom_function(client, name, h.shell_bootstrap(f"fail '{doc}'"))
    out = tmp_path / "out.json"
    result = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", name, str(out))
    assert result["StatusCode"] == 200, result
    assert result["FunctionError"] == "Unhandled", result
    assert out.read_bytes() == doc.encode()
    result = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", name,
                       "--invocation-type", "DryRun", str(out))
    assert result["StatusCode"] == 204, result


def test_cli_invoke_unknown_function_fails(server, cli_home, tmp_path):
    proc = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", h.new_name("gone"),
                     str(tmp_path / "out.json"), check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr


# ---- beyond the written contract --------------------------------------------------------------


@pytest.mark.extra
def test_invalid_client_context_is_rejected(server, echo_fn):
    """Lambda rejects a client context that is not base64 of a JSON object (400)."""
    for bad in ("not base64!!", base64.b64encode(b"not json").decode(), base64.b64encode(b"[1]").decode()):
        fresh = server.client()  # a new connection each time: see test_early_errors_keep_the_connection_usable
        try:
            fresh.invoke(FunctionName=echo_fn, Payload=b"{}", ClientContext=bad)
        except fresh.exceptions.ClientError as exc:
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            assert status == 400, exc.response
            continue
        raise AssertionError(f"client context {bad!r} was accepted")


def _signed_request_head(server, path: str, headers: dict, body: bytes) -> bytes:
    req = AWSRequest(method="POST", url=server.url + path, data=body, headers=headers)
    SigV4Auth(Credentials(h.ACCESS_KEY, h.SECRET_KEY), "lambda", h.REGION).add_auth(req)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_http_response(sock) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a response body")
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


@pytest.mark.extra
@pytest.mark.parametrize("bad_header", [
    {"X-Amz-Client-Context": "not base64!!"},
    {"X-Amz-Invocation-Type": "Bogus"},
    {"X-Amz-Log-Type": "Bogus"},
])
def test_early_errors_keep_the_connection_usable(server, echo_fn, bad_header):
    """A request rejected for a bad header must leave the keep-alive connection usable (the
    server consumes the body before answering), or say `Connection: close`. Otherwise clients
    that reuse connections (boto3, the CLI) fail their next call with ConnectionClosedError /
    broken pipe."""
    path = f"/2015-03-31/functions/{echo_fn}/invocations"
    body = b'{"a": 1}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # As real clients do: head and body in one go, the body possibly arriving a bit later.
        sock.sendall(_signed_request_head(server, path, bad_header, body))
        sock.sendall(body)
        status, headers, _ = _read_http_response(sock)
        assert status == 400, (status, headers)
        if headers.get("connection", "").lower() == "close":
            return
        second = b'{"b": 2}'
        try:
            sock.sendall(_signed_request_head(server, path, {}, second) + second)
            status, headers, payload = _read_http_response(sock)
        except OSError as exc:
            raise AssertionError(
                f"after a 400 for {bad_header} without `Connection: close`, the server dropped the "
                f"keep-alive connection: the next request failed with {exc!r}"
            ) from exc
        assert (status, payload) == (200, second), (status, headers, payload)


@pytest.mark.extra
def test_invoke_response_carries_request_id_header(client, echo_fn):
    """AWS answers every call with x-amzn-RequestId; for Invoke it is the invocation's id."""
    result = h.invoke_ok(client, echo_fn, {})
    assert result.headers.get("x-amzn-requestid") == result.request_id, result.headers
