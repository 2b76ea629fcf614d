"""The Client without a server: a scripted transport, AWS-shaped answers and a configuration.

A transport is anything with send(hop, method, url, headers, body, **options) that returns an answer
(status, headers, body) or raises IotInvokeError with the reason the real one would give; the
Client's clock, sleep and randomness are injected, so the decision loop runs in milliseconds.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from urllib3._collections import HTTPHeaderDict  # in urllib3 1.26 and 2.x alike

import iotinvoke as ii

NOW = 1_800_000_000.0
STS_OK = (
    "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIASTS</AccessKeyId>"
    "<SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-token</SessionToken>"
    "<Expiration>2027-06-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"
).encode()


class Answer:
    """An HTTP answer as a transport returns it."""

    def __init__(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.status = status
        self.headers = HTTPHeaderDict({k.replace("_", "-"): v for k, v in headers.items()})
        self.body = body


def iot_ok(token: str = "iot-token", expiration: str = "2027-06-01T00:00:00Z") -> Answer:
    body = {"credentials": {"accessKeyId": "ASIAIOT", "secretAccessKey": "iot-secret", "sessionToken": token,
                            "expiration": expiration}}
    return Answer(200, json.dumps(body).encode())


def lambda_error(status: int, code: str, **fields: str) -> Answer:
    return Answer(status, json.dumps({"Type": "User", "message": "detail", **fields}).encode(), x_amzn_ErrorType=code)


def sts_error(code: str, message: str, status: int = 403, **headers: str) -> Answer:
    body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-9</RequestId></ErrorResponse>")
    return Answer(status, body.encode(), **headers)


def lost(reason: str = "answer-lost", hop: str = "lambda") -> ii.IotInvokeError:
    """What the transport raises when the connection fails: before sending, or after."""
    return ii.IotInvokeError("the connection failed (reset)", reason, hop)


class FakeTransport:
    """Answers each hop from a script: an Answer, or an exception to raise, in order."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = {hop: list(answers) for hop, answers in script.items()}
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, hop: str, method: str, url: str, headers: dict[str, str], body: bytes | None, **kw: Any) -> Any:
        self.sent.append((hop, dict(kw, url=url, headers=headers)))
        answer = self.script[hop].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def probe_time(self, url: str, ca: str | None, client_cert: Any) -> tuple[float | None, str]:
        self.sent.append(("probe", {"url": url}))
        answer = self.script["probe"].pop(0)
        return answer, ""

    def count(self, hop: str) -> int:
        return sum(1 for sent, _ in self.sent if sent == hop)


def write_config(folder: Path, iot: dict[str, str] | None = None, **dev: str) -> Path:
    """An iotinvoke.ini in folder (certificate and key files beside it, 0600) with one environment, dev;
    ``iot``: more keys for [iot]."""
    for name in ("cert.pem", "key.pem"):
        (folder / name).write_text("not parsed here")
        (folder / name).chmod(0o600)
    lines = ["[iot]", "endpoint = abc.credentials.iot.eu-west-1.amazonaws.com", "role_alias = alias",
             "cert = cert.pem", "key = key.pem"] + ["%s = %s" % kv for kv in (iot or {}).items()] + ["[dev]", "function = arn:aws:lambda:eu-west-1:111111111111:function:f",
             "role_arn = arn:aws:iam::111111111111:role/r"] + ["%s = %s" % kv for kv in dev.items()]
    path = folder / "iotinvoke.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_config(folder: Path, iot: dict[str, str] | None = None, **dev: str) -> ii.Config:
    return ii.load_config(str(write_config(folder, iot, **dev)), environ={"IOTINVOKE_CACHE_DIR": str(folder / "c")})


def make_client(config: ii.Config, transport: FakeTransport, sleeps: list[float] | None = None,
                random: float = 0.5, clock: Callable[[], float] = lambda: NOW, **options: Any) -> ii.Client:
    elapsed = [0.0]

    def sleep(seconds: float) -> None:
        elapsed[0] += seconds
        if sleeps is not None:
            sleeps.append(seconds)

    return ii.Client(config, transport=transport, clock=clock, monotonic=lambda: elapsed[0], sleep=sleep,
                     random=lambda: random, environ={"IOTINVOKE_CACHE_DIR": config.cache_dir or ""}, **options)
