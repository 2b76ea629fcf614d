"""The default trust: Amazon Trust Services' roots, built into iotinvoke.py.

In-process and fast: every TLS handshake here runs between two SSLContexts over memory BIOs
(no socket, no stand-in). A test PKI stands in for Amazon's: a root, an intermediate and a leaf
for the endpoint's name, as AWS presents them (leaf + intermediate; the root comes from the
trust store). The tests point the default trust at that root by replacing the module constant
in-process; nothing in the configuration or the environment can do that.
"""
from __future__ import annotations

import datetime
import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import iotinvoke

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

HOST = "lambda.ap-northeast-1.amazonaws.com"
# What Amazon Trust Services asks a custom trust store to hold (https://www.amazontrust.com/repository/),
# as certifi's bundle labels them.
AMAZON_ROOT_LABELS = (
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
)


@dataclass
class Chain:
    root_pem: str
    server_chain: Path  # leaf + intermediate, as a server sends them
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotinvoke test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, ca: bool, host: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    if host:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _chain(folder: Path, label: str) -> Chain:
    """A root, an intermediate it signs, and a leaf for HOST that the intermediate signs."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root = _certificate(f"{label} Root CA", keys[0], f"{label} Root CA", keys[0], ca=True)
    intermediate = _certificate(f"{label} Intermediate", keys[1], f"{label} Root CA", keys[0], ca=True)
    leaf = _certificate(HOST, keys[2], f"{label} Intermediate", keys[1], ca=False, host=HOST)
    chain = folder / f"{label}-chain.pem"
    chain.write_text(_pem(leaf) + _pem(intermediate))
    key = folder / f"{label}-leaf.key"
    key.write_bytes(keys[2].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return Chain(_pem(root), chain, key)


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Chain]:
    folder = tmp_path_factory.mktemp("trust")
    return {"amazon": _chain(folder, "Stand-in Amazon"), "other": _chain(folder, "Other")}


def _handshake(client: ssl.SSLContext, server_chain: Chain) -> None:
    """One TLS handshake over memory BIOs; raises ssl.SSLCertVerificationError when the client
    does not trust the server's chain."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_chain.server_chain, server_chain.server_key)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, to_server, server_hostname=HOST)
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                tls_client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        if not server_done:
            try:
                tls_server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                pass  # the client's alert after it refused the chain; the client raises below
        to_client.write(server_out.read())
        if client_done and server_done:
            return
    raise AssertionError("the handshake did not finish")


def _default_context(monkeypatch: pytest.MonkeyPatch, root_pem: str) -> ssl.SSLContext:
    monkeypatch.setattr(iotinvoke, "_AMAZON_ROOTS", root_pem)
    context: ssl.SSLContext = iotinvoke._ssl_context(None, None)
    return context


def test_an_aws_like_chain_verifies_with_the_default_trust(monkeypatch: pytest.MonkeyPatch,
                                                           chains: dict[str, Chain]) -> None:
    _handshake(_default_context(monkeypatch, chains["amazon"].root_pem), chains["amazon"])


def test_a_root_sent_cross_signed_by_an_untrusted_root_still_verifies(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """AWS IoT sends leaf, intermediate and Amazon Root CA 1 cross-signed by the Starfield Services
    root: the self-signed root in the trust store must end the chain there."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    root = _certificate("X Root CA", keys[0], "X Root CA", keys[0], ca=True)
    cross = _certificate("X Root CA", keys[0], "Y Old Root", keys[3], ca=True)  # same subject and key
    intermediate = _certificate("X Intermediate", keys[1], "X Root CA", keys[0], ca=True)
    leaf = _certificate(HOST, keys[2], "X Intermediate", keys[1], ca=False, host=HOST)
    chain = tmp_path / "chain.pem"
    chain.write_text(_pem(leaf) + _pem(intermediate) + _pem(cross))
    key = tmp_path / "leaf.key"
    key.write_bytes(keys[2].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    _handshake(_default_context(monkeypatch, _pem(root)), Chain(_pem(root), chain, key))


def test_a_chain_to_any_other_root_is_refused(monkeypatch: pytest.MonkeyPatch, chains: dict[str, Chain]) -> None:
    context = _default_context(monkeypatch, chains["amazon"].root_pem)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        _handshake(context, chains["other"])


def test_the_default_trust_holds_only_its_roots_not_the_system_store(monkeypatch: pytest.MonkeyPatch,
                                                                     chains: dict[str, Chain]) -> None:
    # create_default_context() without cafile/cadata would add the system's roots too.
    context = _default_context(monkeypatch, chains["amazon"].root_pem)
    assert [dict(field[0] for field in cert["subject"])["commonName"] for cert in context.get_ca_certs()] \
        == ["Stand-in Amazon Root CA"]


def test_the_real_default_trust_is_exactly_the_five_amazon_roots() -> None:
    context: ssl.SSLContext = iotinvoke._ssl_context(None, None)
    names = sorted(dict(field[0] for field in cert["subject"])["commonName"] for cert in context.get_ca_certs())
    assert names == sorted(AMAZON_ROOT_LABELS)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("trusted, served", [("other", "other"), ("other", "amazon")])
def test_an_explicit_bundle_still_wins(monkeypatch: pytest.MonkeyPatch, chains: dict[str, Chain],
                                       tmp_path: Path, trusted: str, served: str) -> None:
    """ca / ca_bundle / AWS_CA_BUNDLE name a CA file: it replaces the default trust, both ways."""
    monkeypatch.setattr(iotinvoke, "_AMAZON_ROOTS", chains["amazon"].root_pem)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(chains[trusted].root_pem)
    context = iotinvoke._ssl_context(str(bundle), None)
    if trusted == served:
        _handshake(context, chains[served])
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(context, chains[served])


def test_the_trust_source_is_named() -> None:
    cadata, source = iotinvoke._default_trust()
    assert cadata is iotinvoke._AMAZON_ROOTS
    assert "Amazon Root CA 1-4" in source and "built in" in source


def _certifi_roots() -> dict[str, bytes]:
    """certifi's bundle as {label: DER}."""
    text = Path(certifi.where()).read_text(encoding="ascii")
    found = re.findall(r'^# Label: "([^"]+)"\n.*?(-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----)',
                       text, re.MULTILINE | re.DOTALL)
    assert len(found) > 100, "certifi's bundle is not in the expected format"
    return {label: ssl.PEM_cert_to_DER_cert(pem) for label, pem in found}


def _embedded() -> list[bytes]:
    pems = re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----", iotinvoke._AMAZON_ROOTS, re.DOTALL)
    return [ssl.PEM_cert_to_DER_cert(pem) for pem in pems]


def test_the_built_in_roots_are_certifis_amazon_roots_byte_for_byte() -> None:
    """A future certifi that drops, adds or reissues one of these roots fails here."""
    certifi_roots = _certifi_roots()
    expected = {label: hashlib.sha256(certifi_roots[label]).hexdigest() for label in AMAZON_ROOT_LABELS}
    embedded = [hashlib.sha256(der).hexdigest() for der in _embedded()]
    assert sorted(embedded) == sorted(expected.values()), (embedded, expected, certifi.__version__)
    # The comment above each certificate in iotinvoke.py quotes its SHA-256: keep it true.
    source = Path(iotinvoke.__file__).read_text(encoding="utf-8")
    for label, digest in expected.items():
        assert re.search(r"# %s \(.*SHA-256 %s\n" % (re.escape(label), digest), source), label
    # certifi has no other Amazon or Starfield Services root that the built-in set lacks.
    others = [label for label in certifi_roots if label.startswith(("Amazon", "Starfield Services"))]
    assert sorted(others) == sorted(AMAZON_ROOT_LABELS)
