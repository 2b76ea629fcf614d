"""Each hop's answers: success documents, AWS's error shapes, and what is refused as not understood."""
from __future__ import annotations

import json

import pytest

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

NOW = 1_700_000_000.0
IOT_OK = {
    "credentials": {
        "accessKeyId": "ASIAEXAMPLEEXAMPLE1",
        "secretAccessKey": "s" * 40,
        "sessionToken": "t" * 300,
        "expiration": "2023-11-14T23:13:20Z",
    }
}
STS_OK = b"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/r/s</Arn><AssumedRoleId>ARO1:s</AssumedRoleId></AssumedRoleUser>
    <Credentials><AccessKeyId>ASIASTSEXAMPLE00001</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>
      <SessionToken>
        tok1
        tok2
      </SessionToken><Expiration>2023-11-14T23:13:20.359Z</Expiration></Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""


def response(status: int, body: bytes, **headers: str) -> ii._Response:
    from urllib3._collections import HTTPHeaderDict  # where both urllib3 1.26 and 2.x have it

    return ii._Response(status, HTTPHeaderDict({k.replace("_", "-"): v for k, v in headers.items()}), body)


def env(direct: bool = False) -> ii.Environment:
    return ii.Environment(name="dev", function="f", role_arn=None if direct else "arn:aws:iam::111111111111:role/r")


def test_iot_credentials_document() -> None:
    creds = ii._parse_iot_credentials(json.dumps(IOT_OK).encode(), NOW)
    assert creds.access_key == "ASIAEXAMPLEEXAMPLE1"
    assert creds.expiration == 1_700_003_600.0 and creds.issued == NOW
    assert "s" * 40 not in repr(creds) and "t" * 300 not in repr(creds)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"credentials": null}',
        json.dumps({"credentials": {**IOT_OK["credentials"], "expiration": "tomorrow"}}).encode(),
        json.dumps({"credentials": {k: v for k, v in IOT_OK["credentials"].items() if k != "sessionToken"}}).encode(),
        json.dumps({"credentials": {**IOT_OK["credentials"], "accessKeyId": 5}}).encode(),
        json.dumps({"credentials": {**IOT_OK["credentials"], "secretAccessKey": "a\nb"}}).encode(),
        b"\xff\xfe\x00garbage",
        b"[" * 100000,
    ],
)
def test_iot_credentials_refused_as_not_understood(body: bytes) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        ii._parse_iot_credentials(body, NOW)
    assert info.value.exit_code == ii.EX_PROTOCOL and info.value.hop == "iot"


def test_assume_role_document_with_whitespace_in_token_and_milliseconds() -> None:
    creds = ii._parse_assume_role(STS_OK, NOW)
    assert (creds.access_key, creds.secret_key, creds.token) == ("ASIASTSEXAMPLE00001", "secret", "tok1tok2")
    assert creds.expiration == pytest.approx(1_700_003_600.359)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<AssumeRoleResponse>",
        b"<Other><AssumeRoleResult/></Other>",
        STS_OK.replace(b"<SessionToken>", b"<X>").replace(b"</SessionToken>", b"</X>"),
        STS_OK.replace(b"2023-11-14T23:13:20.359Z", b"soon"),
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><AssumeRoleResponse>&lol2;</AssumeRoleResponse>',
    ],
)
def test_assume_role_refused_as_not_understood(body: bytes) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        ii._parse_assume_role(body, NOW)
    assert info.value.exit_code == ii.EX_PROTOCOL and info.value.hop == "sts"


def config() -> ii.Config:
    c = ii.Config("x.ini")
    c.role_alias, c.thing_name = "alias", "edge-0001"
    return c


@pytest.mark.parametrize(
    "status, message, exit_code, phrase",
    [
        (403, "Invalid thing name passed", ii.EX_NOPERM, "thing_name 'edge-0001' is not attached"),
        (403, "Access Denied", ii.EX_NOPERM, "iot:AssumeRoleWithCertificate"),
        (404, "Role alias does not exist", ii.EX_UNAVAILABLE, "role alias 'alias' does not exist"),
        (400, "Unable to assume the role, or the role to assume does not exist", ii.EX_UNAVAILABLE, "Unable to assume"),
        (429, "Rate exceeded", ii.EX_TEMPFAIL, "throttled"),
        (503, "", ii.EX_TEMPFAIL, "server error"),
        (302, "", ii.EX_PROTOCOL, "unexpected answer"),
    ],
)
def test_iot_errors(status: int, message: str, exit_code: int, phrase: str) -> None:
    body = json.dumps({"message": message}).encode() if message else b""
    error = ii._aws_error(response(status, body, x_amzn_RequestId="rid-1"), "iot", None, config())
    assert error.exit_code == exit_code and phrase in str(error)
    assert f"HTTP {status}" in str(error) and "rid-1" in str(error)
    assert isinstance(error, ii._Retryable) == (exit_code == ii.EX_TEMPFAIL)


def sts_error(code: str, message: str, kind: str = "Sender") -> bytes:
    return (
        f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{kind}</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-9</RequestId></ErrorResponse>"
    ).encode()


@pytest.mark.parametrize(
    "status, code, message, exit_code, kind",
    [
        (403, "AccessDenied", "User: arn:x is not authorized to perform: sts:AssumeRole", ii.EX_NOPERM, ii.IotInvokeError),
        (403, "ExpiredToken", "The security token included in the request is expired", ii.EX_NOPERM, ii._BadCredentials),
        (403, "InvalidClientTokenId", "The security token included in the request is invalid.", ii.EX_NOPERM, ii._BadCredentials),
        (403, "SignatureDoesNotMatch", "Signature expired: 20150806T131223Z is now earlier than 20150806T131534Z (20150806T132034Z - 15 min.)", ii.EX_NOPERM, ii._ClockSkew),
        (403, "SignatureDoesNotMatch", "The request signature we calculated does not match", ii.EX_NOPERM, ii.IotInvokeError),
        (400, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit", ii.EX_UNAVAILABLE, ii.IotInvokeError),
        (400, "Throttling", "Rate exceeded", ii.EX_TEMPFAIL, ii._Retryable),
        (500, "InternalFailure", "oops", ii.EX_TEMPFAIL, ii._Retryable),
    ],
)
def test_sts_errors(status: int, code: str, message: str, exit_code: int, kind: type) -> None:
    error = ii._aws_error(response(status, sts_error(code, message), Date="Wed, 06 Aug 2015 13:20:34 GMT"), "sts", env(), config())
    assert type(error) is kind and error.exit_code == exit_code
    assert error.code == code and error.request_id == "req-9"
    if kind is ii._ClockSkew:
        assert error.server_time == 1438867234.0


def lambda_error(status: int, code: str, message: str, **headers: str) -> ii.IotInvokeError:
    body = json.dumps({"Type": "User", "Message": message}).encode()
    return ii._aws_error(response(status, body, x_amzn_ErrorType=code + ":http://internal.amazon.com/coral/", **headers), "lambda", env(), config())


@pytest.mark.parametrize(
    "status, code, exit_code",
    [
        (403, "AccessDeniedException", ii.EX_NOPERM),
        (404, "ResourceNotFoundException", ii.EX_UNAVAILABLE),
        (400, "InvalidParameterValueException", ii.EX_UNAVAILABLE),
        (413, "RequestEntityTooLargeException", ii.EX_DATAERR),
        (429, "TooManyRequestsException", ii.EX_TEMPFAIL),
        (502, "EC2ThrottledException", ii.EX_TEMPFAIL),
        (500, "ServiceException", ii.EX_IOERR),  # may come after the function ran
        (403, "UnrecognizedClientException", ii.EX_NOPERM),
    ],
)
def test_lambda_errors(status: int, code: str, exit_code: int) -> None:
    error = lambda_error(status, code, "detail text")
    assert error.exit_code == exit_code and error.code == code  # the ":http://..." suffix is cut
    assert "detail text" in str(error)


def test_lambda_retry_after_and_skew() -> None:
    throttled = lambda_error(429, "TooManyRequestsException", "Rate Exceeded.", Retry_After="2")
    assert isinstance(throttled, ii._Retryable) and throttled.retry_after == 2.0
    skew = lambda_error(403, "InvalidSignatureException", "Signature not yet current: 20260101T000000Z is still later than 20251231T000500Z (20251231T000000Z + 5 min.)")
    assert isinstance(skew, ii._ClockSkew)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2018-01-18T09:18:06Z", 1516267086.0),
        ("2018-01-18T09:18:06.5Z", 1516267086.5),
        ("2018-01-18T09:18:06+00:00", 1516267086.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert ii._parse_time(text) == expected


@pytest.mark.parametrize("text", ["2018-01-18 09:18:06Z", "2018-01-18T09:18:06+09:00", "", None, 1516267086])
def test_parse_time_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        ii._parse_time(text)


def test_failures_after_sending_an_invoke_are_never_resent() -> None:
    eof = Exception("EOF occurred in violation of protocol (_ssl.c:2427)")
    lost = ii._exchange_error("lambda", "https://x", eof, False, may_run=True, expired=False, deadline_s=None)
    assert lost.exit_code == ii.EX_IOERR and not isinstance(lost, ii._Retryable) and lost.reason == "answer-lost"
    assert isinstance(ii._exchange_error("sts", "https://x", eof, False, may_run=False, expired=False, deadline_s=None),
                      ii._Retryable)
    refused = Exception("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    assert ii._exchange_error("iot", "https://x", refused, True, may_run=False, expired=False,
                              deadline_s=None).exit_code == ii.EX_NOPERM


def test_failures_while_connecting_sent_nothing() -> None:
    eof = Exception("EOF occurred in violation of protocol (_ssl.c:2427)")
    interrupted = ii._connect_error("iot", "https://x", eof, True, None, "")
    assert isinstance(interrupted, ii._Retryable) and interrupted.reason == "tls-interrupted"
    untrusted = Exception("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer")
    error = ii._connect_error("lambda", "https://x", untrusted, False, "/etc/ca.pem", "AWS_CA_BUNDLE")
    assert (error.exit_code, error.reason) == (ii.EX_UNAVAILABLE, "tls-untrusted")
    assert "/etc/ca.pem (AWS_CA_BUNDLE)" in str(error)
    refused = Exception("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    assert ii._connect_error("iot", "https://x", refused, True, None, "").exit_code == ii.EX_NOPERM
