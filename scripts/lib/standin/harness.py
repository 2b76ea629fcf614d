"""``StandIn``: the three endpoints started together on loopback, with the switches tests use.

    with StandIn(tmp_path) as aws:
        run_iotinvoke("--config", aws.config_path, "dev", "{}")
        assert aws.count("sts") == 1

Construction prepares the work folder (PKI, world) without listening; ``start()`` binds free
loopback ports (or the given ones), serves each endpoint from its own thread and writes
``iotinvoke.ini`` for iotinvoke.
"""
from __future__ import annotations

import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from . import pki
from .awslambda import LambdaApp
from .creds import CredentialStore
from .httpbase import IDLE_TIMEOUT_S, App, Hop, TlsServer, require_sni
from .iot import IotApp
from .runtime import FunctionRuntime
from .sts import StsApp
from .tlsverify import tolerate_unknown_issuers
from .world import LAMBDA_REGION, World, default_world

__all__ = ["HOPS", "StandIn"]

HOPS: Final = ("iot", "sts", "lambda")
CONFIG_NAME: Final = "iotinvoke.ini"
HOSTNAME: Final = "localhost"   # the server certificate's name; clients send it as SNI


class StandIn:
    """Local stand-in of the IoT credentials provider, STS and Lambda (see the package docstring)."""

    def __init__(self, workdir: Path | str, *, ports: tuple[int, int, int] | None = None,
                 log_requests: bool = False, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = pki.load_or_create(self.workdir)
        self._world = default_world({name: pki.certificate_id(cert.read_bytes())
                                     for name, (cert, _) in self._pki.device.items()})
        # The stand-in clock is real time plus this offset: SigV4 windows, expirations, Date.
        self.clock_offset_s = 0.0
        self._ports = ports or (0, 0, 0)
        self._log_requests = log_requests
        self._idle_timeout_s = idle_timeout_s
        self._store = CredentialStore()
        self._runtime = FunctionRuntime()
        self._hops = {name: Hop(name) for name in HOPS}
        self._invocations: list[dict[str, Any]] = []
        self._invocations_lock = threading.Lock()
        self._servers: dict[str, TlsServer] = {}
        self._errors: list[str] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "StandIn":
        if self._servers:
            raise RuntimeError("stand-in already started")
        apps: dict[str, App] = {
            "iot": IotApp(self._world, self._store),
            "sts": StsApp(self._world, self._store, LAMBDA_REGION),
            "lambda": LambdaApp(self._world, self._store, self._runtime, LAMBDA_REGION, self._record),
        }
        try:
            for hop, port in zip(HOPS, self._ports):
                server = TlsServer(port, self._tls_context(client_certificates=hop == "iot"), apps[hop],
                                   self._hops[hop], self.now, self._errors, log=self._log_requests,
                                   strict_context=self._tls_context(client_certificates=hop == "iot", strict=True),
                                   idle_timeout_s=self._idle_timeout_s)
                self._servers[hop] = server
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                          name=f"standin-{hop}", daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        self._write_config()
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
            server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------------------------------

    @property
    def world(self) -> World:
        return self._world

    @property
    def config_path(self) -> Path:
        return self.workdir / CONFIG_NAME

    @property
    def urls(self) -> dict[str, str]:
        if not self._servers:
            raise RuntimeError("stand-in not started")
        return {hop: f"https://{HOSTNAME}:{server.server_address[1]}" for hop, server in self._servers.items()}

    @property
    def ca_path(self) -> Path:
        return self._pki.ca_path

    @property
    def certs(self) -> dict[str, tuple[Path, Path]]:
        return dict(self._pki.device)

    @property
    def invocations(self) -> list[dict[str, Any]]:
        with self._invocations_lock:
            return list(self._invocations)

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of unexpected exceptions in the stand-in (its own bugs); empty when healthy."""
        return list(self._errors)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset_s)

    def count(self, hop: str) -> int:
        return self._hop(hop).count

    def connections(self, hop: str) -> int:
        """TCP connections ``hop`` accepted since the last reset_counts()."""
        return self._hop(hop).connections

    def reset_counts(self) -> None:
        for hop in self._hops.values():
            hop.reset_count()

    def issued_secrets(self) -> list[str]:
        return self._store.secrets()

    # -- switches ----------------------------------------------------------------------------------

    def fault(self, hop: str, kind: str, count: int = 1, **params: Any) -> None:
        """Apply a fault to the next ``count`` requests of ``hop`` (see httpbase.FAULT_KINDS).

        "error" answers with an AWS error: on lambda a modelled Invoke error (``code``, optional
        ``status``, ``message``, ``reason``, ``retry_after``; see awslambda.modelled_error), before
        the function runs, or after it ran with ``after_run=True``; on sts ``code``/``status``/
        ``message``; on iot ``status``/``message`` (the credentials provider sends no code).

        "tls_refuse" (iot): the next ``count`` connections verify the client certificate in the
        handshake against the stand-in's CA only, as a TLS-terminating proxy or a custom endpoint
        with its own trust store would: a certificate from another CA gets the TLS alert
        unknown_ca instead of the credentials provider's HTTP 403 (see iot.py)."""
        if kind == "tls_refuse" and hop != "iot":
            raise ValueError("tls_refuse applies to the iot hop only (the one that asks for client certificates)")
        if kind == "error" and hop == "lambda":
            from .awslambda import modelled_error

            modelled_error(params)  # a bad code or parameter fails here, in the test, not in a server thread
        self._hop(hop).set_fault(kind, count, params)

    def clear_faults(self) -> None:
        for hop in self._hops.values():
            hop.clear_fault()

    def expire_all_tokens(self) -> None:
        self._store.expire_all()

    # -- internals ---------------------------------------------------------------------------------

    def _hop(self, hop: str) -> Hop:
        if hop not in self._hops:
            raise ValueError(f"unknown hop {hop!r}; expected one of {HOPS}")
        return self._hops[hop]

    def _record(self, invocation: dict[str, Any]) -> None:
        with self._invocations_lock:
            self._invocations.append(invocation)

    def _tls_context(self, *, client_certificates: bool, strict: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._pki.server_cert, self._pki.server_key)
        if client_certificates:
            # Real mutual TLS: no certificate or an expired one fails the handshake. A certificate
            # from another CA passes it and gets HTTP 403 from IotApp, as on AWS (tlsverify.py,
            # iot.py), unless strict (the "tls_refuse" fault): then it fails the handshake too.
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self._pki.ca_path))
            if not strict:
                tolerate_unknown_issuers(context)
            # "Connections attempted by devices without the correct host_name value will fail."
            context.sni_callback = require_sni(HOSTNAME)
        return context

    def _write_config(self) -> None:
        urls = self.urls
        cert, key = (path.relative_to(self.workdir) for path in self._pki.device["device"])
        fn = "arn:aws:lambda:ap-northeast-1:111111111111:function"
        role = "arn:aws:iam::111111111111:role"
        text = f"""\
# Written by the iotinvoke local stand-in of AWS; relative paths are relative to this folder.
[DEFAULT]
sts_endpoint = {urls['sts']}
lambda_endpoint = {urls['lambda']}
ca_bundle = {self.ca_path.relative_to(self.workdir)}

[iot]
endpoint = {urls['iot']}
role_alias = iotinvoke-alias
cert = {cert}
key = {key}
ca = {self.ca_path.relative_to(self.workdir)}
thing_name = edge-0001

[dev]
function = {fn}:ADCCrossAccountTest
role_arn = {role}/iotinvoke-dev

[stg]
function = {fn}:iotinvoke-stg-echo
role_arn = {role}/iotinvoke-stg
external_id = stg-6b1c2f

[prd]
function = arn:aws:lambda:eu-west-1:222222222222:function:iotinvoke-prd-echo
role_arn = arn:aws:iam::222222222222:role/iotinvoke-prd

[direct]
function = {fn}:iotinvoke-direct-echo

# Failure cases.
[untrusted]
function = {fn}:ADCCrossAccountTest
role_arn = {role}/iotinvoke-untrusted

[noinvoke]
function = {fn}:ADCCrossAccountTest
role_arn = {role}/iotinvoke-noinvoke

[missing]
function = {fn}:iotinvoke-missing
role_arn = {role}/iotinvoke-wide

[direct-denied]
function = {fn}:iotinvoke-direct-denied

# Utility functions (iotinvoke-tools-fail, -sleep, -print, -size), named by partial ARN.
[tools]
function = 111111111111:function:iotinvoke-tools-print
role_arn = {role}/iotinvoke-tools
region = ap-northeast-1
"""
        self.config_path.write_text(text)
