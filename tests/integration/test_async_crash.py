"""Durability of asynchronous invocation: every Event invoke acknowledged with 202 is delivered at
least once, across a SIGKILL right after the last 202, a SIGKILL in the middle of a burst (and
another while the restarted server is catching up), and a graceful SIGTERM.

A burst is KAPPA_ASYNC_CRASH_EVENTS (default 300) Event invokes from 8 threads; each payload
carries a unique id that the function prints as "DELIVERED <id> <request id>". Deliveries are
read back with FilterLogEvents (pattern DELIVERED, following nextToken). Duplicates are allowed
(at-least-once) and reported; run with -s to see the per-round numbers. KAPPA_CRASH_SEED
replays the kill points.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

import kappa_async as ka
import kappa_helpers as h

EVENTS = int(os.environ.get("KAPPA_ASYNC_CRASH_EVENTS", "300"))
THREADS = 8
DELIVERY_TIMEOUT = 300  # seconds for a restarted server to deliver everything acknowledged
SHUTDOWN_TIMEOUT = 60

DELIVER_HANDLER = r"""
  ID=$(sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p' "$EVENT")
  echo "DELIVERED $ID $REQUEST_ID"
  respond_text '{}'
"""


class Burst:
    """Fires Event invokes for `ids` from a thread pool, recording which were acknowledged."""

    def __init__(self, url: str, function: str, ids: list[str], threads: int = THREADS):
        self.url = url
        self.function = function
        self.ids = ids
        self.threads = threads
        self.acked: dict[str, float] = {}
        self.failed: dict[str, str] = {}  # connection-level failures (expected once killed)
        self.unexpected: dict[str, str] = {}  # HTTP errors or non-202 answers
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.local = threading.local()
        self.thread: threading.Thread | None = None

    def _client(self):
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = h.make_client(self.url, read_timeout=30, connect_timeout=2)
        return client

    def _send(self, event_id: str) -> None:
        if self.stop.is_set():
            return
        try:
            resp = self._client().invoke(FunctionName=self.function, InvocationType="Event",
                                         Payload=json.dumps({"id": event_id}).encode())
            resp["Payload"].read()
        except ClientError as exc:
            with self.lock:
                self.unexpected[event_id] = f"{exc} {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')}"
            return
        except Exception as exc:  # connection refused/reset: the server is gone
            with self.lock:
                self.failed[event_id] = repr(exc)
            return
        with self.lock:
            if resp["StatusCode"] == 202:
                self.acked[event_id] = time.time()
            else:
                self.unexpected[event_id] = f"HTTP {resp['StatusCode']}"

    def run(self) -> "Burst":
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(self._send, self.ids))
        return self

    def start(self) -> "Burst":
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the burst did not finish"

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)


def deliveries(logs, function: str) -> list[tuple[int, str, str]]:
    """(log timestamp ms, payload id, request id) of every DELIVERED line."""
    out = []
    for ts, rest in ka.marked(logs, function, "DELIVERED"):
        parts = rest.split()
        assert len(parts) == 2, f"malformed DELIVERED line: {rest!r}"
        out.append((ts, parts[0], parts[1]))
    return out


class Ledger:
    """What was sent and acknowledged, across rounds, and checks against the deliveries."""

    def __init__(self, function: str):
        self.function = function
        self.sent: set[str] = set()
        self.acked: set[str] = set()

    def add(self, burst: Burst) -> None:
        self.sent.update(burst.ids)
        self.acked.update(burst.acked)

    def wait_all_delivered(self, srv: h.KappaServer, label: str) -> list[tuple[int, str, str]]:
        logs = h.logs_client(srv.url)
        state = {"found": []}

        def done():
            state["found"] = deliveries(logs, self.function)
            return self.acked <= {d[1] for d in state["found"]}

        try:
            h.wait_until(DELIVERY_TIMEOUT, done, interval=0.5, desc=f"{label}: delivery of {len(self.acked)} events")
        except TimeoutError:
            seen = {d[1] for d in state["found"]}
            missing = sorted(self.acked - seen)
            pytest.fail(f"{label}: {len(missing)} acknowledged event(s) never delivered within {DELIVERY_TIMEOUT}s "
                        f"(queue metrics {ka.metrics(srv)}): {missing[:50]}")
        return state["found"]

    def report(self, label: str, found: list[tuple[int, str, str]], restarted_at: float) -> dict:
        counts = collections.Counter(d[1] for d in found)
        ids_by_payload = collections.defaultdict(set)
        for _, pid, rid in found:
            ids_by_payload[pid].add(rid)
        missing = sorted(self.acked - set(counts))
        phantom = sorted(set(counts) - self.sent)
        dups = {pid: n for pid, n in counts.items() if n > 1}
        before = sum(1 for ts, _, _ in found if ts < restarted_at * 1000)
        unacked_delivered = sorted(set(counts) & (self.sent - self.acked))
        changed_ids = {pid: sorted(r) for pid, r in ids_by_payload.items() if len(r) > 1}
        print(f"[{label}] sent {len(self.sent)}, acknowledged {len(self.acked)}, delivered {len(counts)} distinct "
              f"({len(found)} lines: {before} before the last restart, {len(found) - before} after); "
              f"duplicates: {len(dups)} ids, {sum(dups.values()) - len(dups)} extra deliveries; "
              f"unacknowledged but delivered: {len(unacked_delivered)}; "
              f"payloads redelivered under a new request id: {len(changed_ids)}")
        if dups:
            print(f"[{label}] duplicated ids (first 20): {sorted(dups.items())[:20]}")
        assert not missing, f"{label}: acknowledged events lost: {missing}"
        assert not phantom, f"{label}: deliveries of events never sent: {phantom}"
        return {"duplicates": dups, "changed_ids": changed_ids, "before": before}


def setup_server(server_factory, tmp_path_factory, handler: str = DELIVER_HANDLER, **env: str):
    data_dir = tmp_path_factory.mktemp("async-crash-data")
    srv = server_factory(data_dir=data_dir, env=ka.async_env(1, **env))
    client = srv.client()
    name = h.new_name("async-durable")
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    return srv, data_dir, name


@pytest.fixture
def crash_setup(server_factory, tmp_path_factory):
    return setup_server(server_factory, tmp_path_factory)


def restart(server_factory, data_dir):
    restarted_at = time.time()
    srv = server_factory(data_dir=data_dir, env=ka.async_env(1))
    return srv, restarted_at


def seed_rng() -> tuple[int, random.Random]:
    seed = int(os.environ.get("KAPPA_CRASH_SEED", str(time.time_ns() % 2**32)))
    print(f"async crash test seed: {seed}")
    return seed, random.Random(seed)


def check_no_unexpected(burst: Burst, label: str) -> None:
    assert not burst.unexpected, f"{label}: answers other than 202 before the kill: {dict(list(burst.unexpected.items())[:20])}"


def test_sigkill_right_after_last_ack_loses_nothing(server_factory, crash_setup):
    srv, data_dir, name = crash_setup
    ledger = Ledger(name)
    burst = Burst(srv.url, name, [f"last-{i:05d}" for i in range(EVENTS)]).run()
    srv.kill()
    check_no_unexpected(burst, "kill after last ack")
    assert not burst.failed, f"invokes failed before the kill: {dict(list(burst.failed.items())[:10])}"
    assert len(burst.acked) == EVENTS
    ledger.add(burst)

    srv, restarted_at = restart(server_factory, data_dir)
    found = ledger.wait_all_delivered(srv, "kill after last ack")
    result = ledger.report("kill after last ack", found, restarted_at)
    ka.wait_queue_empty(srv, timeout=DELIVERY_TIMEOUT)
    assert not result["changed_ids"], f"a redelivered event changed its request id: {result['changed_ids']}"


def test_sigkill_mid_burst_and_during_recovery_loses_nothing(server_factory, crash_setup):
    srv, data_dir, name = crash_setup
    seed, rng = seed_rng()
    ledger = Ledger(name)

    # Round 1: SIGKILL while the burst is still being acknowledged.
    kill_at = rng.randint(EVENTS // 5, 4 * EVENTS // 5)
    burst = Burst(srv.url, name, [f"mid-{i:05d}" for i in range(EVENTS)]).start()
    h.wait_until(120, lambda: burst.acked_count() >= kill_at or not burst.thread.is_alive(), interval=0.001,
                 desc=f"{kill_at} acknowledged invokes")
    srv.kill()
    burst.stop.set()
    burst.join()
    check_no_unexpected(burst, "kill mid-burst")
    assert len(burst.acked) >= kill_at
    print(f"[kill mid-burst] seed {seed}: killed after {len(burst.acked)} acks "
          f"({len(burst.failed)} invokes failed against the dead server)")
    ledger.add(burst)

    # Round 2: restart; SIGKILL again as soon as the restarted server has delivered something.
    srv, restarted_at = restart(server_factory, data_dir)
    logs = h.logs_client(srv.url)
    before = len(deliveries(logs, name))
    h.wait_until(DELIVERY_TIMEOUT, lambda: len(deliveries(logs, name)) > before or ka.queue_depth(srv) == 0,
                 interval=0.01, desc="the restarted server to deliver")
    depth = ka.queue_depth(srv)
    srv.kill()
    print(f"[kill during recovery] killed with queue depth {depth}")

    # Round 3: restart; everything acknowledged must arrive.
    srv, restarted_at = restart(server_factory, data_dir)
    found = ledger.wait_all_delivered(srv, "kill mid-burst + during recovery")
    result = ledger.report("kill mid-burst + during recovery", found, restarted_at)
    ka.wait_queue_empty(srv, timeout=DELIVERY_TIMEOUT)
    assert not result["changed_ids"], f"a redelivered event changed its request id: {result['changed_ids']}"


def test_sigterm_graceful_restart_loses_nothing(server_factory, tmp_path_factory):
    """A slower function (0.2 s) and at most 4 invocations at once (KAPPA_CONCURRENCY_LIMIT=4), so
    most events are still queued when SIGTERM arrives right after the last 202."""
    srv, data_dir, name = setup_server(server_factory, tmp_path_factory,
                                       handler="  sleep 0.2\n" + DELIVER_HANDLER, KAPPA_CONCURRENCY_LIMIT="4")
    ledger = Ledger(name)
    burst = Burst(srv.url, name, [f"term-{i:05d}" for i in range(EVENTS)]).run()
    srv.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = srv.proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except Exception:
        srv.kill()
        pytest.fail(f"kappa did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM; log:\n{srv.log_text()[-3000:]}")
    print(f"[sigterm] exit code {code} after {time.monotonic() - started:.2f}s")
    assert code == 0, f"graceful shutdown exit code {code}; log:\n{srv.log_text()[-3000:]}"
    check_no_unexpected(burst, "sigterm")
    assert len(burst.acked) == EVENTS, burst.failed
    ledger.add(burst)

    srv, restarted_at = restart(server_factory, data_dir)
    found = ledger.wait_all_delivered(srv, "sigterm")
    result = ledger.report("sigterm", found, restarted_at)
    assert len(found) > result["before"], "nothing was left queued at SIGTERM: the restart path went untested"
    ka.wait_queue_empty(srv, timeout=DELIVERY_TIMEOUT)
    assert not result["changed_ids"], f"a redelivered event changed its request id: {result['changed_ids']}"


def test_pending_retry_survives_sigkill(server_factory, tmp_path_factory):
    """An event that failed once and waits for its retry is still retried after a SIGKILL: same
    request id, the attempt count carries over (OnFailure gets RetriesExhausted with
    approximateInvokeCount 3), and the payload arrives intact."""
    data_dir = tmp_path_factory.mktemp("async-crash-retry")
    srv = server_factory(data_dir=data_dir, env=ka.async_env(1))
    client, logs = srv.client(), h.logs_client(srv.url)
    dest = h.new_name("crash-dest")
    h.create_custom_function(client, dest, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    name = h.new_name("crash-fail")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.FAILING_HANDLER))
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest)}})
    payload = {"tag": "retry-crash", "text": "héllo ✓ \"quoted\"", "n": [1, 2.5, None]}
    ka.invoke_event(client, name, payload)
    [first] = ka.wait_for(30, lambda: ka.attempts(logs, name, "retry-crash"), desc="the first attempt")
    srv.kill()

    srv, _ = restart(server_factory, data_dir)
    logs = h.logs_client(srv.url)
    records = ka.wait_for(60, lambda: ka.destination_records(logs, dest, first.request_id),
                          desc="the OnFailure record after the restart")
    assert len(records) == 1, records
    record = records[0]
    found = ka.attempts(logs, name, "retry-crash")
    print(f"[pending retry] attempts logged: {len(found)}; record: {record['requestContext']}")
    assert {a.request_id for a in found} == {first.request_id}, found
    assert len(found) >= 3, f"the retries were lost with the crash: {found}"
    assert all(a.event == payload for a in found), found
    assert record["requestContext"]["condition"] == "RetriesExhausted", record
    assert record["requestContext"]["approximateInvokeCount"] == 3, record
    assert record["requestPayload"] == payload, record
    ka.wait_queue_empty(srv)
