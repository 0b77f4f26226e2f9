"""Shared helpers for the Kappa integration tests.

Everything here drives a real `kappa server` process over HTTP: starting and stopping it,
building boto3 clients against it, building deployment packages, sending raw (signed) HTTP
requests, and checking the AWS error wire format.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "kappa"

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
ACCESS_KEY = "test"
SECRET_KEY = "test"

ZIPPED_LIMIT = 52_428_800
UNZIPPED_LIMIT = 262_144_000

SUPPORTED_RUNTIMES = [
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "provided",
    "provided.al2",
    "provided.al2023",
]

PRECONDITION_MESSAGE = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)
UNZIP_MESSAGE = "Could not unzip uploaded file. Please check your file, then try to upload again."
ENV_TOO_LARGE_PREFIX = (
    "Lambda was unable to configure your environment variables because the environment "
    "variables you have provided exceeded the 4KB limit."
)

LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Which body key each error type uses for its message (per the contract).
UPPER_MESSAGE_ERRORS = {"ResourceNotFoundException", "ServiceException"}
LOWER_MESSAGE_ERRORS = {
    "InvalidParameterValueException",
    "ResourceConflictException",
    "TooManyRequestsException",
    "RequestEntityTooLargeException",
}


# --------------------------------------------------------------------------------------------
# Polling


def wait_until(timeout: float, cond: Callable[[], Any], interval: float = 0.05, desc: str = "condition"):
    """Poll `cond` until it returns a truthy value (which is returned) or `timeout` elapses."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {desc}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Server process


def kappa_bin() -> Path:
    return Path(os.environ.get("KAPPA_BIN", str(DEFAULT_BIN)))


class ServerStartError(RuntimeError):
    pass


class KappaServer:
    """One `kappa server` process.

    By default it is started as `kappa server --listen 127.0.0.1:PORT --data-dir DIR`. Pass
    `args` to replace the arguments after `server` entirely (then `port` must still be the port
    the server will listen on, so /health can be polled).
    """

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        port: int | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        pass_fds: tuple[int, ...] = (),
    ):
        self.data_dir = Path(data_dir)
        # Descriptors the server inherits, as from a launcher that leaves some open.
        self.pass_fds = pass_fds
        self.log_dir = Path(log_dir)
        self.port = port
        self.custom_args = args
        self.extra_env = env or {}
        self.region = region
        self.account_id = account_id
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.custom_args is not None:
            return [str(kappa_bin()), "server", *self.custom_args]
        return [
            str(kappa_bin()),
            "server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
        ]

    def spawn(self) -> subprocess.Popen:
        """Start the process without waiting for it to become healthy."""
        binary = kappa_bin()
        if not binary.exists():
            raise ServerStartError(
                f"kappa binary not found at {binary}; run `cargo build` in {REPO_ROOT} or set KAPPA_BIN"
            )
        if self.port is None:
            self.port = free_port()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"kappa-{self.port}-{self.starts}-{uuid.uuid4().hex[:6]}.log"
        env = dict(os.environ)
        # The server must not pick up configuration from the environment of the test runner.
        for key in ("KAPPA_LISTEN", "KAPPA_DATA_DIR", "KAPPA_REGION", "KAPPA_ACCOUNT_ID"):
            env.pop(key, None)
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                pass_fds=self.pass_fds,
            )
        finally:
            log.close()
        return self.proc

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return False

    def start(self, timeout: float = 30.0) -> "KappaServer":
        """Spawn and wait for GET /health == 200. Retries on a port race."""
        for attempt in range(3):
            self.spawn()

            def ready_or_dead():
                if self.proc.poll() is not None:
                    return "dead"
                return "ready" if self.healthy() else None

            state = wait_until(timeout, ready_or_dead, interval=0.05, desc=f"kappa on port {self.port} to be healthy")
            if state == "ready":
                return self
            log = self.log_text()
            if self.custom_args is None and re.search(r"address already in use|os error 98", log, re.I) and attempt < 2:
                self.port = free_port()
                continue
            raise ServerStartError(
                f"kappa exited with code {self.proc.returncode} during startup; log:\n{log[-4000:]}"
            )
        raise ServerStartError("could not start kappa")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send `sig` and wait for exit; SIGKILL if it does not exit in time. Returns exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL the server (simulated crash) and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=15)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    # -- clients and helpers --------------------------------------------------------------

    def client(self, validate: bool = True, read_timeout: float = 60.0, connect_timeout: float = 5.0):
        return make_client(self.url, region=self.region, validate=validate, read_timeout=read_timeout,
                           connect_timeout=connect_timeout)

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def blob_file_count(self) -> int:
        return count_files(self.data_dir / "blobs")

    def raw(self, method: str, path: str, body: bytes | str = b"", headers: dict | None = None, sign: bool = True):
        return raw_request(self.url, method, path, body=body, headers=headers, sign=sign, region=self.region)


def count_files(directory: Path) -> int:
    if not directory.exists():
        return 0
    return sum(1 for p in directory.rglob("*") if p.is_file() or p.is_symlink())


# --------------------------------------------------------------------------------------------
# boto3 clients, with a recorder of the last raw HTTP response


class ResponseRecorder:
    """Keeps the raw status/headers/body of the last HTTP response a client received."""

    def __init__(self):
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body: bytes = b""

    def __call__(self, http_response=None, model=None, **kwargs):
        if http_response is None:
            return
        self.status = http_response.status_code
        self.headers = {k.lower(): v for k, v in http_response.headers.items()}
        if http_response.status_code < 300 and model is not None and model.has_streaming_output:
            # A successful streaming body (Invoke's Payload) belongs to the caller: reading it
            # here would leave the caller's StreamingBody empty.
            self.body = b""
            return
        self.body = http_response.content or b""


def make_client(endpoint_url: str, region: str = REGION, validate: bool = True, read_timeout: float = 60.0,
                connect_timeout: float = 5.0):
    config = Config(
        parameter_validation=validate,
        retries={"max_attempts": 0},
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
    )
    client = boto3.client(
        "lambda",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    )
    recorder = ResponseRecorder()
    client.meta.events.register("after-call.lambda", recorder)
    client.kappa_recorder = recorder
    return client


# --------------------------------------------------------------------------------------------
# Error checks


@dataclasses.dataclass
class ApiError:
    status: int
    code: str
    message: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    exception: Exception | None = None

    def __str__(self):
        return f"HTTP {self.status} {self.code}: {self.message!r} body={self.raw_body[:500]!r}"


def check_error_wire_format(status: int, headers: dict[str, str], raw_body: bytes, expected_code: str | None = None):
    """Assert the AWS rest-json error wire format; return (code, message, parsed body)."""
    headers = {k.lower(): v for k, v in headers.items()}
    assert "x-amzn-errortype" in headers, f"no X-Amzn-ErrorType header on HTTP {status}: headers={headers} body={raw_body[:500]!r}"
    header_code = headers["x-amzn-errortype"].split(":")[0]
    if expected_code is not None:
        assert header_code == expected_code, f"X-Amzn-ErrorType {headers['x-amzn-errortype']!r} != {expected_code!r}; body={raw_body[:500]!r}"
    try:
        body = json.loads(raw_body)
    except ValueError as exc:
        raise AssertionError(f"error body is not JSON (HTTP {status} {header_code}): {raw_body[:500]!r}") from exc
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    if status < 500:
        assert body.get("Type") == "User", f"error body Type should be 'User' for HTTP {status}: {body!r}"
    assert "message" in body or "Message" in body, f"error body has no message/Message: {body!r}"
    if header_code in UPPER_MESSAGE_ERRORS:
        assert "Message" in body, f"{header_code} must carry 'Message' (capital M): {body!r}"
    if header_code in LOWER_MESSAGE_ERRORS:
        assert "message" in body, f"{header_code} must carry 'message' (lower-case m): {body!r}"
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str), f"message is not a string: {body!r}"
    return header_code, message, body


def api_error(client, call: Callable[[], Any], status: int, code: str) -> ApiError:
    """Run a boto3 call that must fail; check status, code, wire format and boto3's mapping."""
    try:
        result = call()
    except ClientError as exc:
        rec = client.kappa_recorder
        err = exc.response.get("Error", {})
        http_status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        info = ApiError(
            status=http_status,
            code=err.get("Code"),
            message=err.get("Message", ""),
            headers=dict(rec.headers),
            body=None,
            raw_body=rec.body,
            exception=exc,
        )
        assert (info.status, info.code) == (status, code), f"expected HTTP {status} {code}, got {info}"
        _, message, body = check_error_wire_format(rec.status, rec.headers, rec.body, code)
        info.body = body
        assert info.message == message, f"boto3 parsed message {info.message!r} but body says {message!r}"
        modeled = getattr(client.exceptions, code, None)
        if modeled is not None:
            assert isinstance(exc, modeled), f"boto3 did not map the error to client.exceptions.{code}: {type(exc)}"
        return info
    raise AssertionError(f"expected HTTP {status} {code}, but the call succeeded: {strip_meta(result)!r}")


def strip_meta(response: Any) -> Any:
    if isinstance(response, dict):
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}
    return response


# --------------------------------------------------------------------------------------------
# Raw HTTP


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def raw_request(base_url: str, method: str, path: str, body: bytes | str = b"", headers: dict | None = None,
                sign: bool = True, region: str = REGION, timeout: float = 60.0) -> RawResponse:
    if isinstance(body, str):
        body = body.encode()
    parsed = urllib.parse.urlsplit(base_url)
    hdrs = dict(headers or {})
    if sign:
        req = AWSRequest(method=method, url=base_url + path, data=body, headers=hdrs)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", region).add_auth(req)
        hdrs = dict(req.headers.items())
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request(method, path, body=body if (body or method in ("POST", "PUT", "PATCH")) else None, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def http_get_bytes(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200, f"GET {url} -> {resp.status}"
        return resp.read()


# --------------------------------------------------------------------------------------------
# Deployment packages


HANDLER_SOURCE = b"def handler(event, context):\n    return event\n"


@dataclasses.dataclass
class Symlink:
    name: str
    target: str


def build_zip(entries: dict[str, bytes] | Iterable, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Build a zip in memory.

    `entries` is a dict name -> bytes, or an iterable of (name, bytes) pairs and Symlink objects.
    Names are written verbatim (no sanitising), so '../evil' and '/abs/path' survive.
    """
    items = entries.items() if isinstance(entries, dict) else entries
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for item in items:
            if isinstance(item, Symlink):
                info = zipfile.ZipInfo(item.name, date_time=(2024, 1, 1, 0, 0, 0))
                info.create_system = 3  # Unix, so external_attr carries the mode
                info.external_attr = 0o120777 << 16  # S_IFLNK | 0777
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, item.target.encode())
            else:
                name, data = item
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = 0o100644 << 16
                info.compress_type = compression
                zf.writestr(info, data)
    return buf.getvalue()


def handler_zip(extra: bytes = b"") -> bytes:
    """A small valid python package; `extra` makes its bytes (and CodeSha256) unique."""
    return build_zip({"app.py": HANDLER_SOURCE + (b"# " + extra + b"\n" if extra else b"")})


def unique_zip() -> bytes:
    return handler_zip(uuid.uuid4().hex.encode())


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def write_stored_zip_of_size(path: Path, total_size: int, random_data: bytes) -> None:
    """Write a zip of exactly `total_size` bytes: app.py plus one stored (uncompressed) random entry."""

    def build(n: int) -> int:
        with zipfile.ZipFile(path, "w") as zf:
            info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, HANDLER_SOURCE)
            info = zipfile.ZipInfo("data.bin", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, random_data[:n])
        return path.stat().st_size

    n = total_size - 1024
    for _ in range(3):
        size = build(n)
        if size == total_size:
            return
        n += total_size - size
    raise AssertionError(f"could not build a zip of exactly {total_size} bytes (last {size})")


def write_zero_filled_zip(path: Path, unzipped_total: int) -> None:
    """Write a small deflated zip whose entries' uncompressed sizes add up to `unzipped_total`."""
    chunk = bytes(1 << 20)
    first = 100_000_000
    rest = unzipped_total - len(HANDLER_SOURCE) - first
    assert rest > 0
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o100644 << 16
        zf.writestr(info, HANDLER_SOURCE)
        for name, size in (("zeros/a.bin", first), ("zeros/b.bin", rest)):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            with zf.open(info, "w") as dest:
                left = size
                while left:
                    n = min(left, len(chunk))
                    dest.write(chunk[:n])
                    left -= n
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    assert total == unzipped_total, (total, unzipped_total)


# --------------------------------------------------------------------------------------------
# Function helpers


def safe_name(text: str, limit: int = 40) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9-_]", "-", text).strip("-_")[:limit]
    return cleaned or "fn"


def new_name(prefix: str = "fn") -> str:
    return f"{safe_name(prefix)}-{uuid.uuid4().hex[:8]}"


def create_params(name: str, zip_bytes: bytes | None = None, **overrides) -> dict:
    params = {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        # A unique package by default, so that a rejected create that wrongly stored its code
        # shows up as a new file in the content-addressed blob store.
        "Code": {"ZipFile": zip_bytes if zip_bytes is not None else unique_zip()},
    }
    params.update(overrides)
    return params


def create_function(client, name: str, zip_bytes: bytes | None = None, **overrides) -> dict:
    resp = client.create_function(**create_params(name, zip_bytes, **overrides))
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp["ResponseMetadata"]
    return strip_meta(resp)


def list_all_functions(client) -> list[dict]:
    out = []
    for page in client.get_paginator("list_functions").paginate():
        out.extend(page["Functions"])
    return out


def assert_absent(server: KappaServer, client, name: str, blobs_before: int | None = None,
                  check_get: bool = True) -> None:
    """After a rejected create: not gettable, not listed, no new blob files.

    `check_get=False` for names that are themselves invalid (GetFunction would fail validation)."""
    if check_get:
        err = api_error(client, lambda: client.get_function(FunctionName=name), 404, "ResourceNotFoundException")
        assert name in err.message
    listed = [f["FunctionName"] for f in list_all_functions(client)]
    assert name not in listed, f"rejected function {name} appears in ListFunctions"
    if blobs_before is not None:
        after = server.blob_file_count()
        assert after == blobs_before, f"rejected create left {after - blobs_before} new file(s) under {server.data_dir / 'blobs'}"


def assert_create_rejected(server: KappaServer, client, params: dict, status: int, code: str,
                           check_get: bool = True) -> ApiError:
    """CreateFunction must fail with (status, code) and leave nothing behind."""
    blobs_before = server.blob_file_count()
    err = api_error(client, lambda: client.create_function(**params), status, code)
    assert_absent(server, client, params["FunctionName"], blobs_before, check_get=check_get)
    return err


# --------------------------------------------------------------------------------------------
# Invoke: packages, a shell + curl custom runtime, results, logs


MAX_SYNC_PAYLOAD = 6_291_456  # largest synchronous Invoke request payload
MAX_RESPONSE_PAYLOAD = 6_291_556  # largest buffered function response
LOG_TAIL_BYTES = 4096

START_RE = re.compile(r"^START RequestId: (?P<id>[0-9a-f-]{36}) Version: (?P<version>\S+)$", re.M)
REPORT_RE = re.compile(
    r"^REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: (?P<duration>\d+\.\d{2}) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: (?P<memory>\d+) MB\t"
    r"Max Memory Used: (?P<used>\d+) MB\t(?:Init Duration: (?P<init>\d+\.\d{2}) ms\t)?(?P<rest>.*)$",
    re.M,
)
LOG_STREAM_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/\[\$LATEST\]([0-9a-f]{32})$")
TRACE_ID_RE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$")


def zip_package(files: dict[str, bytes | str], executables: Iterable[str] = ("bootstrap",)) -> bytes:
    """A deployment package; names in `executables` get mode 0755, the others 0644."""
    executables = set(executables)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o100755 if name in executables else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def add_tree_to_zip(zf: zipfile.ZipFile, root: Path, prefix: str) -> None:
    """Add every file under `root` as `prefix/<relative path>`, keeping the executable bit."""
    for path in sorted(root.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        info = zipfile.ZipInfo(f"{prefix}/{path.relative_to(root).as_posix()}", date_time=(2024, 1, 1, 0, 0, 0))
        info.create_system = 3
        info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, path.read_bytes())


# A Lambda custom runtime in POSIX sh + curl. `{init}` runs once per environment; `{handler}`
# runs per invocation with: $EVENT (file holding the payload), $HEADERS (file holding /next's
# raw response headers), $REQUEST_ID, $INVOCATIONS (a counter kept by the process), and the
# functions `header NAME`, `respond FILE`, `respond_text TEXT`, `fail JSON [ERROR-TYPE]`,
# `event_has TEXT`. The runtime's own scratch files live in /tmp/.kappa-rt. `{init}` and
# `{handler}` are the only placeholders (plain text replacement).
SHELL_RUNTIME = r"""#!/bin/sh
RUNTIME="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
WORK=/tmp/.kappa-rt
mkdir -p "$WORK" || exit 90
EVENT="$WORK/event"
HEADERS="$WORK/headers"
RESPONSE="$WORK/response"
INVOCATIONS=0
header() {
  grep -i "^$1:" "$HEADERS" | head -n 1 | cut -d: -f2- | sed 's/^ //' | tr -d '\r\n'
}
event_has() {
  grep -q -F -- "$1" "$EVENT"
}
respond() {
  curl -sS -o "$WORK/post-body" -w '%{http_code}' -X POST --data-binary @"$1" \
    "$RUNTIME/invocation/$REQUEST_ID/response" > "$WORK/post-status"
}
respond_text() {
  printf '%s' "$1" > "$RESPONSE"
  respond "$RESPONSE"
}
fail() {
  printf '%s' "$1" > "$WORK/error-doc"
  if [ -n "${2:-}" ]; then
    curl -sS -o "$WORK/post-body" -w '%{http_code}' -X POST -H "Lambda-Runtime-Function-Error-Type: $2" \
      --data-binary @"$WORK/error-doc" "$RUNTIME/invocation/$REQUEST_ID/error" > "$WORK/post-status"
  else
    curl -sS -o "$WORK/post-body" -w '%{http_code}' -X POST \
      --data-binary @"$WORK/error-doc" "$RUNTIME/invocation/$REQUEST_ID/error" > "$WORK/post-status"
  fi
}
{init}
while :; do
  curl -sS -D "$HEADERS" -o "$EVENT" "$RUNTIME/invocation/next" || exit 91
  REQUEST_ID=$(header Lambda-Runtime-Aws-Request-Id)
  INVOCATIONS=$((INVOCATIONS + 1))
{handler}
done
"""

# Handler: answer with the payload unchanged.
ECHO_HANDLER = 'respond "$EVENT"'


def shell_bootstrap(handler: str = ECHO_HANDLER, init: str = "") -> str:
    # The sandbox's PATH is Lambda's: /usr/local/bin:/usr/bin/:/bin:/opt/bin.
    if not any(os.access(f"{d}/curl", os.X_OK) for d in ("/usr/local/bin", "/usr/bin", "/bin")):
        raise AssertionError("the sh + curl test runtime needs curl in /usr/local/bin, /usr/bin or /bin")
    return SHELL_RUNTIME.replace("{init}", init).replace("{handler}", handler)


def create_custom_function(client, name: str, bootstrap: str | None = None, files: dict | None = None,
                           executables: Iterable[str] = ("bootstrap",), **overrides) -> dict:
    """A provided.al2023 function whose package holds `bootstrap` (if given) and `files`."""
    contents = dict(files or {})
    if bootstrap is not None:
        contents["bootstrap"] = bootstrap
    params = {"Runtime": "provided.al2023", "Handler": "function.handler", "Timeout": 30}
    params.update(overrides)
    return create_function(client, name, zip_package(contents, executables), **params)


@dataclasses.dataclass
class InvokeResult:
    status: int
    payload: bytes
    function_error: str | None
    log: str | None  # decoded LogResult
    executed_version: str | None
    headers: dict[str, str]
    elapsed: float

    def json(self):
        try:
            return json.loads(self.payload)
        except ValueError as exc:
            raise AssertionError(f"invoke payload is not JSON: {self.payload[:1000]!r}") from exc

    @property
    def request_id(self) -> str:
        """The request id of the invocation, from the START line of the log tail."""
        assert self.log is not None, "invoke without LogType=Tail"
        starts = START_RE.findall(self.log)
        assert starts, f"no START line in LogResult:\n{self.log}"
        return starts[-1][0]

    def report(self) -> dict:
        assert self.log is not None, "invoke without LogType=Tail"
        reports = [m.groupdict() for m in REPORT_RE.finditer(self.log)]
        assert reports, f"no REPORT line (or a malformed one) in LogResult:\n{self.log!r}"
        return reports[-1]

    @property
    def cold(self) -> bool:
        return self.report()["init"] is not None

    def describe(self) -> str:
        return (f"HTTP {self.status} FunctionError={self.function_error!r} payload={self.payload[:2000]!r}\n"
                f"log:\n{self.log}")


def invoke(client, name: str, payload: bytes | str | dict | list | None = None, tail: bool = True,
           **kwargs) -> InvokeResult:
    """boto3 Invoke (RequestResponse unless told otherwise), read fully."""
    params = {"FunctionName": name}
    if payload is not None:
        params["Payload"] = json.dumps(payload).encode() if isinstance(payload, (dict, list)) else payload
    if tail:
        params["LogType"] = "Tail"
    params.update(kwargs)
    started = time.monotonic()
    resp = client.invoke(**params)
    body = resp["Payload"].read()
    elapsed = time.monotonic() - started
    log = resp.get("LogResult")
    return InvokeResult(
        status=resp["StatusCode"],
        payload=body,
        function_error=resp.get("FunctionError"),
        log=base64.b64decode(log).decode("utf-8", errors="replace") if log is not None else None,
        executed_version=resp.get("ExecutedVersion"),
        headers={k.lower(): v for k, v in resp["ResponseMetadata"]["HTTPHeaders"].items()},
        elapsed=elapsed,
    )


def invoke_ok(client, name: str, payload=None, **kwargs) -> InvokeResult:
    """Invoke and require HTTP 200 without a function error."""
    result = invoke(client, name, payload, **kwargs)
    assert result.status == 200 and result.function_error is None, result.describe()
    return result


def processes_with(token: str) -> list[int]:
    """Pids of the host's processes whose command line contains `token` (sandboxed runtimes share
    the host's pid namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


def logs_client(endpoint_url: str, region: str = REGION):
    """boto3 CloudWatch Logs client for the server's endpoint."""
    client = boto3.client(
        "logs",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5),
    )
    recorder = ResponseRecorder()
    client.meta.events.register("after-call.logs", recorder)
    client.kappa_recorder = recorder
    return client


def logs_api_error(client, call: Callable[[], Any], code: str, status: int = 400) -> ApiError:
    """Run a CloudWatch Logs call that must fail; check the JSON 1.1 error wire format
    ({"__type": code, "message": ...}) and boto3's mapping."""
    try:
        result = call()
    except ClientError as exc:
        rec = client.kappa_recorder
        err = exc.response.get("Error", {})
        info = ApiError(
            status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            code=err.get("Code"),
            message=err.get("Message", ""),
            headers=dict(rec.headers),
            body=None,
            raw_body=rec.body,
            exception=exc,
        )
        assert (info.status, info.code) == (status, code), f"expected HTTP {status} {code}, got {info}"
        try:
            info.body = json.loads(rec.body)
        except ValueError as parse_error:
            raise AssertionError(f"error body is not JSON: {rec.body[:500]!r}") from parse_error
        assert info.body.get("__type", "").split("#")[-1] == code, info
        assert isinstance(info.body.get("message"), str) and info.body["message"], info
        modeled = getattr(client.exceptions, code, None)
        if modeled is not None:
            assert isinstance(exc, modeled), f"boto3 did not map the error to client.exceptions.{code}: {type(exc)}"
        return info
    raise AssertionError(f"expected HTTP {status} {code}, but the call succeeded: {strip_meta(result)!r}")


def aws_cli_executable() -> str:
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "aws"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("aws")
    if not found:
        raise AssertionError("the `aws` CLI is not installed (pip install -r tests/integration/requirements.txt)")
    return found


def aws_cli(endpoint_url: str, home: Path, *args: str, check: bool = True, timeout: float = 120):
    """Run `aws <args> --endpoint-url URL --output json` with a clean, isolated configuration.

    With check=True, require exit 0 and return the parsed stdout (None if empty); otherwise
    return the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
        HOME=str(home),
    )
    cmd = [aws_cli_executable(), *args, "--endpoint-url", endpoint_url, "--output", "json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if not check:
        return proc
    assert proc.returncode == 0, f"{' '.join(args)} -> exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


# --------------------------------------------------------------------------------------------
# Sandbox: the server's cgroups, seen from the host


CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "kappa"
CGROUP_V1_CONTROLLERS = ("memory", "pids", "cpu")


def cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_instance_name(data_dir: Path) -> str:
    """The name of a server's cgroup: `server-<FNV-1a 64 of the canonical data dir>`, stable
    across restarts on the same data dir (crates/kappa/src/server.rs, open_cgroups)."""
    value = 0xCBF29CE484222325
    for byte in os.fsencode(os.path.realpath(data_dir)):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"server-{value:016x}"


def cgroup_dirs(instance: str, env_id: str | None = None) -> list[Path]:
    """Every directory of a server's group (or of one of its environments' groups): one per
    controller on cgroup v1, one on v2. Only those that exist are returned."""
    relative = Path(CGROUP_PARENT) / instance
    if env_id is not None:
        relative = relative / env_id
    if cgroup_v2():
        candidates = [CGROUP_ROOT / relative]
    else:
        candidates = [CGROUP_ROOT / c / relative for c in CGROUP_V1_CONTROLLERS]
    return [p for p in candidates if p.is_dir()]


def cgroup_env_ids(instance: str) -> set[str]:
    """The environment groups currently under a server's group (in any controller)."""
    found = set()
    for directory in cgroup_dirs(instance):
        found.update(p.name for p in directory.iterdir() if p.is_dir())
    return found


def cgroup_procs(directory: Path) -> list[int]:
    """Pids in a cgroup directory ([] if it is gone)."""
    try:
        text = (directory / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(line) for line in text.split()]


def env_id_from_stream(stream: str) -> str:
    """The environment id: the suffix of AWS_LAMBDA_LOG_STREAM_NAME after `]`."""
    match = LOG_STREAM_RE.match(stream)
    assert match, f"log stream name {stream!r} does not look like Lambda's"
    return match.group(4)


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process, else None: with the
    pid it identifies a process even if the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def surviving(processes: dict[int, int | None]) -> list[int]:
    """Which of `processes` (pid -> start time from process_start_time) still run."""
    return [pid for pid, started in processes.items()
            if started is not None and process_start_time(pid) == started]
