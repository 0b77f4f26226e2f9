"""What the Invoke caller sees when a function or its runtime fails (runtime-interface.md section 5).

Platform-made bodies are exactly {"errorType": T, "errorMessage": "RequestId: <id> Error: <msg>"};
bodies a runtime posts are returned verbatim. Either way: HTTP 200 + X-Amz-Function-Error: Unhandled.
"""

from __future__ import annotations

import concurrent.futures
import re
import uuid

import pytest

import kappa_helpers as h


def assert_platform_error(result: h.InvokeResult, error_type: str, message_re: str) -> str:
    """Check a platform error body; return the request id named in its message."""
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    assert result.executed_version == "$LATEST", result.describe()
    body = result.json()
    assert set(body) == {"errorType", "errorMessage"}, f"unexpected keys in {body!r}"
    assert body["errorType"] == error_type, result.describe()
    match = re.fullmatch(r"RequestId: (\S+) Error: " + message_re, body["errorMessage"])
    assert match, f"errorMessage {body['errorMessage']!r} does not match {message_re!r}"
    assert h.UUID_RE.match(match.group(1)), body
    return match.group(1)


# ---- timeout ----------------------------------------------------------------------------------


def test_timeout_then_fresh_environment(client):
    name = h.new_name("timeout")
    token = f"kappa-timeout-{uuid.uuid4().hex}"
    handler = f"""
  if event_has '"hang"'; then
    echo "about to hang"
    sh -c 'sleep 60 & wait' {token}
  fi
  respond "$EVENT"
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler), Timeout=1)
    warm = h.invoke_ok(client, name, {"ok": 1})
    assert warm.cold

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(h.invoke, client, name, {"hang": True})
        h.wait_until(5, lambda: h.processes_with(token) or pending.done(), desc="the hanging handler to start")
        assert h.processes_with(token), "the hanging handler never ran"
        result = pending.result(timeout=30)
    request_id = assert_platform_error(result, "Sandbox.Timedout", r"Task timed out after 1\.00 seconds")
    assert request_id == result.request_id, "the error must name the invocation's request id"
    assert 0.9 <= result.elapsed < 5, f"a 1 s timeout answered after {result.elapsed:.2f} s"
    assert "about to hang" in result.log
    assert re.search(
        rf"^\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}\.\d{{3}}Z {request_id} Task timed out after 1\.00 seconds$",
        result.log, re.M,
    ), f"no timeout line in the log:\n{result.log}"
    report = result.report()
    assert report["id"] == request_id
    assert "Status: timeout" in report["rest"], f"REPORT should carry Status: timeout:\n{result.log}"
    # The runtime (and what it started) is killed.
    h.wait_until(5, lambda: not h.processes_with(token), desc="the timed-out runtime's processes to be killed")

    after = h.invoke_ok(client, name, {"ok": 2})
    assert after.json() == {"ok": 2}
    assert after.cold, f"the invoke after a timeout must start a fresh environment:\n{after.log}"
    assert after.request_id != request_id


# ---- the runtime process exits --------------------------------------------------------------------


def test_exit_during_invocation(client):
    name = h.new_name("exit3")
    handler = 'echo "exiting now"\nexit 3'
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    for _ in range(2):
        result = h.invoke(client, name, {})
        request_id = assert_platform_error(result, "Runtime.ExitError",
                                           r"Runtime exited with error: exit status 3")
        assert request_id == result.request_id
        assert result.cold, "each invoke needs a new environment: the last one exited"
        assert "exiting now" in result.log
        assert f"RequestId: {request_id} Error: Runtime exited with error: exit status 3" in result.log, result.log


def test_exit_zero_during_invocation(client):
    name = h.new_name("exit0")
    h.create_custom_function(client, name, h.shell_bootstrap("exit 0"))
    result = h.invoke(client, name, {})
    assert_platform_error(result, "Runtime.ExitError", r"Runtime exited without providing a reason")


def test_killed_by_signal_during_invocation(client):
    name = h.new_name("segv")
    h.create_custom_function(client, name, h.shell_bootstrap("kill -SEGV $$"))
    result = h.invoke(client, name, {})
    assert_platform_error(result, "Runtime.ExitError", r"Runtime exited with error: signal: segmentation fault")


def test_exit_during_init_without_init_error(client):
    name = h.new_name("initexit")
    h.create_custom_function(client, name, h.shell_bootstrap(init='echo "init failing"\nexit 2'))
    result = h.invoke(client, name, {})
    assert_platform_error(result, "Runtime.ExitError", r"Runtime exited with error: exit status 2")
    assert "init failing" in result.log, result.log
    assert re.search(r"^INIT_REPORT Init Duration: \d+\.\d{2} ms\tPhase: init\tStatus: error\tError Type: Runtime.ExitError$",
                     result.log, re.M), result.log
    # A second invoke tries again (and fails the same way).
    again = h.invoke(client, name, {})
    assert_platform_error(again, "Runtime.ExitError", r"Runtime exited with error: exit status 2")


def test_init_error_is_returned_verbatim(client):
    name = h.new_name("initerr")
    doc = '{"errorMessage":"config missing","errorType":"Custom.InitFailed","stackTrace":["at init","at main"]}'
    init = f"""
status=$(curl -sS -o /dev/null -w '%{{http_code}}' -X POST -H 'Lambda-Runtime-Function-Error-Type: Custom.InitFailed' \\
  --data-binary '{doc}' "$RUNTIME/init/error")
echo "init error posted: $status"
exit 1
"""
    h.create_custom_function(client, name, h.shell_bootstrap(init=init))
    result = h.invoke(client, name, {})
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    assert result.payload == doc.encode(), "the /init/error body must reach the caller verbatim"
    assert "init error posted: 202" in result.log, result.log
    assert "Error Type: Custom.InitFailed" in result.log, result.log


# ---- bootstrap missing ----------------------------------------------------------------------------


INVALID_ENTRYPOINT = re.escape("Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]")


def test_missing_bootstrap(client):
    name = h.new_name("nobootstrap")
    h.create_custom_function(client, name, None, files={"function.sh": "echo hi\n"})
    result = h.invoke(client, name, {})
    assert_platform_error(result, "Runtime.InvalidEntrypoint", INVALID_ENTRYPOINT)


def test_non_executable_bootstrap(client):
    name = h.new_name("noexec")
    h.create_custom_function(client, name, h.shell_bootstrap(), executables=())
    result = h.invoke(client, name, {})
    assert_platform_error(result, "Runtime.InvalidEntrypoint", INVALID_ENTRYPOINT)


# ---- errors the runtime reports -------------------------------------------------------------------


@pytest.mark.parametrize("error_type_header", ["Unhandled", "unhandled", "Function.Custom", None])
def test_error_posted_by_runtime_is_returned_verbatim(client, error_type_header):
    name = h.new_name("rterr")
    doc = '{"errorMessage":"handler failed: x < y","errorType":"HandlerError","stackTrace":["  File \\"/var/task/app\\", line 1"]}'
    arg = f" '{error_type_header}'" if error_type_header else ""
    h.create_custom_function(client, name, h.shell_bootstrap(f"echo 'failing on purpose'\nfail '{doc}'{arg}"))
    result = h.invoke(client, name, {})
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    assert result.payload == doc.encode()
    assert "failing on purpose" in result.log
    assert result.report()["id"] == result.request_id
    # The environment survives a function error.
    assert not h.invoke(client, name, {}).cold


def test_response_too_large(client):
    name = h.new_name("bigresp")
    size = h.MAX_RESPONSE_PAYLOAD + 1
    handler = f"""
  if [ ! -f /tmp/big ]; then
    {{ printf '"'; head -c {size - 2} /dev/zero | tr '\\0' 'a'; printf '"'; }} > /tmp/big
  fi
  respond /tmp/big
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    result = h.invoke(client, name, {}, tail=True)
    assert result.status == 200, result.describe()
    assert result.function_error == "Unhandled", result.describe()
    assert result.json() == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_response_of_exactly_6291556_bytes_is_returned(client):
    name = h.new_name("maxresp")
    size = h.MAX_RESPONSE_PAYLOAD
    handler = f"""
  {{ printf '"'; head -c {size - 2} /dev/zero | tr '\\0' 'b'; printf '"'; }} > /tmp/big
  respond /tmp/big
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    result = h.invoke(client, name, {}, tail=False)
    assert result.status == 200 and result.function_error is None, result.describe()[:500]
    assert len(result.payload) == size
    assert result.payload == b'"' + b"b" * (size - 2) + b'"'


def test_non_json_response_is_passed_through(client):
    name = h.new_name("textresp")
    h.create_custom_function(client, name, h.shell_bootstrap("respond_text 'plain text, not JSON'"))
    result = h.invoke_ok(client, name, {})
    assert result.payload == b"plain text, not JSON"


# ---- beyond the written contract --------------------------------------------------------------


@pytest.mark.extra
def test_init_failure_log_has_start_end_report(client):
    """Lambda logs the failed invocation itself after a failed init: START, END and a REPORT
    with `Status: error`, under the request id named in the error."""
    name = h.new_name("initlog")
    h.create_custom_function(client, name, h.shell_bootstrap(init="exit 2"))
    result = h.invoke(client, name, {})
    request_id = assert_platform_error(result, "Runtime.ExitError", r"Runtime exited with error: exit status 2")
    assert f"START RequestId: {request_id} Version: $LATEST" in result.log.splitlines(), result.log
    assert f"END RequestId: {request_id}" in result.log.splitlines(), result.log
    report = result.report()
    assert report["id"] == request_id, result.log
    assert "Status: error" in report["rest"], result.log


@pytest.mark.extra
@pytest.mark.parametrize("failure", ["timeout", "exit"])
def test_tmp_survives_an_environment_reset(client, failure):
    """AWS: after a timeout or crash Lambda resets the environment (new runtime process, new
    init) but does not clear /tmp."""
    name = h.new_name(f"reset-{failure}")
    handler = r"""
  if event_has '"fail"'; then
    echo kept > /tmp/kept
    if [ "$FAILURE" = timeout ]; then sleep 30; else exit 4; fi
  fi
  respond_text "$(cat /tmp/kept 2>/dev/null || echo missing)"
"""
    h.create_custom_function(client, name, h.shell_bootstrap(handler), Timeout=1,
                             Environment={"Variables": {"FAILURE": failure}})
    h.invoke_ok(client, name, {})
    failed = h.invoke(client, name, {"fail": True})
    assert failed.function_error == "Unhandled", failed.describe()
    after = h.invoke_ok(client, name, {})
    assert after.cold
    assert after.payload == b"kept", f"/tmp was wiped by the reset after a {failure}: {after.payload!r}"


@pytest.mark.extra
def test_runtime_processes_end_when_the_function_is_deleted(client):
    name = h.new_name("delproc")
    token = f"kappa-delproc-{uuid.uuid4().hex}"
    init = f"sh -c 'sleep 600 & wait' {token} &"
    h.create_custom_function(client, name, h.shell_bootstrap(init=init))
    h.invoke_ok(client, name, {})
    assert h.processes_with(token), "the background process did not start"
    client.delete_function(FunctionName=name)
    h.wait_until(10, lambda: not h.processes_with(token),
                 desc="the deleted function's environment (and its processes) to be shut down")


@pytest.mark.extra
def test_runtime_processes_end_with_the_server(server_factory):
    srv = server_factory()
    c = srv.client()
    name = h.new_name("srvstop")
    token = f"kappa-srvstop-{uuid.uuid4().hex}"
    h.create_custom_function(c, name, h.shell_bootstrap(init=f"sh -c 'sleep 600 & wait' {token} &"))
    h.invoke_ok(c, name, {})
    assert h.processes_with(token)
    assert srv.stop() == 0
    h.wait_until(10, lambda: not h.processes_with(token), desc="the runtime's processes to end with the server")
