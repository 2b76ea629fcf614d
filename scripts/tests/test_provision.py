"""scripts/provision against moto's server, run as an administrator runs it: a subprocess.

moto (server mode, in this process on a free loopback port) plays both accounts at once:

    000000000000  IoT account:    users "admin" (may do anything; the test reads with it),
                                  "provisioner" (exactly what provision's docstring lists),
                                  "reader" (read-only)
    111111111111  Lambda account: the same three users, and three functions dev, stg, prd

How the two accounts and IAM auth are set up in moto's server mode (moto 5.2.1 source,
moto/core/responses.py get_current_account, moto/core/authorization.py):
- a request acts in the account given by its ``x-moto-account-id`` header, else in the account
  whose IAM backend holds its access key id, else in moto's default 123456789012. So the users and
  their access keys are created with the header while auth is still off, and from then on each
  access key alone selects its account, exactly as on AWS: provision's two boto3 profiles differ
  only in their keys.
- IAM auth is off until ``POST /moto-api/reset-auth`` with body ``0`` (the server-mode
  equivalent of ``@set_initial_no_auth_action_count(0)``: the number of requests let through
  unchecked). After it every request must be signed by a known key and be allowed by that
  user's policies, so the users have to exist before it: they cannot be created afterwards
  without a key. The "reader" users prove that --dry-run makes read calls only: with their
  keys, any call that changes something is refused.

provision reaches moto through AWS_ENDPOINT_URL (boto3 honours it for every service) with
profiles from a credentials file in tmp_path; nothing else of this machine's AWS set-up is used.

moto gaps met here (asserted around, each where it matters):
- with auth on, moto's SigV4 check refuses every bodiless request (GET, DELETE) and every path
  holding a percent-encoded ARN, so Lambda and IoT reads all fail with SignatureDoesNotMatch;
  the module fixture corrects moto's check for the duration of this module
  (_check_signatures_as_aws). provision itself names Lambda functions by name, not ARN.
- moto checks no iam:PassRole (CreateRoleAlias needs it on AWS).
- ``lambda add-permission`` stores a role ARN principal as a bare string; AWS stores
  {"AWS": ARN}. Both are accepted when reading the resource policy.
- moto also appends a second statement with the same id instead of answering
  ResourceConflictException, so provision must read before it adds (it does; asserted: one
  statement per id).
- ``iot describe-endpoint`` invents a new random endpoint at every call; AWS's is fixed per
  account and region. A second run therefore rewrites iotinvoke.ini with a new endpoint; that
  one line is ignored when comparing runs.
- ``iot create-certificate-from-csr`` (moto 5.2.1, moto/iot/models.py create_certificate_from_csr)
  returns a certificate for a key of its own, not the CSR's: a certificate nobody holds the key
  of. AWS IoT signs the CSR's public key. The module fixture makes moto do that
  (_sign_the_csrs_key); test_a_certificate_for_another_key_is_refused runs moto's own, to show
  that provision notices.
- moto checks nothing of a CSR's key (AWS: RSA >= 2048 bits or NIST P-256/384/521) and computes
  certificate ids from the PEM text, not the DER as AWS does (provision only reads them back).
"""
from __future__ import annotations

import datetime
import io
import json
import os
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

# moto and boto3 are in tests/requirements.txt only (these tests run once, with current releases): a
# run in another environment deselects this module, and must still be able to import the rest.
pytest.importorskip("moto", reason="moto is installed with current releases only (tests/requirements.txt)")
import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto.iam.access_control import IAMRequestBase
from moto.iot.models import IoTBackend
from moto.server import ThreadedMotoServer

import iotinvoke
from motohelp import client_in_account

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

ROOT = Path(__file__).resolve().parents[2]
PROVISION = ROOT / "scripts" / "provision"
REGION = "ap-northeast-1"
IOT_ACCOUNT = "000000000000"
LAMBDA_ACCOUNT = "111111111111"
DEVICE_ROLE = f"arn:aws:iam::{IOT_ACCOUNT}:role/iotinvoke-device"
FN = f"arn:aws:lambda:{REGION}:{LAMBDA_ACCOUNT}:function:"
DEV_FN, STG_FN, PRD_FN = FN + "ADCCrossAccountTest", FN + "ADCCrossAccountTest-stg", FN + "ADCCrossAccountTest-prd"
ALIAS_ARN = f"arn:aws:iot:{REGION}:{IOT_ACCOUNT}:rolealias/iotinvoke"
# Only the credentials provider, and only for this account's role alias (the confused-deputy conditions).
DEVICE_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "credentials.iot.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": IOT_ACCOUNT}, "ArnEquals": {"aws:SourceArn": ALIAS_ARN}}}]}
ENVIRONMENTS = ["--env", f"dev={DEV_FN}", "--env", f"stg={STG_FN}", "--direct", f"prd={PRD_FN}",
                "--external-id", "dev=4c1d2f0e"]
READ_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
    "sts:GetCallerIdentity", "iam:Get*", "iam:List*", "iot:Describe*", "iot:Get*", "iot:List*", "lambda:Get*"]}]}
# Exactly the permissions scripts/provision's docstring lists (moto does not check iam:PassRole).
_IAM_WRITE = ["iam:GetRole", "iam:CreateRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:GetRolePolicy",
              "iam:PutRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"]
PROVISIONER = {
    "iot": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "sts:GetCallerIdentity", *_IAM_WRITE, "iam:PassRole", "iot:DescribeRoleAlias", "iot:CreateRoleAlias",
        "iot:UpdateRoleAlias", "iot:GetPolicy", "iot:CreatePolicy", "iot:CreatePolicyVersion", "iot:ListPolicyVersions",
        "iot:DeletePolicyVersion", "iot:ListAttachedPolicies", "iot:AttachPolicy", "iot:DescribeEndpoint",
        # --board-dir
        "iot:DescribeThing", "iot:CreateThing", "iot:ListThingPrincipals", "iot:AttachThingPrincipal",
        "iot:DescribeCertificate", "iot:CreateCertificateFromCsr", "iot:CreateKeysAndCertificate",
        "iot:UpdateCertificate"]}]},
    "lambda": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "sts:GetCallerIdentity", *_IAM_WRITE, "iam:ListRoles", "lambda:GetFunctionConfiguration", "lambda:GetPolicy",
        "lambda:AddPermission", "lambda:RemovePermission"]}]},
}
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_signatures_as_aws(original: Any) -> Any:
    """Two bugs of moto 5.2.1's SigV4 check, fixed here for this module only (signatures are
    still verified, keys and policies still enforced):
    - a request without a body (GET, DELETE, some POSTs) is checked against a body moto makes up
      from its query or, without one, its headers (moto/core/responses.py setup_class:
      ``querystring.update(headers)``, then ``data=self._body or self._data`` in
      moto/iam/access_control.py): every such call of Lambda or IoT fails. Checked against the
      real, empty body instead.
    - the path is checked decoded, so a path holding an ARN, whose ':' and '/' the client
      percent-encoded and signed so (iot list-attached-policies --target CERT_ARN, Lambda by
      ARN), fails. Checked against the path as sent instead (the WSGI RAW_URI)."""
    import flask

    def create_aws_request(self: Any) -> Any:
        request = original(self)
        form = "x-www-form-urlencoded" in str(self._headers.get("Content-Type", ""))  # its body is in _data
        if not self._body and not form:
            request.data = b""
        if flask.has_request_context():
            raw = flask.request.environ.get("RAW_URI") or flask.request.environ.get("REQUEST_URI")
            if raw:
                request.url = raw
        return request

    return create_aws_request


_MOTO_CREATE_CERTIFICATE_FROM_CSR = IoTBackend.create_certificate_from_csr
_CA_KEY = ec.generate_private_key(ec.SECP256R1())


def _sign_the_csrs_key(self: Any, csr: str, set_as_active: bool) -> Any:
    """CreateCertificateFromCsr as AWS IoT does it: a certificate for the CSR's own public key."""
    request = x509.load_pem_x509_csr(csr.encode())
    assert request.is_signature_valid
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(request.subject)
                   .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test CA standing in for AWS IoT")]))
                   .public_key(request.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
                   .sign(_CA_KEY, hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return self.register_certificate(pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    patch = pytest.MonkeyPatch()
    patch.setattr(IAMRequestBase, "_create_aws_request", _check_signatures_as_aws(IAMRequestBase._create_aws_request))
    patch.setattr(IoTBackend, "create_certificate_from_csr", _sign_the_csrs_key)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    http = urllib3.PoolManager()
    reply = http.request("POST", url + "/moto-api/reset-auth", body=b"inf")
    previous_auth = json.loads(reply.data)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        # create_function without Docker (nothing here is invoked).
        http.request("POST", url + "/moto-api/config", body=json.dumps({"lambda": {"use_docker": False}}).encode(),
                     headers={"Content-Type": "application/json"})
        yield url
    finally:
        # moto's settings and backends are process-wide: leave them as found.
        http.request("POST", url + "/moto-api/reset-auth", body=previous_auth.encode())
        http.request("POST", url + "/moto-api/reset")
        server.stop()
        if server._server is not None:  # stop() leaves the listening socket open
            server._server.server_close()
        patch.undo()


@dataclass
class World:
    url: str
    folder: Path
    env: dict[str, str]  # the subprocess's environment
    keys: dict[str, tuple[str, str]]  # profile -> (access key id, secret)
    certificate_arn: str

    def client(self, profile: str, service: str) -> Any:
        key, secret = self.keys[profile]
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def provision(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(PROVISION), *args], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=60)


def _setup_client(url: str, service: str, account: str) -> Any:
    return client_in_account(url, service, account, REGION)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture
def world(moto_url: str, tmp_path: Path) -> Iterator[World]:
    http = urllib3.PoolManager()
    http.request("POST", moto_url + "/moto-api/reset-auth", body=b"inf")
    http.request("POST", moto_url + "/moto-api/reset")
    keys: dict[str, tuple[str, str]] = {}
    for label, account in (("iot", IOT_ACCOUNT), ("lambda", LAMBDA_ACCOUNT)):
        iam = _setup_client(moto_url, "iam", account)
        for user, policy in (("admin", ADMIN), ("provisioner", PROVISIONER[label]), ("reader", READ_ONLY)):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[f"{label}-{user}"] = (key["AccessKeyId"], key["SecretAccessKey"])
    iam = _setup_client(moto_url, "iam", LAMBDA_ACCOUNT)
    execution_role = iam.create_role(RoleName="fn-exec", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    lam = _setup_client(moto_url, "lambda", LAMBDA_ACCOUNT)
    for arn in (DEV_FN, STG_FN, PRD_FN):
        lam.create_function(FunctionName=_name(arn), Runtime="python3.12", Role=execution_role,
                            Handler="handler.handler", Code={"ZipFile": _zip()})
    # A stale statement under provision's id (the whole account, as the seed article did): to be replaced.
    lam.add_permission(FunctionName=_name(PRD_FN), StatementId="iotinvoke-device", Action="lambda:InvokeFunction",
                       Principal=f"arn:aws:iam::{IOT_ACCOUNT}:root")
    lam.add_permission(FunctionName=_name(PRD_FN), StatementId="someone-else", Action="lambda:GetFunction",
                       Principal="arn:aws:iam::222222222222:root")
    certificate_arn = _setup_client(moto_url, "iot", IOT_ACCOUNT).create_keys_and_certificate(
        setAsActive=True)["certificateArn"]

    credentials = tmp_path / "credentials"
    credentials.write_text("".join(f"[{p}]\naws_access_key_id = {k}\naws_secret_access_key = {s}\n\n"
                                   for p, (k, s) in keys.items()))
    config = tmp_path / "config"
    config.write_text("".join(f"[profile {p}]\nregion = {REGION}\n\n" for p in keys))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTINVOKE_"))}
    env.update(AWS_ENDPOINT_URL=moto_url, AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(config),
               AWS_EC2_METADATA_DISABLED="true")
    reply = http.request("POST", moto_url + "/moto-api/reset-auth", body=b"0")  # IAM auth on from here
    assert reply.status == 200, reply.data
    try:
        yield World(moto_url, tmp_path, env, keys, certificate_arn)
    finally:
        http.request("POST", moto_url + "/moto-api/reset-auth", body=b"inf")


def admin(*extra: str) -> list[str]:
    return ["--iot-profile", "iot-provisioner", "--lambda-profile", "lambda-provisioner", *ENVIRONMENTS, *extra]


def snapshot(world: World) -> dict[str, Any]:
    """Everything provision may have created or changed, read back with the admins' keys."""
    iot_iam, lam_iam = world.client("iot-admin", "iam"), world.client("lambda-admin", "iam")
    iot, lam = world.client("iot-admin", "iot"), world.client("lambda-admin", "lambda")
    state: dict[str, Any] = {"roles": {}, "role_policies": {}}
    for label, iam in (("iot", iot_iam), ("lambda", lam_iam)):
        for role in iam.list_roles()["Roles"]:
            name = role["RoleName"]
            state["roles"][label, name] = (role["Arn"], role["AssumeRolePolicyDocument"], role["MaxSessionDuration"])
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                state["role_policies"][label, name, policy] = iam.get_role_policy(
                    RoleName=name, PolicyName=policy)["PolicyDocument"]
    state["aliases"] = {a: {k: v for k, v in iot.describe_role_alias(roleAlias=a)["roleAliasDescription"].items()
                            if k not in ("lastModifiedDate", "creationDate")}
                        for a in iot.list_role_aliases()["roleAliases"]}
    state["iot_policies"] = {p["policyName"]: (iot.get_policy(policyName=p["policyName"])["policyDocument"],
                                               len(iot.list_policy_versions(policyName=p["policyName"])["policyVersions"]))
                             for p in iot.list_policies()["policies"]}
    state["attached"] = [p["policyName"] for p in iot.list_attached_policies(target=world.certificate_arn)["policies"]]
    state["lambda_policies"] = {arn: json.loads(lam.get_policy(FunctionName=_name(arn))["Policy"])["Statement"]
                                for arn in (DEV_FN, STG_FN, PRD_FN)
                                if _has_policy(lam, arn)}
    return state


def _name(arn: str) -> str:
    """moto refuses the signature of a Lambda path holding an ARN (boto3 encodes its ':')."""
    return arn.rsplit(":", 1)[1]


def _has_policy(lam: Any, arn: str) -> bool:
    try:
        lam.get_policy(FunctionName=_name(arn))
        return True
    except lam.exceptions.ResourceNotFoundException:
        return False


def _principal(statement: dict[str, Any]) -> Any:
    principal = statement["Principal"]
    return {"AWS": principal} if isinstance(principal, str) else principal  # moto keeps a bare ARN string


def _without_endpoint(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("endpoint = ")]


def test_provision_creates_least_privilege_then_changes_nothing(world: World) -> None:
    result = world.provision(*admin("--certificate-arn", world.certificate_arn, "--ca", "AmazonRootCA1.pem",
                                    "--thing-name", "edge-0001"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    state = snapshot(world)
    roles, policies = state["roles"], state["role_policies"]

    # IoT account: the device role, trusted by the credentials provider only.
    arn, trust, max_session = roles["iot", "iotinvoke-device"]
    assert arn == DEVICE_ROLE
    assert trust == DEVICE_TRUST
    assert max_session == 3600
    assert [key for key in roles if key[0] == "iot"] == [("iot", "iotinvoke-device")]
    assert policies["iot", "iotinvoke-device", "iotinvoke"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole",
         "Resource": [f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev", f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-stg"]},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [PRD_FN, PRD_FN + ":*"]}]}
    assert [key for key in policies if key[0] == "iot"] == [("iot", "iotinvoke-device", "iotinvoke")]
    assert state["aliases"] == {"iotinvoke": {"roleAlias": "iotinvoke", "roleAliasArn": ALIAS_ARN, "roleArn": DEVICE_ROLE,
                                              "owner": IOT_ACCOUNT, "credentialDurationSeconds": 3600}}
    document, versions = state["iot_policies"]["iotinvoke"]
    assert json.loads(document) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": ALIAS_ARN}]}
    assert list(state["iot_policies"]) == ["iotinvoke"] and versions == 1
    assert state["attached"] == ["iotinvoke"]

    # Lambda account: one role per two-hop environment, trusting the device role only.
    for name, function, external_id in (("dev", DEV_FN, "4c1d2f0e"), ("stg", STG_FN, None)):
        arn, trust, max_session = roles["lambda", f"iotinvoke-{name}"]
        assert arn == f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-{name}"
        statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": DEVICE_ROLE}, "Action": "sts:AssumeRole"}
        if external_id:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        assert trust == {"Version": "2012-10-17", "Statement": [statement]}
        assert max_session == 3600
        assert policies["lambda", f"iotinvoke-{name}", "iotinvoke"] == {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [function, function + ":*"]}]}
    assert sorted(name for account, name in roles if account == "lambda") == ["fn-exec", "iotinvoke-dev", "iotinvoke-stg"]
    assert sorted(key for key in policies if key[0] == "lambda") == [
        ("lambda", "iotinvoke-dev", "iotinvoke"), ("lambda", "iotinvoke-stg", "iotinvoke")]

    # One-hop: prd's stale statement replaced by one naming the device role; the other statement kept.
    assert list(state["lambda_policies"]) == [PRD_FN]  # two-hop functions get no resource policy
    statements = {s["Sid"]: s for s in state["lambda_policies"][PRD_FN]}
    assert sorted(statements) == ["iotinvoke-device", "someone-else"]
    mine = statements["iotinvoke-device"]
    assert _principal(mine) == {"AWS": DEVICE_ROLE}
    assert (mine["Effect"], mine["Action"], mine["Resource"], mine.get("Condition")) == (
        "Allow", "lambda:InvokeFunction", PRD_FN, None)
    assert statements["someone-else"]["Action"] == "lambda:GetFunction"

    # The configuration it wrote is iotinvoke's, and iotinvoke loads it.
    ini = world.folder / "iotinvoke.ini"
    config = iotinvoke.load_config(str(ini), environ={})
    assert ".credentials.iot.ap-northeast-1.amazonaws.com" in config.iot_endpoint
    assert (config.role_alias, config.cert, config.key, config.ca, config.thing_name) == (
        "iotinvoke", str(world.folder / "cert.pem.crt"), str(world.folder / "private.pem.key"),
        str(world.folder / "AmazonRootCA1.pem"), "edge-0001")
    envs = config.environments
    assert sorted(envs) == ["dev", "prd", "stg"]
    assert (envs["dev"].function, envs["dev"].role_arn, envs["dev"].external_id, envs["dev"].region) == (
        DEV_FN, f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev", "4c1d2f0e", REGION)
    assert (envs["stg"].function, envs["stg"].role_arn, envs["stg"].external_id) == (
        STG_FN, f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-stg", None)
    assert (envs["prd"].function, envs["prd"].direct) == (PRD_FN, True)
    assert "region" not in ini.read_text()  # every function is a full ARN: no region needed
    first_ini = ini.read_text()

    # A second run changes nothing in AWS.
    again = world.provision(*admin("--certificate-arn", world.certificate_arn, "--ca", "AmazonRootCA1.pem",
                                   "--thing-name", "edge-0001"))
    assert again.returncode == 0, again.stderr
    assert snapshot(world) == state
    lines = again.stdout.splitlines()
    assert lines and all(line.startswith("unchanged ") for line in lines[:-1]), again.stdout
    # moto invents a new endpoint at every describe-endpoint: the file differs in that line only.
    assert _without_endpoint(ini.read_text()) == _without_endpoint(first_ini)
    endpoint_changed = ini.read_text() != first_ini
    assert lines[-1] == ("wrote iotinvoke.ini (the previous one is iotinvoke.ini.bak)" if endpoint_changed
                         else "unchanged iotinvoke.ini")


def test_policies_are_updated_in_place(world: World) -> None:
    assert world.provision(*admin()).returncode == 0
    # Longer credentials, the thing-name condition, and stg moved from two hops to one.
    changed = ["--iot-profile", "iot-provisioner", "--lambda-profile", "lambda-provisioner", "--env", f"dev={DEV_FN}",
               "--direct", f"stg={STG_FN}", "--direct", f"prd={PRD_FN}", "--duration", "7200",
               "--thing-policy-variable", "--thing-name", "edge-0001"]
    result = world.provision(*changed)
    assert result.returncode == 0, result.stderr
    # stg's role is no longer needed: reported, not deleted.
    assert result.stderr == ("provision: warning: role iotinvoke-stg is no environment's any more (the IoT role may "
                             "no longer assume it): delete it if nothing else uses it\n")
    state = snapshot(world)
    assert ("lambda", "iotinvoke-stg") in state["roles"]
    arn, _, max_session = state["roles"]["iot", "iotinvoke-device"]
    assert max_session == 7200
    assert state["aliases"]["iotinvoke"]["credentialDurationSeconds"] == 7200
    assert state["role_policies"]["iot", "iotinvoke-device", "iotinvoke"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": [f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev"],
         "Condition": {"StringEquals": {"sts:RoleSessionName": "${credentials-iot:ThingName}"}}},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [PRD_FN, PRD_FN + ":*", STG_FN, STG_FN + ":*"],
         "Condition": {"Null": {"credentials-iot:ThingName": "false"}}}]}
    stg = {s["Sid"]: s for s in state["lambda_policies"][STG_FN]}
    assert list(stg) == ["iotinvoke-device"] and _principal(stg["iotinvoke-device"]) == {"AWS": DEVICE_ROLE}
    assert f"created lambda permission iotinvoke-device on {STG_FN} (environment stg)" in result.stdout.splitlines()
    assert "updated max session duration of iam role iotinvoke-device: 7200 s" in result.stdout.splitlines()
    assert "updated inline policy iotinvoke of iam role iotinvoke-device" in result.stdout.splitlines()
    # Unchanged IoT policy: still one version.
    assert state["iot_policies"]["iotinvoke"][1] == 1
    config = iotinvoke.load_config(str(world.folder / "iotinvoke.ini"), environ={})
    assert config.environments["stg"].direct and not config.environments["dev"].direct
    # And once more: nothing left to do.
    again = world.provision(*changed)
    assert again.returncode == 0, again.stderr
    assert snapshot(world) == state


def test_dry_run_changes_nothing_and_shows_everything(world: World) -> None:
    before = snapshot(world)
    # Read-only users: a call that changes anything would be refused (IAM auth is on).
    result = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS,
                             "--certificate-arn", world.certificate_arn, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(world) == before
    assert not (world.folder / "iotinvoke.ini").exists()
    out = result.stdout
    for document in (
        DEVICE_TRUST,
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": DEVICE_ROLE},
                                                 "Action": "sts:AssumeRole",
                                                 "Condition": {"StringEquals": {"sts:ExternalId": "4c1d2f0e"}}}]},
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                 "Resource": [STG_FN, STG_FN + ":*"]}]},
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate",
                                                 "Resource": ALIAS_ARN}]},
        {"Sid": "iotinvoke-device", "Effect": "Allow", "Principal": {"AWS": DEVICE_ROLE},
         "Action": "lambda:InvokeFunction", "Resource": PRD_FN},
    ):
        assert json.dumps(document, indent=2) in out, document
    lines = out.splitlines()
    for action in (
        "would create iam role iotinvoke-device (the IoT role), max session 3600 s, trust policy:",
        "would create inline policy iotinvoke of iam role iotinvoke-device:",
        f"would create iot role alias iotinvoke -> {DEVICE_ROLE}, 3600 s",
        "would create iot policy iotinvoke:",
        f"would attach iot policy iotinvoke on certificate {world.certificate_arn}",
        "would create iam role iotinvoke-dev (environment dev), max session 3600 s, trust policy:",
        f"would replace lambda permission iotinvoke-device on {PRD_FN} (environment prd):",
        "would write iotinvoke.ini:",
    ):
        assert action in lines, action
    ini = out.split("would write iotinvoke.ini:\n", 1)[1]
    assert ini.startswith("; Written by scripts/provision") and f"role_arn = arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev" in ini

    # The same users without --dry-run are refused at the first change: IAM auth really is on.
    refused = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS)
    assert refused.returncode == 1
    assert refused.stderr.startswith("provision: CreateRole failed: AccessDenied") and refused.stderr.count("\n") == 1
    assert snapshot(world) == before


def test_dry_run_after_a_run_reports_nothing_to_do(world: World) -> None:
    assert world.provision(*admin()).returncode == 0
    result = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS, "--dry-run")
    assert result.returncode == 0, result.stderr
    actions = [line for line in result.stdout.splitlines() if line.startswith(("would ", "unchanged "))]
    assert [line for line in actions if line.startswith("would ")] == ["would write iotinvoke.ini:"]
    assert len(actions) > 10


@pytest.mark.parametrize("args, message", [
    ([], "give at least one --env"),
    (["--env", f"dev={DEV_FN}:prod"], "unqualified function ARN"),
    (["--env", f"iot={DEV_FN}"], "not iot or DEFAULT"),
    (["--direct", f"prd={PRD_FN}", "--external-id", "prd=abcd"], "prd is not an --env environment"),
    (["--env", f"dev={DEV_FN}", "--duration", "899"], "--duration 899"),
    (["--env", f"dev={DEV_FN}", "--thing-policy-variable"], "needs --thing-name"),
    (["--env", f"dev={DEV_FN}", "--env", f"dev={STG_FN}"], "given twice"),
    (["--env", f"dev={DEV_FN}", "--out", "no/such/folder/iotinvoke.ini"], "in an existing folder"),
    (["--env", f"dev={DEV_FN}", "--aws-key"], "--aws-key needs --board-dir DIR"),
    (["--env", f"dev={DEV_FN}", "--key-type", "rsa-2048"], "--key-type needs --board-dir DIR"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "b"], "--board-dir needs --thing-name"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "b", "--thing-name", "t", "--out", "x.ini"], "--out and --board-dir"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "b", "--thing-name", "t", "--certificate-arn", "arn:aws:iot:"
      f"{REGION}:{IOT_ACCOUNT}:cert/{'0' * 64}"], "leave out --certificate-arn"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "b", "--thing-name", "t", "--cert", "/etc/iotinvoke/c.crt"],
     "a file name in /etc/iotinvoke"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "b", "--thing-name", "t", "--aws-key", "--key-type", "ec-p256"],
     "with --aws-key AWS IoT makes it"),
    (["--env", f"dev={DEV_FN}", "--board-dir", "no/such/b", "--thing-name", "t"], "in an existing folder"),
])
def test_bad_command_lines_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, str(PROVISION), *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1]
    assert not (tmp_path / "iotinvoke.ini").exists()
    assert not (tmp_path / "b").exists()


def test_missing_function_is_one_line_exit_1(world: World) -> None:
    result = world.provision("--iot-profile", "iot-provisioner", "--lambda-profile", "lambda-provisioner",
                             "--env", f"dev={FN}nope")
    assert result.returncode == 1
    assert result.stderr == f"provision: dev: function {FN}nope not found (create it first)\n"
    assert not [key for key in snapshot(world)["roles"] if key[1].startswith("iotinvoke")]


def test_iot_policy_with_five_versions_is_rotated(world: World) -> None:
    iot = world.client("iot-admin", "iot")
    old = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
    iot.create_policy(policyName="iotinvoke", policyDocument=json.dumps(old))
    for _ in range(4):  # AWS IoT keeps five versions at most
        iot.create_policy_version(policyName="iotinvoke", policyDocument=json.dumps(old), setAsDefault=True)
    result = world.provision(*admin())
    assert result.returncode == 0, result.stderr
    assert "updated iot policy iotinvoke (a new default version)" in result.stdout.splitlines()
    versions = iot.list_policy_versions(policyName="iotinvoke")["policyVersions"]
    assert sorted(int(v["versionId"]) for v in versions) == [2, 3, 4, 5, 6]  # the oldest one went
    assert json.loads(iot.get_policy(policyName="iotinvoke")["policyDocument"]) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": ALIAS_ARN}]}


def test_no_endpoint_leaves_a_placeholder_iotinvoke_refuses(world: World) -> None:
    # A provisioner that may not call iot:DescribeEndpoint (moto does answer it for CredentialProvider).
    iam = world.client("iot-admin", "iam")
    policy = json.loads(json.dumps(PROVISIONER["iot"]))
    policy["Statement"][0]["Action"].remove("iot:DescribeEndpoint")
    iam.create_user(UserName="no-endpoint")
    iam.put_user_policy(UserName="no-endpoint", PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="no-endpoint")["AccessKey"]
    credentials = Path(world.env["AWS_SHARED_CREDENTIALS_FILE"])
    credentials.write_text(credentials.read_text() + f"[no-endpoint]\naws_access_key_id = {key['AccessKeyId']}\n"
                           f"aws_secret_access_key = {key['SecretAccessKey']}\nregion = {REGION}\n")
    result = world.provision("--iot-profile", "no-endpoint", "--lambda-profile", "lambda-provisioner", *ENVIRONMENTS)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "provision: warning: iot describe-endpoint failed (AccessDenied: User: arn:aws:iam::000000000000:user/no-endpoint"
        " is not authorized to perform: iot:DescribeEndpoint): replace the placeholder endpoint in iotinvoke.ini\n")
    assert "endpoint = <run: aws iot describe-endpoint --endpoint-type iot:CredentialProvider>" in (
        world.folder / "iotinvoke.ini").read_text().splitlines()
    with pytest.raises(iotinvoke.ConfigError, match="endpoint"):
        iotinvoke.load_config(str(world.folder / "iotinvoke.ini"), environ={})


def test_trust_policy_without_the_conditions_is_updated(world: World) -> None:
    # A device role made before the confused-deputy conditions: its trust policy gets them, in place.
    iam = world.client("iot-admin", "iam")
    bare = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "credentials.iot.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="iotinvoke-device", AssumeRolePolicyDocument=json.dumps(bare))
    dry = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would update trust policy of iam role iotinvoke-device (the IoT role):\n" + json.dumps(DEVICE_TRUST, indent=2) in dry.stdout
    assert iam.get_role(RoleName="iotinvoke-device")["Role"]["AssumeRolePolicyDocument"] == bare
    result = world.provision(*admin())
    assert result.returncode == 0, result.stderr
    assert "updated trust policy of iam role iotinvoke-device (the IoT role)" in result.stdout.splitlines()
    assert iam.get_role(RoleName="iotinvoke-device")["Role"]["AssumeRolePolicyDocument"] == DEVICE_TRUST


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS credentials anywhere: empty config and credentials files, no instance metadata, and an
    endpoint nothing listens on (nothing may reach AWS)."""
    (tmp_path / "empty").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTINVOKE_"))}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "empty"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "empty"),
               AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}", **extra)
    return env


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROVISION), "--region", REGION, "--env", f"dev={DEV_FN}", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, env, tried", [
    ((), {}, "IoT account: no usable credentials from boto3's default credentials (no --iot-profile, no AWS_PROFILE): "
             "Unable to locate credentials"),
    ((), {"AWS_PROFILE": "fleet"}, "IoT account: no usable credentials from profile fleet (AWS_PROFILE; no --iot-profile "
                                   "given): The config profile (fleet) could not be found"),
    (("--iot-profile", "iot"), {}, "IoT account: no usable credentials from profile iot (--iot-profile): "
                                   "The config profile (iot) could not be found"),
])
def test_no_credentials_is_one_line_naming_the_profile_exit_78(tmp_path: Path, args: tuple[str, ...],
                                                                env: dict[str, str], tried: str) -> None:
    result = _run(tmp_path, _bare_env(tmp_path, **env), *args, "--dry-run")
    assert (result.returncode, result.stdout, result.stderr) == (78, "", f"provision: {tried}\n")


def test_lambda_profile_is_named_too(tmp_path: Path) -> None:
    env = _bare_env(tmp_path)
    (tmp_path / "credentials").write_text("[iot]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "credentials")
    result = _run(tmp_path, env, "--iot-profile", "iot", "--lambda-profile", "lambda", "--dry-run")
    assert result.returncode == 78, result.stderr
    assert result.stderr.startswith("provision: Lambda account: no usable credentials from profile lambda (--lambda-profile): ")
    assert result.stderr.count("\n") == 1


def test_without_boto3_says_how_to_install_it_exit_69(tmp_path: Path) -> None:
    # An interpreter that cannot import boto3 (botocore alone, as Debian's python3-botocore gives).
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "boto3.py").write_text("raise ModuleNotFoundError(\"No module named 'boto3'\", name='boto3')\n")
    env = _bare_env(tmp_path, PYTHONPATH=str(hide))
    result = _run(tmp_path, env, "--dry-run")
    assert (result.returncode, result.stdout) == (69, ""), result.stderr
    assert result.stderr == (f"provision: needs boto3, which {sys.executable} cannot import (No module named 'boto3'): "
                             "pip install boto3, or on Debian apt install python3-boto3\n")
    # --help needs no boto3.
    assert subprocess.run([sys.executable, str(PROVISION), "--help"], env=env, capture_output=True, text=True,
                          timeout=60).returncode == 0


# --- The device side: --board-dir ------------------------------------------------------------------

THING = "edge-0001"
BOARD_FILES = {"iotinvoke.ini": 0o644, "cert.pem.crt": 0o644, "private.pem.key": 0o600, "INSTALL.txt": 0o644,
               "certificate.arn": 0o644}


def device(world: World, *extra: str) -> subprocess.CompletedProcess[str]:
    return world.provision(*admin("--thing-name", THING, "--board-dir", "board", *extra))


def device_state(world: World) -> dict[str, Any]:
    """The IoT account's devices, read back with the admin's keys."""
    iot = world.client("iot-admin", "iot")
    certificates = {}
    for certificate in iot.list_certificates()["certificates"]:
        description = iot.describe_certificate(certificateId=certificate["certificateId"])["certificateDescription"]
        policies = [p["policyName"] for p in iot.list_attached_policies(target=certificate["certificateArn"])["policies"]]
        certificates[certificate["certificateArn"]] = (description["status"], description["certificatePem"], policies)
    things = {t["thingName"]: sorted(iot.list_thing_principals(thingName=t["thingName"])["principals"])
              for t in iot.list_things()["things"]}
    return {"certificates": certificates, "things": things}


def public_key(pem: bytes) -> bytes:
    key = (x509.load_pem_x509_certificate(pem).public_key() if b"CERTIFICATE" in pem
           else serialization.load_pem_private_key(pem, None).public_key())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def board_config(board: Path) -> iotinvoke.Config:
    """iotinvoke's load_config on the board's iotinvoke.ini, its /etc/iotinvoke/ paths pointed at the folder
    (the files keep their modes: the owner and mode rules apply as on the board)."""
    text = (board / "iotinvoke.ini").read_text()
    assert text.count(" = /etc/iotinvoke/") == 2  # cert and key
    placed = board.parent / "placed.ini"
    placed.write_text(text.replace(" = /etc/iotinvoke/", f" = {board}/"))
    placed.chmod(0o644)
    return iotinvoke.load_config(str(placed), environ={})


def check_board(world: World, result: subprocess.CompletedProcess[str]) -> tuple[str, dict[str, Any]]:
    """What every --board-dir run must leave: the files and modes, a certificate of the key, active, attached
    to the thing and to the policy, a configuration iotinvoke loads. Returns the certificate ARN and the state."""
    assert result.returncode == 0, result.stderr
    board = world.folder / "board"
    assert board.stat().st_mode & 0o777 == 0o700
    # (iotinvoke.ini.bak: moto's endpoint changes at every run, see the module docstring)
    assert {p.name: p.stat().st_mode & 0o777 for p in board.iterdir() if p.name != "iotinvoke.ini.bak"} == BOARD_FILES
    key, cert = (board / "private.pem.key").read_bytes(), (board / "cert.pem.crt").read_bytes()
    assert public_key(key) == public_key(cert)
    key_body = "".join(key.decode().splitlines()[1:-1])
    assert key_body[:40] not in result.stdout + result.stderr  # the key is never shown
    arn = (board / "certificate.arn").read_text().strip()
    state = device_state(world)
    status, pem, policies = state["certificates"][arn]
    assert (status, policies) == ("ACTIVE", ["iotinvoke"])
    assert pem.strip() == cert.decode().strip()
    assert state["things"][THING] == [arn]

    ini = (board / "iotinvoke.ini").read_text().splitlines()
    assert "cert = /etc/iotinvoke/cert.pem.crt" in ini and "key = /etc/iotinvoke/private.pem.key" in ini
    assert f"thing_name = {THING}" in ini
    config = board_config(board)  # raises ConfigError on anything it refuses
    assert (config.cert, config.key, config.thing_name, config.role_alias, config.ca) == (
        str(board / "cert.pem.crt"), str(board / "private.pem.key"), THING, "iotinvoke", None)
    assert ".credentials.iot.ap-northeast-1.amazonaws.com" in config.iot_endpoint
    assert sorted(config.environments) == ["dev", "prd", "stg"]

    install = (board / "INSTALL.txt").read_text().splitlines()
    for command in (
        "    ssh BOARD 'umask 077 && mkdir -p iotinvoke-install'",
        "    scp iotinvoke.ini cert.pem.crt private.pem.key BOARD:iotinvoke-install/",
        "    sudo install -o root -g iotinvoke -m 0644 iotinvoke.ini cert.pem.crt /etc/iotinvoke/",
        "    sudo install -o root -g iotinvoke -m 0640 private.pem.key /etc/iotinvoke/",
        "    sudo -u iotinvoke iotinvoke --doctor dev",
        "    sudo -u iotinvoke iotinvoke --doctor stg",
        "    sudo -u iotinvoke iotinvoke --doctor prd",
    ):
        assert command in install, command
    assert f"Written by scripts/provision. Thing {THING}, certificate {arn}," in install
    return arn, state


def test_board_dir_makes_the_device_with_a_key_made_here(world: World) -> None:
    result = device(world)
    arn, state = check_board(world, result)
    board = world.folder / "board"
    key = serialization.load_pem_private_key((board / "private.pem.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    lines = result.stdout.splitlines()
    for line in (
        f"created iot thing {THING}",
        "created folder board (0700)",
        "created private key board/private.pem.key (EC P-256, made here by openssl; it never leaves this machine), 0600",
        "created certificate board/cert.pem.crt for it (iot CreateCertificateFromCsr, active)",
        f"attached certificate {arn} to iot thing {THING}",
        f"attached iot policy iotinvoke on certificate {arn}",
        "wrote board/iotinvoke.ini",
        "wrote board/INSTALL.txt",
        # DescribeThing, CreateThing, AttachThingPrincipal (no ListThingPrincipals: the thing was new)
        "cost: 3 AWS IoT registry operations (metered, see --help); the other calls: no charge listed",
    ):
        assert line in lines, line
    assert result.stderr == ""
    # Only the certificate made here and the fixture's: nothing else created.
    assert len(state["certificates"]) == 2

    # Again: the same thing, key and certificate; nothing new in AWS, no key replaced.
    files = {p.name: p.read_bytes() for p in board.iterdir() if p.name not in ("iotinvoke.ini", "iotinvoke.ini.bak")}
    again = device(world)
    assert check_board(world, again) == (arn, state)
    assert {p.name: p.read_bytes() for p in board.iterdir() if p.name in files} == files
    lines = again.stdout.splitlines()
    for line in (
        f"unchanged iot thing {THING}",
        f"unchanged certificate {arn} (board/cert.pem.crt, key board/private.pem.key), ACTIVE",
        f"unchanged certificate {arn} to iot thing {THING}",
        f"unchanged iot policy iotinvoke on certificate {arn}",
        "unchanged board/INSTALL.txt",
        "cost: 2 AWS IoT registry operations (metered, see --help); the other calls: no charge listed",
    ):
        assert line in lines, line
    assert not [line for line in lines if line.startswith(("created", "attached", "updated"))], again.stdout


def test_board_dir_with_aws_key(world: World) -> None:
    result = device(world, "--aws-key")
    arn, state = check_board(world, result)
    key = serialization.load_pem_private_key((world.folder / "board" / "private.pem.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)  # AWS IoT's (and moto's) is RSA 2048
    assert ("created certificate and private key, made by AWS IoT (CreateKeysAndCertificate, active; the only time "
            "AWS returns the key): board/cert.pem.crt, board/private.pem.key (0600)") in result.stdout.splitlines()
    assert "private key made by AWS IoT (CreateKeysAndCertificate)." in (world.folder / "board" / "INSTALL.txt").read_text()
    # A second run with --aws-key reuses the key and certificate: AWS makes no other.
    again = device(world, "--aws-key")
    assert check_board(world, again) == (arn, state)


def test_board_dir_dry_run_changes_nothing(world: World) -> None:
    before = device_state(world)
    result = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS,
                             "--thing-name", THING, "--board-dir", "board", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert device_state(world) == before
    assert not (world.folder / "board").exists()
    lines = result.stdout.splitlines()
    for line in (
        f"would create iot thing {THING}",
        "would create folder board (0700)",
        "would create private key board/private.pem.key (EC P-256, made here by openssl; it never leaves this machine), 0600",
        "would create certificate board/cert.pem.crt for it (iot CreateCertificateFromCsr, active)",
        f"would attach certificate (the new one) to iot thing {THING}",
        "would attach iot policy iotinvoke on certificate (the new one)",
        "would write board/iotinvoke.ini:",
        "cert = /etc/iotinvoke/cert.pem.crt",
        "would write board/INSTALL.txt:",
        "    sudo install -o root -g iotinvoke -m 0640 private.pem.key /etc/iotinvoke/",
    ):
        assert line in lines, line
    # After a run, a dry run finds the device as it is.
    assert device(world).returncode == 0
    after = world.provision("--iot-profile", "iot-reader", "--lambda-profile", "lambda-reader", *ENVIRONMENTS,
                            "--thing-name", THING, "--board-dir", "board", "--dry-run")
    assert after.returncode == 0, after.stderr
    assert [line for line in after.stdout.splitlines() if line.startswith("would ")] == [
        "would write board/iotinvoke.ini:", "would write board/INSTALL.txt:"]


def test_a_key_is_never_replaced(world: World) -> None:
    board = world.folder / "board"
    board.mkdir(mode=0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (board / "private.pem.key").write_bytes(pem)
    (board / "private.pem.key").chmod(0o600)
    # A key without its certificate: --aws-key would make another key. Refused, nothing made.
    refused = device(world, "--aws-key")
    assert refused.returncode == 1
    assert refused.stderr == ("provision: board/private.pem.key is there without a certificate: --aws-key would make "
                              "AWS IoT create another key; run without --aws-key to get a certificate for this key, or "
                              "move it away\n")
    assert len(device_state(world)["certificates"]) == 1  # the fixture's only
    # Without --aws-key it gets a certificate for that very key.
    result = device(world)
    check_board(world, result)
    assert (board / "private.pem.key").read_bytes() == pem
    assert "unchanged private key board/private.pem.key (no certificate for it yet: one is requested for it)" in (
        result.stdout.splitlines())
    # A certificate without its key: refused, no new key.
    (board / "private.pem.key").rename(world.folder / "kept.key")
    lost = device(world)
    assert lost.returncode == 1
    assert lost.stderr.startswith("provision: board/cert.pem.crt is there but not its key board/private.pem.key: "
                                  "provision never makes a new key")
    assert not (board / "private.pem.key").exists()
    # Another key next to the certificate: refused.
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (board / "private.pem.key").write_bytes(other)
    (board / "private.pem.key").chmod(0o600)
    mismatch = device(world)
    assert (mismatch.returncode, mismatch.stderr) == (1, "provision: board/cert.pem.crt is not the certificate of "
                                                         "board/private.pem.key: fix the folder (provision never "
                                                         "replaces a key)\n")
    assert (board / "private.pem.key").read_bytes() == other


def test_without_the_arn_file_the_certificate_is_found_through_the_thing(world: World) -> None:
    arn, state = check_board(world, device(world))
    (world.folder / "board" / "certificate.arn").unlink()
    again = device(world)
    assert again.returncode == 0, again.stderr
    assert f"unchanged certificate {arn} (board/cert.pem.crt, key board/private.pem.key), ACTIVE" in again.stdout.splitlines()
    assert "wrote board/certificate.arn" in again.stdout.splitlines()
    assert check_board(world, again) == (arn, state)


def test_a_deactivated_certificate_is_reported_not_reactivated(world: World) -> None:
    arn, _ = check_board(world, device(world))
    iot = world.client("iot-admin", "iot")
    iot.update_certificate(certificateId=arn.rsplit("/", 1)[1], newStatus="INACTIVE")
    again = device(world)
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith(f"provision: warning: certificate {arn} is INACTIVE: the credentials provider "
                                   "refuses it. provision activates only a certificate it has just made")
    assert device_state(world)["certificates"][arn][0] == "INACTIVE"


def test_other_certificates_on_the_thing_are_reported(world: World) -> None:
    iot = world.client("iot-admin", "iot")
    iot.create_thing(thingName=THING)
    iot.attach_thing_principal(thingName=THING, principal=world.certificate_arn)
    result = device(world)
    assert result.returncode == 0, result.stderr
    assert f"unchanged iot thing {THING}" in result.stdout.splitlines()
    assert result.stderr == (f"provision: warning: iot thing {THING} also has {world.certificate_arn} attached: a "
                             "certificate attached to a thing may get credentials as that thing; detach what should "
                             "not (provision never does)\n")
    arn = (world.folder / "board" / "certificate.arn").read_text().strip()
    assert device_state(world)["things"][THING] == sorted([arn, world.certificate_arn])  # nothing detached


def test_a_certificate_for_another_key_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's own CreateCertificateFromCsr: a certificate for a key moto made (see the module docstring).
    monkeypatch.setattr(IoTBackend, "create_certificate_from_csr", _MOTO_CREATE_CERTIFICATE_FROM_CSR)
    result = device(world)
    assert result.returncode == 1
    certificates = device_state(world)["certificates"]
    (arn,) = [a for a in certificates if a != world.certificate_arn]
    assert result.stderr == (f"provision: AWS IoT returned certificate {arn} for another key than board/private.pem.key: "
                             f"it is set INACTIVE again (delete it: aws iot delete-certificate --certificate-id "
                             f"{arn.rsplit('/', 1)[1]})\n")
    assert certificates[arn][0] == "INACTIVE"
    assert sorted(p.name for p in (world.folder / "board").iterdir()) == ["private.pem.key"]


def test_help_names_the_built_in_roots_and_the_costs() -> None:
    result = subprocess.run([sys.executable, str(PROVISION), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert not re.search(r"\bcertifi\b", text)
    assert "Amazon Root CA 1-4 and Starfield Services Root G2" in text
    assert iotinvoke._default_trust()[1].startswith("Amazon Root CA 1-4 and Starfield Services Root G2")
    for fact in ("iot:CreateThing, DescribeThing, ListThingPrincipals and AttachThingPrincipal are on AWS IoT Core's list",
                 "https://aws.amazon.com/iot-core/pricing/additional-details/",
                 "https://docs.aws.amazon.com/IAM/latest/UserGuide/introduction.html",
                 "no charge is listed for them, but no page says \"free\" either (unconfirmed)"):
        assert fact in text, fact


def test_without_openssl_exit_69_and_no_key(world: World) -> None:
    (world.folder / "empty-path").mkdir()
    world.env["PATH"] = str(world.folder / "empty-path")  # no openssl command to find
    result = device(world)
    assert (result.returncode, result.stderr) == (69, "provision: needs the openssl command to make the key here "
                                                      "(apt install openssl), or --aws-key\n")
    assert not (world.folder / "board" / "private.pem.key").exists()
    assert len(device_state(world)["certificates"]) == 1  # the fixture's only
