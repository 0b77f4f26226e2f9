"""Managed runtimes: python3.12 and nodejs20.x functions with Handler app.handler, run by Kappa's
own bootstraps (runtimes/python/bootstrap.py, runtimes/nodejs/bootstrap.mjs, embedded in the
binary at build time)."""

from __future__ import annotations

import re
import time

import pytest

import kappa_helpers as h

PYTHON_BOOTSTRAP = h.REPO_ROOT / "runtimes" / "python" / "bootstrap.py"
NODE_BOOTSTRAP = h.REPO_ROOT / "runtimes" / "nodejs" / "bootstrap.mjs"

needs_python = pytest.mark.skipif(not PYTHON_BOOTSTRAP.exists(), reason=f"{PYTHON_BOOTSTRAP} is not written yet")
needs_node = pytest.mark.skipif(not NODE_BOOTSTRAP.exists(), reason=f"{NODE_BOOTSTRAP} is not written yet")


def wait_for_log_line(logs, group: str, text: str) -> list[str]:
    def find():
        try:
            events = logs.filter_log_events(logGroupName=group)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        messages = [e["message"] for e in events]
        return messages if any(text in m for m in messages) else None

    return h.wait_until(10, find, desc=f"{text!r} in {group}")


@pytest.fixture(scope="module")
def logs(server):
    return h.logs_client(server.url)


# ---- python3.12 -----------------------------------------------------------------------------------

PY_APP = '''\
import os
import sys

INIT_PID = os.getpid()
CALLS = 0
print("python module initialised")


def handler(event, context):
    global CALLS
    CALLS += 1
    print(f"hello from python {context.aws_request_id}")
    if "fail" in event:
        raise ValueError(event["fail"])
    return {
        "echo": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "calls": CALLS,
        "pid": INIT_PID,
        "cwd": os.getcwd(),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "task_root_on_path": "/var/task" in sys.path,
    }
'''


@pytest.fixture(scope="module")
def py_fn(client):
    name = h.new_name("py")
    h.create_function(client, name, h.zip_package({"app.py": PY_APP}, executables=()),
                      Runtime="python3.12", Handler="app.handler", Timeout=20)
    return name


@needs_python
def test_python_echo_and_context(client, server, py_fn):
    before = time.time()
    result = h.invoke_ok(client, py_fn, {"hello": "python", "n": [1, None]})
    body = result.json()
    assert body["echo"] == {"hello": "python", "n": [1, None]}
    assert body["aws_request_id"] == result.request_id
    assert body["function_name"] == py_fn
    assert body["function_version"] == "$LATEST"
    assert str(body["memory_limit_in_mb"]) == "128"
    assert body["invoked_function_arn"] == server.function_arn(py_fn)
    assert body["log_group_name"] == f"/aws/lambda/{py_fn}"
    assert h.LOG_STREAM_RE.match(body["log_stream_name"]), body
    elapsed_ms = (time.time() - before) * 1000
    assert 20_000 - elapsed_ms - 1000 <= body["remaining_ms"] <= 20_000, body
    assert body["cwd"] == "/var/task"
    assert body["execution_env"] == "AWS_Lambda_python3.12"
    assert body["task_root_on_path"] is True
    assert f"hello from python {result.request_id}" in result.log, result.log


@needs_python
def test_python_globals_survive_warm_invokes(client, py_fn):
    results = [h.invoke_ok(client, py_fn, {"i": i}) for i in range(10)]
    bodies = [r.json() for r in results]
    assert [b["echo"] for b in bodies] == [{"i": i} for i in range(10)]
    calls = [b["calls"] for b in bodies]
    assert calls == list(range(calls[0], calls[0] + 10)), calls
    assert len({b["pid"] for b in bodies}) == 1
    assert not any(r.cold for r in results[1:])


@needs_python
def test_python_init_output_in_cold_start_log(client):
    name = h.new_name("pyinit")
    h.create_function(client, name, h.zip_package({"app.py": PY_APP}, executables=()),
                      Runtime="python3.12", Handler="app.handler")
    result = h.invoke_ok(client, name, {})
    assert result.cold
    assert "python module initialised" in result.log, result.log


@needs_python
def test_python_exception(client, py_fn):
    result = h.invoke(client, py_fn, {"fail": "kaboom"})
    assert result.status == 200 and result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "ValueError", body
    assert body["errorMessage"] == "kaboom", body
    assert body["requestId"] == result.request_id, body
    assert isinstance(body["stackTrace"], list) and body["stackTrace"], body
    assert all(isinstance(frame, str) for frame in body["stackTrace"]), body
    assert any('File "/var/task/app.py"' in frame and "raise ValueError" in frame for frame in body["stackTrace"]), body
    assert not h.invoke_ok(client, py_fn, {}).cold, "a handled exception must not cost the environment"


@needs_python
def test_python_print_reaches_logs(client, logs, py_fn):
    result = h.invoke_ok(client, py_fn, {"log": True})
    line = f"hello from python {result.request_id}"
    messages = wait_for_log_line(logs, f"/aws/lambda/{py_fn}", line)
    assert f"{line}\n" in messages, messages


@needs_python
def test_python_import_error(client):
    name = h.new_name("pybad")
    h.create_function(client, name, h.zip_package({"app.py": PY_APP}, executables=()),
                      Runtime="python3.12", Handler="nomodule.handler")
    result = h.invoke(client, name, {})
    assert result.status == 200 and result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "Runtime.ImportModuleError", body
    assert body["errorMessage"] == "Unable to import module 'nomodule': No module named 'nomodule'", body
    assert body.get("requestId") == "", body
    assert re.search(r"INIT_REPORT Init Duration: \S+ ms\tPhase: init\tStatus: error\tError Type: Runtime.ImportModuleError",
                     result.log), result.log


@needs_python
def test_python_missing_handler(client):
    name = h.new_name("pynohandler")
    h.create_function(client, name, h.zip_package({"app.py": PY_APP}, executables=()),
                      Runtime="python3.12", Handler="app.missing")
    result = h.invoke(client, name, {})
    assert result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "Runtime.HandlerNotFound", body
    assert body["errorMessage"] == "Handler 'missing' missing on module 'app'", body


# ---- nodejs20.x -----------------------------------------------------------------------------------

NODE_APP_CJS = '''\
const INIT_PID = process.pid;
let calls = 0;
console.log("node module initialised");

exports.handler = async (event, context) => {
  calls += 1;
  console.log(`hello from node ${context.awsRequestId}`);
  if (event.fail) {
    throw new Error(event.fail);
  }
  return {
    echo: event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remainingMs: context.getRemainingTimeInMillis(),
    calls,
    pid: INIT_PID,
    cwd: process.cwd(),
    executionEnv: process.env.AWS_EXECUTION_ENV,
  };
};
'''

NODE_APP_ESM = '''\
let calls = 0;
export const handler = async (event, context) => {
  calls += 1;
  return { esm: true, echo: event, calls, awsRequestId: context.awsRequestId };
};
'''

NODE_APP_CALLBACK = '''\
exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { callback: true, echo: event }), 10);
};
'''


@pytest.fixture(scope="module")
def node_fn(client):
    name = h.new_name("node")
    h.create_function(client, name, h.zip_package({"app.js": NODE_APP_CJS}, executables=()),
                      Runtime="nodejs20.x", Handler="app.handler", Timeout=20)
    return name


@needs_node
def test_node_echo_and_context(client, server, node_fn):
    before = time.time()
    result = h.invoke_ok(client, node_fn, {"hello": "node", "n": [1, None]})
    body = result.json()
    assert body["echo"] == {"hello": "node", "n": [1, None]}
    assert body["awsRequestId"] == result.request_id
    assert body["functionName"] == node_fn
    assert body["functionVersion"] == "$LATEST"
    assert str(body["memoryLimitInMB"]) == "128"
    assert body["invokedFunctionArn"] == server.function_arn(node_fn)
    assert body["logGroupName"] == f"/aws/lambda/{node_fn}"
    assert h.LOG_STREAM_RE.match(body["logStreamName"]), body
    elapsed_ms = (time.time() - before) * 1000
    assert 20_000 - elapsed_ms - 1000 <= body["remainingMs"] <= 20_000, body
    assert body["cwd"] == "/var/task"
    assert body["executionEnv"] == "AWS_Lambda_nodejs20.x"
    lines = [line for line in result.log.splitlines() if f"hello from node {result.request_id}" in line]
    assert lines, result.log
    # Node's console format: <ISO time>\t<request id>\tINFO\t<message>
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\t" + re.escape(result.request_id)
                        + r"\tINFO\thello from node " + re.escape(result.request_id), lines[0]), lines[0]


@needs_node
def test_node_globals_survive_warm_invokes(client, node_fn):
    results = [h.invoke_ok(client, node_fn, {"i": i}) for i in range(10)]
    bodies = [r.json() for r in results]
    assert [b["echo"] for b in bodies] == [{"i": i} for i in range(10)]
    calls = [b["calls"] for b in bodies]
    assert calls == list(range(calls[0], calls[0] + 10)), calls
    assert len({b["pid"] for b in bodies}) == 1
    assert not any(r.cold for r in results[1:])


@needs_node
def test_node_exception(client, node_fn):
    result = h.invoke(client, node_fn, {"fail": "node kaboom"})
    assert result.status == 200 and result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "Error", body
    assert body["errorMessage"] == "node kaboom", body
    # Lambda's Node runtime names the stack field `trace` (not `stackTrace`).
    assert isinstance(body.get("trace"), list) and body["trace"], body
    assert body["trace"][0] == "Error: node kaboom", body
    assert any("/var/task/app.js" in frame for frame in body["trace"]), body
    assert not h.invoke_ok(client, node_fn, {}).cold


@needs_node
def test_node_console_log_reaches_logs(client, logs, node_fn):
    result = h.invoke_ok(client, node_fn, {"log": True})
    text = f"hello from node {result.request_id}"
    messages = wait_for_log_line(logs, f"/aws/lambda/{node_fn}", text)
    found = [m for m in messages if text in m]
    assert found[0].endswith("\n"), found


@needs_node
def test_node_esm_handler(client):
    name = h.new_name("nodeesm")
    h.create_function(client, name, h.zip_package({"app.mjs": NODE_APP_ESM}, executables=()),
                      Runtime="nodejs20.x", Handler="app.handler")
    first = h.invoke_ok(client, name, {"x": 1}).json()
    second = h.invoke_ok(client, name, {"x": 2}).json()
    assert first["esm"] is True and first["echo"] == {"x": 1}
    assert (first["calls"], second["calls"]) == (1, 2)


@needs_node
def test_node_callback_handler(client):
    name = h.new_name("nodecb")
    h.create_function(client, name, h.zip_package({"app.js": NODE_APP_CALLBACK}, executables=()),
                      Runtime="nodejs20.x", Handler="app.handler")
    assert h.invoke_ok(client, name, {"y": 2}).json() == {"callback": True, "echo": {"y": 2}}


@needs_node
def test_node_missing_module(client):
    name = h.new_name("nodebad")
    h.create_function(client, name, h.zip_package({"app.js": NODE_APP_CJS}, executables=()),
                      Runtime="nodejs20.x", Handler="nomodule.handler")
    result = h.invoke(client, name, {})
    assert result.function_error == "Unhandled", result.describe()
    body = result.json()
    assert body["errorType"] == "Runtime.ImportModuleError", body
    assert "nomodule" in body["errorMessage"], body
