"""A hostile network for end-to-end tests: what proxies, middleboxes and broken servers do to a call.

Everything listens on 127.0.0.1 only, every socket has a timeout, and ``close()`` (or leaving the
``with`` block) shuts every socket and joins every thread it started.

- ``ConnectProxy``: an HTTP CONNECT proxy (optionally demanding Basic credentials) that can cut
  the tunnel after N bytes from the client (``drop_after_bytes``: during the TLS handshake, so
  nothing was sent) or instead of forwarding the first answer bytes once ``drop_answer_when()``
  holds (after the request went out and was acted on, before the answer).
- ``TlsFront``: a TLS-terminating man in the middle in front of one stand-in hop, with a
  certificate of the test's choosing (``server_certificate``: with or without the IP SAN, another
  host name, another CA, not yet valid, expired). ``mode`` decides what it does to the exchange:
  "pass" (relay), "drop_after_request" (relay the request, swallow the answer, close),
  "truncate" (the answer's full Content-Length, half its body, close), "truncate_chunked" (the
  answer re-framed as chunked, its first half as one chunk, close without the last chunk), "gzip"
  (relay the request, answer 200 with a 1.5 MB ``Content-Encoding: gzip`` bomb that expands to
  1.5 GB), "drip" (the answer at ``drip_rate`` bytes/s) or "close_handshake" (read the
  ClientHello, close). It records the client certificates it was shown (so a test can prove one
  was never presented) and each request's head.
- ``config_with``: a copy of the stand-in's configuration with some endpoints, CA files or
  [DEFAULT] settings replaced, written next to it (its relative paths keep working).
- ``python tests/hostile.py --maxrss FILE -- ARGV...``: runs ARGV and writes its peak RSS (KiB) to
  FILE, exiting with its status: how a test measures one subprocess's memory.
"""
from __future__ import annotations

import os
import re
import socket
import ssl
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

__all__ = ["ConnectProxy", "TlsFront", "config_with", "gzip_bomb", "server_certificate", "HOSTILE_SCRIPT"]

HOSTILE_SCRIPT: Final = Path(__file__).resolve()
SOCKET_TIMEOUT_S: Final = 10.0   # no socket of the kit blocks longer than this
DRIP_LIMIT_S: Final = 60.0       # a drip stops by itself after this long
MAX_HEAD_BYTES: Final = 64 * 1024
MODES: Final = ("pass", "drop_after_request", "truncate", "truncate_chunked", "gzip", "drip", "close_handshake")


class _Threads:
    """Threads and sockets of one kit object, all shut and joined by close()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self.closed = threading.Event()

    def start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def keep(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(SOCKET_TIMEOUT_S)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def cut(self, sock: socket.socket) -> None:
        """Close a socket without a TLS close_notify: a FIN (or RST if unread data is pending)."""
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            self.cut(sock)
        for thread in threads:
            thread.join(timeout=SOCKET_TIMEOUT_S)
        alive = [t for t in threads if t.is_alive()]
        assert not alive, f"hostile kit threads still running: {alive}"


class _Listener:
    """A server on a loopback port with its threads: closed by close() or a with block."""

    _server: socket.socket
    _kit: _Threads

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._server.close()
        self._kit.close()


_L = TypeVar("_L", bound=_Listener)


class ConnectProxy(_Listener):
    """An HTTP CONNECT proxy on loopback that records the tunnels it opened (host:port)."""

    def __init__(self, require_auth: str | None = None, *, drop_after_bytes: int | None = None,
                 drop_answer_when: Callable[[], bool] | None = None, only_port: int | None = None) -> None:
        """drop_after_bytes / drop_answer_when apply to tunnels to only_port (default: every tunnel)."""
        self.tunnels: list[str] = []
        self.refused: list[str] = []
        self.dropped: list[str] = []
        self._auth = require_auth
        self._drop_after_bytes = drop_after_bytes
        self._drop_answer_when = drop_answer_when
        self._only_port = only_port
        self._kit = _Threads()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)   # accept() wakes up to notice close()
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._kit.start(self._accept)

    def _accept(self) -> None:
        while not self._kit.closed.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._kit.start(self._handle, self._kit.keep(client))

    def _handle(self, client: socket.socket) -> None:
        try:
            head = _read_head(client)
            if head is None:
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
            if self._auth is not None and headers.get("proxy-authorization") != self._auth:
                self.refused.append(target)
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic realm=\"kit\"\r\nContent-Length: 0\r\n\r\n")
                return
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            self.tunnels.append(target)
            upstream = self._kit.keep(socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            hostile = self._only_port is None or int(port) == self._only_port
            self._relay(client, upstream, target, hostile)
        except OSError:
            pass
        finally:
            self._kit.cut(client)

    def _relay(self, client: socket.socket, upstream: socket.socket, target: str, hostile: bool) -> None:
        budget = [self._drop_after_bytes if hostile else None]
        answer_check = self._drop_answer_when if hostile else None

        def drop() -> None:
            self.dropped.append(target)
            self._kit.cut(client)
            self._kit.cut(upstream)

        def to_upstream() -> None:
            try:
                while data := client.recv(65536):
                    if budget[0] is not None:
                        if len(data) >= budget[0]:
                            upstream.sendall(data[: budget[0]])
                            drop()
                            return
                        budget[0] -= len(data)
                    upstream.sendall(data)
                socket.socket.shutdown(upstream, socket.SHUT_WR)
            except OSError:
                pass

        def to_client() -> None:
            try:
                while data := upstream.recv(65536):
                    if answer_check is not None and answer_check():
                        drop()   # the request was acted on; its answer never arrives
                        return
                    client.sendall(data)
                socket.socket.shutdown(client, socket.SHUT_WR)
            except OSError:
                pass

        self._kit.start(to_client)
        to_upstream()


# --- certificates -------------------------------------------------------------------------------------


def server_certificate(standin_workdir: Path, out: Path, **kwargs: Any) -> tuple[Path, Path]:
    """A server certificate from the stand-in's PKI (see standin.pki.issue_server_certificate)."""
    from standin import pki

    return pki.issue_server_certificate(standin_workdir, out, **kwargs)


# --- the TLS man in the middle ------------------------------------------------------------------------


_GZIP_BOMB: list[bytes] = []


def gzip_bomb(compressed_bytes: int = 1_500_000) -> bytes:
    """About compressed_bytes of gzip that decompress to ~1000 times as much (zeros): gzip members
    of 64 MiB of zeros each, concatenated (RFC 1952 allows several members in one stream)."""
    if not _GZIP_BOMB:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)   # 31: gzip framing
        zeros = bytes(1 << 20)
        member = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
        _GZIP_BOMB.append(member * max(1, compressed_bytes // len(member)))
    return _GZIP_BOMB[0]


class TlsFront(_Listener):
    """A TLS server on 127.0.0.1 in front of one stand-in hop (see the module docstring)."""

    def __init__(self, upstream_url: str, cert: Path, key: Path, *, mode: str = "pass",
                 faulty: int | None = None, upstream_ca: Path | None = None,
                 upstream_client_cert: tuple[Path, Path] | None = None,
                 client_ca: Path | None = None, require_client_cert: bool = False,
                 truncate_close: str = "fin", drip_rate: float = 8.0) -> None:
        """``faulty``: how many requests (or, for close_handshake, connections) meet ``mode``; the
        rest pass. ``client_ca``: ask the client for a certificate and accept ones from this CA
        (with ``require_client_cert``, refuse the handshake without one, as AWS IoT does)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        if truncate_close not in ("fin", "notify"):
            raise ValueError("truncate_close is 'fin' (TCP close, no close_notify) or 'notify'")
        match = re.fullmatch(r"https://([^:/]+):(\d+)", upstream_url)
        if match is None:
            raise ValueError(f"not an https://host:port URL: {upstream_url}")
        self._upstream = (match.group(1), int(match.group(2)))
        self.mode = mode
        self._faulty = faulty
        self._truncate_close = truncate_close
        self._drip_rate = drip_rate
        self._lock = threading.Lock()
        self.connections = 0           # TCP connections accepted
        self.requests = 0              # whole requests read from the client
        self.forwarded = 0             # requests relayed to the stand-in
        self.client_certs: list[bytes | None] = []   # per completed handshake: the DER the client showed
        self.request_heads: list[bytes] = []         # each request's head, as the client sent it
        self.handshake_errors: list[str] = []
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.load_cert_chain(cert, key)
        if client_ca is not None:
            self._server_context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
            self._server_context.load_verify_locations(cafile=str(client_ca))
        self._client_context = ssl.create_default_context(cafile=str(upstream_ca) if upstream_ca else None)
        if upstream_client_cert is not None:
            self._client_context.load_cert_chain(*upstream_client_cert)
        self._kit = _Threads()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)   # accept() wakes up to notice close()
        self.port = self._server.getsockname()[1]
        self._kit.start(self._accept)

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}"

    def _take_fault(self) -> bool:
        with self._lock:
            if self._faulty is None:
                return True
            if self._faulty > 0:
                self._faulty -= 1
                return True
            return False

    def _accept(self) -> None:
        while not self._kit.closed.is_set():
            try:
                raw, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            self._kit.start(self._serve, self._kit.keep(raw))

    def _serve(self, raw: socket.socket) -> None:
        connection = raw
        try:
            if self.mode == "close_handshake" and self._take_fault():
                raw.recv(16384)  # the ClientHello: the client has started, and now the line goes dead
                return
            tls = self._server_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            connection = self._kit.keep(tls)
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.handshake_errors.append(str(e))
                # Read what the client still sends until it closes: closing with unread data would
                # send a TCP reset that can overtake the TLS alert just sent (a refused client
                # certificate must arrive as the alert, as from a well-behaved server).
                _drain(tls)
                return
            self.client_certs.append(tls.getpeercert(binary_form=True))
            while not self._kit.closed.is_set():
                request = _read_message(tls, is_request=True)
                if request is None:
                    return
                with self._lock:
                    self.requests += 1
                    self.request_heads.append(request.split(b"\r\n\r\n", 1)[0])
                fault = self.mode if self.mode != "pass" and self._take_fault() else "pass"
                answer = self._forward(request)
                if not self._answer(tls, answer, fault):
                    return
        except OSError:
            pass
        finally:
            self._kit.cut(connection)

    def _forward(self, request: bytes) -> bytes:
        host, port = self._upstream
        with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S) as plain:
            with self._client_context.wrap_socket(plain, server_hostname=host) as upstream:
                upstream.settimeout(SOCKET_TIMEOUT_S)
                upstream.sendall(request)
                with self._lock:
                    self.forwarded += 1
                answer = _read_message(upstream, is_request=False, to_head=request.startswith(b"HEAD "))
        if answer is None:
            raise ConnectionError("the stand-in closed without answering")
        return answer

    def _answer(self, tls: ssl.SSLSocket, answer: bytes, fault: str) -> bool:
        """Send (or not) the answer; False when the connection is to end."""
        if fault == "pass":
            tls.sendall(answer)
            return True
        if fault == "drop_after_request":
            return False
        head, _, body = answer.partition(b"\r\n\r\n")
        if fault == "truncate":
            tls.sendall(head + b"\r\n\r\n" + body[: len(body) // 2])
            if self._truncate_close == "notify":
                try:
                    tls.unwrap()   # a clean TLS close_notify: only Content-Length tells the body is short
                except (ssl.SSLError, OSError):
                    pass
            return False
        if fault == "truncate_chunked":
            lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length:")]
            half = body[: len(body) // 2]
            tls.sendall(b"\r\n".join(lines) + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"%x\r\n" % len(half) + half + b"\r\n")
            return False
        if fault == "gzip":
            bomb = gzip_bomb()
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb)
            return False
        if fault == "drip":
            step = max(1, int(self._drip_rate / 10))
            deadline = time.monotonic() + DRIP_LIMIT_S
            for offset in range(0, len(answer), step):
                if self._kit.closed.is_set() or time.monotonic() > deadline:
                    return False
                tls.sendall(answer[offset:offset + step])
                time.sleep(step / self._drip_rate)
            return True
        raise AssertionError(fault)


def _drain(sock: socket.socket, limit_s: float = 2.0) -> None:
    """Read raw bytes (below TLS) until the peer closes, for at most limit_s."""
    sock.settimeout(limit_s)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and socket.socket.recv(sock, 65536):
            pass
    except OSError:
        pass


def _read_head(sock: socket.socket, prefix: bytes = b"") -> bytes | None:
    """Bytes up to the blank line ending an HTTP head (excluded); None at a clean end of stream."""
    data = prefix
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_HEAD_BYTES:
            raise ConnectionError("HTTP head too large")
    return data.split(b"\r\n\r\n", 1)[0]


def _read_message(sock: socket.socket, *, is_request: bool, to_head: bool = False) -> bytes | None:
    """One whole HTTP/1.1 message framed by Content-Length (all iotinvoke and the stand-in send);
    to_head: an answer to HEAD, which has no body whatever its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, OSError):
            return None
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_HEAD_BYTES:
            raise ConnectionError("HTTP head too large")
    head, _, body = data.partition(b"\r\n\r\n")
    length_match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if re.search(rb"(?im)^transfer-encoding:", head):
        raise ConnectionError("chunked messages are not relayed by the kit")
    length = int(length_match.group(1)) if length_match else 0
    if not is_request and (to_head or head.split(b" ", 2)[1:2] in ([b"204"], [b"304"])):
        length = 0
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise ConnectionError("message cut short")
        body += chunk
    return head + b"\r\n\r\n" + body


# --- configuration ------------------------------------------------------------------------------------


def config_with(config_path: Path, *, iot: str | None = None, sts: str | None = None, lambda_: str | None = None,
                ca_bundle: str | None = None, iot_ca: str | None = None,
                defaults: dict[str, str] | None = None, extra: str = "") -> Path:
    """A copy of the stand-in's configuration, next to it, with the given endpoints, CA files and
    [DEFAULT] settings replaced (or added), and ``extra`` sections appended."""
    text = config_path.read_text()

    def replace(pattern: str, value: str | None, section_text: str) -> str:
        if value is None:
            return section_text
        new, count = re.subn(pattern, lambda m: m.group(1) + value, section_text, count=1, flags=re.M)
        assert count == 1, pattern
        return new

    head, rest = text.split("\n[iot]\n", 1)   # [DEFAULT] before, [iot] and the environments after
    head = replace(r"^(sts_endpoint = ).*$", sts, head)
    head = replace(r"^(lambda_endpoint = ).*$", lambda_, head)
    head = replace(r"^(ca_bundle = ).*$", ca_bundle, head)
    rest = replace(r"^(endpoint = ).*$", iot, rest)
    rest = replace(r"^(ca = ).*$", iot_ca, rest)
    settings = "".join(f"{key} = {value}\n" for key, value in (defaults or {}).items())
    head = head.replace("[DEFAULT]\n", "[DEFAULT]\n" + settings, 1)
    out = config_path.with_name(f"hostile-{uuid.uuid4().hex[:12]}.ini")
    out.write_text(head + "\n[iot]\n" + rest + ("\n" + extra if extra else ""))
    return out


# --- peak memory of one subprocess ----------------------------------------------------------------------


def _maxrss_main(argv: list[str]) -> int:
    out, command = argv[0], argv[2:] if argv[1:2] == ["--"] else argv[1:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    Path(out).write_text(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8


if __name__ == "__main__":
    if sys.argv[1:2] != ["--maxrss"] or len(sys.argv) < 4:
        sys.exit("usage: hostile.py --maxrss FILE -- ARGV...")
    sys.exit(_maxrss_main(sys.argv[2:]))
