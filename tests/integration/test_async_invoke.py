"""Asynchronous invocation: Invoke with InvocationType=Event, the deprecated InvokeAsync, retries
of function errors, destinations, the maximum event age and the queue metrics.

The module's server runs with KAPPA_ASYNC_RETRY_DELAY_SECS=1 (first retry 1 s after a failure,
the second 2 s after the next). Functions print what the tests observe (ATTEMPT / DEST_EVENT
lines, see kappa_async) and the tests read it back with the CloudWatch Logs API.
"""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

import kappa_async as ka
import kappa_helpers as h

RETRY_DELAY_MS = 1000
# Bounds for waiting on a whole retry sequence (attempts at ~0 s, ~1 s, ~3 s).
SEQUENCE_TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory, log_dir, kappa_binary):
    srv = h.KappaServer(tmp_path_factory.mktemp("kappa-data"), log_dir, env=ka.async_env(1))
    srv.start()
    yield srv
    crashed = not srv.alive()
    code = srv.stop()
    if crashed:
        pytest.fail(f"kappa server died during the module (exit {code}); log {srv.log_path}:\n{srv.log_text()[-4000:]}")


@pytest.fixture(scope="module")
def logs(server):
    return h.logs_client(server.url)


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    return tmp_path_factory.mktemp("aws-cli-home")


@pytest.fixture(scope="module")
def recorder_fn(client):
    """A function that succeeds and prints ATTEMPT <id> <event> per event."""
    name = h.new_name("async-ok")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.SUCCEEDING_HANDLER))
    return name


@pytest.fixture(scope="module")
def dest_fn(client):
    """A destination function that prints DEST_EVENT <record>."""
    name = h.new_name("async-dest")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    return name


def make_failing(client, prefix: str = "async-fail", **overrides) -> str:
    name = h.new_name(prefix)
    h.create_custom_function(client, name, h.shell_bootstrap(ka.FAILING_HANDLER), **overrides)
    return name


def tag_of(request) -> str:
    return h.new_name(request.node.name[:24])


def wait_attempts(logs, name: str, tag: str, count: int, timeout: float = SEQUENCE_TIMEOUT):
    return ka.wait_for(timeout, lambda: (lambda a: a if len(a) >= count else None)(ka.attempts(logs, name, tag)),
                       desc=f"{count} attempt(s) of {name} with tag {tag}")


def wait_record(logs, dest: str, request_id: str, timeout: float = SEQUENCE_TIMEOUT) -> dict:
    records = ka.wait_for(timeout, lambda: ka.destination_records(logs, dest, request_id),
                          desc=f"a destination record for {request_id} at {dest}")
    assert len(records) == 1, f"expected one record for {request_id}, got {len(records)}: {records}"
    return records[0]


def check_record_shape(record: dict, *, request_id: str, function: str, condition: str, count: int,
                       payload) -> None:
    assert record.get("version") == "1.0", record
    assert isinstance(record.get("timestamp"), str) and ka.RECORD_TIMESTAMP_RE.match(record["timestamp"]), record
    ctx = record.get("requestContext")
    assert ctx == {
        "requestId": request_id,
        "functionArn": ka.function_arn(function, "$LATEST"),
        "condition": condition,
        "approximateInvokeCount": count,
    }, record
    assert record.get("requestPayload") == payload, record


# ---- Invoke with InvocationType=Event: acceptance ----------------------------------------------


def test_event_invoke_returns_202_and_runs_the_function(client, logs, recorder_fn, request):
    tag = tag_of(request)
    payload = {"tag": tag, "text": "héllo ✓", "n": [1, 2.5, None, True]}
    ka.invoke_event(client, recorder_fn, payload)
    [attempt] = wait_attempts(logs, recorder_fn, tag, 1)
    assert attempt.event == payload
    assert h.UUID_RE.match(attempt.request_id), attempt


def test_event_invoke_with_qualifier_latest(client, logs, recorder_fn, request):
    tag = tag_of(request)
    ka.invoke_event(client, recorder_fn, {"tag": tag}, Qualifier="$LATEST")
    wait_attempts(logs, recorder_fn, tag, 1)


def test_event_invoke_by_arn(client, logs, recorder_fn, request):
    tag = tag_of(request)
    ka.invoke_event(client, recorder_fn, {"tag": tag}, FunctionName=ka.function_arn(recorder_fn))
    wait_attempts(logs, recorder_fn, tag, 1)


def test_successful_event_runs_exactly_once(server, client, logs, recorder_fn, request):
    tag = tag_of(request)
    ka.invoke_event(client, recorder_fn, {"tag": tag})
    wait_attempts(logs, recorder_fn, tag, 1)
    ka.wait_queue_empty(server)
    found = ka.attempts(logs, recorder_fn, tag)
    assert len(found) == 1, f"a successful event must not be retried: {found}"


def test_event_payload_over_1mb_is_413(raw_client, logs, server, client):
    name = h.new_name("async-size")
    handler = ('printf "SIZE %s %s\\n" "$(wc -c < "$EVENT" | tr -d " ")" '
               '"$(sha256sum "$EVENT" | cut -d" " -f1)"\n  respond_text "{}"')
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    for size in (ka.MAX_ASYNC_PAYLOAD + 1, 2 * ka.MAX_ASYNC_PAYLOAD):
        body = ka.json_of_size(size)
        err = h.api_error(raw_client, lambda: raw_client.invoke(FunctionName=name, InvocationType="Event", Payload=body),
                          413, "RequestEntityTooLargeException")
        assert err.message == (f"{size} byte payload is too large for the Event invocation type "
                               f"(limit {ka.MAX_ASYNC_PAYLOAD} bytes)"), err

    exact = ka.json_of_size(ka.MAX_ASYNC_PAYLOAD, extra={"tag": "exact"})
    ka.invoke_event(raw_client, name, exact)
    ka.wait_for(SEQUENCE_TIMEOUT, lambda: ka.marked(logs, name, "SIZE"), desc="the 1 MB event to run")
    ka.wait_queue_empty(server)
    sizes = [rest for _, rest in ka.marked(logs, name, "SIZE")]
    assert sizes == [f"{ka.MAX_ASYNC_PAYLOAD} {hashlib.sha256(exact).hexdigest()}"], (
        "exactly one event (the accepted 1048576-byte one, byte for byte) must have run", sizes)


def test_event_payload_of_exactly_1mb_is_accepted(raw_client, logs, recorder_fn, request):
    tag = tag_of(request)
    body = ka.json_of_size(ka.MAX_ASYNC_PAYLOAD, extra={"tag": tag})
    ka.invoke_event(raw_client, recorder_fn, body)
    [attempt] = wait_attempts(logs, recorder_fn, tag, 1)
    assert attempt.event == json.loads(body)


def test_event_payload_not_json_is_400(client, recorder_fn):
    for body in (b"not json", b"{", b'{"a":1'):
        err = h.api_error(client, lambda: client.invoke(FunctionName=recorder_fn, InvocationType="Event", Payload=body),
                          400, "InvalidRequestContentException")
        assert err.message.startswith("Could not parse request body into json"), err


def test_event_invoke_of_unknown_function_is_404(client):
    name = h.new_name("async-nope")
    err = h.api_error(client, lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}"),
                      404, "ResourceNotFoundException")
    assert name in err.message, err


def test_event_invoke_of_unknown_qualifier_is_404(client, recorder_fn):
    h.api_error(client, lambda: client.invoke(FunctionName=recorder_fn, InvocationType="Event", Payload=b"{}",
                                              Qualifier="7"),
                404, "ResourceNotFoundException")


@pytest.mark.extra
def test_event_invoke_without_payload_delivers_empty_object(server, client, logs):
    """As for RequestResponse, an empty payload reaches the function as {}."""
    name = h.new_name("async-empty")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.SUCCEEDING_HANDLER))
    ka.invoke_event(client, name, None)
    [attempt] = ka.wait_for(SEQUENCE_TIMEOUT, lambda: ka.attempts(logs, name), desc="the attempt")
    assert attempt.event == {}, attempt


# ---- InvokeAsync (deprecated) --------------------------------------------------------------------


def test_invoke_async_returns_202_status(client, logs, recorder_fn, request):
    tag = tag_of(request)
    resp = client.invoke_async(FunctionName=recorder_fn, InvokeArgs=json.dumps({"tag": tag}).encode())
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, resp
    assert resp["Status"] == 202, resp
    assert client.kappa_recorder.body and json.loads(client.kappa_recorder.body) == {"Status": 202}
    [attempt] = wait_attempts(logs, recorder_fn, tag, 1)
    assert attempt.event == {"tag": tag}


def test_invoke_async_unknown_function_is_404(client):
    name = h.new_name("async-nope")
    err = h.api_error(client, lambda: client.invoke_async(FunctionName=name, InvokeArgs=b"{}"),
                      404, "ResourceNotFoundException")
    assert name in err.message, err


def test_invoke_async_not_json_is_400(client, recorder_fn):
    h.api_error(client, lambda: client.invoke_async(FunctionName=recorder_fn, InvokeArgs=b"nope"),
                400, "InvalidRequestContentException")


# ---- AWS CLI v1 --------------------------------------------------------------------------------


def test_cli_invoke_event(server, logs, recorder_fn, cli_home, tmp_path, request):
    tag = tag_of(request)
    out = tmp_path / "out.json"
    result = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", recorder_fn,
                       "--invocation-type", "Event", "--payload", json.dumps({"tag": tag}), str(out))
    assert result["StatusCode"] == 202, result
    assert "FunctionError" not in result, result
    assert out.read_bytes() == b""
    wait_attempts(logs, recorder_fn, tag, 1)


def test_cli_invoke_async(server, logs, recorder_fn, cli_home, tmp_path, request):
    tag = tag_of(request)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"tag": tag}))
    result = h.aws_cli(server.url, cli_home, "lambda", "invoke-async", "--function-name", recorder_fn,
                       "--invoke-args", str(args))
    assert result == {"Status": 202}, result
    wait_attempts(logs, recorder_fn, tag, 1)


def test_cli_event_invoke_too_large(server, recorder_fn, cli_home, tmp_path):
    payload = tmp_path / "big.json"
    payload.write_bytes(ka.json_of_size(ka.MAX_ASYNC_PAYLOAD + 1))
    proc = h.aws_cli(server.url, cli_home, "lambda", "invoke", "--function-name", recorder_fn,
                     "--invocation-type", "Event", "--payload", f"fileb://{payload}", str(tmp_path / "out"),
                     check=False)
    assert proc.returncode != 0, proc
    assert "RequestEntityTooLargeException" in proc.stderr, proc.stderr
    assert f"{ka.MAX_ASYNC_PAYLOAD + 1} byte payload is too large for the Event invocation type" in proc.stderr


# ---- retries of function errors ------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_failing_event_is_attempted_1_plus_max_retries_with_same_request_id(client, logs, dest_fn, retries, request):
    name = make_failing(client)
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=retries,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    payload = {"tag": tag, "retries": retries}
    ka.invoke_event(client, name, payload)
    first = wait_attempts(logs, name, tag, 1)[0]
    # The OnFailure record is written when the event is finished: nothing can run after it.
    record = wait_record(logs, dest_fn, first.request_id)
    found = ka.attempts(logs, name, tag)
    assert len(found) == 1 + retries, f"MaximumRetryAttempts={retries}: expected {1 + retries} attempts, got {found}"
    assert {a.request_id for a in found} == {first.request_id}, f"retries must keep the request id: {found}"
    assert all(a.event == payload for a in found), found
    starts = ka.start_lines(logs, name, first.request_id)
    assert len(starts) == 1 + retries, starts
    check_record_shape(record, request_id=first.request_id, function=name, condition="RetriesExhausted",
                       count=1 + retries, payload=payload)
    assert record.get("responseContext") == {"statusCode": 200, "executedVersion": "$LATEST",
                                             "functionError": "Unhandled"}, record
    assert record.get("responsePayload") == ka.ERROR_DOC, record


def test_retry_delays_are_1s_then_2s(client, logs, request):
    """With KAPPA_ASYNC_RETRY_DELAY_SECS=1: the first retry about 1 s after the failure, the
    second about 2 s after the next one (Lambda: 1 min, then 2 min)."""
    name = make_failing(client)
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    found = wait_attempts(logs, name, tag, 3)
    t = [a.timestamp for a in found]
    gaps = [t[1] - t[0], t[2] - t[1]]
    assert gaps[0] >= 0.95 * RETRY_DELAY_MS, f"first retry came too early: {gaps} ms"
    assert gaps[1] >= 1.95 * RETRY_DELAY_MS, f"second retry came too early: {gaps} ms"
    assert gaps[0] < 5 * RETRY_DELAY_MS and gaps[1] < 7 * RETRY_DELAY_MS, f"retries came far too late: {gaps} ms"


def test_default_is_two_retries_without_any_config(server, client, logs, request):
    name = make_failing(client)
    h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=name),
                404, "ResourceNotFoundException")
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    found = wait_attempts(logs, name, tag, 3)
    ka.wait_queue_empty(server, timeout=SEQUENCE_TIMEOUT)
    found = ka.attempts(logs, name, tag)
    assert len(found) == 3, found
    assert len({a.request_id for a in found}) == 1, found


def test_default_retries_with_config_that_only_sets_a_destination(client, logs, dest_fn, request):
    name = make_failing(client)
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    payload = {"tag": tag}
    ka.invoke_event(client, name, payload)
    first = wait_attempts(logs, name, tag, 1)[0]
    record = wait_record(logs, dest_fn, first.request_id)
    assert len(ka.attempts(logs, name, tag)) == 3
    check_record_shape(record, request_id=first.request_id, function=name, condition="RetriesExhausted",
                       count=3, payload=payload)


# ---- destinations -----------------------------------------------------------------------------


def test_on_success_destination_gets_success_record(server, client, logs, request):
    ok_dest = h.new_name("dest-ok")
    fail_dest = h.new_name("dest-fail")
    for dest in (ok_dest, fail_dest):
        h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = h.new_name("async-succ")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.SUCCEEDING_HANDLER))
    client.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(ok_dest)},
                           "OnFailure": {"Destination": ka.function_arn(fail_dest)}})
    tag = tag_of(request)
    payload = {"tag": tag, "nested": {"list": [1, "two"]}}
    ka.invoke_event(client, name, payload)
    [attempt] = wait_attempts(logs, name, tag, 1)
    record = wait_record(logs, ok_dest, attempt.request_id)
    check_record_shape(record, request_id=attempt.request_id, function=name, condition="Success", count=1,
                       payload=payload)
    assert record.get("responseContext") == {"statusCode": 200, "executedVersion": "$LATEST"}, record
    assert record.get("responsePayload") == {"handled": payload}, record
    ka.wait_queue_empty(server)
    assert ka.destination_records(logs, fail_dest) == [], "a success must not reach the OnFailure destination"
    assert len(ka.attempts(logs, name, tag)) == 1


def test_failure_goes_only_to_on_failure(server, client, logs, request):
    ok_dest = h.new_name("dest-ok")
    fail_dest = h.new_name("dest-fail")
    for dest in (ok_dest, fail_dest):
        h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = make_failing(client)
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(ok_dest)},
                           "OnFailure": {"Destination": ka.function_arn(fail_dest)}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    [attempt] = wait_attempts(logs, name, tag, 1)
    record = wait_record(logs, fail_dest, attempt.request_id)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    ka.wait_queue_empty(server)
    assert ka.destination_records(logs, ok_dest) == []


def test_destination_by_qualified_arn(client, logs, dest_fn, request):
    name = h.new_name("async-succ")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.SUCCEEDING_HANDLER))
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(dest_fn, "$LATEST")}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    [attempt] = wait_attempts(logs, name, tag, 1)
    record = wait_record(logs, dest_fn, attempt.request_id)
    assert record["requestContext"]["condition"] == "Success"


def test_invoke_async_api_also_uses_retries_and_destinations(client, logs, dest_fn, request):
    name = make_failing(client)
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    resp = client.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"tag": tag}).encode())
    assert resp["Status"] == 202
    first = wait_attempts(logs, name, tag, 1)[0]
    record = wait_record(logs, dest_fn, first.request_id)
    assert record["requestContext"]["approximateInvokeCount"] == 2, record
    assert len(ka.attempts(logs, name, tag)) == 2


def test_throttled_event_waits_without_using_up_retries(server_factory, request):
    """Account concurrency 1, held by a 4 s synchronous invoke: the Event invoke of a failing
    function with MaximumRetryAttempts=0 is throttled, backs off, and runs once the slot is free;
    the throttles do not count, so the record says approximateInvokeCount 1."""
    srv = server_factory(env=ka.async_env(1, KAPPA_CONCURRENCY_LIMIT="1"))
    client, logs = srv.client(read_timeout=120), h.logs_client(srv.url)
    slow = h.new_name("async-hog")
    h.create_custom_function(client, slow, h.shell_bootstrap("printf 'HOG running\\n'\n  sleep 4\n  respond_text '{}'"))
    dest = h.new_name("dest-thr")
    h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = make_failing(client, "async-thr")
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest)}})
    results = []
    hog = threading.Thread(target=lambda: results.append(h.invoke(srv.client(read_timeout=120), slow, {}, tail=False)))
    hog.start()
    ka.wait_for(30, lambda: ka.marked(logs, slow, "HOG"), desc="the synchronous invoke to hold the slot")
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    hog.join(60)
    assert results and results[0].status == 200 and results[0].function_error is None, results
    first = wait_attempts(logs, name, tag, 1, timeout=120)[0]
    record = wait_record(logs, dest, first.request_id, timeout=60)
    assert record["requestContext"]["condition"] == "RetriesExhausted", record
    assert record["requestContext"]["approximateInvokeCount"] == 1, f"throttles must not count as attempts: {record}"
    assert len(ka.attempts(logs, name, tag)) == 1


# ---- maximum event age (separate servers: the retry delay must outlast the age) -----------------


def test_event_age_exceeded_before_first_retry(server_factory, request):
    """MaximumEventAgeInSeconds=60 with the first retry due at +61 s: Lambda's look-ahead fails
    the event at once with EventAgeExceeded and approximateInvokeCount 1."""
    srv = server_factory(env=ka.async_env(61))
    client, logs = srv.client(), h.logs_client(srv.url)
    dest = h.new_name("dest-age")
    h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = make_failing(client, "async-age")
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest)}})
    tag = tag_of(request)
    payload = {"tag": tag}
    ka.invoke_event(client, name, payload)
    [attempt] = wait_attempts(logs, name, tag, 1, timeout=30)
    record = wait_record(logs, dest, attempt.request_id, timeout=30)
    check_record_shape(record, request_id=attempt.request_id, function=name, condition="EventAgeExceeded",
                       count=1, payload=payload)
    assert len(ka.attempts(logs, name, tag)) == 1
    ka.wait_queue_empty(srv, timeout=30)
    metrics = ka.metrics(srv)
    assert metrics["kappa_async_oldest_event_age_seconds"] == 0, metrics


@pytest.mark.extra
def test_event_age_exceeded_after_one_retry(server_factory, request):
    """Retry delay 31 s, maximum age 60 s: the first retry (+31 s) fits, the second (+31+62 s)
    does not, so the event fails after 2 attempts with EventAgeExceeded, count 2 (AWS shows the
    same with a 90 s age and its 60 s/120 s delays). Takes about 32 s."""
    srv = server_factory(env=ka.async_env(31))
    client, logs = srv.client(), h.logs_client(srv.url)
    dest = h.new_name("dest-age")
    h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = make_failing(client, "async-age")
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest)}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    first = wait_attempts(logs, name, tag, 1, timeout=30)[0]
    record = wait_record(logs, dest, first.request_id, timeout=90)
    # The second attempt's log line may be stored a moment after the record is delivered.
    found = wait_attempts(logs, name, tag, 2, timeout=10)
    assert len(found) == 2, found
    assert found[1].timestamp - found[0].timestamp >= 30_000, found
    assert record["requestContext"]["condition"] == "EventAgeExceeded", record
    assert record["requestContext"]["approximateInvokeCount"] == 2, record


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_are_prometheus_text(server):
    status, content_type, text = ka.metrics_text(server)
    assert status == 200
    assert content_type.startswith("text/plain"), content_type
    for metric in ("kappa_async_queue_depth", "kappa_async_oldest_event_age_seconds"):
        assert f"# TYPE {metric} gauge" in text, text
        assert f"# HELP {metric} " in text, text
    values = ka.parse_metrics(text)
    assert "kappa_async_queue_depth" in values and "kappa_async_oldest_event_age_seconds" in values, values


def test_queue_depth_rises_while_events_wait_and_returns_to_zero(server_factory):
    """With one invocation at a time (KAPPA_CONCURRENCY_LIMIT=1) and a function that takes 1 s,
    three events wait in the queue: depth 3 → 0, the oldest event's age grows past 1 s, then 0."""
    srv = server_factory(env=ka.async_env(1, KAPPA_CONCURRENCY_LIMIT="1"))
    client, logs = srv.client(), h.logs_client(srv.url)
    assert ka.metrics(srv)["kappa_async_queue_depth"] == 0
    name = h.new_name("async-slow")
    h.create_custom_function(client, name, h.shell_bootstrap(
        "printf 'ATTEMPT %s {}\\n' \"$REQUEST_ID\"\n  sleep 1\n  respond_text '{}'"))
    for i in range(3):
        ka.invoke_event(client, name, {"i": i})
    samples = []

    def drained():
        m = ka.metrics(srv)
        samples.append(m)
        return m["kappa_async_queue_depth"] == 0

    h.wait_until(60, drained, interval=0.05, desc="the queue to drain")
    depths = [m["kappa_async_queue_depth"] for m in samples]
    ages = [m["kappa_async_oldest_event_age_seconds"] for m in samples]
    assert depths[0] == 3, f"three accepted, unfinished events: {depths}"
    assert depths == sorted(depths, reverse=True), f"depth must only fall while draining: {depths}"
    assert {2, 1} <= set(depths), f"each event should finish in turn: {depths}"
    assert max(ages) >= 1.0, f"the oldest waiting event is over 1 s old at some point: {ages}"
    assert all(a > 0 for d, a in zip(depths, ages) if d > 0), list(zip(depths, ages))
    assert ages[-1] == 0, samples[-1]
    assert len(ka.marked(logs, name, "ATTEMPT")) == 3


# ---- beyond the written contract --------------------------------------------------------------


@pytest.mark.extra
def test_event_invoke_answers_with_the_invocations_request_id(client, logs, recorder_fn, request):
    """AWS answers an Event invoke with x-amzn-RequestId = the id the function then sees
    (how callers find the invocation in the logs)."""
    tag = tag_of(request)
    resp = ka.invoke_event(client, recorder_fn, {"tag": tag})
    [attempt] = wait_attempts(logs, recorder_fn, tag, 1)
    assert resp["Headers"].get("x-amzn-requestid") == attempt.request_id, resp["Headers"]


@pytest.mark.extra
def test_timeout_is_a_function_error_and_retried(client, logs, dest_fn, request):
    name = h.new_name("async-timeout")
    h.create_custom_function(client, name, h.shell_bootstrap(
        "printf 'ATTEMPT %s %s\\n' \"$REQUEST_ID\" \"$(tr -d '\\n' < \"$EVENT\")\"\n  sleep 5\n  respond_text '{}'"),
        Timeout=1)
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    first = wait_attempts(logs, name, tag, 1)[0]
    record = wait_record(logs, dest_fn, first.request_id)
    found = ka.attempts(logs, name, tag)
    assert len(found) == 2 and {a.request_id for a in found} == {first.request_id}, found
    assert record["requestContext"]["condition"] == "RetriesExhausted", record
    assert record["requestContext"]["approximateInvokeCount"] == 2, record
    assert record.get("responseContext", {}).get("functionError") == "Unhandled", record
    assert "Task timed out after 1.00 seconds" in json.dumps(record.get("responsePayload")), record


@pytest.mark.extra
def test_runtime_crash_is_a_function_error_and_retried(client, logs, dest_fn, request):
    name = h.new_name("async-crash")
    h.create_custom_function(client, name, h.shell_bootstrap(
        "printf 'ATTEMPT %s %s\\n' \"$REQUEST_ID\" \"$(tr -d '\\n' < \"$EVENT\")\"\n  exit 3"))
    client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    first = wait_attempts(logs, name, tag, 1)[0]
    record = wait_record(logs, dest_fn, first.request_id)
    found = ka.attempts(logs, name, tag)
    assert len(found) == 2 and {a.request_id for a in found} == {first.request_id}, found
    assert record["requestContext"]["approximateInvokeCount"] == 2, record
    assert record.get("responseContext", {}).get("functionError") == "Unhandled", record
    assert "Runtime.ExitError" in json.dumps(record.get("responsePayload")), record


@pytest.mark.extra
def test_success_on_retry_goes_to_on_success_with_count_2(client, logs, dest_fn, request):
    """Fails the first attempt of each request id (remembered in the warm environment's /tmp),
    succeeds on the retry."""
    name = h.new_name("async-flaky")
    handler = (
        "printf 'ATTEMPT %s %s\\n' \"$REQUEST_ID\" \"$(tr -d '\\n' < \"$EVENT\")\"\n"
        "  if [ -e \"/tmp/seen-$REQUEST_ID\" ]; then respond_text '{\"second\":true}';\n"
        "  else : > \"/tmp/seen-$REQUEST_ID\"; fail '{\"errorMessage\":\"first\",\"errorType\":\"Flaky\"}'; fi")
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(dest_fn)}})
    tag = tag_of(request)
    ka.invoke_event(client, name, {"tag": tag})
    first = wait_attempts(logs, name, tag, 1)[0]
    record = wait_record(logs, dest_fn, first.request_id)
    assert record["requestContext"]["condition"] == "Success", record
    assert record["requestContext"]["approximateInvokeCount"] == 2, record
    assert record["responsePayload"] == {"second": True}, record
    assert len(ka.attempts(logs, name, tag)) == 2
