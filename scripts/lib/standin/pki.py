"""Test PKI for the stand-in: a CA, one server certificate, the device certificates.

Everything is EC P-256 (fast to generate and to handshake). The files are written into the
stand-in's work folder and reused on the next start when they are still valid, so a restart
costs a few file reads instead of key generation. Private keys are written 0600, certificates
0644, each as a new file of the user running the stand-in (whatever the umask, whoever owned an
older file of that name).

It runs with Debian 12's own cryptography (38.0.4, python3-cryptography) as well as with current
releases: only APIs that 38 has (no ``not_valid_after_utc``, from 42; no
``verify_directly_issued_by``, from 40; no equality of public keys, from 41).

Layout inside the work folder::

    ca.pem                      the test CA that signs the server and device certificates
    certs/<name>.pem.crt/.key   device certificates (names in DEVICE_CERTS)
    pki/ca.key                  the CA key (kept so that the set can be checked, not regenerated)
    pki/server.pem/.key         the endpoints' certificate: SAN DNS:localhost, IP:127.0.0.1
    pki/foreign-ca.pem/.key     another CA, which signs the "foreign" device certificate
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEVICE_CERTS", "Pki", "certificate_id", "issue_device_certificate", "issue_server_certificate",
           "load_or_create"]

# Device certificates the harness hands out. "foreign" is signed by another CA and "expired"
# is past its validity: "expired" fails the TLS handshake, "foreign" gets HTTP 403 (iot.py) like an
# unregistered one; the others differ only in the registry.
DEVICE_CERTS: Final = ("device", "inactive", "revoked", "foreign", "expired", "nopolicy", "other-thing")

# Reissue anything that would expire within this margin, so a long test run never straddles it.
RENEW_MARGIN: Final = datetime.timedelta(days=7)
CA_LIFETIME: Final = datetime.timedelta(days=3650)
LEAF_LIFETIME: Final = datetime.timedelta(days=365)
# Real endpoint and device certificates were issued weeks before a board uses them, so a board
# whose clock is a day behind still accepts them; certificates issued "now" would hide that.
BACKDATE: Final = datetime.timedelta(days=30)
SERVER_HOSTNAME: Final = "localhost"


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files."""

    ca_path: Path
    server_cert: Path
    server_key: Path
    device: dict[str, tuple[Path, Path]]  # name -> (certificate, key)


def certificate_id(cert_pem_or_der: bytes) -> str:
    """AWS IoT's certificateId: the SHA-256 of the certificate's DER encoding, in hex."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert_pem_or_der).public_bytes(serialization.Encoding.DER)
    else:
        der = cert_pem_or_der
    return hashlib.sha256(der).hexdigest()


def load_or_create(workdir: Path) -> Pki:
    """Return the PKI in ``workdir``, generating it unless a complete, valid set is there."""
    pki = _paths(workdir)
    if not _is_valid(workdir, pki):
        _generate(workdir, pki)
    return pki


def issue_server_certificate(workdir: Path, out: Path, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
                             valid_from: datetime.timedelta = -BACKDATE, valid_for: datetime.timedelta = LEAF_LIFETIME,
                             issuer: str = "ca") -> tuple[Path, Path]:
    """A server certificate and key, written to out.pem/out.key, signed by the stand-in's CA (issuer
    "ca") or its foreign CA ("foreign"), with exactly the given SAN entries (none: no SAN at all) and
    valid from now + valid_from for valid_for. For servers that must not look like the stand-in's:
    no IP SAN, another host name, a certificate not yet valid or expired."""
    issuer_cert = x509.load_pem_x509_certificate(
        (workdir / ("ca.pem" if issuer == "ca" else "pki/foreign-ca.pem")).read_bytes())
    issuer_key = serialization.load_pem_private_key(
        (workdir / "pki" / ("ca.key" if issuer == "ca" else "foreign-ca.key")).read_bytes(), password=None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    san: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() + valid_from
    cert = _leaf(_name(dns[0] if dns else ips[0] if ips else "no name"), key, issuer_cert, issuer_key, start,
                 start + valid_for, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san or None)
    cert_path, key_path = out.with_suffix(".pem"), out.with_suffix(".key")
    _write_pair(cert_path, cert, key_path, key)
    return cert_path, key_path


def issue_device_certificate(workdir: Path, public_key_pem: bytes, cert_path: Path) -> bytes:
    """A device certificate from the test CA in ``workdir`` (made by load_or_create) for a key
    generated elsewhere, e.g. inside a PKCS#11 token or a TPM; the same form as DEVICE_CERTS.
    Writes it to ``cert_path`` and returns its PEM. Register it with the world to make AWS know it."""
    ca_cert = x509.load_pem_x509_certificate((workdir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((workdir / "pki" / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the test CA key is not an EC key")
    public_key = serialization.load_pem_public_key(public_key_pem)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("AWS IoT Certificate")).issuer_name(ca_cert.subject).public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    _write_file(cert_path, pem, 0o644)
    return pem


# -- private helpers ---------------------------------------------------------------------------

def _paths(workdir: Path) -> Pki:
    certs = workdir / "certs"
    return Pki(
        ca_path=workdir / "ca.pem",
        server_cert=workdir / "pki" / "server.pem",
        server_key=workdir / "pki" / "server.key",
        device={name: (certs / f"{name}.pem.crt", certs / f"{name}.pem.key") for name in DEVICE_CERTS},
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _is_valid(workdir: Path, pki: Pki) -> bool:
    """True when every file exists, parses, chains to the right CA and is within its validity."""
    try:
        ca = x509.load_pem_x509_certificate(pki.ca_path.read_bytes())
        foreign = x509.load_pem_x509_certificate((workdir / "pki" / "foreign-ca.pem").read_bytes())
        (workdir / "pki" / "ca.key").read_bytes()
        leaves = {"server": (pki.server_cert, pki.server_key), **pki.device}
        soon = _now() + RENEW_MARGIN
        for cert in (ca, foreign):
            if _not_after(cert) < soon:
                return False
        for name, (cert_path, key_path) in leaves.items():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if _public_der(cert.public_key()) != _public_der(key.public_key()):   # no key == before 41
                return False
            _check_issued_by(cert, foreign if name == "foreign" else ca)
            expired = _not_after(cert) < _now()
            if expired != (name == "expired") or (not expired and _not_after(cert) < soon):
                return False
        return True
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    """The end of validity, timezone-aware (cryptography < 42 has only the naive UTC value)."""
    return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc) if not hasattr(cert, "not_valid_after_utc") \
        else cert.not_valid_after_utc


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Raise ValueError or InvalidSignature unless issuer's key signed cert (all keys here are EC)."""
    if cert.issuer != issuer.subject:
        raise ValueError("issuer name mismatch")
    public_key = issuer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or cert.signature_hash_algorithm is None:
        raise ValueError("not an EC signature")
    public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def _generate(workdir: Path, pki: Pki) -> None:
    (workdir / "pki").mkdir(parents=True, exist_ok=True)
    (workdir / "certs").mkdir(parents=True, exist_ok=True)
    now = _now()
    ca_key, ca_cert = _make_ca("iotinvoke stand-in test CA", now)
    foreign_key, foreign_cert = _make_ca("iotinvoke stand-in foreign CA", now)
    _write_pair(pki.ca_path, ca_cert, workdir / "pki" / "ca.key", ca_key)
    _write_pair(workdir / "pki" / "foreign-ca.pem", foreign_cert, workdir / "pki" / "foreign-ca.key", foreign_key)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _leaf(
        _name(SERVER_HOSTNAME), server_key, ca_cert, ca_key, now - BACKDATE, now + LEAF_LIFETIME,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.DNSName(SERVER_HOSTNAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    _write_pair(pki.server_cert, server_cert, pki.server_key, server_key)

    for name, (cert_path, key_path) in pki.device.items():
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_cert, issuer_key = (foreign_cert, foreign_key) if name == "foreign" else (ca_cert, ca_key)
        if name == "expired":
            start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            start, end = now - BACKDATE, now + LEAF_LIFETIME
        # AWS IoT device certificates carry this subject; the name of the file tells them apart.
        cert = _leaf(_name("AWS IoT Certificate"), key, issuer_cert, issuer_key, start, end,
                     usage=ExtendedKeyUsageOID.CLIENT_AUTH, san=None)
        _write_pair(cert_path, cert, key_path, key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(common_name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 2 * BACKDATE).not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate,
          issuer_key: ec.EllipticCurvePrivateKey, start: datetime.datetime, end: datetime.datetime, *,
          usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(cert_path: Path, cert: x509.Certificate, key_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    # Private keys 0600, as a device keeps them (and as curl and OpenSSL expect).
    _write_file(key_path, pem, 0o600)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """data into path with exactly mode, as a new file of this user: written beside it, then
    renamed over it (an older file of another owner or mode is replaced, not rewritten)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)   # the umask narrowed (or a 0002 umask widened) the creation mode
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
