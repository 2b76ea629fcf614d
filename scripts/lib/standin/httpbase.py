"""HTTPS plumbing shared by the three endpoints: TLS server, request handler, counters, faults.

Each endpoint is a ``TlsServer`` (ThreadingHTTPServer, HTTP/1.1 keep-alive) whose TLS handshake
runs in the connection's own thread, so a slow or failing client never blocks the accept loop.
The endpoint logic is an ``App``: it gets a parsed ``Request`` and returns a ``Response``; the
handler around it counts requests, applies the hop's fault switch and writes the Date header
from the stand-in clock.
"""
from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Final, Protocol

__all__ = ["App", "FAULT_KINDS", "Fault", "Hop", "Request", "Response", "TlsServer", "canned_response", "require_sni"]

FAULT_KINDS: Final = frozenset({"throttle", "5xx", "error", "drop_before", "drop_after", "delay", "respond",
                                "tls_refuse"})
# Faults of the handshake, not of a request: "tls_refuse" has the next ``count`` connections
# verify the client certificate against the stand-in's CA strictly (see TlsServer).
HANDSHAKE_FAULT_KINDS: Final = frozenset({"tls_refuse"})

HANDSHAKE_TIMEOUT_S: Final = 10.0
# Idle keep-alive connections are closed after this long, as load balancers in front of AWS do
# (they use 60 s or more; shorter keeps test runs from accumulating idle threads).
IDLE_TIMEOUT_S: Final = 30.0
# Far above every AWS limit served here (Lambda's 6 MB), so oversize checks are the apps' own.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class Fault:
    kind: str
    params: dict[str, Any]


class Hop:
    """Per-endpoint request counter and fault switch; safe to use from any thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._count = 0
        self._connections = 0
        self._fault: Fault | None = None
        self._fault_left = 0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def connections(self) -> int:
        """Connections accepted (TCP), whatever became of their handshake."""
        with self._lock:
            return self._connections

    def reset_count(self) -> None:
        with self._lock:
            self._count = 0
            self._connections = 0

    def set_fault(self, kind: str, count: int, params: dict[str, Any]) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("fault count must be at least 1")
        with self._lock:
            self._fault, self._fault_left = Fault(kind, dict(params)), count

    def clear_fault(self) -> None:
        with self._lock:
            self._fault, self._fault_left = None, 0

    def accept(self) -> Fault | None:
        """Count one accepted connection and take the handshake fault that applies to it, if any."""
        with self._lock:
            self._connections += 1
            fault = self._fault
            if fault is None or fault.kind not in HANDSHAKE_FAULT_KINDS:
                return None
            self._fault_left -= 1
            if self._fault_left == 0:
                self._fault = None
            return fault

    def arrive(self) -> Fault | None:
        """Count one request and take the fault that applies to it, if any."""
        with self._lock:
            self._count += 1
            fault = self._fault
            if fault is not None and fault.kind in HANDSHAKE_FAULT_KINDS:
                return None
            if fault is not None:
                self._fault_left -= 1
                if self._fault_left == 0:
                    self._fault = None
            return fault


@dataclass
class Request:
    method: str
    wire_path: str                      # path as sent, still percent-encoded
    raw_query: str
    headers: list[tuple[str, str]]      # in wire order, original case
    body: bytes
    request_id: str
    received_at: datetime               # stand-in clock when the headers were read
    peer_cert_der: bytes | None = None  # TLS client certificate, when one was presented

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), None when absent."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def canned_response(fault: Fault) -> Response:
    """The "respond" fault: exactly the status, headers and body the test asked for."""
    headers = [(str(name), str(value)) for name, value in dict(fault.params.get("headers") or {}).items()]
    body = fault.params.get("body", b"")
    return Response(int(fault.params.get("status", 200)), body.encode() if isinstance(body, str) else bytes(body),
                    headers)


class App(Protocol):
    def handle(self, request: Request) -> Response: ...

    def fault_response(self, fault: Fault, request: Request) -> Response: ...


class TlsServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on 127.0.0.1 speaking TLS, serving one ``App``.

    Connections stay open between requests, as AWS's endpoints keep them (HTTP/1.1 persistent
    connections, RFC 9112 section 9.3): no "Connection: close" unless the client asks for it or
    the request cannot be framed, and an idle connection is closed after IDLE_TIMEOUT_S.
    ``strict_context``, when given, is the context of the connections that a "tls_refuse" fault
    applies to."""

    daemon_threads = True
    block_on_close = False   # stop() must not wait for idle keep-alive connections
    # Benchmarks open many connections at once; the default backlog of 5 would turn a burst
    # into SYN retransmits (a 1 s stall each).
    request_queue_size = 128

    def __init__(self, port: int, context: ssl.SSLContext, app: App, hop: Hop, clock: Callable[[], datetime],
                 errors: list[str], log: bool = False, strict_context: ssl.SSLContext | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.context = context
        self.idle_timeout_s = idle_timeout_s
        self.strict_context = strict_context
        self.errors = errors
        self.app = app
        self.hop = hop
        self.clock = clock
        self.log = log
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fault = self.hop.accept()
        context = self.strict_context if fault is not None and self.strict_context is not None else self.context
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(tls)
        return tls, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open connection (keep-alive ones included), as a restarted server would."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and clients that hang up are part of the job, not server errors.
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError, socket.timeout)):
            return
        # A bug in the stand-in: the client only sees a cut connection, which a test could take
        # for an intended fault, so keep the traceback where tests can assert on it.
        self.errors.append(f"[{self.hop.name}] {traceback.format_exc()}")
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: TlsServer

    def setup(self) -> None:
        self.request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            self.request.do_handshake()
        except ssl.SSLError:
            _close_after_alert(self.request)
            raise
        self.timeout = self.server.idle_timeout_s   # an idle keep-alive connection ends after this
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log:
            sys.stderr.write(f"[{self.server.hop.name}] {format % args}\n")

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the stand-in clock: clients correct their skew from it.
        return format_datetime(self.server.clock(), usegmt=True)

    def send_response(self, code: int, message: str | None = None) -> None:
        # As BaseHTTPRequestHandler's, minus the "Server: BaseHTTP/..." header AWS does not send.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _dispatch(self) -> None:
        fault = self.server.hop.arrive()
        if fault is not None and fault.kind == "drop_before":
            self._drop()
            return
        body = self._read_body()
        if body is None:
            return
        request = Request(
            method=self.command,
            wire_path=self.path.split("?", 1)[0],
            raw_query=self.path.split("?", 1)[1] if "?" in self.path else "",
            headers=list(self.headers.items()),
            body=body,
            request_id=str(uuid.uuid4()),
            received_at=self.server.clock(),
            peer_cert_der=self.request.getpeercert(binary_form=True),
        )
        if fault is not None and fault.kind == "error" and fault.params.get("after_run"):
            # The request is processed (the function runs and is recorded), then its answer is
            # replaced by the error: what a failure during or after the run looks like.
            self.server.app.handle(request)
            self._send(self.server.app.fault_response(fault, request))
            return
        if fault is not None and fault.kind in ("throttle", "5xx", "error", "respond"):
            self._send(self.server.app.fault_response(fault, request))
            return
        response = self.server.app.handle(request)
        if fault is not None and fault.kind == "drop_after":
            self._drop()
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(float(fault.params.get("seconds", 1.0)))
        self._send(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # The body cannot be framed, so the connection cannot carry another request: say so.
            self._send(Response(400, b'{"message":"Bad Content-Length"}',
                                [("Content-Type", "application/json"), ("Connection", "close")]))
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass   # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        names = set()
        for name, value in response.headers:
            self.send_header(name, value)
            names.add(name.lower())
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        # Head and body in one write: two small writes would meet Nagle's algorithm and the
        # client's delayed ACK, adding ~40 ms to every answer.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def _drop(self) -> None:
        """Close the connection without a word, as a crashed server or a cut network would."""
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _close_after_alert(connection: ssl.SSLSocket) -> None:
    """After a handshake this side refused (its alert is sent): end the connection without a reset.

    With TLS 1.3 the client's handshake is over before the server has checked its certificate,
    so the client may already have sent its request; closing with those bytes unread would make
    the kernel answer with a reset, which can destroy the alert before the client reads it (the
    client then sees a bare EOF instead of, say, unknown_ca). So: no more writes, read (at the TCP
    level, bounded) what the client still sends until it closes, then close."""
    try:
        socket.socket.shutdown(connection, socket.SHUT_WR)
        connection.settimeout(1.0)
        for _ in range(64):
            if not socket.socket.recv(connection, 65536):
                break
    except OSError:
        pass


def require_sni(name: str) -> Callable[[ssl.SSLSocket, str | None, ssl.SSLContext], int | None]:
    """An SNI callback that fails the handshake unless the client asked for ``name``."""

    def callback(sock: ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext) -> int | None:
        return None if server_name == name else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

    return callback
