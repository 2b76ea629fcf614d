"""Stand-in fault switches (per hop) and request counters."""
from __future__ import annotations

import http.client
import ssl
import time
from typing import Callable

import pytest

from standin import StandIn
from standin.testclient import Creds, Reply, TestClient

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

ADC = "arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest"
DEV = "arn:aws:iam::111111111111:role/iotinvoke-dev"
CUT = (ConnectionError, ssl.SSLError, http.client.HTTPException)   # what a dropped connection looks like


@pytest.fixture
def device(aws_client: TestClient) -> Creds:
    return aws_client.device_creds()


@pytest.fixture
def dev(aws_client: TestClient, device: Creds) -> Creds:
    return aws_client.role_creds(device, DEV)


@pytest.fixture
def call(aws_client: TestClient, device: Creds, dev: Creds) -> Callable[[str], Reply]:
    """One ordinary, successful request per hop (credentials fetched before any fault is set)."""
    calls: dict[str, Callable[[], Reply]] = {
        "iot": lambda: aws_client.iot(),
        "sts": lambda: aws_client.assume(device, DEV),
        "lambda": lambda: aws_client.invoke(dev, ADC),
    }
    return lambda hop: calls[hop]()


def test_throttle_iot(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("iot", "throttle")
    reply = call("iot")
    assert (reply.status, reply.json()) == (429, {"message": "Rate exceeded"})
    assert call("iot").status == 200   # the fault applied to one request only


def test_throttle_sts(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("sts", "throttle")
    reply = call("sts")
    assert (reply.status, reply.error_code) == (400, "Throttling")
    assert (reply.xml("sts:Error/sts:Type"), reply.xml("sts:Error/sts:Message")) == ("Sender", "Rate exceeded")
    assert call("sts").status == 200


@pytest.mark.parametrize("params,retry_after", [({}, "1"), ({"retry_after": 7}, "7")])
def test_throttle_lambda(aws: StandIn, call: Callable[[str], Reply], params: dict[str, int], retry_after: str) -> None:
    aws.fault("lambda", "throttle", **params)
    reply = call("lambda")
    assert (reply.status, reply.error_code) == (429, "TooManyRequestsException")
    assert reply.header("Retry-After") == retry_after
    assert reply.json() == {"Reason": "CallerRateLimitExceeded", "Type": "User", "message": "Rate Exceeded."}
    assert call("lambda").status == 200


def test_5xx_iot(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("iot", "5xx")
    reply = call("iot")
    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})


def test_5xx_sts(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("sts", "5xx", status=503)
    reply = call("sts")
    assert (reply.status, reply.error_code, reply.xml("sts:Error/sts:Type")) == (503, "InternalFailure", "Receiver")


def test_5xx_lambda(aws: StandIn, call: Callable[[str], Reply]) -> None:
    before = len(aws.invocations)
    aws.fault("lambda", "5xx")
    reply = call("lambda")
    assert (reply.status, reply.error_code, reply.json()["Type"]) == (500, "ServiceException", "Service")
    assert len(aws.invocations) == before   # refused before processing


def test_fault_count_applies_to_that_many_requests(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("lambda", "5xx", count=2)
    assert [call("lambda").status for _ in range(3)] == [500, 500, 200]


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
def test_drop_before_reading_the_body(aws: StandIn, call: Callable[[str], Reply], hop: str) -> None:
    before = len(aws.invocations)
    aws.reset_counts()
    aws.fault(hop, "drop_before")
    with pytest.raises(CUT):
        call(hop)
    assert aws.count(hop) == 1
    assert len(aws.invocations) == before
    assert call(hop).status == 200


def test_drop_after_processing_lambda_still_runs_the_function(aws: StandIn, aws_client: TestClient,
                                                              dev: Creds) -> None:
    aws.fault("lambda", "drop_after")
    with pytest.raises(CUT):
        aws_client.invoke(dev, ADC, {"lost": "answer"})
    assert aws.invocations[-1]["event"] == {"lost": "answer"}


def test_drop_after_processing_sts_still_issues_credentials(aws: StandIn, call: Callable[[str], Reply]) -> None:
    issued = len(aws.issued_secrets())
    aws.fault("sts", "drop_after")
    with pytest.raises(CUT):
        call("sts")
    assert len(aws.issued_secrets()) == issued + 2


def test_drop_after_iot(aws: StandIn, call: Callable[[str], Reply]) -> None:
    aws.fault("iot", "drop_after")
    with pytest.raises(CUT):
        call("iot")


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
def test_delay(aws: StandIn, call: Callable[[str], Reply], hop: str) -> None:
    aws.fault(hop, "delay", seconds=0.3)
    started = time.monotonic()
    assert call(hop).status == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
def test_respond_with_a_canned_answer(aws: StandIn, call: Callable[[str], Reply], hop: str) -> None:
    aws.fault(hop, "respond", status=200, headers={"Content-Type": "text/html", "X-Odd": "1"}, body=b"<html>garbled")
    reply = call(hop)
    assert (reply.status, reply.body) == (200, b"<html>garbled")
    assert (reply.header("Content-Type"), reply.header("X-Odd")) == ("text/html", "1")


def test_counters_count_every_request_per_hop(aws: StandIn, aws_client: TestClient, call: Callable[[str], Reply]) -> None:
    aws.reset_counts()
    call("iot")
    aws.fault("sts", "throttle")
    call("sts")
    call("sts")
    aws_client.send("lambda", "POST", "/2015-03-31/functions/x/invocations", body=b"{}")   # unsigned: refused
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 2, 1)
    aws.reset_counts()
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (0, 0, 0)


def test_unknown_fault_kind_or_hop_is_refused(aws: StandIn) -> None:
    with pytest.raises(ValueError):
        aws.fault("lambda", "explode")
    with pytest.raises(ValueError):
        aws.fault("s3", "throttle")
    with pytest.raises(ValueError):
        aws.count("s3")
