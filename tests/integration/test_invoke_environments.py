"""Execution environments: warm reuse, state kept between invocations, and parallel invocations in
separate environments with separate /tmp."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid

import kappa_helpers as h

# Keeps a counter in the process and one in /tmp, and reports the environment's log stream.
STATEFUL_HANDLER = r"""
  n=$(cat /tmp/counter 2>/dev/null || echo 0)
  n=$((n + 1))
  echo "$n" > /tmp/counter
  printf '{"tmp_counter":%s,"process_counter":%s,"stream":"%s"}' "$n" "$INVOCATIONS" "$AWS_LAMBDA_LOG_STREAM_NAME" > "$RESPONSE"
  respond "$RESPONSE"
"""

# Sleeps 1 s, leaving a marker in /tmp, and reports which markers its /tmp holds.
SLEEPY_HANDLER = r"""
  marker="marker-$REQUEST_ID"
  touch "/tmp/$marker"
  sleep 1
  printf '{"stream":"%s","request_id":"%s","markers":"%s"}' "$AWS_LAMBDA_LOG_STREAM_NAME" "$REQUEST_ID" \
    "$(ls /tmp | grep '^marker-' | tr '\n' ' ')" > "$RESPONSE"
  respond "$RESPONSE"
"""


def test_warm_reuse_keeps_state(client):
    name = h.new_name("warm")
    h.create_custom_function(client, name, h.shell_bootstrap(STATEFUL_HANDLER))
    first = h.invoke_ok(client, name, {})
    assert first.cold, first.log
    second = h.invoke_ok(client, name, {})
    assert not second.cold, f"the second sequential invoke must reuse the environment:\n{second.log}"
    third = h.invoke_ok(client, name, {})
    states = [r.json() for r in (first, second, third)]
    assert [s["tmp_counter"] for s in states] == [1, 2, 3], states
    assert [s["process_counter"] for s in states] == [1, 2, 3], states
    assert len({s["stream"] for s in states}) == 1, states


def test_parallel_invokes_run_in_separate_environments(server):
    name = h.new_name("parallel")
    client = server.client()
    h.create_custom_function(client, name, h.shell_bootstrap(SLEEPY_HANDLER))
    n = 4
    clients = [server.client() for _ in range(n)]
    barrier = threading.Barrier(n)

    def call(c):
        barrier.wait()
        return h.invoke_ok(c, name, {})

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, clients))
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"{n} parallel 1 s invokes took {elapsed:.2f} s: they were not run in parallel"
    bodies = [r.json() for r in results]
    streams = {b["stream"] for b in bodies}
    assert len(streams) == n, f"expected {n} distinct environments, got streams {sorted(streams)}"
    assert all(h.LOG_STREAM_RE.match(s) for s in streams), streams
    assert all(r.cold for r in results), "every parallel invoke needed its own cold start"
    # Each environment's /tmp holds only its own marker.
    for body in bodies:
        assert body["markers"].split() == [f"marker-{body['request_id']}"], bodies

    # The environments are kept: a second wave of parallel invokes reuses them all.
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        second = list(pool.map(call, clients))
    second_streams = {r.json()["stream"] for r in second}
    assert second_streams == streams, "the second wave should have reused the warm environments"
    assert not any(r.cold for r in second), [r.log for r in second]
    for result in second:
        body = result.json()
        assert len(body["markers"].split()) == 2, body  # the first wave's marker is still there


def test_tmp_is_not_shared_between_concurrent_environments(server):
    name = h.new_name("tmpiso")
    token = f"kappa-tmpiso-{uuid.uuid4().hex}"
    handler = r"""
  if event_has '"write"'; then
    echo "$AWS_LAMBDA_LOG_STREAM_NAME" > /tmp/secret
    sh -c 'sleep 1.5 & wait' TOKEN
  fi
  printf '{"stream":"%s","secret":"%s"}' "$AWS_LAMBDA_LOG_STREAM_NAME" "$(cat /tmp/secret 2>/dev/null)" > "$RESPONSE"
  respond "$RESPONSE"
""".replace("TOKEN", token)
    client = server.client()
    h.create_custom_function(client, name, h.shell_bootstrap(handler))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        writer = pool.submit(h.invoke_ok, server.client(), name, {"write": True})
        # While the writer's environment is busy, a second invocation needs a second environment.
        h.wait_until(10, lambda: h.processes_with(token) or writer.done(), desc="the writer to be running")
        assert h.processes_with(token), writer.result().describe()
        reader = pool.submit(h.invoke_ok, server.client(), name, {"read": True})
        written, read = writer.result(), reader.result()
    w, r = written.json(), read.json()
    assert w["secret"] == w["stream"], w
    assert r["stream"] != w["stream"], "both invocations ran in one environment"
    assert r["secret"] == "", f"the second environment sees the first one's /tmp: {r}"


def test_new_code_gets_a_new_environment(client):
    name = h.new_name("update")
    h.create_custom_function(client, name, h.shell_bootstrap("respond_text 'version one'"))
    assert h.invoke_ok(client, name, {}).payload == b"version one"
    assert not h.invoke_ok(client, name, {}).cold
    client.update_function_code(FunctionName=name,
                                ZipFile=h.zip_package({"bootstrap": h.shell_bootstrap("respond_text 'version two'")}))
    after = h.invoke_ok(client, name, {})
    assert after.payload == b"version two"
    assert after.cold


def test_new_configuration_gets_a_new_environment(client):
    name = h.new_name("reconf")
    handler = 'respond_text "$GREETING"'
    h.create_custom_function(client, name, h.shell_bootstrap(handler),
                             Environment={"Variables": {"GREETING": "hello"}})
    assert h.invoke_ok(client, name, {}).payload == b"hello"
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"GREETING": "bonjour"}})
    after = h.invoke_ok(client, name, {})
    assert after.payload == b"bonjour"
    assert after.cold
