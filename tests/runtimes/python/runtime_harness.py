"""Runs Kappa's Python runtime under the AWS Runtime Interface Emulator (RIE) or against the
fake Runtime API, for the tests in this directory."""

import base64
import glob
import http.client
import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BOOTSTRAP = os.path.join(REPO, "runtimes", "python", "bootstrap.py")
FUNCTIONS = os.path.join(HERE, "functions")
FUNCTION_NAME = "kappa-test-function"
# The interpreter that runs the runtime under test (the test's own unless overridden).
RUNTIME_PYTHON = os.environ.get("KAPPA_RUNTIME_PYTHON") or sys.executable
RUNTIME_VERSION = tuple(int(part) for part in subprocess.run(
    [RUNTIME_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"],
    capture_output=True, text=True, check=True).stdout.split())


def wait_until(condition, timeout=10.0, interval=0.01, message="condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


def _rie_arch():
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine)


def find_rie():
    """(path, None) of the RIE binary, or (None, why not)."""
    explicit = os.environ.get("KAPPA_RIE_BIN")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit, None
        return None, "KAPPA_RIE_BIN=%s is not an executable file" % explicit
    arch = _rie_arch()
    if arch is None:
        return None, "the RIE has no build for %s" % platform.machine()
    name = "aws-lambda-rie-" + arch
    candidates = [os.path.join(HERE, ".cache", name)]
    spec = importlib.util.find_spec("samcli")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(os.path.join(location, "local", "rapid", name))
    candidates += glob.glob(os.path.join(tempfile.gettempdir(), "*", "samcli", "local", "rapid",
                                         name))
    for candidate in candidates:
        if os.path.isfile(candidate):
            if not os.access(candidate, os.X_OK):
                try:
                    os.chmod(candidate, 0o755)
                except OSError:
                    continue
            return candidate, None
    return None, ("no RIE binary (%s): set KAPPA_RIE_BIN, install aws-sam-cli, or run "
                  "tests/runtimes/python/fetch_rie.sh" % name)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(extra=None):
    """The environment for a runtime: this one without Python/AWS/Lambda settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "AWS_", "LAMBDA_", "_"))}
    env.update(extra or {})
    return env


def function_lines(output):
    """The lines a function and its runtime wrote, without the RIE's own lines."""
    lines = []
    for line in output.split("\n"):
        if not line or "(rapid)" in line:
            continue
        if line.startswith(("START RequestId:", "END RequestId:", "REPORT RequestId:")):
            continue
        lines.append(line)
    return lines


class RieRuntime:
    """The RIE with Kappa's bootstrap as the runtime, on free loopback ports."""

    def __init__(self, rie_bin, handler, env=None, python=None, task_root=FUNCTIONS,
                 timeout_s=30, runtime_command=None):
        self.port = free_port()
        self.log_path = tempfile.mktemp(prefix="kappa-rie-", suffix=".log")
        self.log_file = open(self.log_path, "w+b")
        environment = clean_env({
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_REGION": "us-east-1",
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": task_root,
        })
        environment.update(env or {})
        command = [rie_bin,
                   "--runtime-interface-emulator-address", "127.0.0.1:%d" % self.port,
                   "--runtime-api-address", "127.0.0.1:%d" % free_port(),
                   *(runtime_command or [python or RUNTIME_PYTHON, BOOTSTRAP])]
        self.process = subprocess.Popen(command, cwd=task_root, env=environment,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_until(self._listening, timeout=10, message="the RIE to listen")
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _listening(self):
        if self.process.poll() is not None:
            raise AssertionError("the RIE exited early:\n" + self.output())
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def invoke(self, payload=b"{}", headers=None, client_context=None):
        """POST an invocation; returns (HTTP status, body bytes)."""
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        headers = dict(headers or {})
        if client_context is not None:
            headers["X-Amz-Client-Context"] = base64.b64encode(
                json.dumps(client_context).encode()).decode()
        self.conn.request("POST", "/2015-03-31/functions/function/invocations", payload,
                          headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def invoke_json(self, payload=b"{}", **kwargs):
        status, body = self.invoke(payload, **kwargs)
        return status, json.loads(body)

    def output(self):
        """Everything the RIE (and through it, the runtime) wrote so far."""
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")

    def lines(self):
        return function_lines(self.output())

    def wait_for_line(self, predicate, timeout=10.0):
        """The first function line matching ``predicate``, waiting for it to appear."""
        def find():
            for line in self.lines():
                if predicate(line):
                    return line
            return None
        try:
            return wait_until(find, timeout=timeout, message="a matching log line")
        except AssertionError:
            raise AssertionError("no matching log line in:\n" + "\n".join(self.lines())) from None

    def stop(self):
        self.conn.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        os.unlink(self.log_path)


class FakeApiRuntime:
    """The bootstrap as a subprocess against a FakeRuntimeApi (no RIE)."""

    def __init__(self, api, handler, env=None, python=None, task_root=FUNCTIONS, pass_fds=()):
        environment = clean_env({
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + FUNCTION_NAME,
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": task_root,
        })
        environment.update(env or {})
        self.process = subprocess.Popen([python or RUNTIME_PYTHON, BOOTSTRAP], cwd=task_root,
                                        env=environment, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, pass_fds=pass_fds)

    def wait_exit(self, timeout=10):
        """(exit status, output) once the runtime exits by itself."""
        output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, output.decode("utf-8", "replace")

    def stop(self):
        """Kill the runtime; returns its output."""
        if self.process.poll() is None:
            self.process.kill()
        output, _ = self.process.communicate(timeout=10)
        return output.decode("utf-8", "replace")


def available_pythons():
    """{(3, minor): interpreter path} for the CPython 3.9-3.13 interpreters on this machine.

    KAPPA_TEST_PYTHONS (paths, comma-separated) overrides the search.
    """
    if os.environ.get("KAPPA_TEST_PYTHONS"):
        candidates = os.environ["KAPPA_TEST_PYTHONS"].split(",")
    else:
        candidates = [sys.executable]
        for minor in range(9, 14):
            name = "python3.%d" % minor
            candidates += [shutil.which(name) or ""]
            candidates += sorted(glob.glob(os.path.expanduser(
                "~/.pyenv/versions/3.%d*/bin/%s" % (minor, name))))
            candidates += ["/usr/bin/" + name, "/usr/local/bin/" + name]
    found = {}
    for path in candidates:
        if not path or not os.path.isfile(path):
            continue
        try:
            out = subprocess.run([path, "-c", "import sys; print(*sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode != 0:
            continue
        version = tuple(int(part) for part in out.stdout.split())
        if (3, 9) <= version <= (3, 13):
            found.setdefault(version, path)
    return found
