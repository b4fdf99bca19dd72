"""A thin HTTP proxy on 127.0.0.1 in front of moto that answers the first N matching requests
as a throttled AWS service does (S3's `503 SlowDown`, Batch's `429 TooManyRequestsException` or
`400 ThrottlingException`), then forwards every request; the next M matching requests it can
forward and then lose the answer of (the connection closed without one, as a network failure
after the service acted does)."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

_S3_SLOWDOWN = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
#: The JSON error a throttled JSON API answers: code -> HTTP status.
JSON_THROTTLING = {"TooManyRequestsException": 429, "ThrottlingException": 400}


class Proxy:
    def __init__(self, upstream: str, throttle: int, path: str, code: str, lose: int = 0) -> None:
        self.upstream = upstream
        self.lose = lose
        self.path = path
        self.code = code
        self.lock = threading.Lock()
        self.throttle = throttle
        self.seen: list[str] = []  # the methods of the matching requests, throttled or not
        self.endpoint = ""

    def restart(self, throttle: int) -> None:
        with self.lock:
            self.throttle = throttle
            self.seen = []


def _handler(proxy: Proxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.1: a PUT's `Expect: 100-continue` gets its answer at once (with HTTP/1.0,
        # botocore waits a second for it before sending each body).
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if size == 0:
                        return data
                    data += chunk
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def _handle(self) -> None:
            body = self._body()
            throttled = lost = False
            if proxy.path in self.path:
                with proxy.lock:
                    proxy.seen.append(self.command)
                    throttled = len(proxy.seen) <= proxy.throttle
                    lost = not throttled and len(proxy.seen) <= proxy.throttle + proxy.lose
            if throttled:
                s3 = self.headers.get("Content-Type", "") != "application/json"
                message = f'{{"__type": "{proxy.code}", "message": "Rate exceeded"}}'
                payload = _S3_SLOWDOWN if s3 else message.encode()
                self.send_response(503 if s3 else JSON_THROTTLING[proxy.code])
                if not s3:
                    self.send_header("x-amzn-ErrorType", proxy.code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            skip = ("host", "transfer-encoding", "content-length", "expect")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            # urllib would call the body a form (and moto would read it as one): say what it is.
            headers.setdefault("Content-Type", "application/octet-stream")
            request = urllib.request.Request(
                proxy.upstream + self.path, data=body, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data, out = response.status, response.read(), response.headers
            except urllib.error.HTTPError as error:
                status, data, out = error.code, error.read(), error.headers
            if lost:  # the service acted; its answer never reaches the client
                self.close_connection = True
                return
            self.send_response(status)
            for name, value in out.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def throttling_proxy(
    upstream: str,
    *,
    throttle: int,
    path: str = "",
    code: str = "TooManyRequestsException",
    lose: int = 0,
) -> Iterator[Proxy]:
    """A proxy to `upstream` throttling the first `throttle` requests whose path contains
    `path` (every request when empty), JSON APIs with the error `code` (a key of
    `JSON_THROTTLING`), then forwarding the next `lose` of them and closing the connection
    without their answers; `.endpoint` is its URL."""
    proxy = Proxy(upstream, throttle, path, code, lose)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
