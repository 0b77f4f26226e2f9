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
    ):
        self.data_dir = Path(data_dir)
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

    def __call__(self, http_response=None, **kwargs):
        if http_response is None:
            return
        self.status = http_response.status_code
        self.headers = {k.lower(): v for k, v in http_response.headers.items()}
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
