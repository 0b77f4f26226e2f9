"""The Runtime API client: HTTP/1.1 over one persistent socket.

Deliberately not http.client: importing it pulls in the email and ssl packages (about
15 ms of every cold start) and its header parsing was the largest per-invoke cost. The
Runtime API is a loopback service with a fixed, tiny protocol surface, so a direct client
is short: requests with a Content-Length body, responses with a Content-Length or chunked
body, keep-alive, and one retry when the server has closed an idle connection.
"""

import re
import socket
import sys

API_PREFIX = "/2018-06-01/runtime"
USER_AGENT = "kappa-python/%d.%d.%d" % sys.version_info[:3]
_MAX_LINE = 65536
_SAFE_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*")


class RuntimeApiError(Exception):
    """The Runtime API could not be reached or refused a call; the runtime must exit."""


class _ClosedBeforeResponse(ConnectionError):
    """The server closed the connection without answering (typical of an idle keep-alive)."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict by lower-cased name; repeated headers joined by ", "
        self.body = body


class RuntimeApiClient:
    """Calls to the Runtime API at ``AWS_LAMBDA_RUNTIME_API`` (``host:port``)."""

    def __init__(self, address):
        if address.startswith("http://"):
            address = address[len("http://"):]
        host, _, port = address.rstrip("/").rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.host_header = ("Host: %s\r\nUser-Agent: %s\r\n" % (address, USER_AGENT)).encode()
        self.sock = None
        self.reader = None

    def _connect(self):
        # No timeout: GET /next is a long poll that may wait for hours.
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def _close(self):
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
        self.sock = self.reader = None

    def _request(self, method, path, body=None, headers=()):
        head = [b"%s %s HTTP/1.1\r\n" % (method, path.encode("ascii")), self.host_header]
        for name, value in headers:
            value = value.replace("\r", " ").replace("\n", " ")
            head.append(b"%s: %s\r\n" % (name, value.encode("utf-8")))
        if body is not None:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        if body:
            head.append(body)
        message = b"".join(head)

        for attempt in (0, 1):
            reused = self.sock is not None
            try:
                if not reused:
                    self._connect()
                self.sock.sendall(message)
                response, keep_alive = self._read_response(method)
            except (OSError, ValueError) as err:
                self._close()
                # The server may close an idle kept-alive connection: retry once, fresh.
                if reused and attempt == 0 and isinstance(err, ConnectionError):
                    continue
                raise RuntimeApiError("%s %s failed: %r" % (method.decode(), path, err)) from err
            if not keep_alive:
                self._close()
            return response
        raise AssertionError("unreachable")

    def _read_response(self, method):
        reader = self.reader
        while True:
            status_line = reader.readline(_MAX_LINE)
            if not status_line:
                raise _ClosedBeforeResponse("connection closed before a response")
            version, _, rest = status_line.partition(b" ")
            status = int(rest[:3])
            headers = {}
            while True:
                line = reader.readline(_MAX_LINE)
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise ConnectionResetError("connection closed inside the response headers")
                name, _, value = line.decode("iso-8859-1").partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = headers[name] + ", " + value if name in headers else value
            if status != 100:
                break
        connection = headers.get("connection", "").lower()
        keep_alive = version == b"HTTP/1.1" and "close" not in connection
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            length = int(headers["content-length"])
            body = reader.read(length)
            if len(body) != length:
                raise ConnectionResetError("connection closed inside the response body")
        elif status < 200 or status in (204, 304) or method == b"HEAD":
            body = b""
        else:
            body = reader.read()
            keep_alive = False
        return Response(status, headers, body), keep_alive

    def _read_chunked(self):
        reader = self.reader
        chunks = []
        while True:
            size_line = reader.readline(_MAX_LINE)
            if not size_line:
                raise ConnectionResetError("connection closed inside a chunked body")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                break
            chunk = reader.read(size)
            if len(chunk) != size:
                raise ConnectionResetError("connection closed inside a chunked body")
            chunks.append(chunk)
            reader.readline(_MAX_LINE)
        while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def next_invocation(self):
        """GET /invocation/next; the Response of a valid invocation."""
        response = self._request(b"GET", API_PREFIX + "/invocation/next")
        if response.status // 100 != 2:
            raise RuntimeApiError("failed to get next invocation: HTTP %d %r"
                                  % (response.status, response.body[:300]))
        if not response.headers.get("lambda-runtime-aws-request-id"):
            raise RuntimeApiError("next invocation has no Lambda-Runtime-Aws-Request-Id header")
        return response

    def post_response(self, request_id, payload, content_type):
        self._post("/invocation/%s/response" % _path_segment(request_id), payload,
                   [(b"Content-Type", content_type)], "invocation response")

    def post_error(self, request_id, error_document, xray_cause):
        headers = [(b"Content-Type", "application/json")]
        if xray_cause is not None:
            headers.append((b"Lambda-Runtime-Function-XRay-Error-Cause", xray_cause))
        self._post("/invocation/%s/error" % _path_segment(request_id), error_document, headers,
                   "invocation error")

    def post_init_error(self, error_document, error_type):
        headers = [(b"Content-Type", "application/json"),
                   (b"Lambda-Runtime-Function-Error-Type", error_type)]
        self._post("/init/error", error_document, headers, "init error")

    def _post(self, path, body, headers, what):
        response = self._request(b"POST", API_PREFIX + path, body, headers)
        if response.status // 100 != 2:
            raise RuntimeApiError("failed to post %s: HTTP %d %s" % (
                what, response.status, response.body[:300].decode("utf-8", "replace")))


def _path_segment(text):
    """Percent-encode anything outside the unreserved set (request ids are UUIDs)."""
    if _SAFE_PATH_SEGMENT.fullmatch(text):
        return text
    return "".join(char if _SAFE_PATH_SEGMENT.fullmatch(char) else
                   "".join("%%%02X" % byte for byte in char.encode("utf-8")) for char in text)
