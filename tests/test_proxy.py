"""HTTPS_PROXY / NO_PROXY: all three hops through an HTTP CONNECT proxy, mutual TLS end to end."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import iotinvoke
from cli import SEED_ANSWER, run
from standin import StandIn

pytestmark = pytest.mark.own_standin()  # a stand-in no other module touches


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the tunnels it opened."""

    def __init__(self, require_auth: str | None = None) -> None:
        self.tunnels: list[str] = []
        self.refused: list[str] = []
        self._auth = require_auth
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
            if self._auth is not None and headers.get("proxy-authorization") != self._auth:
                self.refused.append(target)
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            self.tunnels.append(target)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(client, upstream)

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        other = threading.Thread(target=pump, args=(b, a), daemon=True)
        other.start()
        pump(a, b)
        other.join(30)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    yield server
    server.close()


def test_all_three_hops_through_the_proxy(aws: StandIn, proxy: ConnectProxy, tmp_path: Path) -> None:
    aws.reset_counts()
    result = run("dev", "{}", config=aws.config_path, cache=tmp_path, env={"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}"})
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
    ports = {hop: url.rsplit(":", 1)[1] for hop, url in aws.urls.items()}
    assert sorted(proxy.tunnels) == sorted(f"localhost:{ports[hop]}" for hop in ("iot", "sts", "lambda"))
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 1, 1)


def test_no_proxy_bypasses(aws: StandIn, proxy: ConnectProxy, tmp_path: Path) -> None:
    env = {"https_proxy": f"127.0.0.1:{proxy.port}", "no_proxy": "example.com, .localhost,localhost"}
    result = run("dev", "{}", config=aws.config_path, cache=tmp_path, env=env)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert proxy.tunnels == []


def test_proxy_credentials_are_sent_and_never_shown(aws: StandIn, tmp_path: Path) -> None:
    import base64

    server = ConnectProxy(require_auth="Basic " + base64.b64encode(b"edge:s3cr3t!").decode())
    try:
        url = f"http://edge:s3cr3t%21@127.0.0.1:{server.port}"
        ok = run("-v", "dev", "{}", config=aws.config_path, cache=tmp_path / "a", env={"HTTPS_PROXY": url})
        assert (ok.code, ok.stdout) == (0, SEED_ANSWER), ok.stderr
        assert "through http://127.0.0.1:" in ok.stderr and "s3cr3t" not in ok.stderr
        assert len(server.tunnels) == 3 and server.refused == []
        wrong = f"http://edge:wrong@127.0.0.1:{server.port}"
        refused = run("dev", "{}", config=aws.config_path, cache=tmp_path / "b", env={"HTTPS_PROXY": wrong})
        # Wrong proxy credentials are the caller's configuration, not a passing failure: 78, one request.
        assert refused.code == 78 and refused.stderr.endswith("[proxy-auth]\n") and "wrong" not in refused.stderr
        assert len(server.refused) == 1
    finally:
        server.close()


@pytest.mark.parametrize(
    "no_proxy, host, expected",
    [
        ("", "sts.eu-west-1.amazonaws.com", "http://p:3128"),
        ("amazonaws.com", "sts.eu-west-1.amazonaws.com", None),
        (".amazonaws.com", "lambda.eu-west-1.amazonaws.com", None),
        ("*", "anything", None),
        ("example.com", "notexample.com", "http://p:3128"),
        ("example.com", "a.example.com", None),
    ],
)
def test_proxy_selection(no_proxy: str, host: str, expected: str | None) -> None:
    env = {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": no_proxy}
    assert iotinvoke._proxy_for(f"https://{host}/x", env) == (None if expected is None else (expected, None))


@pytest.mark.parametrize("value", ["http://p:port", "ftp://p:3128", "http://", "http://user:secret@p:3128/path"])
def test_malformed_proxy_is_a_configuration_error(value: str) -> None:
    with pytest.raises(iotinvoke.ConfigError) as info:
        iotinvoke._proxy_for("https://sts.eu-west-1.amazonaws.com/", {"HTTPS_PROXY": value})
    assert info.value.reason == "proxy-invalid" and "secret" not in str(info.value)
