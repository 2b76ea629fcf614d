"""Issue 9, end to end through the CLI: the exit status a C program can trust on a hostile network.

Each test reproduces one observation of the issue with the kit in tests/hostile.py (a CONNECT
proxy that cuts tunnels, a TLS man in the middle that drops, truncates, gzips, drips or hangs up
during the handshake, server certificates with and without the IP SAN) and checks the documented
exit status, the reason slug at the end of the one stderr line, and how often the function ran.
It runs on both dependency sets (urllib3 1.26 and 2.x), and with IOTINVOKE_TEST_PYTHON on 3.9.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import iotinvoke
from cli import PYTHON, SCRIPT, SEED_ANSWER, Run, environment, run
from hostile import HOSTILE_SCRIPT, ConnectProxy, TlsFront, config_with, server_certificate
from standin import StandIn

ATTEMPTS = 2           # max_attempts: a re-sent request is sent exactly this often
CREDENTIALS_TIMEOUT = 1  # credentials_timeout: bounds the whole answer of hops 1 and 2
PERSISTENT = 50
CONNECT_TIMEOUT = 1
SETTINGS = {"max_attempts": str(ATTEMPTS), "credentials_timeout": str(CREDENTIALS_TIMEOUT),
            "connect_timeout": str(CONNECT_TIMEOUT), "read_timeout": "5"}


pytestmark = pytest.mark.own_standin()  # faults, locks and clock files of its own


@pytest.fixture(scope="module")
def certs(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Server certificates for the man in the middle, all but "foreign" from the stand-in's CA."""
    import datetime

    folder = tmp_path_factory.mktemp("certs")
    day = datetime.timedelta(days=1)
    return {
        "ip": server_certificate(standin.workdir, folder / "ip", dns=("localhost",), ips=("127.0.0.1",)),
        "no-ip": server_certificate(standin.workdir, folder / "no-ip", dns=("localhost",)),
        "wrong-name": server_certificate(standin.workdir, folder / "wrong", dns=("wrong.example",)),
        "foreign": server_certificate(standin.workdir, folder / "foreign", dns=("localhost",), ips=("127.0.0.1",),
                                      issuer="foreign"),
        "not-yet-valid": server_certificate(standin.workdir, folder / "future", dns=("localhost",), ips=("127.0.0.1",),
                                            valid_from=30 * day),
        "expired": server_certificate(standin.workdir, folder / "expired", dns=("localhost",), ips=("127.0.0.1",),
                                      valid_from=-30 * day, valid_for=day),
    }


@pytest.fixture
def config(aws: StandIn) -> Iterator[Path]:
    """The stand-in's configuration with the short timeouts of this file."""
    path = config_with(aws.config_path, defaults=SETTINGS)
    yield path
    path.unlink()


def front(aws: StandIn, hop: str, cert: tuple[Path, Path], **kwargs: Any) -> TlsFront:
    """A man in the middle in front of one stand-in hop (hop 1 upstream with the device certificate)."""
    if hop == "iot":
        kwargs.setdefault("upstream_client_cert", aws.certs["device"])
        kwargs.setdefault("client_ca", aws.ca_path)  # asks for (and records) the client's certificate
    return TlsFront(aws.urls[hop], *cert, upstream_ca=aws.ca_path, **kwargs)


def fronted(aws: StandIn, hop: str, url: str, settings: dict[str, str] | None = None, **kwargs: Any) -> Path:
    """The test configuration with one hop's endpoint replaced by url (and SETTINGS updated by settings)."""
    return config_with(aws.config_path, defaults={**SETTINGS, **(settings or {})},
                       **{"lambda_" if hop == "lambda" else hop: url}, **kwargs)


def warm(aws: StandIn, cache: Path) -> None:
    """Cache both credentials (through the stand-in itself), so that a call goes to hop 3 directly."""
    first = run("dev", "{}", config=aws.config_path, cache=cache)
    assert (first.code, first.stdout) == (0, SEED_ANSWER), first.stderr
    aws.reset_counts()


def baseline_s(aws: StandIn, hop: str, certs: dict[str, tuple[Path, Path]], tmp_path: Path, *args: str) -> float:
    """Seconds of the same call through a man in the middle that passes the answer on at once: the
    start-up and hops this machine takes now (a loaded machine is slow), for a timeout's bound."""
    with front(aws, hop, certs["ip"]) as mitm:
        started = time.monotonic()
        result = run(*args, "dev", "{}", config=fronted(aws, hop, mitm.url()), cache=tmp_path / "baseline")
        assert result.code == 0, result.stderr
        return time.monotonic() - started


def tags(result: Run) -> list[str]:
    """The last [...] of the stderr line: [reason] or [reason; retry after N s]."""
    match = re.search(r"\[([^\[\]]*)\]\s*$", result.stderr)
    assert match is not None, f"no [reason] at the end of {result.stderr!r}"
    return match.group(1).split("; ")


def one_line(result: Run, hop: str) -> None:
    assert result.stdout == b"", "nothing on stdout but a payload"
    assert len(result.lines) == 1 and result.stderr.startswith(f"iotinvoke: {hop}: "), result.stderr


def run_measured(tmp_path: Path, *args: str, **kwargs: Any) -> tuple[Run, int]:
    """run() under hostile.py --maxrss: the result and the CLI's peak RSS in KiB."""
    rss = tmp_path / f"rss-{time.monotonic_ns()}"
    result = run(*args, wrapper=[sys.executable, str(HOSTILE_SCRIPT), "--maxrss", str(rss), "--"], **kwargs)
    return result, int(rss.read_text())


# --- proxies -----------------------------------------------------------------------------------------


def test_proxy_tunnel_cut_after_the_invoke_went_out_is_74_with_one_run(aws: StandIn, config: Path,
                                                                       tmp_path: Path) -> None:
    """Issue: through HTTPS_PROXY one call ran the function 3 times and exited 75."""
    warm(aws, tmp_path)
    before = len(aws.invocations)
    port = int(aws.urls["lambda"].rsplit(":", 1)[1])
    with ConnectProxy(drop_answer_when=lambda: len(aws.invocations) > before, only_port=port) as proxy:
        result = run("dev", '{"n": 1}', config=config, cache=tmp_path, env={"HTTPS_PROXY": proxy.url})
        assert result.code == 74, result.stderr
        one_line(result, "lambda")
        assert "may have run" in result.stderr
        assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1), "never re-sent"
        assert len(proxy.dropped) == 1 and len(proxy.tunnels) == 1


@pytest.mark.parametrize("mode", ["drop_after_request", "truncate", "truncate_chunked", "read-timeout"])
def test_invoke_answer_lost_behind_the_proxy_is_74_with_one_run(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                                tmp_path: Path, mode: str) -> None:
    """Whatever urllib3 raises under a proxy (ProxyError, SSLError, ProtocolError, a timeout) once the
    invoke went out, the function may have run: 74, never re-sent."""
    warm(aws, tmp_path)
    before = len(aws.invocations)
    options = ["--read-timeout", "1"] if mode == "read-timeout" else []
    if mode == "read-timeout":
        aws.fault("lambda", "delay", seconds=1.5)
    with ConnectProxy() as proxy, front(aws, "lambda", certs["ip"],
                                        mode="pass" if mode == "read-timeout" else mode) as mitm:
        result = run(*options, "dev", "{}", config=fronted(aws, "lambda", mitm.url()), cache=tmp_path,
                     env={"HTTPS_PROXY": proxy.url})
        assert result.code == 74, result.stderr
        one_line(result, "lambda")
        assert len(proxy.tunnels) == 1 and mitm.requests == 1
    assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1)


def test_proxy_tunnel_cut_during_the_handshake_is_75_and_nothing_ran(aws: StandIn, config: Path,
                                                                     tmp_path: Path) -> None:
    warm(aws, tmp_path)
    before = len(aws.invocations)
    port = int(aws.urls["lambda"].rsplit(":", 1)[1])
    with ConnectProxy(drop_after_bytes=100, only_port=port) as proxy:   # part of the ClientHello
        result = run("dev", "{}", config=config, cache=tmp_path, env={"HTTPS_PROXY": proxy.url})
        assert result.code == 75, result.stderr
        one_line(result, "lambda")
        assert (aws.count("lambda"), len(aws.invocations) - before) == (0, 0)
        assert len(proxy.tunnels) == ATTEMPTS, "nothing was sent: safe to try again"


def test_proxy_refusing_its_credentials_is_78(aws: StandIn, config: Path, tmp_path: Path) -> None:
    with ConnectProxy(require_auth="Basic dXNlcjpwYXNz") as proxy:
        result = run("dev", "{}", config=config, cache=tmp_path,
                     env={"HTTPS_PROXY": f"http://user:n0tThePa55@127.0.0.1:{proxy.port}"})
    assert result.code == 78, result.stderr
    one_line(result, "iot")
    assert tags(result) == ["proxy-auth"] and "n0tThePa55" not in result.stderr


@pytest.mark.parametrize("value", ["http://user:S3cretPw@[::1", "ftp://user:S3cretPw@proxy:21",
                                   "http://user:S3cretPw@proxy:notaport", "http://user:S3cretPw@:3128/path"])
def test_malformed_https_proxy_is_78_and_never_echoed(aws: StandIn, config: Path, tmp_path: Path,
                                                      value: str) -> None:
    result = run("dev", "{}", config=config, cache=tmp_path, env={"HTTPS_PROXY": value})
    assert result.code == 78, result.stderr
    assert len(result.lines) == 1 and tags(result) == ["proxy-invalid"]
    assert "S3cretPw" not in result.stderr
    assert aws.count("iot") == 0


# --- what a man in the middle does to the answer --------------------------------------------------------


@pytest.mark.parametrize("hop", ["iot", "sts"])
@pytest.mark.parametrize("mode, close", [("truncate", "fin"), ("truncate", "notify"), ("truncate_chunked", "fin")])
def test_truncated_credentials_answer_is_retried_then_75(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                        tmp_path: Path, hop: str, mode: str, close: str) -> None:
    with front(aws, hop, certs["ip"], mode=mode, truncate_close=close) as mitm:
        result = run("dev", "{}", config=fronted(aws, hop, mitm.url()), cache=tmp_path)
        assert result.code == 75, result.stderr
        one_line(result, hop)
        assert tags(result)[0] == "answer-truncated"
        assert mitm.requests == ATTEMPTS
    assert aws.count("lambda") == 0


@pytest.mark.parametrize("hop", ["iot", "sts"])
def test_truncated_credentials_answer_once_then_success(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                       tmp_path: Path, hop: str) -> None:
    with front(aws, hop, certs["ip"], mode="truncate", faulty=1) as mitm:
        result = run("dev", "{}", config=fronted(aws, hop, mitm.url()), cache=tmp_path)
        assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
        assert mitm.requests == 2


@pytest.mark.parametrize("mode, close", [("truncate", "fin"), ("truncate", "notify"), ("truncate_chunked", "fin")])
def test_truncated_invoke_answer_is_74_and_no_payload(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                     tmp_path: Path, mode: str, close: str) -> None:
    """Issue: a truncated answer exited 0 on urllib3 1.26, half the payload on stdout."""
    warm(aws, tmp_path)
    before = len(aws.invocations)
    with front(aws, "lambda", certs["ip"], mode=mode, truncate_close=close) as mitm:
        result = run("dev", '{"n": 2}', config=fronted(aws, "lambda", mitm.url()), cache=tmp_path)
        assert result.code == 74, result.stderr
        one_line(result, "lambda")
        assert tags(result)[0] == "answer-truncated"
        assert mitm.requests == 1
    assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1)


def test_answer_dropped_after_the_request_is_74_with_one_run(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                             tmp_path: Path) -> None:
    warm(aws, tmp_path)
    before = len(aws.invocations)
    with front(aws, "lambda", certs["ip"], mode="drop_after_request") as mitm:
        result = run("dev", "{}", config=fronted(aws, "lambda", mitm.url()), cache=tmp_path)
        assert result.code == 74, result.stderr
        one_line(result, "lambda")
    assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1)


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
def test_gzip_bomb_is_refused_without_decoding(aws: StandIn, certs: dict[str, tuple[Path, Path]], tmp_path: Path,
                                               hop: str) -> None:
    """Issue: on urllib3 1.26 a 1.5 MB gzip answer grew to 3.1 GB of memory."""
    if hop == "lambda":
        warm(aws, tmp_path)
    with front(aws, hop, certs["ip"], mode="gzip") as mitm:
        started = time.monotonic()
        # Time enough for the man in the middle to make its bomb on a loaded machine: this test is
        # about the encoding, not the timeouts (a read timeout here would be 75, not the point).
        config = fronted(aws, hop, mitm.url(), settings={"credentials_timeout": "10", "read_timeout": "10"})
        result, rss_kib = run_measured(tmp_path, "dev", "{}", config=config, cache=tmp_path)
        elapsed = time.monotonic() - started
        assert result.code == 76, result.stderr
        one_line(result, hop)
        assert tags(result) == ["answer-encoded"]
        assert mitm.requests == 1, "an encoded answer is not asked for again"
    assert rss_kib < 150 * 1024, f"peak RSS {rss_kib} KiB: the bomb was decoded"
    assert elapsed < 15


@pytest.mark.parametrize("hop", ["iot", "sts"])
def test_dripping_credentials_answer_ends_within_the_deadline(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                              tmp_path: Path, hop: str) -> None:
    """Issue: with credentials_timeout = 1 a server dripping 8 bytes/s kept hop 1 busy 15 s."""
    baseline = baseline_s(aws, hop, certs, tmp_path)
    with front(aws, hop, certs["ip"], mode="drip", drip_rate=8) as mitm:
        started = time.monotonic()
        result = run("dev", "{}", config=fronted(aws, hop, mitm.url()), cache=tmp_path)
        elapsed = time.monotonic() - started
        assert result.code == 75, result.stderr
        one_line(result, hop)
        assert tags(result)[0] == "answer-timeout"
        assert mitm.requests == ATTEMPTS
    # Each attempt ends within connect_timeout + credentials_timeout; add the backoff between attempts
    # (< 1 s) and what a whole call takes on this machine now. The drip would last minutes, and each
    # read gets its bytes in time.
    assert elapsed < baseline + (CONNECT_TIMEOUT + CREDENTIALS_TIMEOUT) * ATTEMPTS + 2, (elapsed, baseline)


@pytest.mark.in_process
def test_a_short_deadline_holds_while_a_longer_one_is_pending(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                              tmp_path: Path) -> None:
    """One watchdog thread keeps the deadlines of every request in a process, as the agent serves
    many callers at once: a dripping answer bounded at 2 s is cut at 2 s while another request,
    armed first, waits with 60 s (a watchdog asleep until the earlier-armed deadline would let the
    drip run on)."""
    import threading

    environ = {"IOTINVOKE_CACHE_DIR": str(tmp_path / "cache")}
    sleeper = config_with(aws.config_path, defaults=SETTINGS, extra=(
        "[sleep]\nfunction = 111111111111:function:iotinvoke-tools-sleep\n"
        "role_arn = arn:aws:iam::111111111111:role/iotinvoke-tools\nregion = ap-northeast-1\n"))
    outcome: dict[str, tuple[str, float]] = {}

    def call(name: str, client: iotinvoke.Client, env: str, payload: bytes, read_timeout: float) -> None:
        started = time.monotonic()
        try:
            client.invoke(env, payload, read_timeout=read_timeout)
            outcome[name] = ("ok", time.monotonic() - started)
        except iotinvoke.IotInvokeError as e:
            outcome[name] = (e.reason or "", time.monotonic() - started)

    patient = iotinvoke.Client(iotinvoke.load_config(str(sleeper), environ), environ=environ)
    patient.credentials("sleep")  # hops 1-2 now: only the invokes are timed
    with front(aws, "lambda", certs["ip"], mode="drip", drip_rate=8) as mitm:
        hurried = iotinvoke.Client(iotinvoke.load_config(str(fronted(aws, "lambda", mitm.url())), environ),
                                   environ=environ)
        hurried.credentials("dev")
        # The hops' deadlines pass: the watchdog sleeps long, and only a new earlier deadline wakes it.
        time.sleep(CONNECT_TIMEOUT + CREDENTIALS_TIMEOUT + 0.5)
        first = threading.Thread(target=call, args=("patient", patient, "sleep", b'{"seconds": 2.5}', 60.0))
        first.start()
        time.sleep(0.5)  # its deadline, 61 s away, is armed first
        call("hurried", hurried, "dev", b"{}", 2.0)
        first.join(30)
    assert outcome["hurried"][0] == "answer-timeout", outcome
    assert outcome["hurried"][1] < CONNECT_TIMEOUT + 2.0 + 1.5, outcome
    assert outcome["patient"][0] == "ok", outcome


# --- TLS -----------------------------------------------------------------------------------------------


def test_ip_endpoints_with_the_ip_in_the_certificate_work(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                          tmp_path: Path) -> None:
    """Issue: with urllib3 1.26 an endpoint given as an IP address failed every call with 70."""
    with front(aws, "iot", certs["ip"]) as iot, front(aws, "sts", certs["ip"]) as sts, \
            front(aws, "lambda", certs["ip"]) as lam:
        ip = "127.0.0.1"
        config = config_with(aws.config_path, defaults=SETTINGS, iot=iot.url(ip), sts=sts.url(ip), lambda_=lam.url(ip))
        result = run("dev", "{}", config=config, cache=tmp_path)
        assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
        assert (iot.forwarded, sts.forwarded, lam.forwarded) == (1, 1, 1)
        for head in iot.request_heads + sts.request_heads + lam.request_heads:
            assert re.search(rb"(?im)^accept-encoding: *identity\r?$", head), head
        # The control for the tests below: this server does see the device certificate.
        assert iot.client_certs and all(iot.client_certs)


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
@pytest.mark.parametrize("cert, host", [("no-ip", "127.0.0.1"), ("wrong-name", "localhost")])
def test_name_mismatch_is_69_and_the_device_certificate_is_not_presented(
        aws: StandIn, certs: dict[str, tuple[Path, Path]], tmp_path: Path, hop: str, cert: str, host: str) -> None:
    if hop == "lambda":
        warm(aws, tmp_path)
    before = len(aws.invocations)
    with front(aws, hop, certs[cert]) as mitm:
        result = run("dev", "{}", config=fronted(aws, hop, mitm.url(host)), cache=tmp_path)
        assert result.code == 69, result.stderr
        one_line(result, hop)
        assert tags(result) == ["tls-name-mismatch"] and host in result.stderr
        assert mitm.connections == 1, "a name mismatch is not retried"
        # A client that checked the name only after the handshake (as urllib3 1.26 did for an IP
        # endpoint) would complete it, showing its certificate: the front would record it here.
        assert mitm.requests == 0 and mitm.client_certs == [], "no handshake completed, no certificate shown"
    assert len(aws.invocations) == before


@pytest.mark.parametrize("hop, source", [("iot", "[iot] ca"), ("sts", "[dev] ca_bundle"),
                                         ("lambda", "[dev] ca_bundle"), ("lambda", "AWS_CA_BUNDLE")])
def test_untrusted_server_is_69_naming_the_ca_file_and_its_source(
        aws: StandIn, certs: dict[str, tuple[Path, Path]], tmp_path: Path, hop: str, source: str) -> None:
    if hop == "lambda":
        warm(aws, tmp_path)
    env = {"AWS_CA_BUNDLE": str(aws.ca_path)} if source == "AWS_CA_BUNDLE" else {}
    with front(aws, hop, certs["foreign"]) as mitm:
        result = run("dev", "{}", config=fronted(aws, hop, mitm.url()), cache=tmp_path, env=env)
        assert result.code == 69, result.stderr
        one_line(result, hop)
        assert tags(result) == ["tls-untrusted"]
        assert source in result.stderr and "ca.pem" in result.stderr
        assert mitm.client_certs == []


@pytest.mark.parametrize("cert", ["not-yet-valid", "expired"])
def test_server_certificate_outside_its_validity_is_75_clock_wrong(
        aws: StandIn, certs: dict[str, tuple[Path, Path]], tmp_path: Path, cert: str) -> None:
    with front(aws, "iot", certs[cert]) as mitm:
        result = run("dev", "{}", config=fronted(aws, "iot", mitm.url()), cache=tmp_path)
        assert result.code == 75, result.stderr
        one_line(result, "iot")
        assert tags(result)[0] == "clock-wrong"
        # At most a HEAD, to learn AWS's time (README "Clock at boot"); never the credentials request.
        assert all(head.startswith(b"HEAD ") for head in mitm.request_heads), mitm.request_heads


def test_handshake_closed_on_hop_1_is_75_not_77(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                 tmp_path: Path) -> None:
    """Issue: a connection closed during the hop-1 handshake exited 77 "certificate refused"."""
    with front(aws, "iot", certs["ip"], mode="close_handshake") as mitm:
        result = run("dev", "{}", config=fronted(aws, "iot", mitm.url()), cache=tmp_path)
        assert result.code == 75, result.stderr
        one_line(result, "iot")
        assert tags(result)[0] == "tls-interrupted"
        assert mitm.connections == ATTEMPTS


def test_client_certificate_refused_by_tls_alert_is_77(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                       tmp_path: Path) -> None:
    foreign_ca = aws.workdir / "pki" / "foreign-ca.pem"   # the server trusts another CA than the device's
    with front(aws, "iot", certs["ip"], client_ca=foreign_ca, require_client_cert=True) as mitm:
        result = run("dev", "{}", config=fronted(aws, "iot", mitm.url()), cache=tmp_path)
        assert result.code == 77, result.stderr
        one_line(result, "iot")
        assert tags(result) == ["certificate-refused"]
        assert mitm.forwarded == 0


def test_hop_3_handshake_failure_is_75_and_nothing_ran(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                       tmp_path: Path) -> None:
    """Issue: on hop 3 a handshake failure before anything was sent exited 74."""
    warm(aws, tmp_path)
    before = len(aws.invocations)
    with front(aws, "lambda", certs["ip"], mode="close_handshake") as mitm:
        result = run("dev", "{}", config=fronted(aws, "lambda", mitm.url()), cache=tmp_path)
        assert result.code == 75, result.stderr
        one_line(result, "lambda")
        assert mitm.connections == ATTEMPTS and mitm.requests == 0
    assert (aws.count("lambda"), len(aws.invocations) - before) == (0, 0)


def test_invoke_connection_has_tcp_keepalive(aws: StandIn, config: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A NAT drops a connection idle longer than its timeout (350 s on AWS NAT gateways) while a
    synchronous invoke waits; the invoke's socket keeps it alive."""
    import socket

    monkeypatch.setenv("IOTINVOKE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    client = iotinvoke.Client(iotinvoke.load_config(str(config)))
    result = client.invoke("dev", b"{}")
    assert result.payload == SEED_ANSWER
    ports = {int(url.rsplit(":", 1)[1]) for url in aws.urls.values()}
    sockets = []
    for manager in client._transport._managers.values():
        for key in list(manager.pools.keys()):
            pool = manager.pools[key]
            sockets += [c.sock for c in list(pool.pool.queue) if c is not None and c.sock is not None]
    # One kept connection per hop (the invoke's among them), each with keepalive.
    assert {sock.getpeername()[1] for sock in sockets} == ports, "each hop's connection is kept in its pool"
    for sock in sockets:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == iotinvoke.TCP_KEEPALIVE_IDLE_S == 60


# --- standard streams ---------------------------------------------------------------------------------


def shell(redirect: str) -> list[str]:
    """A wrapper running the CLI with its standard streams redirected (">&-" closes stdout)."""
    return ["sh", "-c", f'exec "$0" "$@" {redirect}']


def test_stdout_full_after_the_run_is_74_one_line(aws: StandIn, config: Path, tmp_path: Path) -> None:
    """Issue: stdout on /dev/full after the function ran exited 70, then 120."""
    warm(aws, tmp_path)
    before = len(aws.invocations)
    result = run("dev", "{}", config=config, cache=tmp_path, wrapper=shell(">/dev/full"))
    assert result.code == 74, result.stderr
    assert len(result.lines) == 1 and result.stderr.startswith("iotinvoke: "), result.stderr
    assert tags(result) == ["stdout-failed"] and "function ran" in result.stderr
    assert len(aws.invocations) - before == 1


def test_stdout_closed_at_start_is_refused_before_any_network_call(aws: StandIn, config: Path,
                                                                   tmp_path: Path) -> None:
    result = run("dev", "{}", config=config, cache=tmp_path, wrapper=shell(">&-"))
    assert result.code == 64, result.stderr   # never 70 ('NoneType' object has no attribute 'buffer')
    assert len(result.lines) == 1 and tags(result) == ["stdout-closed"], result.stderr
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (0, 0, 0)


def test_stdout_closed_is_fine_for_an_event_invoke(aws: StandIn, config: Path, tmp_path: Path) -> None:
    # An Event invoke has no answer to deliver.
    result = run("--event", "dev", "{}", config=config, cache=tmp_path, wrapper=shell(">&-"))
    assert (result.code, result.stderr) == (0, "")
    assert aws.count("lambda") == 1


def test_stdin_closed_with_the_payload_in_argv_works(aws: StandIn, config: Path, tmp_path: Path) -> None:
    result = run("dev", "{}", config=config, cache=tmp_path, wrapper=shell("<&-"))
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_stderr_closed_or_full_keeps_the_documented_status(aws: StandIn, config: Path, tmp_path: Path,
                                                           redirect: str) -> None:
    """Issue: with stderr closed or full every failure exited 1 ("the function raised")."""
    missing = run("missing", "{}", config=config, cache=tmp_path, wrapper=shell(redirect))
    assert missing.code == 69
    ok = run("dev", "{}", config=config, cache=tmp_path, wrapper=shell(redirect))
    assert (ok.code, ok.stdout) == (0, SEED_ANSWER)


# --- bad values from AWS and from the cache --------------------------------------------------------------


@pytest.mark.parametrize("field", ["accessKeyId", "secretAccessKey", "sessionToken"])
def test_non_latin1_character_in_a_key_from_aws_is_76(aws: StandIn, config: Path, tmp_path: Path,
                                                      field: str) -> None:
    document = {"credentials": {"accessKeyId": "ASIAEXAMPLEEXAMPLE12", "secretAccessKey": "s" * 40,
                                "sessionToken": "t" * 300, "expiration": "2099-01-01T00:00:00Z"}}
    document["credentials"][field] = "ASIA\u2603\u0100EXAMPLE"
    aws.fault("iot", "respond", count=PERSISTENT, status=200, headers={"Content-Type": "application/json"},
              body=json.dumps(document, ensure_ascii=False).encode("utf-8"))
    result = run("dev", "{}", config=config, cache=tmp_path)
    assert result.code == 76, result.stderr
    assert len(result.lines) == 1 and result.stderr.startswith("iotinvoke: "), result.stderr
    assert aws.count("lambda") == 0


def log_result_fault(aws: StandIn, count: int = 1) -> None:
    aws.fault("lambda", "respond", count=count, status=200, body=SEED_ANSWER,
              headers={"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
                       "X-Amz-Log-Result": "%%not*base64%%", "x-amzn-RequestId": "0-0"})


def test_invalid_base64_log_result_still_prints_the_payload(aws: StandIn, config: Path, tmp_path: Path) -> None:
    warm(aws, tmp_path)
    log_result_fault(aws)
    result = run("--log-tail", "dev", "{}", config=config, cache=tmp_path)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert len(result.lines) == 1 and "base64" in result.stderr, result.stderr


def test_invalid_base64_log_result_does_not_abort_stream(aws: StandIn, config: Path, tmp_path: Path) -> None:
    warm(aws, tmp_path)
    log_result_fault(aws)
    result = run("--stream", "--log-tail", "dev", config=config, cache=tmp_path, stdin=b'{"a": 1}\n{"a": 2}\n')
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert [json.loads(line)["payload"].encode() for line in lines] == [SEED_ANSWER] * 2  # byte for byte
    assert aws.count("lambda") == 2


@pytest.mark.parametrize("offset", ["NaN", "Infinity", "-Infinity", "1e300", "-1e300"])
def test_garbled_clock_file_is_ignored(aws: StandIn, config: Path, tmp_path: Path, offset: str) -> None:
    warm(aws, tmp_path)
    clock = tmp_path / "clock.json"
    fd = os.open(clock, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write('{"offset": %s}' % offset)
    result = run("dev", "{}", config=config, cache=tmp_path)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")


# --- lock waits -------------------------------------------------------------------------------------------


def test_stopped_lock_holder_delays_a_cold_call_at_most_lock_wait(aws: StandIn, tmp_path: Path) -> None:
    """Issue: a stopped process holding the locks made cold calls wait 40 s (IoT lock inside the STS
    lock), not the documented LOCK_WAIT_S (20 s)."""
    config = config_with(aws.config_path, defaults={"max_attempts": "1"})
    # A holds the locks while hop 1 is slow to answer; then it is stopped there.
    aws.fault("iot", "delay", seconds=3)
    holder = subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(config), "dev", "{}"],
                              env=environment(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while aws.count("iot") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert aws.count("iot") == 1, "the holder reached hop 1"
        os.kill(holder.pid, signal.SIGSTOP)
        started = time.monotonic()
        result = run("dev", "{}", config=config, cache=tmp_path, timeout=90)
        elapsed = time.monotonic() - started
        assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
        assert elapsed < iotinvoke.LOCK_WAIT_S + 6, f"waited {elapsed:.1f} s for stuck locks"
    finally:
        holder.kill()
        holder.wait(10)
        config.unlink()


# --- payload rules: RFC 8259 JSON in UTF-8, as Lambda parses it --------------------------------------------


@pytest.mark.parametrize("payload", [
    b'{"a": NaN}', b'{"a": Infinity}', b"-Infinity", b"\xef\xbb\xbf{}", "{}".encode("utf-16"),
    '{"a": 1}'.encode("utf-16-le"), b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}',
], ids=["NaN", "Infinity", "-Infinity", "BOM", "UTF-16-BOM", "UTF-16LE", "invalid-UTF-8", "UTF-8-surrogate"])
def test_payload_that_lambda_refuses_is_65_before_any_call(aws: StandIn, config: Path, tmp_path: Path,
                                                           payload: bytes) -> None:
    result = run("dev", "-", config=config, cache=tmp_path, stdin=payload)
    assert result.code == 65, result.stderr
    one_line(result, "payload")
    assert (aws.count("iot"), aws.count("lambda")) == (0, 0)


def test_a_5000_digit_integer_is_valid_json(aws: StandIn, config: Path, tmp_path: Path) -> None:
    number = "9" * 5000
    before = len(aws.invocations)
    result = run("dev", "-", config=config, cache=tmp_path, stdin=('{"n": %s}' % number).encode())
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert [str(i["event"]["n"]) for i in aws.invocations[before:]] == [number], "sent as it is"


def test_empty_payload_is_65_saying_what_to_send(aws: StandIn, config: Path, tmp_path: Path) -> None:
    result = run("dev", "-", config=config, cache=tmp_path, stdin=b"")
    assert result.code == 65, result.stderr
    one_line(result, "payload")
    assert "null" in result.stderr and "{}" in result.stderr
    assert aws.count("iot") == 0


def test_one_gigabyte_on_stdin_is_65_quickly_with_little_memory(aws: StandIn, config: Path, tmp_path: Path) -> None:
    """Issue: stdin was read without limit (1 GB -> 995 MB RSS; OOM from /dev/zero)."""
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(1 << 30)   # sparse: no disk used
    rss = tmp_path / "rss"
    started = time.monotonic()
    with open(big, "rb") as stdin:
        done = subprocess.run([sys.executable, str(HOSTILE_SCRIPT), "--maxrss", str(rss), "--", PYTHON, str(SCRIPT),
                               "--config", str(config), "dev", "-"], stdin=stdin, capture_output=True,
                              env=environment(tmp_path), timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 65, done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert int(rss.read_text()) < 100 * 1024, "stdin read without a bound"
    assert elapsed < 10
    assert aws.count("iot") == 0


def test_dripping_invoke_answer_ends_within_read_timeout(aws: StandIn, certs: dict[str, tuple[Path, Path]],
                                                        tmp_path: Path) -> None:
    """Issue 16: --read-timeout 2 and an answer dripping 8 bytes/s ran 16 s (each read got bytes in
    time): read_timeout now bounds the whole answer. The invoke went out, so 74, run once."""
    warm(aws, tmp_path)
    baseline = baseline_s(aws, "lambda", certs, tmp_path)
    before = len(aws.invocations)
    with front(aws, "lambda", certs["ip"], mode="drip", drip_rate=8) as mitm:
        started = time.monotonic()
        result = run("--read-timeout", "2", "dev", "{}", config=fronted(aws, "lambda", mitm.url()), cache=tmp_path)
        elapsed = time.monotonic() - started
    assert result.code == 74 and tags(result)[0] == "answer-timeout", result.stderr
    assert "the function may have run" in result.stderr
    assert len(aws.invocations) - before == 1 and mitm.requests == 1
    # The drip of a ~100-byte answer would take ~13 s; the bound is 2 s after connecting.
    assert elapsed < baseline + CONNECT_TIMEOUT + 2 + 2, (elapsed, baseline)
