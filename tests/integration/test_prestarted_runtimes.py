"""Python and Node.js environments started from a prestarted interpreter (issue 6).

Once a python3.x or nodejs function has had a cold start, the server keeps sandboxes with that
runtime's interpreter already started, its bootstrap imported, waiting for a function. A later cold start
takes one and hands it the function. These tests check that such an environment cannot be told
from one started for its function (variables, directory, `sys.path`, context, host name,
descriptors), that a function whose variables only a new interpreter can honour gets one, and
that an interpreter that died while waiting is replaced by an ordinary start.

How a test knows which kind of start it got: `/proc/self/environ` keeps the environment a
process was executed with, and a prestarted interpreter was executed with `_KAPPA_PRESTART_FD`,
a Python zygote (which forks the runtimes of every other new Python environment: see
test_zygote_runtimes.py) with `_KAPPA_ZYGOTE_FD` (which their `os.environ` no longer have).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import kappa_helpers as h

PROBE = r'''
import os
import socket
import sys

import helper_module  # found through sys.path: the task root, or PYTHONPATH when set


def handler(event, context):
    with open("/proc/self/environ", "rb") as f:
        at_exec = [item.split(b"=", 1)[0].decode() for item in f.read().split(b"\0") if item]
    descriptors = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            descriptors[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return {
        "prestarted": "_KAPPA_PRESTART_FD" in at_exec,
        "forked": "_KAPPA_ZYGOTE_FD" in at_exec,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "sys_path": sys.path,
        "helper": helper_module.WHERE,
        "hostname": socket.gethostname(),
        "context": [context.function_name, context.function_version, context.memory_limit_in_mb,
                    context.log_group_name, context.log_stream_name],
        "pid": os.getpid(),
        "uid": [os.getuid(), os.getgid()],
        "descriptors": sorted(descriptors.values()),
    }
'''

# Differ from one environment to the next, whatever the start.
PER_ENVIRONMENT = {"AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID", "AWS_LAMBDA_RUNTIME_API"}


def probe_zip(helper_dir: str = "") -> bytes:
    helper = f"WHERE = {helper_dir or 'task root'!r}\n".encode()
    return h.build_zip({"app.py": PROBE.encode(), f"{helper_dir}{'/' if helper_dir else ''}helper_module.py": helper})


def new_environment(client, name: str, n: int) -> dict:
    """Invoke `name` in a new environment (a configuration change retires the old ones)."""
    client.update_function_configuration(FunctionName=name, Description=f"start {n}")
    h.wait_until(10, lambda: client.get_function_configuration(FunctionName=name)["LastUpdateStatus"]
                 == "Successful", desc="the update")
    return h.invoke_ok(client, name, {}).json()


def waiting_interpreters(server, program: bytes = b"python") -> list[int]:
    """Pids of prestarted interpreters (`program` in their command line) in `server`'s
    environments, not yet released (they still hold the pipe they wait on)."""
    instance = h.cgroup_instance_name(server.data_dir)
    pids = set()
    for env_id in h.cgroup_env_ids(instance):
        for directory in h.cgroup_dirs(instance, env_id):  # one per controller on cgroup v1
            pids.update(h.cgroup_procs(directory))
    found = []
    for pid in sorted(pids):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        named = [item for item in environ.split(b"\0") if item.startswith(b"_KAPPA_PRESTART_FD=")]
        if program not in cmdline or not named:
            continue
        fd = named[0].split(b"=", 1)[1].decode()
        try:
            # The pipe it waits on is closed once it has read its function.
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                found.append(pid)
        except OSError:
            pass
    return found


def comparable(result: dict) -> dict:
    """What must be the same in every environment of one function, however it started."""
    same = dict(result)
    same["environ"] = {k: v for k, v in result["environ"].items() if k not in PER_ENVIRONMENT}
    for key in ("prestarted", "forked", "pid", "hostname", "context", "descriptors"):
        same.pop(key, None)
    same["context"] = result["context"][:4]
    if "descriptors" in result:
        # The log pipe and the Runtime API connection, whatever their inode numbers.
        same["descriptors"] = [d.split(":")[0] for d in result["descriptors"]]
    return same


def first_then_prestarted(server, client, name: str, program: bytes) -> dict:
    """Invoke `name` in a server's first environment of its runtime (nothing prestarted yet:
    a Python runtime is forked from its zygote, pid 4; node is started, pid 2), then, once a
    prestarted `program` waits, in a new one; assert the second came from the prestarted
    interpreter (pid 2) and shows what the first did. Returns the second's probe."""
    first = h.invoke_ok(client, name, {}).json()
    assert first["prestarted"] is False, "a server's first cold start of a runtime has nothing prestarted"
    assert first["forked"] is (program == b"python"), first
    assert first["pid"] == (4 if first["forked"] else 2), first
    h.wait_until(20, lambda: waiting_interpreters(server, program), desc=f"a prestarted {program} waiting")
    second = new_environment(client, name, 1)
    assert second["prestarted"] is True and second["forked"] is False, second
    same_first, same_second = comparable(first), comparable(second)
    differing = set(same_first["environ"].items()) ^ set(same_second["environ"].items())
    assert not differing, differing
    assert same_second == same_first
    return second


def test_a_prestarted_interpreter_serves_as_one_started_for_the_function(server_factory, tmp_path):
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    name = h.new_name("prestart")
    h.create_function(client, name, probe_zip(), Timeout=30, MemorySize=256,
                      Environment={"Variables": {"MY_VAR": "hello", "TZ": ":UTC"}})
    second = first_then_prestarted(server, client, name, b"python")
    assert second["environ"]["MY_VAR"] == "hello"
    assert "_KAPPA_PRESTART_FD" not in second["environ"]
    assert second["cwd"] == "/var/task" and second["helper"] == "task root"
    assert second["pid"] == 2 and second["uid"] == [993, 990]
    assert second["context"][0] == name and second["context"][2] == "256"
    assert second["context"][4] == second["environ"]["AWS_LAMBDA_LOG_STREAM_NAME"]
    stream_env = h.env_id_from_stream(second["context"][4])
    assert second["hostname"] == f"kappa-{stream_env[:12]}"
    # Nothing but the standard three, the Runtime API connection and the probe's own listing.
    assert [d.split(":")[0] for d in second["descriptors"]] == ["/dev/null", "pipe", "pipe", "socket"]


def test_a_start_up_variable_gets_the_function_a_new_interpreter(server_factory, tmp_path):
    """PYTHONPATH is read as the interpreter starts: Kappa does not hand such a function a
    prestarted interpreter (and the runtime would execute itself again if it were handed one)."""
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    warm_up = h.new_name("prestart-warm")
    h.create_function(client, warm_up, probe_zip())
    h.invoke_ok(client, warm_up, {})
    h.wait_until(20, lambda: waiting_interpreters(server), desc="a prestarted interpreter waiting")
    name = h.new_name("prestart-pythonpath")
    h.create_function(client, name, probe_zip("vendor"),
                      Environment={"Variables": {"PYTHONPATH": "/var/task/vendor"}})
    result = h.invoke_ok(client, name, {}).json()
    assert result["prestarted"] is False, "executed again with the function's environment"
    assert result["forked"] is False, "a zygote cannot honour PYTHONPATH either"
    assert result["helper"] == "vendor"
    assert "/var/task/vendor" in result["sys_path"]
    assert result["pid"] == 2 and result["environ"]["PYTHONPATH"] == "/var/task/vendor"


def test_an_interpreter_that_died_waiting_is_replaced_by_an_ordinary_start(server_factory, tmp_path):
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    name = h.new_name("prestart-died")
    h.create_function(client, name, probe_zip())
    h.invoke_ok(client, name, {})
    (waiting,) = h.wait_until(20, lambda: waiting_interpreters(server), desc="a prestarted interpreter waiting")
    os.kill(waiting, signal.SIGKILL)
    time.sleep(0.2)
    result = new_environment(client, name, 1)
    assert result["prestarted"] is False and result["forked"] is False
    # Forked by the namespace's init in place of the dead pid 2.
    assert result["environ"]["AWS_LAMBDA_FUNCTION_NAME"] == name and result["pid"] == 3
    assert server.alive()


NODE_PROBE = r"""
const fs = require('fs');
const os = require('os');

exports.handler = async (event, context) => {
  const atExec = fs.readFileSync('/proc/self/environ', 'latin1').split('\0').filter(Boolean)
    .map((item) => item.split('=')[0]);
  return {
    prestarted: atExec.includes('_KAPPA_PRESTART_FD'),
    forked: atExec.includes('_KAPPA_ZYGOTE_FD'),
    environ: { ...process.env },
    cwd: process.cwd(),
    hostname: os.hostname(),
    context: [context.functionName, context.functionVersion, context.memoryLimitInMB,
              context.logGroupName, context.logStreamName],
    pid: process.pid,
    uid: [process.getuid(), process.getgid()],
    stackTraceLimit: Error.stackTraceLimit,
    modulePaths: require.resolve.paths('anything'),
  };
};
"""


def node_function(client, prefix: str, **overrides) -> str:
    name = h.new_name(prefix)
    h.create_function(client, name, h.build_zip({"app.js": NODE_PROBE.encode()}),
                      Runtime="nodejs20.x", Timeout=30, **overrides)
    return name


def test_a_prestarted_node_serves_as_one_started_for_the_function(server_factory, tmp_path):
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    name = node_function(client, "prestart-node", MemorySize=512,
                         Environment={"Variables": {"MY_VAR": "hello"}})
    second = first_then_prestarted(server, client, name, b"node")
    assert second["environ"]["MY_VAR"] == "hello" and "_KAPPA_PRESTART_FD" not in second["environ"]
    assert second["cwd"] == "/var/task" and second["pid"] == 2 and second["uid"] == [993, 990]
    assert second["context"][0] == name and second["context"][2] == "512"
    assert "/var/task" in second["environ"]["NODE_PATH"].split(":")
    assert second["hostname"] == f"kappa-{h.env_id_from_stream(second['context'][4])[:12]}"


def test_node_options_get_the_function_a_new_node(server_factory, tmp_path):
    """NODE_OPTIONS is read as node starts: such a function is not handed a prestarted node."""
    server = server_factory(tmp_path / "data", env={"KAPPA_SANDBOX_POOL_SIZE": "1"})
    client = server.client()
    h.invoke_ok(client, node_function(client, "prestart-node-warm"), {})
    h.wait_until(20, lambda: waiting_interpreters(server, b"node"), desc="a prestarted node waiting")
    name = node_function(client, "prestart-node-options",
                         Environment={"Variables": {"NODE_OPTIONS": "--stack-trace-limit=7"}})
    result = h.invoke_ok(client, name, {}).json()
    assert result["prestarted"] is False
    assert result["stackTraceLimit"] == 7
    assert waiting_interpreters(server, b"node"), "the prestarted node is still waiting for a function"
