"""Helpers for testing Kappa's Node.js bootstrap (runtimes/nodejs/bootstrap.mjs).

Two ways to drive the bootstrap:

* `RieFunction`: AWS's Runtime Interface Emulator (the `aws-lambda-rie` binary shipped in the
  aws-sam-cli wheel) runs `node bootstrap.mjs` and is invoked over HTTP, end to end.
* `FakeRuntimeApi`: a tiny in-process Runtime API that records every request the bootstrap
  makes, for checks on exact wire details (headers, bodies, trailers) the RIE hides.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import platform
import queue
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
RUNTIME_DIR = REPO_ROOT / "runtimes" / "nodejs"
BOOTSTRAP = RUNTIME_DIR / "bootstrap.mjs"
FIXTURES = HERE / "fixtures"

RIE_NAME = "aws-lambda-rie-arm64" if platform.machine() in ("aarch64", "arm64") else "aws-lambda-rie-x86_64"
# Where `pip download aws-sam-cli --no-deps -d <dir>` is usually run for these tests.
WHEEL_DIRS = [Path("/tmp/samcli-node"), Path("/tmp/samcli"), Path.home() / ".cache" / "kappa" / "samcli"]
RIE_CACHE = Path.home() / ".cache" / "kappa" / "rie"


def wait_until(timeout: float, condition: Callable[[], object], interval: float = 0.02, what: str = "condition"):
    """Polls `condition` until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_node() -> str | None:
    return os.environ.get("KAPPA_NODE_BIN") or shutil.which("node")


def find_rie() -> tuple[Path | None, str]:
    """The RIE binary and, if it is missing, the reason why."""
    configured = os.environ.get("KAPPA_RIE_BIN")
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
        return None, f"KAPPA_RIE_BIN={configured} is not an executable file"

    for d in WHEEL_DIRS:
        extracted = d / "samcli" / "local" / "rapid" / RIE_NAME
        if extracted.is_file():
            _make_executable(extracted)
            return extracted, ""
    cached = RIE_CACHE / RIE_NAME
    if cached.is_file():
        return cached, ""
    for d in WHEEL_DIRS:
        for wheel in sorted(d.glob("aws_sam_cli-*.whl"), reverse=True):
            member = f"samcli/local/rapid/{RIE_NAME}"
            with zipfile.ZipFile(wheel) as zf:
                if member not in zf.namelist():
                    continue
                RIE_CACHE.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp")
                with zf.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                _make_executable(tmp)
                tmp.replace(cached)
                return cached, ""
    return None, (
        "AWS Runtime Interface Emulator not found: set KAPPA_RIE_BIN, or run "
        "`pip download aws-sam-cli --no-deps -d /tmp/samcli-node` (the tests extract "
        f"samcli/local/rapid/{RIE_NAME} from the wheel)"
    )


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def base_env(**overrides: str) -> dict[str, str]:
    """A small, explicit environment: nothing from the test runner leaks into the function."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "node-fixture",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/node-fixture",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "20",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
    }
    env.update(overrides)
    return env


@dataclass
class InvokeResult:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self):
        return json.loads(self.body)


class RieFunction:
    """One RIE process serving one function; the bootstrap starts on the first invoke."""

    def __init__(
        self,
        rie: Path,
        node: str,
        task_root: Path,
        handler: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        bootstrap: Path = BOOTSTRAP,
    ):
        self.rie, self.node, self.task_root, self.handler = rie, node, task_root, handler
        self.log_path = log_path
        self.bootstrap = bootstrap
        self.invoke_port = free_port()
        self.api_port = free_port()
        self.env = base_env(
            _HANDLER=handler,
            LAMBDA_TASK_ROOT=str(task_root),
            LOG_LEVEL=os.environ.get("KAPPA_RIE_LOG_LEVEL", "info"),
        )
        self.env.update(env or {})
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RieFunction":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(self.rie),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{self.invoke_port}",
                "--runtime-api-address",
                f"127.0.0.1:{self.api_port}",
                self.node,
                str(self.bootstrap),
            ],
            cwd=self.task_root,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(10, self._listening, what=f"RIE to listen on {self.invoke_port}")
        return self

    def _listening(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"RIE exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with socket.create_connection(("127.0.0.1", self.invoke_port), timeout=0.2):
                return True
        except OSError:
            return False

    def invoke(self, payload: object = None, raw: bytes | None = None, headers: dict | None = None,
               timeout: float = 30) -> InvokeResult:
        body = raw if raw is not None else json.dumps({} if payload is None else payload).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.invoke_port, timeout=timeout)
        try:
            conn.request("POST", "/2015-03-31/functions/function/invocations", body=body, headers=headers or {})
            resp = conn.getresponse()
            return InvokeResult(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def logs(self) -> str:
        try:
            # Bytes, not read_text(): universal newlines would turn the runtime's \r into \n.
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def function_log_lines(self) -> list[str]:
        """Lines written by the runtime itself (RIE's own lines and platform lines removed)."""
        out = []
        for line in self.logs().split("\n"):
            if not line or " [INFO] (rapid) " in line or " [WARNING] (rapid) " in line or " [ERROR] (rapid) " in line:
                continue
            if line.startswith(("START RequestId:", "END RequestId:", "REPORT RequestId:", "INIT_REPORT")):
                continue
            out.append(line)
        return out

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        return wait_until(timeout, lambda: text in self.logs() and self.logs(), what=f"log text {text!r}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()


# ---------------------------------------------------------------------------------------------
# A fake Runtime API, for wire-level assertions.


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lowercased names; repeated headers joined with ", "
    body: bytes
    trailers: dict[str, str] = field(default_factory=dict)
    peer: tuple[str, int] | None = None  # client address: one per TCP connection
    received_at: float = 0.0  # time.perf_counter() once the body was read

    def json(self):
        return json.loads(self.body)


class FakeRuntimeApi:
    """Serves /next from a queue of events and records every other request (replies 202)."""

    def __init__(self):
        self.events: "queue.Queue[tuple[bytes, dict[str, str]] | None]" = queue.Queue()
        self.requests: list[Recorded] = []
        self.next_calls = 0
        self.next_peers: set[tuple[str, int]] = set()
        self.next_headers: list[dict[str, str]] = []
        self.next_sent_at: dict[str, float] = {}  # request id -> perf_counter() after /next reply
        self._cond = threading.Condition()
        self.next_status = 200
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle + delayed ACK
            # add ~40 ms to every exchange.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _headers(self) -> dict[str, str]:
                merged: dict[str, str] = {}
                for k, v in self.headers.items():
                    k = k.lower()
                    merged[k] = f"{merged[k]}, {v}" if k in merged else v
                return merged

            def _read_body(self) -> tuple[bytes, dict[str, str]]:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    trailers = {}
                    while True:
                        line = self.rfile.readline().rstrip(b"\r\n")
                        if not line:
                            break
                        k, _, v = line.decode().partition(":")
                        trailers[k.strip().lower()] = v.strip()
                    return body, trailers
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n), {}

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    self._reply(404, b'{"errorType":"NotFound"}')
                    return
                with api._cond:
                    api.next_calls += 1
                    api.next_peers.add(self.client_address)
                    api.next_headers.append(self._headers())
                    api._cond.notify_all()
                item = api.events.get()
                if item is None or api.next_status != 200:
                    self._reply(api.next_status if item is not None else 500, b'{"errorType":"InternalServerError"}')
                    return
                body, headers = item
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                api.next_sent_at[headers.get("Lambda-Runtime-Aws-Request-Id", "")] = time.perf_counter()

            def do_POST(self):
                body, trailers = self._read_body()
                rec = Recorded("POST", self.path, self._headers(), body, trailers, self.client_address,
                               time.perf_counter())
                with api._cond:
                    api.requests.append(rec)
                    api._cond.notify_all()
                self._reply(202, b'{"status":"OK"}')

            def _reply(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A runtime that exits (by design in several tests) resets its connection.
                if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(self, event: object = None, request_id: str | None = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, deadline_in_ms: int = 30_000) -> str:
        request_id = request_id or str(uuid.uuid4())
        h = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + deadline_in_ms),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:node-fixture",
            "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "Content-Type": "application/json",
        }
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        body = raw if raw is not None else json.dumps({} if event is None else event).encode()
        self.events.put((body, h))
        return request_id

    def wait_request(self, predicate: Callable[[Recorded], bool], timeout: float = 10) -> Recorded:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if predicate(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching request; got {[(r.method, r.path) for r in self.requests]}")
                self._cond.wait(left)

    def result_for(self, request_id: str, timeout: float = 10) -> Recorded:
        prefix = f"/2018-06-01/runtime/invocation/{request_id}/"
        return self.wait_request(lambda r: r.path.startswith(prefix), timeout)

    def wait_next_calls(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.next_calls < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {n} /next calls, saw {self.next_calls}")
                self._cond.wait(left)

    def close(self) -> None:
        # Unblock any /next that is still waiting.
        for _ in range(4):
            self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


class BootstrapProcess:
    """`node bootstrap.mjs` pointed at a FakeRuntimeApi."""

    def __init__(self, node: str, api: FakeRuntimeApi, task_root: Path, handler: str, log_path: Path,
                 env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        full_env = base_env(AWS_LAMBDA_RUNTIME_API=api.address, _HANDLER=handler, LAMBDA_TASK_ROOT=str(task_root))
        full_env.update(env or {})
        full_env = {k: v for k, v in full_env.items() if v is not None}
        self.proc = subprocess.Popen(
            [node, str(BOOTSTRAP)],
            cwd=task_root,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
        )

    def output(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()
