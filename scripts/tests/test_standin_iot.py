"""Stand-in hop 1: the IoT credentials provider (mutual TLS, registry, IoT policy, role alias)."""
from __future__ import annotations

import hashlib
import re
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from standin import StandIn
from standin.testclient import Reply, TestClient

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

ALIAS_PATH = "/role-aliases/iotinvoke-alias/credentials"


def _certificate_id(path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_device_certificate_gets_credentials(aws: StandIn, aws_client: TestClient) -> None:
    reply = aws_client.iot()
    assert reply.status == 200
    assert reply.header("Content-Type") == "application/json"
    assert reply.header("x-amzn-RequestId")
    credentials = reply.json()["credentials"]
    assert set(credentials) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", credentials["accessKeyId"])
    assert len(credentials["secretAccessKey"]) == 40
    assert len(credentials["sessionToken"]) > 400
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", credentials["expiration"])
    expiration = datetime.strptime(credentials["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(expiration - (datetime.now(timezone.utc) + timedelta(seconds=3600))) < timedelta(seconds=5)
    assert credentials["secretAccessKey"] in aws.issued_secrets()
    assert credentials["sessionToken"] in aws.issued_secrets()


def test_session_is_named_after_the_certificate_id(aws: StandIn, aws_client: TestClient) -> None:
    creds = aws_client.device_creds()
    reply = aws_client.sts(creds, {"Action": "GetCallerIdentity"})
    cert_id = _certificate_id(aws.certs["device"][0])
    assert reply.xml("sts:GetCallerIdentityResult/sts:Arn") == \
        f"arn:aws:sts::000000000000:assumed-role/iotinvoke-device/{cert_id}"
    assert reply.xml("sts:GetCallerIdentityResult/sts:Account") == "000000000000"


def test_thing_name_header_is_optional(aws_client: TestClient) -> None:
    assert aws_client.iot(thing=None).status == 200


def test_expiration_follows_the_stand_in_clock(aws: StandIn, aws_client: TestClient) -> None:
    aws.clock_offset_s = 7200
    expiration = aws_client.device_creds().expiration
    expected = datetime.now(timezone.utc) + timedelta(seconds=7200 + 3600)
    got = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(got - expected) < timedelta(seconds=5)


@pytest.mark.parametrize("cert", [None, "expired"])
def test_handshake_fails_without_a_valid_certificate(aws: StandIn, aws_client: TestClient, cert: str | None) -> None:
    with pytest.raises(ssl.SSLError):
        aws_client.send("iot", "GET", ALIAS_PATH, context=aws_client.context(cert))
    assert aws.count("iot") == 0   # refused in the handshake: no request was ever read


def _refused_at_http(reply: Reply) -> None:
    assert reply.status == 403
    assert reply.header("x-amzn-ErrorType") == "AccessDeniedException"
    assert reply.json() == {"message": "Certificate is invalid on this endpoint"}


def test_certificate_from_an_unknown_ca_completes_the_handshake_and_gets_403(aws: StandIn,
                                                                             aws_client: TestClient) -> None:
    """As on AWS (iot.py): the handshake accepts it, the registry does not know it."""
    _refused_at_http(aws_client.iot(cert="foreign", thing=None))
    assert aws.count("iot") == 1


def test_self_signed_certificate_gets_403(aws: StandIn, aws_client: TestClient, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed device")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "self.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = aws_client.context(cert_paths=(tmp_path / "self.pem", tmp_path / "self.key"))
    _refused_at_http(aws_client.send("iot", "GET", ALIAS_PATH, context=context))


def test_tls_refuse_fault_refuses_an_unknown_ca_in_the_handshake(aws: StandIn, aws_client: TestClient) -> None:
    """The fault stands for a proxy or custom endpoint with its own trust: a TLS alert, no request."""
    aws.fault("iot", "tls_refuse", count=2)
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        aws_client.iot(cert="foreign", thing=None)
    assert aws_client.iot().status == 200   # the stand-in's own CA still passes the strict check
    assert aws.count("iot") == 1
    _refused_at_http(aws_client.iot(cert="foreign", thing=None))   # the fault was for two connections
    assert aws.connections("iot") == 3


def test_tls_refuse_fault_is_for_the_iot_hop_only(aws: StandIn) -> None:
    for hop in ("sts", "lambda"):
        with pytest.raises(ValueError, match="iot hop only"):
            aws.fault(hop, "tls_refuse")


def test_handshake_fails_without_the_endpoint_name_as_sni(aws: StandIn, aws_client: TestClient) -> None:
    context = aws_client.context("device")
    context.check_hostname = False
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        aws_client.connect("iot", context, server_hostname="other.example").request("GET", ALIAS_PATH)


@pytest.mark.parametrize("cert", ["inactive", "revoked"])
def test_inactive_or_revoked_certificate_is_refused(aws_client: TestClient, cert: str) -> None:
    reply = aws_client.iot(cert=cert, thing=None)
    assert reply.status == 403
    assert reply.json() == {"message": "Certificate is invalid on this endpoint"}
    assert reply.header("x-amzn-ErrorType") == "AccessDeniedException"


def test_certificate_missing_from_the_registry_is_refused(aws: StandIn, aws_client: TestClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cert_id = _certificate_id(aws.certs["device"][0])
    monkeypatch.delitem(aws.world.certificates, cert_id)
    reply = aws_client.iot()
    assert (reply.status, reply.json()["message"]) == (403, "Certificate is invalid on this endpoint")


@pytest.mark.parametrize("cert,thing", [("device", "edge-0002"), ("other-thing", "edge-0001"), ("device", "")])
def test_thing_name_must_be_attached_to_the_certificate(aws_client: TestClient, cert: str, thing: str) -> None:
    reply = aws_client.iot(cert=cert, thing=thing)
    assert reply.status == 403
    assert reply.json() == {"message": "Invalid thing name passed"}


def test_other_thing_certificate_works_with_its_own_thing(aws_client: TestClient) -> None:
    assert aws_client.iot(cert="other-thing", thing="edge-0002").status == 200


def test_iot_policy_must_allow_assume_role_with_certificate(aws_client: TestClient) -> None:
    reply = aws_client.iot(cert="nopolicy", thing=None)
    assert reply.status == 403
    assert reply.json() == {"message": "Access Denied"}


def test_iot_policy_is_checked_on_the_alias_arn(aws: StandIn, aws_client: TestClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    certificate = aws.world.certificate_named("device")
    only_other = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate",
        "Resource": "arn:aws:iot:ap-northeast-1:000000000000:rolealias/some-other-alias"}]}
    monkeypatch.setattr(certificate, "policies", [only_other])
    assert aws_client.iot().status == 403


def test_unknown_alias_is_404(aws_client: TestClient) -> None:
    reply = aws_client.iot(alias="iotinvoke-nosuch")
    assert reply.status == 404
    assert reply.json() == {"message": "Role alias does not exist"}


def test_alias_longer_than_the_role_allows_is_400(aws_client: TestClient) -> None:
    reply = aws_client.iot(alias="iotinvoke-long")
    assert reply.status == 400
    assert reply.json() == {
        "message": "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role"}


def test_alias_whose_role_does_not_trust_the_provider_is_400(aws_client: TestClient) -> None:
    reply = aws_client.iot(alias="iotinvoke-norole")
    assert reply.status == 400
    assert reply.json() == {"message": "Unable to assume the role, or the role to assume does not exist"}


def test_alias_whose_role_does_not_exist_is_400(aws: StandIn, aws_client: TestClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws.world.role_aliases["iotinvoke-alias"], "role_arn",
                        "arn:aws:iam::000000000000:role/deleted")
    reply = aws_client.iot()
    assert (reply.status, reply.json()["message"]) == (
        400, "Unable to assume the role, or the role to assume does not exist")


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/role-aliases/iotinvoke-alias", 404),
    ("GET", "/", 404),
    ("POST", ALIAS_PATH, 405),
])
def test_other_paths_and_methods(aws_client: TestClient, method: str, path: str, status: int) -> None:
    reply = aws_client.iot(method=method, path=path)
    assert reply.status == status
    assert "message" in reply.json()


def test_keep_alive_serves_several_requests_on_one_connection(aws: StandIn, aws_client: TestClient) -> None:
    connection = aws_client.connect("iot", aws_client.context("device"))
    try:
        assert aws_client.send("iot", "GET", ALIAS_PATH, connection=connection).status == 200
        socket = connection.sock
        for _ in range(2):
            assert aws_client.send("iot", "GET", ALIAS_PATH, connection=connection).status == 200
            assert connection.sock is socket   # the same TLS connection, not a reconnect
    finally:
        connection.close()
    assert aws.count("iot") == 3
