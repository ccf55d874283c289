"""A threaded HTTP/1.1 server for loopback that can be stopped without leaving threads behind.

http.server's ThreadingHTTPServer leaves keep-alive connections (boto3 and requests pool them)
blocked in recv() after shutdown. This one tracks its connections: on close it stops accepting,
lets requests in progress finish, and closes idle connections so every thread can be joined.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

# Not "onecopy...": Powertools puts a filter on the root handlers that drops every record whose
# logger name contains the service name ("onecopy").
LOGGER = "local_stack"
log = logging.getLogger(LOGGER)

# A connection idle this long is closed (S3 and API Gateway close idle ones too).
IDLE_TIMEOUT_SECONDS = 30
HOP_BY_HOP = frozenset(
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
    }
)


class RequestBodyError(Exception):
    """The client's body could not be read as framed (truncated, bad chunking, timeout)."""


class _Connection:
    __slots__ = ("busy", "sock", "thread")

    def __init__(self, sock: socket.socket, thread: threading.Thread) -> None:
        self.sock = sock
        self.thread = thread
        self.busy = False


class LoopbackServer(HTTPServer):
    """Serves each connection on its own thread; ``close()`` joins them all."""

    daemon_threads = True
    # socketserver's default backlog of 5 overflows when a burst of clients connect at once, and
    # the kernel then resets their connections.
    request_queue_size = 128

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self.name = name
        self.closing = False
        self._connections: dict[int, _Connection] = {}
        self._lock = threading.Lock()
        self._serve_thread: threading.Thread | None = None
        try:
            super().__init__(("127.0.0.1", port), handler)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on 127.0.0.1:{port} for the {name}: {exc.strerror}"
            ) from exc

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a sandbox's DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])

    @property
    def port(self) -> int:
        return self.server_port

    def start(self) -> None:
        self._serve_thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"{self.name}-accept",
            daemon=True,
        )
        self._serve_thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        # Responses go out as headers, then body: avoid Nagle + delayed-ACK stalls (~40 ms).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.name}-conn",
            daemon=True,
        )
        with self._lock:
            self._connections[id(request)] = _Connection(request, thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            pass  # the client went away, or close() cut an idle connection
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.pop(id(request), None)

    def set_busy(self, request: Any, busy: bool) -> None:
        with self._lock:
            connection = self._connections.get(id(request))
            if connection is not None:
                connection.busy = busy

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("%s: error while serving %s", self.name, client_address)

    def close(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, finish requests in progress, close idle connections, join threads."""
        self.closing = True
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join()
        self.server_close()
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            if not connection.busy:
                _cut(connection.sock)
        for connection in connections:
            connection.thread.join(grace_seconds)
            if connection.thread.is_alive():
                _cut(connection.sock)
                connection.thread.join(1.0)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Common request plumbing: keep-alive, idle timeout, request bodies, quiet logs."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    server: LoopbackServer

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.server.closing:
            self.close_connection = True

    def begin(self) -> None:
        """Call first in every do_*: marks the connection busy until the response is sent."""
        self.server.set_busy(self.request, True)

    def end(self) -> None:
        self.server.set_busy(self.request, False)

    def header_values(self) -> dict[str, list[str]]:
        """Lowercased header names to every value received, in order."""
        values: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            values.setdefault(name.lower(), []).append(value)
        return values

    def body_chunks(self, chunk_size: int = 1024 * 1024) -> Any:
        """Yield the request body as received: Content-Length or chunked transfer coding."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                yield from self._chunked(chunk_size)
                return
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(chunk_size, remaining))
                if not chunk:
                    raise RequestBodyError("request body shorter than its Content-Length")
                remaining -= len(chunk)
                yield chunk
        except (TimeoutError, ValueError) as exc:
            raise RequestBodyError(str(exc)) from exc

    def _chunked(self, chunk_size: int) -> Any:
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers carry nothing we forward
                return
            while size > 0:
                chunk = self.rfile.read(min(chunk_size, size))
                if not chunk:
                    raise RequestBodyError("chunked body ended early")
                size -= len(chunk)
                yield chunk
            self.rfile.readline(3)

    def send_plain(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool = False
    ) -> None:
        """Write a whole response; the body is left out for HEAD."""
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server.name, *args)
