"""A minimal, scriptable Runtime API (2018-06-01) server for runtime-client tests.

The RIE covers the ordinary paths; this server covers what the RIE cannot send
(trace ids, odd content types, malformed client context, missing headers) and
records every request a runtime makes, headers included.
"""

import http.server
import json
import queue
import threading
import time
import uuid


FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


class Recorded:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # dict with lower-cased names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Recorded({self.method} {self.path} {self.headers} {self.body[:200]!r})"


class FakeRuntimeApi:
    """Serves queued invocations on /next and records /response, /error, /init/error."""

    def __init__(self, response_status=202, close_after_post=False):
        self.events = queue.Queue()
        self.results = queue.Queue()
        self.requests = []
        self.connections = set()  # client (host, port) pairs seen
        self.response_status = response_status
        # Drop the connection after answering a POST, without announcing it (as a server
        # with an idle timeout on kept-alive connections does).
        self.close_after_post = close_after_post
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _record(self):
                rec = Recorded(self.command, self.path,
                               {k.lower(): v for k, v in self.headers.items()}, self._body())
                server.requests.append(rec)
                server.connections.add(self.client_address)
                return rec

            def _reply(self, status, body=b"", headers=(), chunked=False):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 7):
                        piece = body[start:start + 7]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_GET(self):
                rec = self._record()
                if rec.path != "/2018-06-01/runtime/invocation/next":
                    return self._reply(404)
                item = server.events.get()
                if item is None:  # ask the server to drop the connection
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                status, headers, body, chunked = item
                self._reply(status, body, headers, chunked)

            def do_POST(self):
                rec = self._record()
                if "/runtime/init/error" in rec.path or rec.path.endswith(("/response", "/error")):
                    self._reply(server.response_status, b'{"status":"OK"}',
                                [("Content-Type", "application/json")])
                    if server.close_after_post:
                        self.wfile.flush()
                        self.close_connection = True
                    server.results.put(rec)
                    return None
                return self._reply(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def push(self, body=b"{}", request_id=None, deadline_ms=None, headers=None,
             content_type="application/json", arn=FUNCTION_ARN, omit=(), chunked=False):
        """Queue one invocation; returns its request id.

        ``content_type=None`` or a name in ``omit`` leaves that header out; ``chunked``
        sends the body with chunked transfer encoding.
        """
        request_id = request_id or str(uuid.uuid4())
        if deadline_ms is None:
            deadline_ms = int(time.time() * 1000) + 30000
        h = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": arn,
        }
        if content_type is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        for name in omit:
            h.pop(name, None)
        if isinstance(body, str):
            body = body.encode()
        self.events.put((200, list(h.items()), body, chunked))
        return request_id

    def push_disconnect(self):
        """Make the next GET /next drop its connection instead of answering."""
        self.events.put(None)

    def next_result(self, timeout=10):
        return self.results.get(timeout=timeout)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
