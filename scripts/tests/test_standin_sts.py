"""Stand-in hop 2: STS AssumeRole (SigV4, session tokens, trust and identity policies, limits)."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from standin import StandIn
from standin.testclient import Creds, Reply, TestClient

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

DEV = "arn:aws:iam::111111111111:role/iotinvoke-dev"
STG = "arn:aws:iam::111111111111:role/iotinvoke-stg"
PRD = "arn:aws:iam::222222222222:role/iotinvoke-prd"
DEVICE_ROLE = "arn:aws:iam::000000000000:role/iotinvoke-device"
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                      "Check your AWS Secret Access Key and signing method. "
                      "Consult the service documentation for details.")


def _error(reply: Reply) -> tuple[int, str | None, str | None, str | None]:
    return reply.status, reply.xml("sts:Error/sts:Type"), reply.error_code, reply.xml("sts:Error/sts:Message")


@pytest.fixture
def device(aws_client: TestClient) -> Creds:
    return aws_client.device_creds()


def test_assume_role_returns_the_documented_xml(aws: StandIn, aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(device, DEV, "edge-0001")
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/xml"
    assert reply.body.startswith(b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">')
    result = "sts:AssumeRoleResult/"
    assert reply.xml(result + "sts:AssumedRoleUser/sts:Arn") == \
        "arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/edge-0001"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}:edge-0001", reply.xml(result + "sts:AssumedRoleUser/sts:AssumedRoleId") or "")
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", reply.xml(result + "sts:Credentials/sts:AccessKeyId") or "")
    secret = reply.xml(result + "sts:Credentials/sts:SecretAccessKey")
    token = reply.xml(result + "sts:Credentials/sts:SessionToken")
    assert secret in aws.issued_secrets() and token in aws.issued_secrets()
    expiration = datetime.strptime(reply.xml(result + "sts:Credentials/sts:Expiration") or "",
                                   "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(expiration - datetime.now(timezone.utc) - timedelta(hours=1)) < timedelta(seconds=5)
    assert reply.xml("sts:ResponseMetadata/sts:RequestId") == reply.header("x-amzn-RequestId")


def test_issued_credentials_act_as_the_role_in_its_account(aws_client: TestClient, device: Creds) -> None:
    role = aws_client.role_creds(device, PRD, RoleSessionName="s1")
    reply = aws_client.sts(role, {"Action": "GetCallerIdentity"}, region="eu-west-1")
    assert reply.status == 200
    assert reply.xml("sts:GetCallerIdentityResult/sts:Arn") == "arn:aws:sts::222222222222:assumed-role/iotinvoke-prd/s1"
    assert reply.xml("sts:GetCallerIdentityResult/sts:Account") == "222222222222"


def test_get_with_query_parameters_is_accepted(aws_client: TestClient, device: Creds) -> None:
    query = urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": DEV, "RoleSessionName": "query"})
    reply = aws_client.signed("sts", device, "GET", "/?" + query)
    assert reply.status == 200, reply.body


def test_duration_seconds_sets_the_expiration(aws_client: TestClient, device: Creds) -> None:
    creds = aws_client.role_creds(device, DEV, DurationSeconds="900")
    expiration = datetime.strptime(creds.expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(expiration - datetime.now(timezone.utc) - timedelta(seconds=900)) < timedelta(seconds=5)


# -- SigV4 and session tokens ------------------------------------------------------------------------

def test_unsigned_request_is_missing_authentication_token(aws_client: TestClient) -> None:
    body = urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": DEV, "RoleSessionName": "x"})
    reply = aws_client.send("sts", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}, body.encode())
    assert reply.status == 403
    assert reply.error_code == "MissingAuthenticationToken"


def test_incomplete_authorization_header_is_400(aws_client: TestClient, device: Creds) -> None:
    def drop_signature(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        headers["Authorization"] = headers["Authorization"].split(", Signature=")[0]
        return headers, body

    reply = aws_client.assume(device, DEV, tamper=drop_signature)
    assert (reply.status, reply.error_code) == (400, "IncompleteSignature")
    assert "Authorization header requires 'Signature' parameter." in (reply.xml("sts:Error/sts:Message") or "")


def test_bad_signature(aws_client: TestClient, device: Creds) -> None:
    def flip(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        authorization = headers["Authorization"]
        headers["Authorization"] = authorization[:-1] + ("0" if authorization[-1] != "0" else "1")
        return headers, body

    assert _error(aws_client.assume(device, DEV, tamper=flip)) == \
        (403, "Sender", "SignatureDoesNotMatch", SIGNATURE_MISMATCH)


def test_wrong_secret(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(replace(device, secret_key="x" * 40), DEV)
    assert _error(reply) == (403, "Sender", "SignatureDoesNotMatch", SIGNATURE_MISMATCH)


def test_body_altered_after_signing(aws_client: TestClient, device: Creds) -> None:
    def alter(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return headers, body.replace(b"RoleSessionName=iotinvoke", b"RoleSessionName=iotinvokf")

    assert aws_client.assume(device, DEV, tamper=alter).error_code == "SignatureDoesNotMatch"


def test_unknown_access_key(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(replace(device, access_key="ASIA" + "Z" * 16), DEV)
    assert _error(reply) == (403, "Sender", "InvalidClientTokenId",
                             "The security token included in the request is invalid.")


@pytest.mark.parametrize("token", [None, "bogus-token"])
def test_wrong_or_missing_session_token(aws_client: TestClient, device: Creds, token: str | None) -> None:
    reply = aws_client.assume(replace(device, token=token), DEV)
    assert (reply.status, reply.error_code) == (403, "InvalidClientTokenId")


def test_another_sessions_token_is_invalid(aws_client: TestClient, device: Creds) -> None:
    other = aws_client.device_creds()
    assert aws_client.assume(replace(device, token=other.token), DEV).error_code == "InvalidClientTokenId"


def test_expired_token_after_expire_all_tokens(aws: StandIn, aws_client: TestClient, device: Creds) -> None:
    aws.expire_all_tokens()
    reply = aws_client.assume(device, DEV)
    assert _error(reply) == (403, "Sender", "ExpiredToken", "The security token included in the request is expired")
    assert aws_client.assume(aws_client.device_creds(), DEV).status == 200   # new credentials are fine


def test_token_expires_by_the_stand_in_clock(aws: StandIn, aws_client: TestClient, device: Creds) -> None:
    aws.clock_offset_s = 3601
    assert aws_client.assume(device, DEV).error_code == "ExpiredToken"


@pytest.mark.parametrize("offset_min,fragment", [
    (16, r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 15 min\.\)"),
    (-16, r"Signature not yet current: \d{8}T\d{6}Z is still later than \d{8}T\d{6}Z \(\d{8}T\d{6}Z \+ 15 min\.\)"),
])
def test_request_outside_the_15_minute_window(aws: StandIn, aws_client: TestClient, device: Creds,
                                              offset_min: int, fragment: str) -> None:
    aws.clock_offset_s = offset_min * 60
    reply = aws_client.assume(device, DEV)
    status, kind, code, message = _error(reply)
    assert (status, kind, code) == (403, "Sender", "SignatureDoesNotMatch")
    assert re.fullmatch(fragment, message or "")
    # The Date header carries the stand-in clock, which is how clients correct their skew.
    server_date = datetime.strptime(reply.header("Date") or "", "%a, %d %b %Y %H:%M:%S GMT")
    assert abs(server_date.replace(tzinfo=timezone.utc) - aws.now()) < timedelta(seconds=5)


@pytest.mark.parametrize("offset_min", [14, -14])
def test_request_inside_the_15_minute_window(aws: StandIn, aws_client: TestClient, device: Creds,
                                             offset_min: int) -> None:
    aws.clock_offset_s = offset_min * 60
    assert aws_client.assume(device, DEV).status == 200


def test_scope_naming_no_region_is_refused(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(device, DEV, region="xx-nowhere-1")
    assert reply.error_code == "SignatureDoesNotMatch"
    assert "Credential should be scoped to a valid region." in (reply.xml("sts:Error/sts:Message") or "")


def test_any_real_region_is_a_regional_endpoint(aws_client: TestClient, device: Creds) -> None:
    assert aws_client.assume(device, DEV, region="eu-west-1").status == 200


def test_scope_naming_another_service_is_refused(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(device, DEV, service="lambda")
    assert reply.error_code == "SignatureDoesNotMatch"
    assert "Credential should be scoped to correct service: 'sts'." in (reply.xml("sts:Error/sts:Message") or "")


# -- Action, Version and parameters ------------------------------------------------------------------

def test_unknown_action(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.sts(device, {"Action": "AssumeRoleWithMagic"})
    assert _error(reply) == (400, "Sender", "InvalidAction",
                             "Could not find operation AssumeRoleWithMagic for version 2011-06-15")


def test_missing_action(aws_client: TestClient, device: Creds) -> None:
    body = urlencode({"Version": "2011-06-15", "RoleArn": DEV, "RoleSessionName": "x"}).encode()
    reply = aws_client.signed("sts", device, "POST", "/", body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert _error(reply) == (400, "Sender", "MissingAction", "Missing Action")


def test_missing_version(aws_client: TestClient, device: Creds) -> None:
    body = urlencode({"Action": "AssumeRole", "RoleArn": DEV, "RoleSessionName": "x"}).encode()
    reply = aws_client.signed("sts", device, "POST", "/", body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.xml("sts:Error/sts:Message") == "Could not find operation AssumeRole for version NO_VERSION_SPECIFIED"


@pytest.mark.parametrize("params,message", [
    ({"RoleArn": DEV, "RoleSessionName": "x y"},
     "1 validation error detected: Value 'x y' at 'roleSessionName' failed to satisfy constraint: "
     "Member must satisfy regular expression pattern: [\\w+=,.@-]*"),
    ({"RoleArn": DEV, "RoleSessionName": "x"},
     "1 validation error detected: Value 'x' at 'roleSessionName' failed to satisfy constraint: "
     "Member must have length greater than or equal to 2"),
    ({"RoleArn": DEV, "RoleSessionName": "s" * 65},
     f"1 validation error detected: Value '{'s' * 65}' at 'roleSessionName' failed to satisfy constraint: "
     "Member must have length less than or equal to 64"),
    ({"RoleArn": DEV},
     "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: "
     "Member must not be null"),
    ({"RoleSessionName": "ok"},
     "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"),
    ({"RoleArn": DEV, "RoleSessionName": "ok", "DurationSeconds": "899"},
     "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: "
     "Member must have value greater than or equal to 900"),
    ({"RoleArn": DEV, "RoleSessionName": "ok", "DurationSeconds": "43201"},
     "1 validation error detected: Value '43201' at 'durationSeconds' failed to satisfy constraint: "
     "Member must have value less than or equal to 43200"),
    ({"RoleArn": STG, "RoleSessionName": "ok", "ExternalId": "a b"},
     "1 validation error detected: Value 'a b' at 'externalId' failed to satisfy constraint: "
     "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*"),
    ({"RoleArn": DEV, "RoleSessionName": "a b c", "ExternalId": "x"},
     "2 validation errors detected: Value 'a b c' at 'roleSessionName' failed to satisfy constraint: "
     "Member must satisfy regular expression pattern: [\\w+=,.@-]*; Value 'x' at 'externalId' failed to "
     "satisfy constraint: Member must have length greater than or equal to 2"),
    ({"RoleArn": "arn:aws:iam::111111111111:user/someone", "RoleSessionName": "ok"}, "Request ARN is invalid"),
])
def test_parameter_validation(aws_client: TestClient, device: Creds, params: dict[str, str], message: str) -> None:
    assert _error(aws_client.sts(device, params)) == (400, "Sender", "ValidationError", message)


def test_role_chaining_caps_duration_at_one_hour(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.assume(device, DEV, DurationSeconds="3601")
    assert _error(reply) == (400, "Sender", "ValidationError",
                             "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
                             "by role chaining.")
    assert aws_client.assume(device, DEV, DurationSeconds="3600").status == 200


# -- trust and identity policies -----------------------------------------------------------------------

def _denied(reply: Reply, caller: Creds, aws_client: TestClient, role_arn: str) -> None:
    identity = aws_client.sts(caller, {"Action": "GetCallerIdentity"}).xml("sts:GetCallerIdentityResult/sts:Arn")
    assert _error(reply) == (403, "Sender", "AccessDenied",
                             f"User: {identity} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")


def test_trust_policy_naming_someone_else_denies(aws_client: TestClient, device: Creds) -> None:
    role = "arn:aws:iam::111111111111:role/iotinvoke-untrusted"
    _denied(aws_client.assume(device, role), device, aws_client, role)


def test_role_that_does_not_exist_is_access_denied(aws_client: TestClient, device: Creds) -> None:
    role = "arn:aws:iam::111111111111:role/iotinvoke-nonexistent"
    _denied(aws_client.assume(device, role), device, aws_client, role)


@pytest.mark.parametrize("external_id", [None, "stg-wrong"])
def test_external_id_missing_or_wrong_denies(aws_client: TestClient, device: Creds, external_id: str | None) -> None:
    params = {"ExternalId": external_id} if external_id else {}
    _denied(aws_client.assume(device, STG, **params), device, aws_client, STG)


def test_external_id_right_allows(aws_client: TestClient, device: Creds) -> None:
    assert aws_client.assume(device, STG, ExternalId="stg-6b1c2f").status == 200


def test_cross_account_needs_the_callers_identity_policy(aws: StandIn, aws_client: TestClient, device: Creds,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    device_role = aws.world.roles[DEVICE_ROLE]
    without_assume = [policy for policy in device_role.policies
                      if "sts:AssumeRole" not in str(policy)]
    monkeypatch.setattr(device_role, "policies", without_assume)
    _denied(aws_client.assume(device, DEV), device, aws_client, DEV)   # the trust policy alone is not enough


def test_explicit_deny_in_the_callers_policy_wins(aws: StandIn, aws_client: TestClient, device: Creds,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    device_role = aws.world.roles[DEVICE_ROLE]
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": DEV}]}
    monkeypatch.setattr(device_role, "policies", [*device_role.policies, deny])
    assert aws_client.assume(device, DEV).error_code == "AccessDenied"
    assert aws_client.assume(device, STG, ExternalId="stg-6b1c2f").status == 200


def test_identity_policy_allows_only_the_listed_roles(aws: StandIn, aws_client: TestClient, device: Creds,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A role in 333333333333 trusting the device role: trust alone does not make it assumable.
    from standin.world import Role
    other = "arn:aws:iam::333333333333:role/iotinvoke-dev"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": DEVICE_ROLE}, "Action": "sts:AssumeRole"}]}
    monkeypatch.setitem(aws.world.roles, other, Role(other, trust))
    _denied(aws_client.assume(device, other), device, aws_client, other)
