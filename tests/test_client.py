"""The library's Client in-process, with its transport, clock, sleep and randomness injected:
the retry, renewal and cache rules in milliseconds, without a server."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import iotinvoke as ii
from fakes import NOW, STS_OK, Answer, FakeTransport, iot_ok, lambda_error, lost, make_client, make_config

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9



@pytest.fixture
def config(tmp_path: Path) -> Callable[..., ii.Config]:
    return lambda **dev: make_config(tmp_path, **dev)


def response(status: int, body: bytes = b"", **headers: str) -> Answer:
    return Answer(status, body, **headers)


def client(config: ii.Config, transport: FakeTransport, sleeps: list[float] | None = None,
           random: float = 0.5) -> ii.Client:
    return make_client(config, transport, sleeps, random)


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
    # AWS's wait, capped at MAX_RETRY_AFTER_S, then caller_wait's jitter (1 + 0.5 * 120)
    assert info.value.retry_after == ii.MAX_RETRY_AFTER_S + 61


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
    config: Callable[..., ii.Config], answer: Answer, exit_code: int, sends: int
) -> None:
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [answer] * 3})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport).invoke("dev", b"{}")
    assert (info.value.exit_code, transport.count("lambda")) == (exit_code, sends)
    assert info.value.exit_code == ii.REASONS[info.value.reason][0]


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
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)],
                              **{"lambda": [lambda_error(500, "ServiceException"), lost(), response(204)]})
    result = client(config(**dev), transport).invoke("dev", b"{}", invocation_type)
    assert (result.status, transport.count("lambda")) == (204, 3)


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


def test_a_warm_cache_on_a_board_behind_learns_the_time_and_sends_once(config: Callable[..., ii.Config]) -> None:
    """The board rebooted two years behind with credentials cached: the invoke's TLS handshake fails
    on the server certificate's dates before anything is sent; AWS's time is learned and the invoke
    sent once, with no backoff (it was exit 74 "may have run" when nothing had been sent)."""
    c = config()
    warm = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [response(200, b"1")]})
    client(c, warm).invoke("dev", b"{}")
    behind = NOW - 2 * 365 * 86400
    wrong = ii.IotInvokeError("the server certificate is not yet valid", "clock-wrong", "lambda")
    transport = FakeTransport(probe=[NOW], **{"lambda": [wrong, response(200, b"2")]})
    sleeps: list[float] = []
    board = make_client(c, transport, sleeps, clock=lambda: behind)
    assert board.invoke("dev", b"{}").payload == b"2"
    assert [hop for hop, _ in transport.sent] == ["lambda", "probe", "lambda"] and sleeps == []
    assert abs(board.now() - NOW) < 1


def test_a_board_ahead_cannot_learn_and_says_the_clock_is_wrong(config: Callable[..., ii.Config]) -> None:
    wrong = ii.IotInvokeError("the server certificate has expired", "clock-wrong", "iot")
    transport = FakeTransport(probe=[NOW], iot=[wrong])
    board = make_client(config(), transport, clock=lambda: NOW + 2 * 365 * 86400)
    with pytest.raises(ii.IotInvokeError) as info:
        board.invoke("dev", b"{}")
    assert (info.value.exit_code, info.value.reason, transport.count("iot")) == (ii.EX_TEMPFAIL, "clock-wrong", 1)


def test_learn_clock_false_never_probes(tmp_path: Path) -> None:
    wrong = ii.IotInvokeError("the server certificate is not yet valid", "clock-wrong", "iot")
    transport = FakeTransport(iot=[wrong])
    board = make_client(make_config(tmp_path, {"learn_clock": "false"}), transport, clock=lambda: NOW - 1e8)
    with pytest.raises(ii.IotInvokeError) as info:
        board.invoke("dev", b"{}")
    assert info.value.reason == "clock-wrong" and "learn_clock = false" in str(info.value)
    assert transport.count("probe") == 0


def test_a_refused_time_stamp_takes_aws_clock_once(config: Callable[..., ii.Config]) -> None:
    skew = lambda_error(403, "InvalidSignatureException", message="Signature expired: 20200101T000000Z is now "
                        "earlier than 20200101T001000Z (20200101T001500Z - 5 min.)")
    skew.headers["Date"] = "Fri, 15 Jan 2027 09:00:00 GMT"
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [skew, skew]})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(), transport).invoke("dev", b"{}")
    assert (info.value.reason, transport.count("lambda")) == ("clock-skew", 2)
    dates = [kw["headers"]["X-Amz-Date"] for hop, kw in transport.sent if hop == "lambda"]
    assert (dates[0], dates[1]) == ("20270115T080000Z", "20270115T090000Z")


def test_idempotent_answers_lost_every_time_stay_74(config: Callable[..., ii.Config]) -> None:
    transport = FakeTransport(iot=[iot_ok()], sts=[response(200, STS_OK)], **{"lambda": [lost()] * 3})
    with pytest.raises(ii.IotInvokeError) as info:
        client(config(idempotent="true"), transport).invoke("dev", b"{}")
    assert (info.value.exit_code, transport.count("lambda")) == (ii.EX_IOERR, 3)
    assert "may have run, once per attempt" in str(info.value)


def test_an_answer_lost_at_hop_2_is_transient_and_resent(config: Callable[..., ii.Config]) -> None:
    transport = FakeTransport(iot=[iot_ok()], sts=[lost(hop="sts"), response(200, STS_OK)],
                              **{"lambda": [response(200, b"1")]})
    assert client(config(), transport).invoke("dev", b"{}").payload == b"1"
    assert transport.count("sts") == 2


@pytest.mark.parametrize("endpoint", ["https://lambda.eu-west-1.amazonaws.com", "https://LAMBDA.Example.com:8443",
                                      "https://lambda.example.com:443", "https://[::1]:9443"])
def test_the_signature_is_the_one_botocore_makes_from_the_url_alone(tmp_path: Path, endpoint: str) -> None:
    """iotinvoke sets the Host header before botocore signs (botocore would parse the URL for it);
    botocore's signer, left to derive the host from the URL itself, must reach the same signature."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    transport = FakeTransport(iot=[iot_ok()], sts=[Answer(200, STS_OK)], **{"lambda": [Answer(200, b"{}")]})
    make_client(make_config(tmp_path, lambda_endpoint=endpoint), transport).invoke("dev", b'{"k": 1}')
    sent = [options for hop, options in transport.sent if hop == "lambda"][0]
    headers = dict(sent["headers"])
    unsigned = {k: v for k, v in headers.items() if k not in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "Host")}
    request = AWSRequest(method="POST", url=sent["url"], headers=unsigned, data=b'{"k": 1}')
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials("ASIASTS", "sts-secret", "sts-token"), "lambda", "eu-west-1")
    signer._modify_request_before_signing(request)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert headers["Authorization"].endswith("Signature=" + signature), (headers, endpoint)
    host = endpoint.split("://")[1].lower()
    assert headers["Host"] == (host[:-len(":443")] if host.endswith(":443") else host)
