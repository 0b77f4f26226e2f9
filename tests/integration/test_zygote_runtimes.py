"""Python runtimes forked from a zygote (issue 6).

After a python3.x runtime's first cold start the server keeps one interpreter of that runtime
with Kappa's bootstrap imported (its zygote) and forks it into every new sandbox of the runtime
that no prestarted interpreter is waiting for: a burst of cold starts costs forks, not
interpreter starts. These tests check that a forked runtime is confined exactly like one the
sandbox started (user, capabilities, seccomp, no_new_privs, cgroup, namespaces, limits,
descriptors), that it ends, runs out of memory and times out as one does, that concurrent forks
do not share state they must not (random numbers), that a dead or stuck zygote is replaced
without a failed invoke, and that none outlives its server.

How a test knows which kind of start it got: `/proc/self/environ` keeps the environment a
process was executed with; a zygote was executed with `_KAPPA_ZYGOTE_FD`.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import kappa_helpers as h

PROBE = r'''
import os
import random
import socket
import sys
import time


def status_lines():
    wanted = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
              "NoNewPrivs", "Seccomp", "Seccomp_filters")
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f) if k in wanted}


def handler(event, context):
    op = event.get("op")
    if op == "exit":
        os._exit(event["code"])
    if op == "alloc":
        block = bytearray(event["mb"] << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        return {"allocated": len(block)}
    if op == "sleep":
        time.sleep(event["seconds"])
    with open("/proc/self/environ", "rb") as f:
        at_exec = [item.split(b"=", 1)[0].decode() for item in f.read().split(b"\0") if item]
    descriptors = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            descriptors.append(os.readlink("/proc/self/fd/" + fd).split(":")[0])
        except OSError:
            pass  # the listing's own descriptor
    with open("/proc/self/limits") as f:
        limits = [line for line in f if line.startswith("Max open files")]
    with open("/proc/self/cgroup") as f:
        cgroups = sorted({line.strip().split(":", 2)[2] for line in f if line.strip()} - {"/"})
    return {
        "forked": "_KAPPA_ZYGOTE_FD" in at_exec,
        "prestarted": "_KAPPA_PRESTART_FD" in at_exec,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "status": status_lines(),
        "limits": limits,
        "cgroups": cgroups,
        "descriptors": sorted(descriptors),
        "hostname": socket.gethostname(),
        "stream": context.log_stream_name,
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "sys_path": sys.path,
        "environ": {k: v for k, v in os.environ.items()
                    if k not in ("AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID")},
        "random": random.random(),
        "urandom": os.urandom(8).hex(),
        "pgrp_is_sid": os.getpgrp() == os.getsid(0),
    }
'''


def probe(client, prefix: str, **overrides) -> str:
    name = h.new_name(prefix)
    params = {"Timeout": 30, "MemorySize": 256}
    params.update(overrides)
    h.create_function(client, name, h.build_zip({"app.py": PROBE.encode()}), **params)
    return name


def new_environment(client, name: str, n: int, event: dict | None = None) -> h.InvokeResult:
    """Invoke `name` in a new environment (a configuration change retires the old ones)."""
    client.update_function_configuration(FunctionName=name, Description=f"start {n}")
    h.wait_until(10, lambda: client.get_function_configuration(FunctionName=name)["LastUpdateStatus"]
                 == "Successful", desc="the update")
    return h.invoke(client, name, event or {})


def zygotes(server) -> list[int]:
    """Pids of the server's zygotes: its children executed with `_KAPPA_ZYGOTE_FD`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == server.proc.pid and b"_KAPPA_ZYGOTE_FD=" in environ:
            found.append(int(entry.name))
    return found


def test_a_forked_runtime_is_confined_as_a_started_one(server_factory, tmp_path):
    """Compared with a prestarted interpreter, which the sandbox's init started (itself
    compared with an ordinary start in test_prestarted_runtimes.py)."""
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    name = probe(client, "zygote-confined", Environment={"Variables": {"MY_VAR": "hello"}})
    forked = h.invoke_ok(client, name, {}).json()
    assert forked["forked"] is True and forked["prestarted"] is False, forked
    assert server.log_text().count("zygote did not start") == 0
    h.wait_until(20, lambda: zygotes(server), desc="the zygote")

    def prestarted_waiting():
        from test_prestarted_runtimes import waiting_interpreters
        return waiting_interpreters(server)

    h.wait_until(20, prestarted_waiting, desc="a prestarted interpreter waiting")
    started = new_environment(client, name, 1).json()
    assert started["prestarted"] is True and started["forked"] is False, started

    # The runtime is pid 4 (pid 2 was the sandbox's waiting process, which handed over; 3 forked
    # the runtime into the namespace), the child of the namespace's init, and nothing else of
    # the zygote's or of the hand-over is visible.
    assert (forked["pid"], forked["ppid"], forked["processes"]) == (4, 1, [1, 4]), forked
    assert (started["pid"], started["ppid"], started["processes"]) == (2, 1, [1, 2]), started
    # Same user, no capability in any set, the same seccomp filters, no_new_privs.
    assert forked["status"] == started["status"], (forked["status"], started["status"])
    assert forked["status"]["Uid"].split() == ["993"] * 4 and forked["status"]["Groups"] == ""
    assert forked["status"]["CapBnd"] == "0000000000000000" and forked["status"]["NoNewPrivs"] == "1"
    assert forked["status"]["Seccomp"] == "2"
    # Its own environment's cgroup, host name and log stream.
    env_id = h.env_id_from_stream(forked["stream"])
    assert forked["cgroups"] and all(path.endswith("/" + env_id) for path in forked["cgroups"]), forked
    assert forked["hostname"] == f"kappa-{env_id[:12]}"
    # Nothing but the standard three (stdin /dev/null, stdout and stderr the log pipe), the
    # Runtime API connection and the probe's own listing.
    assert forked["descriptors"] == ["/dev/null", "pipe", "pipe", "socket"], forked["descriptors"]
    for key in ("limits", "descriptors", "cwd", "argv", "sys_path", "pgrp_is_sid"):
        assert forked[key] == started[key], key
    assert forked["environ"] == started["environ"]
    assert forked["environ"]["MY_VAR"] == "hello" and "_KAPPA_ZYGOTE_FD" not in forked["environ"]


def test_a_burst_of_cold_starts_is_forked_and_shares_no_random_state(server_factory, tmp_path):
    # No prestarted interpreters, which would serve the first ones.
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "0"})
    client = server.client()
    h.invoke_ok(client, probe(client, "zygote-warm"), {})  # starts the runtime's zygote
    name = probe(client, "zygote-burst")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: h.invoke_ok(client, name, {"op": "sleep", "seconds": 0.5}),
                                range(12)))
    probes = [result.json() for result in results]
    assert all(result.cold for result in results)
    assert len({p["stream"] for p in probes}) == 12, "one environment each"
    assert all(p["forked"] and p["pid"] == 4 for p in probes), [(p["forked"], p["pid"]) for p in probes]
    assert len({p["random"] for p in probes}) == 12, "random reseeded in every fork"
    assert len({p["urandom"] for p in probes}) == 12


def test_a_forked_runtime_exits_runs_out_of_memory_and_times_out_as_a_started_one(server_factory, tmp_path):
    # No prestarted interpreters: every environment below is forked.
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "0"})
    client = server.client()
    h.invoke_ok(client, probe(client, "zygote-warm"), {})
    # 128 MB buys 7% of a CPU: filling it takes the probe a few seconds.
    name = probe(client, "zygote-ends", MemorySize=128, Timeout=30)

    exited = h.invoke(client, name, {"op": "exit", "code": 3})
    assert exited.function_error == "Unhandled", exited.describe()
    assert exited.json()["errorType"] == "Runtime.ExitError", exited.describe()
    assert "Runtime exited with error: exit status 3" in exited.json()["errorMessage"]

    oom = new_environment(client, name, 1, {"op": "alloc", "mb": 512})
    assert oom.function_error == "Unhandled" and oom.json()["errorType"] == "Runtime.OutOfMemory", oom.describe()
    assert int(oom.report()["used"]) <= 128, oom.log

    client.update_function_configuration(FunctionName=name, Timeout=2)
    timed_out = new_environment(client, name, 2, {"op": "sleep", "seconds": 10})
    assert timed_out.function_error == "Unhandled", timed_out.describe()
    assert "Task timed out after 2.00 seconds" in timed_out.json()["errorMessage"], timed_out.describe()

    after = h.invoke_ok(client, name, {})
    assert after.cold and after.json()["forked"] is True, after.describe()
    assert server.alive()


def forked_function(server_factory, tmp_path, prefix: str):
    """A server without prestarted interpreters, a function of it whose first environment was
    forked, and that function's zygote."""
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "0"})
    client = server.client()
    name = probe(client, prefix)
    assert h.invoke_ok(client, name, {}).json()["forked"] is True
    (zygote,) = h.wait_until(10, lambda: zygotes(server), desc="the zygote")
    return server, client, name, zygote


def test_a_dead_zygote_is_replaced_and_no_invoke_fails(server_factory, tmp_path):
    server, client, name, first = forked_function(server_factory, tmp_path, "zygote-dies")
    os.kill(first, signal.SIGKILL)
    h.wait_until(10, lambda: first not in zygotes(server), desc="the zygote to be gone")
    # The next cold start finds it gone and starts another one.
    result = new_environment(client, name, 1)
    assert result.status == 200 and result.function_error is None, result.describe()
    assert result.json()["forked"] is True, result.describe()
    (second,) = zygotes(server)
    assert second != first


def test_a_stuck_zygote_leaves_the_start_to_the_sandbox(server_factory, tmp_path):
    """A zygote that does not answer (stopped here) within its limit (5 s) is given up: the
    sandbox starts the runtime itself, and the next cold start gets a new zygote."""
    server, client, name, stuck = forked_function(server_factory, tmp_path, "zygote-stuck")
    os.kill(stuck, signal.SIGSTOP)
    try:
        result = new_environment(client, name, 1)
        assert result.status == 200 and result.function_error is None, result.describe()
        started = result.json()
        assert started["forked"] is False and started["pid"] == 2, started
        assert started["processes"] == [1, 2], "nothing of the zygote's is left in the namespace"
        assert "the zygote did not start a runtime" in server.log_text()
        again = new_environment(client, name, 2).json()
        assert again["forked"] is True, again
        assert stuck not in zygotes(server), "the stuck zygote was replaced"
    finally:
        try:
            os.kill(stuck, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_no_zygote_outlives_its_server(server_factory, tmp_path):
    server = server_factory(tmp_path / "data")
    client = server.client()
    h.invoke_ok(client, probe(client, "zygote-stop"), {})
    (zygote,) = h.wait_until(10, lambda: zygotes(server), desc="the zygote")
    assert server.stop() == 0
    h.wait_until(10, lambda: not Path(f"/proc/{zygote}").exists(), desc="the zygote to end with its server")


def test_a_killed_server_takes_its_zygote_along(server_factory, tmp_path):
    server = server_factory(tmp_path / "data")
    client = server.client()
    h.invoke_ok(client, probe(client, "zygote-kill"), {})
    (zygote,) = h.wait_until(10, lambda: zygotes(server), desc="the zygote")
    server.kill()
    h.wait_until(10, lambda: not Path(f"/proc/{zygote}").exists(), desc="the zygote to die with its server")
    # What only a restart releases (the killed run's /tmp volumes and cgroups) goes now.
    server.start()
    assert server.stop() == 0


def test_at_most_eight_zygotes_run_and_the_least_recently_used_makes_way(server_factory, tmp_path):
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "0"})
    client = server.client()
    names = [probe(client, f"zygote-lru-{n}") for n in range(9)]
    started = []
    for name in names[:8]:
        assert h.invoke_ok(client, name, {}).json()["forked"] is True
        (new,) = h.wait_until(10, lambda: set(zygotes(server)) - set(started), desc="its zygote")
        started.append(new)
    assert sorted(zygotes(server)) == sorted(started), "one zygote per function, eight in all"
    # The first function is used again, so the second's zygote is now the least recently used.
    assert new_environment(client, names[0], 1).json()["forked"] is True
    assert h.invoke_ok(client, names[8], {}).json()["forked"] is True
    h.wait_until(10, lambda: started[1] not in zygotes(server), desc="the second function's zygote to stop")
    running = zygotes(server)
    assert len(running) == 8 and started[0] in running, (running, started)


def test_zygotes_can_be_turned_off(server_factory, tmp_path):
    """`--python-zygotes false`: Python runtimes are started, never forked, and no zygote runs."""
    server = server_factory(tmp_path / "data",
                            env={"KAPPA_SANDBOX_POOL_SIZE": "0", "KAPPA_PYTHON_ZYGOTES": "false"})
    client = server.client()
    name = probe(client, "zygote-off")
    for n in range(2):
        result = (h.invoke_ok(client, name, {}) if n == 0 else new_environment(client, name, n)).json()
        assert result["forked"] is False and result["pid"] == 2, result
    assert zygotes(server) == []


def test_node_runtimes_have_no_zygote(server_factory, tmp_path):
    """V8's threads do not survive a fork: node runtimes are started, never forked."""
    server = server_factory(tmp_path / "data")
    client = server.client()
    name = h.new_name("zygote-node")
    h.create_function(client, name, h.build_zip({"app.js": b"exports.handler = async () => process.pid;"}),
                      Runtime="nodejs20.x", Handler="app.handler")
    assert h.invoke_ok(client, name, {}).json() == 2
    time.sleep(0.5)
    assert zygotes(server) == []
