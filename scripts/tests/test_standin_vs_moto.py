"""A second opinion on the stand-in's STS: the same AssumeRole requests against moto and the stand-in.

moto 5.2.1 (server mode, IAM auth switched on) is an independent implementation of STS's SigV4
check and of identity-policy evaluation for ``sts:AssumeRole``, and it is faithful there (seen by
running moto's server mode with IAM auth on: bad signature or secret 403 SignatureDoesNotMatch,
unknown key 403 InvalidClientTokenId, no Allow or an explicit Deny 403 AccessDenied). Each scenario
below is sent, signed identically with botocore's SigV4Auth, to both servers; the (HTTP status,
error Code) pairs must agree with each other and with what AWS answers.

The same world is built in both, with the stand-in's account numbers:

    000000000000  caller: the device role (in the stand-in, the session the IoT credentials
                  provider hands out; in moto, a session of a role of the same name and identity
                  policy, assumed by a bootstrap IAM user)
    111111111111  target: role iotinvoke-dev, trusting the device role
    333333333333  target: role iotinvoke-dev, trusting the device role, but not covered by the
                  device role's identity policy (it allows only 111111111111 and 222222222222)

Left out of the comparison because moto deviates from AWS there (the first four seen by hand
against this moto 5.2.1, the rest read from its source):
- trust policies: moto evaluates a role's trust policy only when the role is in the caller's own
  account (moto/iam/access_control.py looks the role up in the caller's account), so a
  cross-account role whose trust policy names someone else (stand-in: iotinvoke-untrusted) is
  assumed with 200 instead of 403 AccessDenied, and so is a role that does not exist;
- no 15-minute request-time window (X-Amz-Date 16 min old: 200, AWS 403 SignatureDoesNotMatch);
- no DurationSeconds limits (899: 200) and no role-chaining 1 h cap (3601: 200; AWS 400 ValidationError);
- the AccessDenied message lacks AWS's "on resource: <role ARN>" tail (only codes are compared);
- ExternalId conditions on a cross-account trust policy are never checked (same cause as trust);
- no session-token expiry (AWS 403 ExpiredToken).
"""
from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# moto and boto3 are in tests/requirements.txt only (these tests run once, with current releases): a
# run in another environment deselects this module, and must still be able to import the rest.
pytest.importorskip("moto", reason="moto is installed with current releases only (tests/requirements.txt)")
from moto.server import ThreadedMotoServer

from motohelp import client_in_account
from standin import StandIn
from standin.testclient import Creds, TestClient
from standin.world import Role

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

REGION = "ap-northeast-1"
IOT_ACCOUNT = "000000000000"
LAMBDA_ACCOUNT = "111111111111"
PRD_ACCOUNT = "222222222222"
OTHER_ACCOUNT = "333333333333"
DEVICE_ROLE = f"arn:aws:iam::{IOT_ACCOUNT}:role/iotinvoke-device"
DEV = f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev"
OUTSIDE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/iotinvoke-dev"   # outside the device role's identity policy

TRUSTS_DEVICE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": DEVICE_ROLE}, "Action": "sts:AssumeRole"}]}
# The device role's sts:AssumeRole statement, as in the stand-in's default world.
MAY_ASSUME = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole",
     "Resource": [f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-*", f"arn:aws:iam::{PRD_ACCOUNT}:role/iotinvoke-*"]}]}
DENY_DEV = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": DEV}]}

# Which identity policies the caller's role holds, per caller variant.
CALLER_POLICIES: dict[str, list[dict[str, Any]]] = {
    "device": [MAY_ASSUME],
    "no-allow": [],                          # no sts:AssumeRole Allow at all
    "explicit-deny": [MAY_ASSUME, DENY_DEV],
}

Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]
Outcome = tuple[int, "str | None"]


# -- signing and sending, identical for both servers ---------------------------------------------------

def flip_signature(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    authorization = headers["Authorization"]
    headers["Authorization"] = authorization[:-1] + ("0" if authorization[-1] != "0" else "1")
    return headers, body


def alter_body(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    altered = body.replace(b"RoleSessionName=iotinvoke", b"RoleSessionName=iotinvokf")
    assert altered != body
    return headers, altered


def assume_role(http: urllib3.PoolManager, url: str, creds: Creds, role_arn: str,
                tamper: Tamper | None = None) -> tuple[int, bytes]:
    """Form-POST AssumeRole signed by botocore's SigV4Auth, optionally altered, sent with urllib3."""
    body = urlencode({"Action": "AssumeRole", "Version": "2011-06-15",
                      "RoleArn": role_arn, "RoleSessionName": "iotinvoke"}).encode()
    request = AWSRequest(method="POST", url=url + "/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token), "sts", REGION).add_auth(request)
    prepared = request.prepare()
    headers = {name: value.decode() if isinstance(value, bytes) else value for name, value in prepared.headers.items()}
    if tamper is not None:
        headers, body = tamper(headers, body)
    response = http.request("POST", url + "/", body=body, headers=headers, retries=False, timeout=10.0)
    return response.status, response.data


def outcome(status: int, body: bytes) -> Outcome:
    """(status, error Code); the Code is None for a success."""
    if status == 200:
        return status, None
    root = ElementTree.fromstring(body)
    codes = [element.text for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Code"]
    return status, codes[0] if codes else None


# -- moto: server, world and sessions ------------------------------------------------------------------

@dataclass
class Moto:
    url: str
    http: urllib3.PoolManager
    sessions: dict[str, Creds]   # caller variant -> session credentials of a role in IOT_ACCOUNT


def _moto_client(url: str, service: str, account: str) -> Any:
    return client_in_account(url, service, account, REGION)


def _build_moto_world(url: str) -> Creds:
    """Roles and policies of both worlds in moto; returns the bootstrap user's access key."""
    iot = _moto_client(url, "iam", IOT_ACCOUNT)
    iot.create_user(UserName="bootstrap")
    iot.put_user_policy(UserName="bootstrap", PolicyName="assume-device", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{IOT_ACCOUNT}:role/*"}]}))
    key = iot.create_access_key(UserName="bootstrap")["AccessKey"]
    # moto checks same-account trust, and never matches ":root": name the user itself.
    trusts_bootstrap = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{IOT_ACCOUNT}:user/bootstrap"},
         "Action": "sts:AssumeRole"}]}
    for variant, policies in CALLER_POLICIES.items():
        name = "iotinvoke-device" if variant == "device" else f"iotinvoke-device-{variant}"
        iot.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trusts_bootstrap))
        for index, policy in enumerate(policies):
            iot.put_role_policy(RoleName=name, PolicyName=f"p{index}", PolicyDocument=json.dumps(policy))
    for account in (LAMBDA_ACCOUNT, OTHER_ACCOUNT):
        _moto_client(url, "iam", account).create_role(RoleName="iotinvoke-dev",
                                                      AssumeRolePolicyDocument=json.dumps(TRUSTS_DEVICE))
    return Creds(key["AccessKeyId"], key["SecretAccessKey"], None)


def _session(moto_http: urllib3.PoolManager, url: str, bootstrap: Creds, role_arn: str) -> Creds:
    status, body = assume_role(moto_http, url, bootstrap, role_arn)
    assert status == 200, body
    root = ElementTree.fromstring(body)
    values = {element.tag.rsplit("}", 1)[-1]: element.text or "" for element in root.iter()}
    return Creds(values["AccessKeyId"], values["SecretAccessKey"], values["SessionToken"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    http = urllib3.PoolManager()
    previous_auth = None
    try:
        http.request("POST", url + "/moto-api/reset")
        bootstrap = _build_moto_world(url)
        # From now on every request is authenticated and authorised (INITIAL_NO_AUTH_ACTION_COUNT = 0).
        reply = http.request("POST", url + "/moto-api/reset-auth", body=b"0")
        assert reply.status == 200, reply.data
        previous_auth = json.loads(reply.data)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
        sessions = {}
        for variant in CALLER_POLICIES:
            name = "iotinvoke-device" if variant == "device" else f"iotinvoke-device-{variant}"
            sessions[variant] = _session(http, url, bootstrap, f"arn:aws:iam::{IOT_ACCOUNT}:role/{name}")
        yield Moto(url, http, sessions)
    finally:
        # moto's settings and backends are process-wide: leave them as found.
        if previous_auth is not None:
            http.request("POST", url + "/moto-api/reset-auth", body=previous_auth.encode())
        http.request("POST", url + "/moto-api/reset")
        http.clear()
        server.stop()
        if server._server is not None:   # stop() shuts the loop down but leaves the socket open
            server._server.server_close()


# -- the scenarios ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    caller: str                                    # a key of CALLER_POLICIES
    role_arn: str
    expected: Outcome                              # what AWS answers
    creds: Callable[[Creds], Creds] = lambda creds: creds
    tamper: Tamper | None = None


SCENARIOS = {
    "good-signature-allowed": Scenario("device", DEV, (200, None)),
    "bad-signature": Scenario("device", DEV, (403, "SignatureDoesNotMatch"), tamper=flip_signature),
    "wrong-secret": Scenario("device", DEV, (403, "SignatureDoesNotMatch"),
                             creds=lambda creds: replace(creds, secret_key="x" * 40)),
    "body-altered-after-signing": Scenario("device", DEV, (403, "SignatureDoesNotMatch"), tamper=alter_body),
    "identity-policy-other-resource": Scenario("device", OUTSIDE, (403, "AccessDenied")),
    "identity-policy-no-allow": Scenario("no-allow", DEV, (403, "AccessDenied")),
    "identity-policy-explicit-deny": Scenario("explicit-deny", DEV, (403, "AccessDenied")),
    "unknown-access-key": Scenario("device", DEV, (403, "InvalidClientTokenId"),
                                   creds=lambda creds: replace(creds, access_key="ASIA" + "Z" * 16)),
    "wrong-session-token": Scenario("device", DEV, (403, "InvalidClientTokenId"),
                                    creds=lambda creds: replace(creds, token="bogus-token")),
    "missing-session-token": Scenario("device", DEV, (403, "InvalidClientTokenId"),
                                      creds=lambda creds: replace(creds, token=None)),
}


@pytest.fixture
def standin_http(aws: StandIn) -> Iterator[urllib3.PoolManager]:
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(aws.ca_path))
    yield http
    http.clear()


@pytest.mark.parametrize("name", SCENARIOS)
def test_standin_and_moto_agree_with_aws(name: str, moto: Moto, aws: StandIn, aws_client: TestClient,
                                         standin_http: urllib3.PoolManager,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = SCENARIOS[name]

    # The stand-in: the IoT credentials provider's session of the device role, whose identity
    # policies are set to the caller variant's; the 333333333333 role exists and trusts it.
    device_role = aws.world.roles[DEVICE_ROLE]
    keep = [policy for policy in device_role.policies if "sts:AssumeRole" not in json.dumps(policy)]
    monkeypatch.setattr(device_role, "policies", keep + CALLER_POLICIES[scenario.caller])
    monkeypatch.setitem(aws.world.roles, OUTSIDE, Role(OUTSIDE, TRUSTS_DEVICE))
    standin_creds = scenario.creds(aws_client.device_creds())
    standin = outcome(*assume_role(standin_http, aws.urls["sts"], standin_creds, scenario.role_arn,
                                   scenario.tamper))

    moto_creds = scenario.creds(moto.sessions[scenario.caller])
    by_moto = outcome(*assume_role(moto.http, moto.url, moto_creds, scenario.role_arn, scenario.tamper))

    assert (standin, by_moto) == (scenario.expected, scenario.expected), \
        f"stand-in {standin}, moto {by_moto}, AWS {scenario.expected}"
