"""The Runtime API (2018-06-01) and the execution environment as a custom runtime sees them.

The function is a provided.al2023 bootstrap in sh + curl (kappa_helpers.SHELL_RUNTIME) that
reports what it saw as `kind:key=value` lines.
"""

from __future__ import annotations

import datetime
import json
import re
import time

import pytest

import kappa_helpers as h

# Reports /next's status line and headers, the environment, the working directory and what the
# file system allows.
INSPECT_HANDLER = r"""
  {
    printf 'status:line=%s\n' "$(head -n 1 "$HEADERS" | tr -d '\r')"
    tail -n +2 "$HEADERS" | tr -d '\r' | grep ':' | while IFS= read -r line; do
      printf 'header:%s=%s\n' "$(printf '%s' "${line%%:*}" | tr 'A-Z' 'a-z')" "${line#*: }"
    done
    env | grep -v '^[^=]*$' | sed 's/^/env:/'
    printf 'fs:pwd=%s\n' "$(pwd)"
    printf 'fs:pwd_physical=%s\n' "$(pwd -P)"
    if touch /var/task/kappa-write-test 2>/dev/null; then echo 'fs:task_writable=yes'; else echo 'fs:task_writable=no'; fi
    if [ -e /var/task/kappa-write-test ]; then echo 'fs:task_file_exists=yes'; else echo 'fs:task_file_exists=no'; fi
    if touch /opt/kappa-write-test 2>/dev/null; then echo 'fs:opt_writable=yes'; else echo 'fs:opt_writable=no'; fi
    if [ -x /var/task/bootstrap ]; then echo 'fs:bootstrap_present=yes'; else echo 'fs:bootstrap_present=no'; fi
    printf 'fs:task_listing=%s\n' "$(ls -A /var/task | tr '\n' ' ')"
    printf 'fs:tmp_listing=%s\n' "$(ls -A /tmp | tr '\n' ' ')"
    if echo "written by $REQUEST_ID" > /tmp/kappa-probe 2>/dev/null && [ "$(cat /tmp/kappa-probe)" = "written by $REQUEST_ID" ]; then
      echo 'fs:tmp_writable=yes'
    else
      echo 'fs:tmp_writable=no'
    fi
    if [ -e "$KAPPA_TEST_HOST_DATA_DIR" ]; then echo 'fs:host_data_dir_visible=yes'; else echo 'fs:host_data_dir_visible=no'; fi
    printf 'body:event=%s\n' "$(cat "$EVENT")"
  } > "$RESPONSE"
  respond "$RESPONSE"
"""

# Checks the Runtime API's replies: a wrong request id, and (reported by the next invocation) the
# reply to a good /response and to a second /response for the same id.
PROTOCOL_HANDLER = r"""
  if event_has '"report"'; then
    printf '{"response_status":%s,"response_body":%s,"again_status":%s,"again_body":%s,"error_again_status":%s,"error_again_body":%s}' \
      "$(cat /tmp/response-status)" "$(cat /tmp/response-body)" \
      "$(cat /tmp/again-status)" "$(cat /tmp/again-body)" \
      "$(cat /tmp/error-again-status)" "$(cat /tmp/error-again-body)" > "$RESPONSE"
    respond "$RESPONSE"
  else
    curl -sS -o /tmp/wrong-body -w '%{http_code}' -X POST --data-binary '{"x":1}' \
      "$RUNTIME/invocation/00000000-0000-0000-0000-000000000000/response" > /tmp/wrong-status
    curl -sS -o /tmp/wrong-error-body -w '%{http_code}' -X POST --data-binary '{"errorType":"X","errorMessage":"y"}' \
      "$RUNTIME/invocation/not-a-request-id/error" > /tmp/wrong-error-status
    printf '{"wrong_status":%s,"wrong_body":%s,"wrong_error_status":%s,"wrong_error_body":%s}' \
      "$(cat /tmp/wrong-status)" "$(cat /tmp/wrong-body)" \
      "$(cat /tmp/wrong-error-status)" "$(cat /tmp/wrong-error-body)" > "$RESPONSE"
    respond "$RESPONSE"
    cp "$WORK/post-status" /tmp/response-status
    cp "$WORK/post-body" /tmp/response-body
    curl -sS -o /tmp/again-body -w '%{http_code}' -X POST --data-binary '{"late":true}' \
      "$RUNTIME/invocation/$REQUEST_ID/response" > /tmp/again-status
    curl -sS -o /tmp/error-again-body -w '%{http_code}' -X POST --data-binary '{"errorType":"Late","errorMessage":"late"}' \
      "$RUNTIME/invocation/$REQUEST_ID/error" > /tmp/error-again-status
  fi
"""


def inspect(result: h.InvokeResult) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for line in result.payload.decode().splitlines():
        kind, sep, rest = line.partition(":")
        if not sep or "=" not in rest:
            continue
        key, _, value = rest.partition("=")
        out.setdefault(kind, {})[key] = value
    return out


@pytest.fixture(scope="module")
def inspect_fn(client, server):
    name = h.new_name("inspect")
    h.create_custom_function(
        client, name, h.shell_bootstrap(INSPECT_HANDLER),
        Timeout=7, MemorySize=192, Handler="my.handler",
        Environment={"Variables": {"MY_VAR": "hello world", "OTHER_VAR": "a=b;c",
                                   "KAPPA_TEST_HOST_DATA_DIR": str(server.data_dir)}},
    )
    return name


def test_next_headers(client, server, inspect_fn):
    before_ms = time.time() * 1000
    result = h.invoke_ok(client, inspect_fn, {"probe": 1})
    after_ms = time.time() * 1000
    seen = inspect(result)
    headers = seen["header"]
    assert seen["status"]["line"].split()[1] == "200", seen["status"]
    assert headers.get("lambda-runtime-aws-request-id") == result.request_id, headers
    assert headers.get("content-type") == "application/json", headers
    assert headers.get("lambda-runtime-invoked-function-arn") == server.function_arn(inspect_fn), headers
    trace = headers.get("lambda-runtime-trace-id", "")
    assert h.TRACE_ID_RE.match(trace), f"Lambda-Runtime-Trace-Id {trace!r}"
    deadline = headers.get("lambda-runtime-deadline-ms", "")
    assert re.fullmatch(r"\d+", deadline), f"Lambda-Runtime-Deadline-Ms {deadline!r} is not integer epoch ms"
    timeout_ms = 7000
    assert before_ms + timeout_ms - 1000 <= int(deadline) <= after_ms + timeout_ms + 250, (
        f"deadline {deadline} is not invoke time + 7 s (invoke between {before_ms:.0f} and {after_ms:.0f})"
    )
    # Headers without a value are not sent at all.
    assert "lambda-runtime-client-context" not in headers, headers
    assert "lambda-runtime-cognito-identity" not in headers, headers
    assert seen["body"]["event"] == '{"probe": 1}'


def test_next_arn_with_qualifier(client, server, inspect_fn):
    result = h.invoke_ok(client, inspect_fn, {}, Qualifier="$LATEST")
    assert inspect(result)["header"]["lambda-runtime-invoked-function-arn"] == server.function_arn(inspect_fn, "$LATEST")


def test_each_invocation_gets_a_new_request_id_and_trace(client, inspect_fn):
    ids, traces = set(), set()
    for _ in range(3):
        headers = inspect(h.invoke_ok(client, inspect_fn, {}))["header"]
        ids.add(headers["lambda-runtime-aws-request-id"])
        traces.add(headers["lambda-runtime-trace-id"])
    assert len(ids) == 3 and len(traces) == 3, (ids, traces)
    assert all(h.UUID_RE.match(i) for i in ids), ids


def test_environment_variables(client, server, inspect_fn):
    before = datetime.datetime.now(datetime.timezone.utc).date()
    env = inspect(h.invoke_ok(client, inspect_fn, {}))["env"]
    after = datetime.datetime.now(datetime.timezone.utc).date()
    assert env.get("AWS_LAMBDA_FUNCTION_NAME") == inspect_fn
    assert env.get("AWS_LAMBDA_FUNCTION_VERSION") == "$LATEST"
    assert env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") == "192"
    assert env.get("AWS_LAMBDA_LOG_GROUP_NAME") == f"/aws/lambda/{inspect_fn}"
    stream = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    match = h.LOG_STREAM_RE.match(stream)
    assert match, f"AWS_LAMBDA_LOG_STREAM_NAME {stream!r} is not YYYY/MM/DD/[$LATEST]<32 hex>"
    day = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    assert before - datetime.timedelta(days=1) <= day <= after, f"stream date {day} is not today ({before})"
    assert env.get("AWS_REGION") == "us-east-1"
    assert env.get("LAMBDA_TASK_ROOT") == "/var/task"
    assert env.get("_HANDLER") == "my.handler"
    assert re.fullmatch(r"127\.0\.0\.1:\d+|[A-Za-z0-9.-]+:\d+", env.get("AWS_LAMBDA_RUNTIME_API", "")), env
    assert env.get("MY_VAR") == "hello world"
    assert env.get("OTHER_VAR") == "a=b;c"
    # Not set for custom runtimes.
    assert "AWS_EXECUTION_ENV" not in env, env.get("AWS_EXECUTION_ENV")


def test_file_system_layout(client, inspect_fn):
    fs = inspect(h.invoke_ok(client, inspect_fn, {}))["fs"]
    assert fs["pwd"] == "/var/task"
    assert fs["pwd_physical"] == "/var/task"
    assert fs["bootstrap_present"] == "yes"
    assert fs["task_listing"].split() == ["bootstrap"], fs["task_listing"]
    assert fs["task_writable"] == "no", "/var/task must be read-only"
    assert fs["task_file_exists"] == "no"
    assert fs["opt_writable"] == "no", "/opt must be read-only"
    assert fs["tmp_writable"] == "yes", "/tmp must be writable"
    assert fs["host_data_dir_visible"] == "no", "the server's data directory is visible inside the sandbox"


def test_tmp_starts_empty_in_a_new_environment(client, server):
    name = h.new_name("freshtmp")
    h.create_custom_function(client, name, h.shell_bootstrap(INSPECT_HANDLER),
                             Environment={"Variables": {"KAPPA_TEST_HOST_DATA_DIR": str(server.data_dir)}})
    first = h.invoke_ok(client, name, {})
    assert first.cold
    # Only the runtime's own scratch directory: nothing from the host's /tmp or other functions.
    assert inspect(first)["fs"]["tmp_listing"].split() == [".kappa-rt"], inspect(first)["fs"]
    second = h.invoke_ok(client, name, {})
    assert not second.cold
    assert sorted(inspect(second)["fs"]["tmp_listing"].split()) == [".kappa-rt", "kappa-probe"]


def test_response_and_wrong_request_id_replies(client):
    name = h.new_name("proto")
    h.create_custom_function(client, name, h.shell_bootstrap(PROTOCOL_HANDLER))
    first = h.invoke_ok(client, name, {"step": "go"})
    seen = first.json()
    assert seen["wrong_status"] == 400, seen
    assert seen["wrong_body"].get("errorType") == "InvalidRequestID", seen
    assert seen["wrong_error_status"] == 400, seen
    assert seen["wrong_error_body"].get("errorType") == "InvalidRequestID", seen
    # The invocation itself was unaffected by the bad posts.
    report = h.invoke_ok(client, name, {"report": True}).json()
    assert report["response_status"] == 202, report
    assert report["response_body"] == {"status": "OK"}, report
    # A second answer for an already answered invocation is refused (400 InvalidRequestID, or
    # RAPID's 403 InvalidStateTransition).
    for kind in ("again", "error_again"):
        status, body = report[f"{kind}_status"], report[f"{kind}_body"]
        assert (status, body.get("errorType")) in {(400, "InvalidRequestID"), (403, "InvalidStateTransition")}, report
    assert first.payload != b'{"late":true}'


def test_error_post_is_accepted_with_202(client):
    name = h.new_name("errpost")
    handler = r"""
  if event_has '"report"'; then
    printf '{"status":%s,"body":%s}' "$(cat /tmp/error-status)" "$(cat /tmp/error-body)" > "$RESPONSE"
    respond "$RESPONSE"
  else
    fail '{"errorMessage":"boom","errorType":"Boom"}'
    cp "$WORK/post-status" /tmp/error-status
    cp "$WORK/post-body" /tmp/error-body
  fi
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    failed = h.invoke(client, name, {})
    assert failed.function_error == "Unhandled", failed.describe()
    report = h.invoke_ok(client, name, {"report": True})
    assert not report.cold, "a function error must not cost the environment"
    assert report.json() == {"status": 202, "body": {"status": "OK"}}


def test_init_code_runs_once_per_environment(client):
    name = h.new_name("initonce")
    init = 'echo "init ran" >> /tmp/init-count\nBOOT_PID=$$'
    handler = r"""
  printf '{"init_runs":%s,"pid":%s,"invocations":%s}' "$(wc -l < /tmp/init-count)" "$BOOT_PID" "$INVOCATIONS" > "$RESPONSE"
  respond "$RESPONSE"
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler, init=init))
    results = [h.invoke_ok(client, name, {}).json() for _ in range(5)]
    assert [r["invocations"] for r in results] == [1, 2, 3, 4, 5], results
    assert {r["init_runs"] for r in results} == {1}, results
    assert len({r["pid"] for r in results}) == 1, results
