"""The library's Client in-process, with its transport, clock, sleep and randomness injected:
the retry, renewal and cache rules in milliseconds, without a server."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from urllib3._collections import HTTPHeaderDict  # in urllib3 1.26 and 2.x alike

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

NOW = 1_800_000_000.0
STS_OK = (
    "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIASTS</AccessKeyId>"
    "<SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-token</SessionToken>"
    "<Expiration>2027-06-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"
).encode()


def iot_ok(token: str = "iot-token") -> ii._Response:
    body = {"credentials": {"accessKeyId": "ASIAIOT", "secretAccessKey": "iot-secret", "sessionToken": token,
                            "expiration": "2027-06-01T00:00:00Z"}}
    return response(200, json.dumps(body).encode())


def response(status: int, body: bytes = b"", **headers: str) -> ii._Response:
    return ii._Response(status, HTTPHeaderDict({k.replace("_", "-"): v for k, v in headers.items()}), body)


def lambda_error(status: int, code: str, **fields: str) -> ii._Response:
    return response(status, json.dumps({"Type": "User", "message": "detail", **fields}).encode(), x_amzn_ErrorType=code)


class FakeTransport:
    """Answers each hop from a script: a _Response, or an exception to raise, in order."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = {hop: list(answers) for hop, answers in script.items()}
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, hop: str, method: str, url: str, headers: dict[str, str], body: bytes | None, **kw: Any) -> Any:
        self.sent.append((hop, kw))
        answer = self.script[hop].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def count(self, hop: str) -> int:
        return sum(1 for sent, _ in self.sent if sent == hop)


@pytest.fixture
def config(tmp_path: Path) -> Callable[..., ii.Config]:
    (tmp_path / "cert.pem").write_text("not parsed here")
    (tmp_path / "key.pem").write_text("not parsed here")

    def make(**dev: str) -> ii.Config:
        lines = ["[iot]", "endpoint = abc.credentials.iot.eu-west-1.amazonaws.com", "role_alias = alias",
                 "cert = cert.pem", "key = key.pem", "[dev]",
                 "function = arn:aws:lambda:eu-west-1:111111111111:function:f",
                 "role_arn = arn:aws:iam::111111111111:role/r"] + ["%s = %s" % kv for kv in dev.items()]
        (tmp_path / "iotinvoke.ini").write_text("\n".join(lines) + "\n")
        return ii.load_config(str(tmp_path / "iotinvoke.ini"), environ={"IOTINVOKE_CACHE_DIR": str(tmp_path / "c")})

    return make


def client(config: ii.Config, transport: FakeTransport, sleeps: list[float] | None = None,
           random: float = 0.5) -> ii.Client:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if sleeps is not None:
            sleeps.append(seconds)

    return ii.Client(config, transport=transport, clock=lambda: NOW, monotonic=lambda: clock[0], sleep=sleep,
                     random=lambda: random)


def test_throttles_are_retried_with_backoff_and_retry_after(config: Callable[..., ii.Config]) -> None:
    transport = FakeTransport(iot=[response(429, b'{"message":"Rate exceeded"}', Retry_After="3"),
                                   response(429, b"{}"), iot_ok()],
                              sts=[response(200, STS_OK)], **{"lambda": [response(200, b'"ok"')]})
    sleeps: list[float] = []
    result = client(config(), transport, sleeps).invoke("dev", b"{}")
    assert result.payload == b'"ok"' and transport.count("iot") == 3
    assert sleeps[0] == 3.0 + 0.5 * 0.4  # Retry-After, then the jittered backoff on top (retry_delay)
    assert 0 < sleeps[1] <= ii.BACKOFF_CAP_S


def test_a_retry_after_beyond_the_budget_is_not_slept(config: Callable[..., ii.Config]) -> None:
    transport = FakeTransport(iot=[response(429, b"{}", Retry_After="3600")])
    sleeps: list[float] = []
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport, sleeps).invoke("dev", b"{}")
    assert (info.value.exit_code, sleeps, transport.count("iot")) == (ii.EX_TEMPFAIL, [], 1)
    assert info.value.retry_after == 3600 + 61  # AWS's wait, then caller_wait's jitter (1 + 0.5 * 120)


@pytest.mark.parametrize(
    "answer, exit_code, sends",
    [
        (lambda_error(500, "ServiceException"), ii.EX_IOERR, 1),  # may have run: never twice
        (lambda_error(410, "EFSIOException"), ii.EX_IOERR, 1),
        (lambda_error(502, "KMSAccessDeniedException"), ii.EX_UNAVAILABLE, 1),  # only the owner can fix it
        (lambda_error(403, "EFSMountFailureException"), ii.EX_UNAVAILABLE, 1),  # 403, but not IAM's
        (lambda_error(409, "ResourceConflictException"), ii.EX_TEMPFAIL, 3),  # Pending: nothing ran
        (lambda_error(408, "EFSMountTimeoutException"), ii.EX_TEMPFAIL, 3),
        (lambda_error(429, "TooManyRequestsException", Reason="ConcurrentInvocationLimitExceeded"), ii.EX_TEMPFAIL, 3),
        # Reserved concurrency used up (or 0): the caller is told to wait a minute, not this process.
        (lambda_error(429, "TooManyRequestsException", Reason="ReservedFunctionConcurrentInvocationLimitExceeded"),
         ii.EX_TEMPFAIL, 1),
        (response(503, b"<html>busy</html>"), ii.EX_IOERR, 1),  # an unknown 5xx may come after the run
    ],
)
def test_invoke_errors_are_resent_only_when_nothing_ran(
    config: Callable[..., ii.Config], answer: ii._Response, exit_code: int, sends: int
) -> None:
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [answer] * 3})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport).invoke("dev", b"{}")
    assert (info.value.exit_code, transport.count("lambda")) == (exit_code, sends)
    assert info.value.reason == ii._decide("lambda", answer.status, info.value.code)[1] or info.value.reason.endswith("-limit")


def test_reserved_concurrency_tells_the_caller_to_wait_longer(config: Callable[..., ii.Config]) -> None:
    answer = lambda_error(429, "TooManyRequestsException", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [answer] * 3})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport).invoke("dev", b"{}")
    assert info.value.reason == "reserved-concurrency-limit"
    assert str(info.value).endswith("[reserved-concurrency-limit; retry after 60 s]")


@pytest.mark.parametrize("dev, invocation_type", [({"idempotent": "true"}, "RequestResponse"), ({}, "DryRun")])
def test_what_may_have_run_is_resent_when_running_twice_is_harmless(
    config: Callable[..., ii.Config], dev: dict[str, str], invocation_type: str
) -> None:
    lost = ii._exchange_error("lambda", "https://x", OSError("reset"), False, may_run=False, expired=False,
                              deadline_s=None)
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)],
                              **{"lambda": [lambda_error(500, "ServiceException"), lost, response(204)]})
    result = client(config(**dev), transport).invoke("dev", b"{}", invocation_type)
    assert (result.status, transport.count("lambda")) == (204, 3)
    assert [kw["may_run"] for hop, kw in transport.sent if hop == "lambda"] == [False] * 3


def test_refused_credentials_are_renewed_once(config: Callable[..., ii.Config]) -> None:
    refused = lambda_error(403, "UnrecognizedClientException")
    transport = FakeTransport(iot=[iot_ok("t1"), iot_ok("t2")], sts=[response(200, STS_OK), response(200, STS_OK)],
                              **{"lambda": [refused, response(200, b"1")]})
    assert client(config(), transport).invoke("dev", b"{}").payload == b"1"
    assert (transport.count("iot"), transport.count("sts"), transport.count("lambda")) == (1, 2, 2)


def test_a_warm_client_sends_only_the_invoke(config: Callable[..., ii.Config]) -> None:
    c = config()
    first = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [response(200, b"1")]})
    client(c, first).invoke("dev", b"{}")
    second = FakeTransport(**{"lambda": [response(200, b"2")]})
    assert client(c, second).invoke("dev", b"{}").payload == b"2"  # credentials from the disk cache
    assert [hop for hop, _ in second.sent] == ["lambda"]


def test_given_credentials_are_used_and_never_renewed(config: Callable[..., ii.Config]) -> None:
    creds = ii.Credentials("ASIAX", "secret", "token", NOW + 3600, NOW)
    transport = FakeTransport(**{"lambda": [lambda_error(403, "UnrecognizedClientException")]})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport).invoke("dev", b"{}", "DryRun", credentials=creds)
    assert info.value.reason == "token-invalid" and [hop for hop, _ in transport.sent] == ["lambda"]
