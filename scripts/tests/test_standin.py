"""The stand-in harness itself: lifecycle, config file, PKI cache, command, overhead."""
from __future__ import annotations

import configparser
import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from standin import StandIn
from standin.testclient import TestClient

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

REPO = Path(__file__).resolve().parents[2]


def test_config_has_exactly_the_keys_iotinvoke_reads(aws: StandIn) -> None:
    config = configparser.ConfigParser()
    config.read(aws.config_path)
    assert dict(config.defaults()) == {"sts_endpoint": aws.urls["sts"], "lambda_endpoint": aws.urls["lambda"],
                                       "ca_bundle": "ca.pem"}
    import iotinvoke

    assert set(iotinvoke.load_config(str(aws.config_path), environ={}).environments) == set(config.sections()) - {"iot"}
    iot = {key: config.get("iot", key) for key in config.options("iot") if key not in config.defaults()}
    assert iot == {"endpoint": aws.urls["iot"], "role_alias": "iotinvoke-alias", "cert": "certs/device.pem.crt",
                   "key": "certs/device.pem.key", "ca": "ca.pem", "thing_name": "edge-0001"}
    for name in ("cert", "key", "ca"):
        assert (aws.config_path.parent / iot[name]).is_file()
    assert config.get("dev", "function") == "arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest"
    assert config.get("dev", "role_arn") == "arn:aws:iam::111111111111:role/iotinvoke-dev"
    assert config.get("stg", "external_id") == "stg-6b1c2f"
    assert config.get("prd", "function").startswith("arn:aws:lambda:eu-west-1:222222222222:function:")
    for direct in ("direct", "direct-denied"):
        assert not config.has_option(direct, "role_arn")   # no role: one-hop mode
    assert set(config.sections()) == {"iot", "dev", "stg", "prd", "direct", "untrusted", "noinvoke", "missing",
                                      "direct-denied", "tools"}


def test_every_config_section_behaves_as_named(aws: StandIn, aws_client: TestClient) -> None:
    """Walk each environment of the written config through hops 2 and 3, as iotinvoke will."""
    config = configparser.ConfigParser()
    config.read(aws.config_path)
    device = aws_client.device_creds()
    outcomes = {}
    for env in ("dev", "stg", "prd", "direct", "untrusted", "noinvoke", "missing", "direct-denied", "tools"):
        function = config.get(env, "function")
        region = config.get(env, "region", fallback=None) or function.split(":")[3]
        role_arn = config.get(env, "role_arn", fallback=None)
        creds = device
        if role_arn:
            params = {"ExternalId": config.get(env, "external_id")} if config.has_option(env, "external_id") else {}
            reply = aws_client.assume(device, role_arn, region=region, **params)
            if reply.status != 200:
                outcomes[env] = ("sts", reply.status, reply.error_code)
                continue
            creds = aws_client.role_creds(device, role_arn, region=region, **params)
        reply = aws_client.invoke(creds, function, {}, region=region)
        outcomes[env] = ("lambda", reply.status, reply.error_code)
    assert outcomes == {
        "dev": ("lambda", 200, None), "stg": ("lambda", 200, None), "prd": ("lambda", 200, None),
        "direct": ("lambda", 200, None), "tools": ("lambda", 200, None),
        "untrusted": ("sts", 403, "AccessDenied"),
        "noinvoke": ("lambda", 403, "AccessDeniedException"),
        "missing": ("lambda", 404, "ResourceNotFoundException"),
        "direct-denied": ("lambda", 403, "AccessDeniedException"),
    }


def test_endpoints_use_the_test_ca_and_device_keys_are_private(aws: StandIn) -> None:
    for url in aws.urls.values():
        assert url.startswith("https://localhost:")
    ca = x509.load_pem_x509_certificate(aws.ca_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name, (cert, key) in aws.certs.items():
        assert cert.is_file() and key.is_file()
        assert os.stat(key).st_mode & 0o077 == 0, name


def test_server_certificate_is_valid_for_localhost_and_127_0_0_1(aws: StandIn) -> None:
    context = ssl.create_default_context(cafile=str(aws.ca_path))
    port = int(aws.urls["sts"].rsplit(":", 1)[1])
    for host in ("localhost", "127.0.0.1"):
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=5)
        connection.request("GET", "/")
        assert connection.getresponse().status == 403   # TLS verified; the request itself is unsigned
        connection.close()


def test_restart_reuses_the_pki_and_stop_cuts_open_connections(tmp_path: Path) -> None:
    with StandIn(tmp_path) as first:
        files = {path: path.read_bytes() for path in tmp_path.rglob("*.pem*")}
        client = TestClient(first)
        connection = client.connect("iot", client.context("device"))
        assert client.send("iot", "GET", "/role-aliases/iotinvoke-alias/credentials", connection=connection).status == 200
    with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException, OSError)):
        client.send("iot", "GET", "/role-aliases/iotinvoke-alias/credentials", connection=connection)
    started = time.monotonic()
    with StandIn(tmp_path) as second:
        assert time.monotonic() - started < 0.2     # nothing regenerated
        assert {path: path.read_bytes() for path in tmp_path.rglob("*.pem*")} == files
        assert TestClient(second).iot().status == 200


def test_damaged_pki_is_regenerated(tmp_path: Path) -> None:
    StandIn(tmp_path)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "certs" / "device.pem.key").write_text("garbage")
    with StandIn(tmp_path) as aws:
        assert (tmp_path / "ca.pem").read_bytes() != ca_before
        assert TestClient(aws).iot().status == 200


def test_nothing_listens_before_start(tmp_path: Path) -> None:
    aws = StandIn(tmp_path)
    with pytest.raises(RuntimeError):
        _ = aws.urls
    assert aws.ca_path.is_file()          # the PKI and world are ready for tests to inspect
    assert aws.world.functions


def test_per_invoke_overhead_is_small(aws: StandIn, aws_client: TestClient) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = aws_client.role_creds(aws_client.device_creds(), "arn:aws:iam::111111111111:role/iotinvoke-dev")
    path = "/2015-03-31/functions/ADCCrossAccountTest/invocations"
    # Sign once and replay over one keep-alive connection: this measures the stand-in, not the signer.
    signed = AWSRequest(method="POST", url=aws.urls["lambda"] + path, data=b"{}")
    SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token), "lambda", "ap-northeast-1").add_auth(signed)
    headers = dict(signed.prepare().headers.items())
    connection = aws_client.connect("lambda")
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        connection.request("POST", path, body=b"{}", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    per_call_ms = (time.perf_counter() - started) / rounds * 1000
    connection.close()
    print(f"round trip per invoke: {per_call_ms:.2f} ms")
    assert per_call_ms < 5, per_call_ms


def test_command_serves_until_sigterm(tmp_path: Path) -> None:
    bundle = "/etc/ssl/certs/ca-certificates.crt"   # a machine-wide AWS_CA_BUNDLE, as on many build hosts
    process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "standin.py"), "--dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, AWS_CA_BUNDLE=bundle))
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "ready").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        config = configparser.ConfigParser()
        config.read(tmp_path / "iotinvoke.ini")
        iot_url = config.get("iot", "endpoint")
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(str(tmp_path / "certs" / "device.pem.crt"), str(tmp_path / "certs" / "device.pem.key"))
        connection = http.client.HTTPSConnection("localhost", int(iot_url.rsplit(":", 1)[1]), context=context)
        connection.request("GET", "/role-aliases/iotinvoke-alias/credentials")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split() == ["iot", iot_url]
    assert lines[3] == f"config  {tmp_path / 'iotinvoke.ini'}"
    assert not (tmp_path / "ready").exists()
    assert [line for line in stderr.splitlines() if "AWS_CA_BUNDLE" in line] == [
        f"standin: AWS_CA_BUNDLE is set ({bundle}): iotinvoke takes it over iotinvoke.ini's ca_bundle, "
        "so run it with AWS_CA_BUNDLE= (empty) against this stand-in"]
