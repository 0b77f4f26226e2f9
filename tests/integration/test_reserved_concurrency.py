"""Reserved concurrency: Put/Get/DeleteFunctionConcurrency, the rule that 100 stays unreserved,
GetFunction's `Concurrency` and GetAccountSettings, durability, and enforcement on invoke
(429 TooManyRequestsException with the Reason and a Retry-After header).

Servers here run with a small account limit (--concurrency-limit via KAPPA_CONCURRENCY_LIMIT),
so the limits are reached cheaply: 110 leaves exactly 10 reservable.
"""

from __future__ import annotations

import threading
import time

import pytest

import kappa_async as ka
import kappa_helpers as h

ACCOUNT_LIMIT = 110
SLEEP_HANDLER = b"""
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("RAN", event.get("tag", ""))
    return {"slept": event.get("sleep", 0)}
"""
MIN_MESSAGE = (
    "Specified ReservedConcurrentExecutions for function decreases account's "
    "UnreservedConcurrentExecution below its minimum value of [{}]."
)
RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"
UNRESERVED = "ConcurrentInvocationLimitExceeded"


@pytest.fixture(scope="module")
def limited(tmp_path_factory, log_dir, kappa_binary):
    srv = h.KappaServer(
        tmp_path_factory.mktemp("kappa-data"),
        log_dir,
        env=ka.async_env(KAPPA_CONCURRENCY_LIMIT=str(ACCOUNT_LIMIT)),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lam(limited):
    return limited.client(validate=False, read_timeout=120)


def create_sleeper(client, name: str) -> None:
    h.create_function(client, name, h.build_zip({"app.py": SLEEP_HANDLER}), Timeout=60)


def reserved_of(client, name: str):
    resp = client.get_function_concurrency(FunctionName=name)
    return resp.get("ReservedConcurrentExecutions")


def unreserved(client) -> int:
    settings = client.get_account_settings()["AccountLimit"]
    assert settings["ConcurrentExecutions"] == ACCOUNT_LIMIT
    return settings["UnreservedConcurrentExecutions"]


def clear(client, *names: str) -> None:
    for name in names:
        client.delete_function_concurrency(FunctionName=name)


def test_put_get_delete_and_get_function(limited, lam, tmp_path):
    name = h.new_name("rc")
    create_sleeper(lam, name)
    assert reserved_of(lam, name) is None
    assert "Concurrency" not in lam.get_function(FunctionName=name)

    resp = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert h.strip_meta(resp) == {"ReservedConcurrentExecutions": 5}
    assert reserved_of(lam, name) == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    assert unreserved(lam) == ACCOUNT_LIMIT - 5
    # By ARN too.
    assert reserved_of(lam, limited.function_arn(name)) == 5

    resp = lam.delete_function_concurrency(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert h.strip_meta(lam.get_function_concurrency(FunctionName=name)) == {}
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    assert unreserved(lam) == ACCOUNT_LIMIT

    # The AWS CLI.
    out = h.aws_cli(limited.url, tmp_path, "lambda", "put-function-concurrency", "--function-name", name,
                    "--reserved-concurrent-executions", "3")
    assert out == {"ReservedConcurrentExecutions": 3}
    out = h.aws_cli(limited.url, tmp_path, "lambda", "get-function-concurrency", "--function-name", name)
    assert out == {"ReservedConcurrentExecutions": 3}
    h.aws_cli(limited.url, tmp_path, "lambda", "delete-function-concurrency", "--function-name", name)
    assert h.aws_cli(limited.url, tmp_path, "lambda", "get-function-concurrency", "--function-name", name) in (None, {})


def test_at_least_100_stays_unreserved(limited, lam):
    a, b = h.new_name("rc-a"), h.new_name("rc-b")
    create_sleeper(lam, a)
    create_sleeper(lam, b)
    try:
        # 110 - 10 = 100: just allowed; 11 is one too many.
        assert lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=10)[
            "ReservedConcurrentExecutions"] == 10
        assert unreserved(lam) == 100
        err = h.api_error(lam, lambda: lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=11),
                          400, "InvalidParameterValueException")
        assert err.message == MIN_MESSAGE.format(100)
        assert reserved_of(lam, a) == 10, "a rejected put must leave the reservation as it was"
        # The function's own reservation does not count against itself; others' do.
        lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=4)
        assert lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=6)[
            "ReservedConcurrentExecutions"] == 6
        err = h.api_error(lam, lambda: lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=7),
                          400, "InvalidParameterValueException")
        assert err.message == MIN_MESSAGE.format(100)
        err = h.api_error(lam, lambda: lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=5),
                          400, "InvalidParameterValueException")
        assert err.message == MIN_MESSAGE.format(100)
        assert (reserved_of(lam, a), reserved_of(lam, b), unreserved(lam)) == (4, 6, 100)
        err = h.api_error(lam, lambda: lam.put_function_concurrency(FunctionName=a,
                                                                    ReservedConcurrentExecutions=2**40),
                          400, "InvalidParameterValueException")
        assert err.message == MIN_MESSAGE.format(100)
    finally:
        clear(lam, a, b)


def test_bad_input_and_missing_functions(limited, lam):
    name = h.new_name("rc-bad")
    create_sleeper(lam, name)
    err = h.api_error(lam, lambda: lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1),
                      400, "ValidationException")
    assert err.message == ("1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed to "
                           "satisfy constraint: Member must have value greater than or equal to 0")
    assert reserved_of(lam, name) is None
    missing = h.new_name("rc-missing")
    arn = limited.function_arn(missing)
    for call in (
        lambda: lam.put_function_concurrency(FunctionName=missing, ReservedConcurrentExecutions=1),
        lambda: lam.get_function_concurrency(FunctionName=missing),
        lambda: lam.delete_function_concurrency(FunctionName=missing),
    ):
        err = h.api_error(lam, call, 404, "ResourceNotFoundException")
        assert err.message == f"Function not found: {arn}"
    assert unreserved(lam) == ACCOUNT_LIMIT


def test_reservations_survive_a_restart_and_go_with_the_function(limited, lam):
    name = h.new_name("rc-durable")
    create_sleeper(lam, name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    assert limited.stop() == 0
    limited.start()
    assert reserved_of(lam, name) == 7
    assert unreserved(lam) == ACCOUNT_LIMIT - 7
    lam.delete_function(FunctionName=name)
    assert unreserved(lam) == ACCOUNT_LIMIT
    create_sleeper(lam, name)
    assert reserved_of(lam, name) is None
    assert limited.stop() == 0
    limited.start()
    assert reserved_of(lam, name) is None
    assert unreserved(lam) == ACCOUNT_LIMIT


def parallel_invokes(server: h.KappaServer, name: str, count: int, sleep: float) -> list[dict]:
    """`count` synchronous invokes released at once; each result is {"status", "reason",
    "message", "retry_after"} (reason None on success)."""
    barrier = threading.Barrier(count)
    results: list[dict] = [{} for _ in range(count)]

    def run(i: int) -> None:
        client = server.client(read_timeout=120)
        barrier.wait()
        try:
            resp = client.invoke(FunctionName=name, Payload=f'{{"sleep": {sleep}}}'.encode())
            resp["Payload"].read()
            results[i] = {"status": resp["StatusCode"], "reason": None, "error": resp.get("FunctionError")}
        except client.exceptions.TooManyRequestsException as exc:
            results[i] = {
                "status": exc.response["ResponseMetadata"]["HTTPStatusCode"],
                "reason": exc.response.get("Reason"),
                "message": exc.response["Error"]["Message"],
                "retry_after": exc.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"),
                "type": exc.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype"),
            }

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return results


def assert_throttled(result: dict, reason: str) -> None:
    assert result["status"] == 429, result
    assert result["reason"] == reason, result
    assert result["message"] == "Rate Exceeded.", result
    assert result["type"] == "TooManyRequestsException", result
    assert result["retry_after"] is not None and int(result["retry_after"]) >= 1, result


def test_a_function_runs_at_most_its_reservation(limited, lam):
    name = h.new_name("rc-enforce")
    create_sleeper(lam, name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    try:
        results = parallel_invokes(limited, name, 4, sleep=4)
        ok = [r for r in results if r["reason"] is None]
        throttled = [r for r in results if r["reason"] is not None]
        assert len(ok) == 2 and all(r["status"] == 200 and r["error"] is None for r in ok), results
        assert len(throttled) == 2, results
        for result in throttled:
            assert_throttled(result, RESERVED)
        # Slots come back: the next invoke runs.
        assert h.invoke_ok(lam, name, {"sleep": 0}).json() == {"slept": 0}
    finally:
        clear(lam, name)


def test_reserved_zero_throttles_sync_and_defers_async(limited, lam):
    name = h.new_name("rc-zero")
    create_sleeper(lam, name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        err = h.api_error(lam, lambda: lam.invoke(FunctionName=name, Payload=b"{}"), 429, "TooManyRequestsException")
        assert err.body["Reason"] == RESERVED
        assert err.message == "Rate Exceeded."
        assert err.headers.get("retry-after") == "1"
        # An asynchronous event is accepted, then throttled: it stays queued (backing off, not
        # using up retries) and the function does not run.
        resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"tag": "deferred"}')
        assert resp["StatusCode"] == 202
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert ka.queue_depth(limited) == 1
            time.sleep(0.2)
    finally:
        clear(lam, name)
    # Without the reservation the event runs on a later attempt.
    logs = h.logs_client(limited.url)

    def ran():
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return False
        return any("RAN deferred" in e["message"] for e in events)

    ka.wait_for(60, ran, desc="the deferred event to run")
    ka.wait_queue_empty(limited)


def test_unreserved_pool_exhaustion(server_factory):
    # An account limit of 2: all of it must stay unreserved (AWS: the minimum is the lower of
    # 100 and the account limit), so only a reservation of 0 is possible.
    server = server_factory(env={"KAPPA_CONCURRENCY_LIMIT": "2"})
    client = server.client(validate=False, read_timeout=120)
    name, off = h.new_name("rc-pool"), h.new_name("rc-off")
    create_sleeper(client, name)
    create_sleeper(client, off)
    err = h.api_error(client, lambda: client.put_function_concurrency(FunctionName=off, ReservedConcurrentExecutions=1),
                      400, "InvalidParameterValueException")
    assert err.message == MIN_MESSAGE.format(2)
    client.put_function_concurrency(FunctionName=off, ReservedConcurrentExecutions=0)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 2

    results = parallel_invokes(server, name, 3, sleep=4)
    ok = [r for r in results if r["reason"] is None]
    throttled = [r for r in results if r["reason"] is not None]
    assert len(ok) == 2 and len(throttled) == 1, results
    assert_throttled(throttled[0], UNRESERVED)
