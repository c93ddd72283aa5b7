"""A counting, delaying HTTP proxy in front of an S3 endpoint (moto's server in tests).

memo's remote store is as fast as the number of round trips it makes: on a real bucket each
costs tens of milliseconds, on moto at 127.0.0.1 almost nothing. ``S3Proxy`` makes both
visible. Pointed at an endpoint, it forwards every request unchanged (method, path, query,
headers, body) and relays the response, after sleeping ``latency`` seconds, as a distant
endpoint would; it counts the requests by kind (``GET``, ``PUT``, ``HEAD``, ``DELETE``,
``POST``, ``LIST``), so tests can assert how many an operation makes and benchmarks can show
what they cost at a given latency::

    with S3Proxy(endpoint, latency=0.02) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        ...
        proxy.counts()  # Counter({'GET': 1})

Bodies stream through in chunks (a 100 MB upload, multipart or not, is never held whole);
client connections are kept alive (HTTP/1.1), so s3fs's connection pool works as against a
real endpoint, and each is served by its own thread.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import socket
import threading
import time
import urllib.parse
from types import TracebackType
from typing import NamedTuple

__all__ = ["Request", "S3Proxy", "label_of"]

_CHUNK = 1 << 20
# Headers about one connection, not the request: never forwarded (RFC 9110 section 7.6.1).
# Transfer-Encoding is redone by whoever sends the body on; Expect is answered by this
# proxy's own server (a "100 Continue" before the body is read), so moto never waits for it.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Query parameters of a GET that lists a bucket (ListObjectsV2 and ListObjects).
_LISTING = ("list-type", "prefix", "delimiter", "continuation-token", "start-after", "marker")


class Request(NamedTuple):
    """One forwarded request: its kind (as counted), method, path and query, the response's
    status (0 if it failed on the way), the request body's bytes and the response body's
    (its Content-Length; -1 when chunked, so unknown when counted)."""

    label: str
    method: str
    target: str
    status: int
    uploaded: int
    downloaded: int


def label_of(method: str, target: str) -> str:
    """The kind a request is counted as: its method, except that a GET of a bucket listing
    (a query with ``list-type=``, ``prefix=``, ...) is ``LIST``."""
    method = method.upper()
    if method == "GET":
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query, keep_blank_values=True)
        if any(name in query for name in _LISTING):
            return "LIST"
    return method


class _Server(http.server.ThreadingHTTPServer):
    # Handler threads must not keep the process (or ``close``) waiting on idle keep-alive
    # connections that s3fs's pool holds open.
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: S3Proxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1: connections stay open between requests, as s3fs's pool expects.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle's algorithm the second waits for
    # the peer's delayed ACK (40 ms on Linux), a latency of the proxy's own.
    disable_nagle_algorithm = True
    server: _Server
    _uploaded = 0  # the current request's body bytes, so far

    def log_message(self, format: str, *args: object) -> None:
        """Silent: one line per request would drown a test's output."""

    def _forward(self) -> None:
        proxy = self.server.proxy
        if proxy.latency > 0:
            time.sleep(proxy.latency)
        # A new upstream connection per request: a stale kept-alive one could fail after part
        # of a streamed body was sent, and such a request cannot be replayed. On 127.0.0.1 a
        # connection costs microseconds; the client side, the one being measured, stays alive.
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port)
        self._uploaded = 0
        recorded = False
        try:
            upstream.connect()
            # (As for the client side: the body is sent after the headers, in another write.)
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            response = self._send(upstream)
            # Counted before the client has the response, so a count read right after the
            # operation returns includes it.
            recorded = True
            length = response.getheader("Content-Length")
            self._record(response.status, -1 if length is None else int(length))
            self._reply(response)
        finally:
            upstream.close()
            if not recorded:  # (failed on the way: still a request the client made)
                self._record(0, 0)

    def _record(self, status: int, downloaded: int) -> None:
        if self.command == "HEAD" or status in (204, 304):
            downloaded = 0  # (a HEAD's Content-Length is the object's, not a body sent)
        request = Request(
            label_of(self.command, self.path),
            self.command,
            self.path,
            status,
            self._uploaded,
            downloaded,
        )
        self.server.proxy._record(request)

    def _send(self, upstream: http.client.HTTPConnection) -> http.client.HTTPResponse:
        """The request, headers and body, to ``upstream``; its response (headers read)."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                upstream.putheader(name, value)
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders()
        if chunked:
            self._copy_chunked(upstream)
        else:
            self._copy_body(upstream, length)
        return upstream.getresponse()

    def _reply(self, response: http.client.HTTPResponse) -> None:
        """The upstream response, status, headers and body, to the client."""
        self.send_response_only(response.status, response.reason)
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        out_chunked = False
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if has_body and response.getheader("Content-Length") is None:
            # A body of unknown length (chunked upstream): chunked to the client too, so
            # the connection can stay open.
            self.send_header("Transfer-Encoding", "chunked")
            out_chunked = True
        self.end_headers()
        if has_body:
            while chunk := response.read(_CHUNK):
                if out_chunked:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
            if out_chunked:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _copy_body(self, upstream: http.client.HTTPConnection, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, _CHUNK))
            if not chunk:
                raise ConnectionError("the client closed the connection mid-body")
            upstream.send(chunk)
            self._uploaded += len(chunk)
            length -= len(chunk)

    def _copy_chunked(self, upstream: http.client.HTTPConnection) -> None:
        # Chunk by chunk, as received (with any trailers), so nothing is held whole.
        while True:
            line = self.rfile.readline(65537)
            upstream.send(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            self._uploaded += size
            remaining = size + 2  # the chunk and its CRLF
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, _CHUNK))
                if not chunk:
                    raise ConnectionError("the client closed the connection mid-body")
                upstream.send(chunk)
                remaining -= len(chunk)
        while True:  # trailers, up to the empty line
            line = self.rfile.readline(65537)
            upstream.send(line)
            if line in (b"\r\n", b"\n", b""):
                break

    # http.server dispatches on do_<METHOD>: every method is forwarded the same way.
    do_GET = _forward  # noqa: N815
    do_PUT = _forward  # noqa: N815
    do_POST = _forward  # noqa: N815
    do_HEAD = _forward  # noqa: N815
    do_DELETE = _forward  # noqa: N815
    do_PATCH = _forward  # noqa: N815
    do_OPTIONS = _forward  # noqa: N815


class S3Proxy:
    """A forwarding proxy on 127.0.0.1 (a free port) in front of ``upstream`` (an
    ``http://host:port`` endpoint), sleeping ``latency`` seconds before each request and
    counting requests by kind. Started on creation; ``close()`` (or ``with``) stops it."""

    def __init__(self, upstream: str, latency: float = 0.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http://host:port URL, not {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port or 80
        self.latency = latency
        """Seconds slept before forwarding each request; may be changed at any time."""
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._log: list[Request] = []
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy's endpoint URL (``http://127.0.0.1:<port>``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _record(self, request: Request) -> None:
        with self._lock:
            self._counts[request.label] += 1
            self._log.append(request)

    def counts(self) -> collections.Counter[str]:
        """The requests forwarded since the last ``reset()``, by kind (a copy)."""
        with self._lock:
            return collections.Counter(self._counts)

    def requests(self) -> list[Request]:
        """The requests forwarded since the last ``reset()``, in the order they completed."""
        with self._lock:
            return list(self._log)

    def transferred(self) -> tuple[int, int]:
        """Body bytes uploaded and downloaded since the last ``reset()`` (chunked responses,
        of unknown length, are not counted)."""
        with self._lock:
            up = sum(request.uploaded for request in self._log)
            down = sum(max(request.downloaded, 0) for request in self._log)
            return up, down

    def total(self) -> int:
        """How many requests were forwarded since the last ``reset()``."""
        with self._lock:
            return len(self._log)

    def reset(self) -> collections.Counter[str]:
        """Start counting afresh; returns the counts until now."""
        with self._lock:
            counts, self._counts = self._counts, collections.Counter()
            self._log = []
            return counts

    def close(self) -> None:
        """Stop serving (open client connections are dropped with their threads)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> S3Proxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
