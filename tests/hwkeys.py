"""Device keys in hardware for tests and the benchmark: a SoftHSM2 token and a software TPM 2.0
(swtpm behind tpm2-abrmd, used through tpm2-pkcs11), both reached by OpenSSL's pkcs11-provider.

Everything lives in a private folder: the token store, the TPM state, a private D-Bus for
tpm2-abrmd. Each device key gets a certificate from the stand-in's test CA, registered with the
stand-in's world like the "device" certificate (same policies, thing edge-0001).

Debian packages (scripts/test installs them): pkcs11-provider (bookworm-backports on Debian 12),
softhsm2, swtpm, tpm2-tools, tpm2-abrmd, libtpm2-pkcs11-1, libtpm2-pkcs11-tools,
libtss2-tcti-swtpm0, libtss2-tcti-tabrmd0, dbus-daemon, openssl.
"""
from __future__ import annotations

import base64
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from standin import StandIn
from standin.pki import certificate_id, issue_device_certificate
from standin.world import Certificate

PIN = "4711-0815"
SO_PIN = "8642-9753"
KEY_LABEL = "iotinvoke-device"


def _first(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


PROVIDER = _first("/usr/lib/*/ossl-modules/pkcs11.so")
SOFTHSM_MODULE = _first("/usr/lib/softhsm/libsofthsm2.so") or _first("/usr/lib/*/softhsm/libsofthsm2.so")
TPM2_MODULE = _first("/usr/lib/*/pkcs11/libtpm2_pkcs11.so")


def missing_for_softhsm() -> list[str]:
    """What this machine lacks for a SoftHSM2 token (empty: nothing)."""
    missing = [] if PROVIDER else ["pkcs11-provider (OpenSSL's pkcs11.so)"]
    missing += [] if SOFTHSM_MODULE else ["softhsm2 (libsofthsm2.so)"]
    missing += [tool for tool in ("softhsm2-util",) if not shutil.which(tool)]
    return missing


def missing_for_tpm() -> list[str]:
    missing = [] if PROVIDER else ["pkcs11-provider (OpenSSL's pkcs11.so)"]
    missing += [] if TPM2_MODULE else ["libtpm2-pkcs11-1 (libtpm2_pkcs11.so)"]
    tools = ("swtpm", "tpm2-abrmd", "tpm2_ptool", "tpm2_dictionarylockout", "tpm2_getcap", "dbus-daemon", "openssl")
    missing += [tool for tool in tools if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool)]
    return missing


def provider_uri_pem(uri: str) -> bytes:
    """pkcs11-provider's key file: PEM of SEQUENCE { VisibleString "PKCS#11 Provider URI v1.0",
    UTF8String uri } (the form of its tools/uri2pem.py)."""

    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + size + body

    der = tlv(0x30, tlv(0x1A, b"PKCS#11 Provider URI v1.0") + tlv(0x0C, uri.encode()))
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN PKCS#11 PROVIDER URI-----\n" + "\n".join(lines) + "\n-----END PKCS#11 PROVIDER URI-----\n").encode()


def openssl_conf(path: Path, module: str | None, extra: str = "") -> Path:
    """An OpenSSL configuration activating the default provider and pkcs11-provider with module
    (None: the pkcs11 provider is not configured at all)."""
    text = "openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n[provider_sect]\ndefault = default_sect\n"
    if module is not None:
        text += "pkcs11 = pkcs11_sect\n"
    text += "[default_sect]\nactivate = 1\n"
    if module is not None:
        # no-deinit: upstream pkcs11-provider 1.2 can crash at process exit without it.
        text += f"[pkcs11_sect]\npkcs11-module-path = {module}\npkcs11-module-quirks = no-deinit\n{extra}activate = 1\n"
    path.write_text(text)
    return path


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


def register(aws: StandIn, public_key_pem: bytes, cert_path: Path, name: str) -> Path:
    """Issue a device certificate for the key and make the stand-in's IoT registry know it."""
    pem = issue_device_certificate(aws.workdir, public_key_pem, cert_path)
    device = aws.world.certificate_named("device")
    aws.world.certificates[certificate_id(pem)] = Certificate(name, "ACTIVE", list(device.policies), ["edge-0001"])
    return cert_path


def _run(argv: list[str], env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


class SoftHsmToken:
    """A SoftHSM2 token holding a device key (generated here, imported, the PEM form deleted)."""

    label = "iotinvoke"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "tokens").mkdir(parents=True)
        self.conf = folder / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        env = {**os.environ, **self.env}
        _run(["softhsm2-util", "--init-token", "--free", "--label", self.label, "--pin", PIN, "--so-pin", SO_PIN], env)
        key = ec.generate_private_key(ec.SECP256R1())
        pkcs8 = folder / "import.p8"
        write_secret(pkcs8, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode().strip())
        try:
            _run(["softhsm2-util", "--import", str(pkcs8), "--token", self.label, "--label", KEY_LABEL,
                  "--id", "01", "--pin", PIN], env)
        finally:
            pkcs8.unlink()
        self.public_key_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.uri = f"pkcs11:token={self.label};object={KEY_LABEL};type=private"
        self.module = str(SOFTHSM_MODULE)


def _free_port_pair() -> int:
    """A port P on loopback with P+1 also free (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two adjacent free ports on loopback")


class SoftTpm:
    """swtpm on loopback, tpm2-abrmd on a private D-Bus in front of it, a tpm2-pkcs11 store with
    one token and one ECC P-256 key generated inside the TPM. Dictionary-attack lockout relaxed
    (swtpm locks every key for 1000 s after 3 wrong passwords), so tests may try wrong PINs."""

    label = "iotinvoke-tpm"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.module = str(TPM2_MODULE)

    def __enter__(self) -> SoftTpm:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log, "wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def _start(self) -> None:
        folder = self.folder
        (folder / "state").mkdir(parents=True)
        (folder / "store").mkdir()
        port = _free_port_pair()
        self._spawn(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={folder / 'state'}",
                     "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                     "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                     "--flags", "not-need-init,startup-clear"], dict(os.environ), "swtpm.log")
        _wait(lambda: _connects(port), "swtpm", folder / "swtpm.log")
        bus = folder / "bus"
        (folder / "bus.conf").write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"'
            ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
            f"<busconfig><type>session</type><listen>unix:path={bus}</listen><auth>EXTERNAL</auth>"
            '<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>'
            '<allow own="*"/></policy></busconfig>\n'
        )
        self._spawn(["dbus-daemon", "--config-file", str(folder / "bus.conf"), "--nofork", "--nopidfile"],
                    dict(os.environ), "dbus.log")
        _wait(bus.exists, "dbus-daemon", folder / "dbus.log")
        # tpm2-abrmd multiplexes the TPM: swtpm serves one client at a time, tpm2_ptool opens several.
        self.env = {
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}",
            "TPM2TOOLS_TCTI": "tabrmd:bus_type=session",
            "TPM2_PKCS11_TCTI": "tabrmd:bus_type=session",
            "TPM2_PKCS11_STORE": str(folder / "store"),
        }
        env = {**os.environ, **self.env}
        abrmd = shutil.which("tpm2-abrmd") or "/usr/sbin/tpm2-abrmd"
        self._spawn([abrmd, "--session", f"--tcti=swtpm:host=127.0.0.1,port={port}", "--allow-root"], env, "abrmd.log")
        _wait(lambda: subprocess.run(["tpm2_getcap", "properties-fixed"], env=env, capture_output=True,
                                     timeout=10).returncode == 0, "tpm2-abrmd", folder / "abrmd.log")
        _run(["tpm2_dictionarylockout", "--setup-parameters", "--max-tries=100", "--recovery-time=1",
              "--lockout-recovery-time=1"], env)
        store = str(folder / "store")
        _run(["tpm2_ptool", "init", "--path", store], env)
        _run(["tpm2_ptool", "addtoken", "--pid=1", f"--label={self.label}", f"--userpin={PIN}", f"--sopin={SO_PIN}",
              "--path", store], env)
        _run(["tpm2_ptool", "addkey", f"--label={self.label}", f"--key-label={KEY_LABEL}", f"--userpin={PIN}",
              "--algorithm=ecc256", "--path", store], env)
        self.uri = f"pkcs11:token={self.label};object={KEY_LABEL};type=private"
        conf = openssl_conf(folder / "openssl.cnf", self.module)
        self.public_key_pem = _run(
            ["openssl", "pkey", "-pubin", "-in", f"pkcs11:token={self.label};object={KEY_LABEL};type=public", "-pubout"],
            {**env, "OPENSSL_CONF": str(conf)},
        ).encode()

    def lockout_counter(self) -> int:
        out = _run(["tpm2_getcap", "properties-variable"], {**os.environ, **self.env})
        line = next(line for line in out.splitlines() if "TPM2_PT_LOCKOUT_COUNTER" in line)
        return int(line.split(":")[1], 0)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self.processes.clear()


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(ready: object, what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    text = log.read_text(errors="replace")[-500:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s: {text}")
