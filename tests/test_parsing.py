"""Each hop's answers through the Client's public surface: success documents, AWS's error shapes,
and what is refused as not understood."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import iotinvoke as ii
from fakes import STS_OK, Answer, FakeTransport, lambda_error, make_client, make_config, sts_error

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

IOT_OK = {"credentials": {"accessKeyId": "ASIAEXAMPLEEXAMPLE1", "secretAccessKey": "s" * 40,
                          "sessionToken": "t" * 300, "expiration": "2023-11-14T23:13:20Z"}}
STS_SPACED = b"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
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
SOURCE = ii.Credentials("ASIAX", "secret", "token", 2_000_000_000.0, 1_700_000_000.0)


def hop1(tmp_path: Path, *answers: object, **dev: str) -> ii.Credentials:
    transport = FakeTransport(iot=list(answers))
    return make_client(make_config(tmp_path, **dev), transport).fetch_iot_credentials()


def hop2(tmp_path: Path, answer: Answer) -> ii.Credentials:
    return make_client(make_config(tmp_path), FakeTransport(sts=[answer])).assume_role("dev", SOURCE)


def hop3(tmp_path: Path, answer: Answer) -> ii.InvokeResult:
    transport = FakeTransport(**{"lambda": [answer] * 3})
    return make_client(make_config(tmp_path), transport).invoke("dev", b"{}", credentials=SOURCE)


def test_iot_credentials_document(tmp_path: Path) -> None:
    creds = hop1(tmp_path, Answer(200, json.dumps(IOT_OK).encode()))
    assert creds.access_key == "ASIAEXAMPLEEXAMPLE1" and creds.expiration == 1_700_003_600.0
    assert "s" * 40 not in repr(creds) and "t" * 300 not in repr(creds)


@pytest.mark.parametrize("expiration, expected", [("2018-01-18T09:18:06Z", 1516267086.0),
                                                  ("2018-01-18T09:18:06.5Z", 1516267086.5),
                                                  ("2018-01-18T09:18:06+00:00", 1516267086.0)])
def test_expiration_formats(tmp_path: Path, expiration: str, expected: float) -> None:
    body = {"credentials": {**IOT_OK["credentials"], "expiration": expiration}}
    assert hop1(tmp_path, Answer(200, json.dumps(body).encode())).expiration == expected


@pytest.mark.parametrize("body, reason", [
    (b"", "answer-garbled"), (b"{", "answer-garbled"), (b"[]", "answer-garbled"),
    (b'{"credentials": null}', "answer-garbled"),
    (json.dumps({"credentials": {**IOT_OK["credentials"], "expiration": "tomorrow"}}).encode(), "answer-garbled"),
    (json.dumps({"credentials": {**IOT_OK["credentials"], "expiration": "2018-01-18T09:18:06+09:00"}}).encode(),
     "answer-garbled"),
    (json.dumps({"credentials": {k: v for k, v in IOT_OK["credentials"].items() if k != "sessionToken"}}).encode(),
     "answer-garbled"),
    (json.dumps({"credentials": {**IOT_OK["credentials"], "accessKeyId": 5}}).encode(), "credentials-malformed"),
    (json.dumps({"credentials": {**IOT_OK["credentials"], "sessionToken": "a\r\nX-Evil: 1"}}).encode(),
     "credentials-malformed"),
    (b"[" * 100_000, "answer-garbled"),
])
def test_iot_garbled_answers_are_76_with_a_reason(tmp_path: Path, body: bytes, reason: str) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        hop1(tmp_path, Answer(200, body))
    assert (info.value.exit_code, info.value.reason, info.value.hop) == (ii.EX_PROTOCOL, reason, "iot")
    assert str(info.value).endswith("[%s]" % reason)


def test_assume_role_document(tmp_path: Path) -> None:
    creds = hop2(tmp_path, Answer(200, STS_SPACED))
    assert (creds.access_key, creds.token) == ("ASIASTSEXAMPLE00001", "tok1tok2")
    assert creds.expiration == 1_700_003_600.359


@pytest.mark.parametrize("body, reason", [
    (b"not xml", "answer-garbled"),
    (b"<AssumeRoleResponse/>", "answer-garbled"),
    (STS_OK.replace(b"2027-06-01T00:00:00Z", b"soon"), "answer-garbled"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "ASIAEVIL">]>' + STS_OK.replace(b"ASIASTS", b"&e;"), "answer-dtd"),
    # UTF-16 hides "<!DOCTYPE" from a byte search; AWS only ever sends UTF-8.
    ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e "ASIAEVIL">]>'.encode("utf-16")
     + STS_OK.replace(b"ASIASTS", b"&e;").decode().encode("utf-16")[2:], "answer-not-utf8"),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?>' + STS_OK, "answer-not-utf8"),
    (b"\xef\xbb\xbf" + STS_OK, "answer-not-utf8"),
])
def test_assume_role_refusals(tmp_path: Path, body: bytes, reason: str) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        hop2(tmp_path, Answer(200, body))
    assert (info.value.exit_code, info.value.reason) == (ii.EX_PROTOCOL, reason)
    assert "ASIAEVIL" not in str(info.value)


@pytest.mark.parametrize("status, message, exit_code, phrase", [
    (403, "Invalid thing name passed", ii.EX_NOPERM, "thing_name 'edge-0001' is not attached"),
    (403, "Access Denied", ii.EX_NOPERM, "iot:AssumeRoleWithCertificate"),
    (403, "Certificate is invalid on this endpoint", ii.EX_NOPERM, "not valid on this endpoint"),
    (404, "Role alias does not exist", ii.EX_UNAVAILABLE, "role alias 'alias' does not exist"),
    (400, "Unable to assume the role, or the role to assume does not exist", ii.EX_UNAVAILABLE, "Unable to assume"),
    (429, "Rate exceeded", ii.EX_TEMPFAIL, "throttled"),
    (400, "Rate exceeded", ii.EX_TEMPFAIL, "throttled"),
    (503, "", ii.EX_TEMPFAIL, "server error"),
    (302, "", ii.EX_PROTOCOL, "unexpected answer"),
])
def test_iot_errors(tmp_path: Path, status: int, message: str, exit_code: int, phrase: str) -> None:
    answer = Answer(status, json.dumps({"message": message}).encode() if message else b"", x_amzn_RequestId="rid-1")
    transport = FakeTransport(iot=[answer] * 3)
    with pytest.raises(ii.IotInvokeError) as info:
        make_client(make_config(tmp_path, {"thing_name": "edge-0001"}), transport).fetch_iot_credentials()
    assert info.value.exit_code == exit_code and phrase in str(info.value)
    assert f"HTTP {status}" in str(info.value) and "rid-1" in str(info.value)
    assert transport.count("iot") == (3 if exit_code == ii.EX_TEMPFAIL else 1)


@pytest.mark.parametrize("status, code, message, exit_code, reason", [
    (403, "AccessDenied", "User: arn:x is not authorized to perform: sts:AssumeRole", ii.EX_NOPERM,
     "assume-role-denied"),
    (403, "ExpiredToken", "The security token included in the request is expired", ii.EX_NOPERM, "token-expired"),
    (403, "InvalidClientTokenId", "The security token included in the request is invalid.", ii.EX_NOPERM,
     "token-invalid"),
    (403, "SignatureDoesNotMatch", "Signature expired: 20150806T131223Z is now earlier than 20150806T131534Z "
     "(20150806T132034Z - 15 min.)", ii.EX_NOPERM, "clock-skew"),
    (403, "SignatureDoesNotMatch", "The request signature we calculated does not match", ii.EX_NOPERM,
     "signature-mismatch"),
    (400, "RequestExpired", "Request has expired.", ii.EX_NOPERM, "clock-skew"),
    (400, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit", ii.EX_UNAVAILABLE,
     "invalid-parameter"),
    (400, "Throttling", "Rate exceeded", ii.EX_TEMPFAIL, "throttled"),
    (500, "InternalFailure", "oops", ii.EX_TEMPFAIL, "server-error"),
])
def test_sts_errors(tmp_path: Path, status: int, code: str, message: str, exit_code: int, reason: str) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        hop2(tmp_path, sts_error(code, message, status, Date="Wed, 06 Aug 2015 13:20:34 GMT"))
    error = info.value
    assert (error.exit_code, error.reason, error.code, error.request_id) == (exit_code, reason, code, "req-9")
    if reason == "clock-skew":
        assert error.server_time == 1438867234.0


@pytest.mark.parametrize("status, code, exit_code, reason", [
    (403, "AccessDeniedException", ii.EX_NOPERM, "invoke-denied"),
    (404, "ResourceNotFoundException", ii.EX_UNAVAILABLE, "function-not-found"),
    (400, "InvalidParameterValueException", ii.EX_UNAVAILABLE, "invalid-parameter"),
    (413, "RequestEntityTooLargeException", ii.EX_DATAERR, "payload-too-large"),
    (429, "TooManyRequestsException", ii.EX_TEMPFAIL, "throttled"),
    (400, "ThrottlingException", ii.EX_TEMPFAIL, "throttled"),
    (408, "RequestTimeoutException", ii.EX_TEMPFAIL, "request-timeout"),
    (502, "EC2ThrottledException", ii.EX_TEMPFAIL, "ec2-throttled"),
    (500, "ServiceException", ii.EX_IOERR, "lambda-service-error"),  # may come after the function ran
    (403, "UnrecognizedClientException", ii.EX_NOPERM, "token-invalid"),
])
def test_lambda_errors(tmp_path: Path, status: int, code: str, exit_code: int, reason: str) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        hop3(tmp_path, lambda_error(status, code + ":http://internal.amazon.com/coral/", message="detail text"))
    error = info.value
    assert (error.exit_code, error.reason, error.code) == (exit_code, reason, code)  # the ":http://..." suffix is cut
    assert "detail text" in str(error)


@pytest.mark.parametrize("retry_after, date, expected", [
    ("2", None, 2.0),
    ("86400", None, ii.MAX_RETRY_AFTER_S),  # a server cannot park a board for a day
    ("Wed, 06 Aug 2015 13:21:04 GMT", "Wed, 06 Aug 2015 13:20:34 GMT", 30.0),  # RFC 9110: an HTTP-date, by its Date
    ("soon", None, None),
])
def test_retry_after(tmp_path: Path, retry_after: str, date: str | None, expected: float | None) -> None:
    headers = {"Retry_After": retry_after, **({"Date": date} if date else {})}
    answer = lambda_error(429, "TooManyRequestsException", **{"Reason": "ConcurrentInvocationLimitExceeded"})
    answer.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    with pytest.raises(ii.IotInvokeError) as info:
        hop3(tmp_path, answer)
    assert info.value.retry_after == expected


def test_an_aws_message_cannot_steer_the_terminal(tmp_path: Path) -> None:
    with pytest.raises(ii.IotInvokeError) as info:
        hop3(tmp_path, lambda_error(404, "ResourceNotFoundException", message="gone\x1b]0;owned\x07\rfake line\x9b2J"))
    line = str(info.value)
    assert not any(c in line for c in "\x1b\x07\r\n\x9b") and "\\x1b]0;owned\\x07" in line
