"""Device keys that never leave the hardware, end to end through the CLI against the stand-in:
a SoftHSM2 token and a software TPM 2.0 (swtpm + tpm2-pkcs11), both through pkcs11-provider.

[iot] key names a "PKCS#11 provider URI" file, openssl_conf the OpenSSL configuration that
loads the provider, pin_file the PIN. Each failure is one stderr line with its exit status, and
--doctor names the same cause. When the Debian packages are missing the tests skip locally and
fail in CI (CI=true): scripts/test installs them.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cli
import hwkeys
import iotinvoke
from cli import SEED_ANSWER, Run, run
from standin import StandIn

# The tests register certificates for the keys in the tokens with the stand-in's world.
pytestmark = pytest.mark.own_standin()
FN = "arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest"
ROLE = "arn:aws:iam::111111111111:role/iotinvoke-dev"
CHECK_PROVIDER = """
import ctypes, ssl
ssl.create_default_context()
lib = ctypes.CDLL(ssl._ssl.__file__)
lib.OSSL_PROVIDER_available.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
print("loaded" if lib.OSSL_PROVIDER_available(None, b"pkcs11") else "not loaded")
"""


def need(missing: list[str]) -> None:
    if not missing:
        return
    reason = "missing " + ", ".join(missing) + " (scripts/test installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail("in CI these tests must run: " + reason)
    pytest.skip(reason)


def provider_loads(conf: Path, env: dict[str, str]) -> None:
    """The Python that runs the CLI must load pkcs11-provider (a Python linked to another libssl
    than the system's would not): otherwise this run is skipped, saying so."""
    done = subprocess.run([cli.PYTHON, "-c", CHECK_PROVIDER], env={**cli.environment(), **env, "OPENSSL_CONF": str(conf)},
                          capture_output=True, text=True, timeout=60)
    if done.stdout.strip() != "loaded":
        pytest.skip(f"{cli.PYTHON} does not load pkcs11-provider (its ssl module links another OpenSSL "
                    f"than the system's libssl3): {done.stderr.strip()[-200:]}")


@dataclass
class Device:
    """A device whose key is in a token: its files and the environment its module needs."""

    folder: Path
    cert: Path
    key: Path
    pin_file: Path
    conf: Path
    env: dict[str, str] = field(default_factory=dict)
    module: str = ""

    def config(self, aws: StandIn, name: str = "iotinvoke.ini", *, cert: Path | None = None, key: Path | None = None,
               openssl_conf: Path | None | bool = True, pin_file: Path | None | bool = True) -> Path:
        urls = aws.urls
        lines = [
            "[DEFAULT]", f"sts_endpoint = {urls['sts']}", f"lambda_endpoint = {urls['lambda']}", f"ca_bundle = {aws.ca_path}",
            "[iot]", f"endpoint = {urls['iot']}", "role_alias = iotinvoke-alias", f"cert = {cert or self.cert}",
            f"key = {key or self.key}", f"ca = {aws.ca_path}", "thing_name = edge-0001",
        ]
        if openssl_conf:
            lines.append(f"openssl_conf = {self.conf if openssl_conf is True else openssl_conf}")
        if pin_file:
            lines.append(f"pin_file = {self.pin_file if pin_file is True else pin_file}")
        lines += ["[dev]", f"function = {FN}", f"role_arn = {ROLE}"]
        path = self.folder / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, config: Path, *args: str, cache: Path, env: dict[str, str] | None = None) -> Run:
        result = run(*args, config=config, cache=cache, env={**self.env, **(env or {})})
        assert hwkeys.PIN.encode() not in result.stdout and hwkeys.PIN not in result.stderr, "the PIN was printed"
        return result


def counts(aws: StandIn) -> tuple[int, int, int]:
    return aws.count("iot"), aws.count("sts"), aws.count("lambda")


def one_error_line(result: Run, code: int, *phrases: str, reason: str = "") -> None:
    assert result.code == code, result.stderr
    assert len(result.lines) == 1, result.stderr
    assert result.lines[0].startswith("iotinvoke: iot: "), result.stderr
    if reason:
        assert result.lines[0].endswith(f" [{reason}]"), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Device:
    need(hwkeys.missing_for_softhsm())
    folder = tmp_path_factory.mktemp("softhsm")
    token = hwkeys.SoftHsmToken(folder)
    conf = hwkeys.openssl_conf(folder / "openssl.cnf", token.module)
    provider_loads(conf, token.env)
    key = folder / "device.key"
    key.write_bytes(hwkeys.provider_uri_pem(token.uri))  # not a secret: no PIN in it
    cert = hwkeys.register(standin, token.public_key_pem, folder / "device.pem.crt", "softhsm")
    pin_file = hwkeys.write_secret(folder / "pin", hwkeys.PIN)
    return Device(folder, cert, key, pin_file, conf, token.env, token.module)


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[Device]:
    need(hwkeys.missing_for_tpm())
    folder = tmp_path_factory.mktemp("tpm")
    with hwkeys.SoftTpm(folder) as soft_tpm:
        conf = folder / "openssl.cnf"
        provider_loads(conf, soft_tpm.env)
        key = folder / "device.key"
        key.write_bytes(hwkeys.provider_uri_pem(soft_tpm.uri))
        cert = hwkeys.register(standin, soft_tpm.public_key_pem, folder / "device.pem.crt", "tpm")
        pin_file = hwkeys.write_secret(folder / "pin", hwkeys.PIN)
        device = Device(folder, cert, key, pin_file, conf, soft_tpm.env, soft_tpm.module)
        device.soft_tpm = soft_tpm  # type: ignore[attr-defined]
        yield device


# --- SoftHSM2 -------------------------------------------------------------------------------------------


def test_softhsm_key_three_hops_then_warm(aws: StandIn, softhsm: Device, tmp_path: Path) -> None:
    config = softhsm.config(aws)
    assert b"PRIVATE KEY" not in softhsm.key.read_bytes() and not list(softhsm.folder.glob("*.p8"))
    cold = softhsm.run(config, "dev", '{"test":"test1"}', cache=tmp_path)
    assert (cold.code, cold.stdout, cold.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 1)
    warm = softhsm.run(config, "dev", '{"test":"test1"}', cache=tmp_path)
    assert (warm.code, warm.stdout, warm.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 2), "a warm call makes no request to hops 1 and 2"


def test_softhsm_doctor_names_the_token(aws: StandIn, softhsm: Device, tmp_path: Path) -> None:
    result = softhsm.run(softhsm.config(aws), "--doctor", "dev", cache=tmp_path)
    assert result.code == 0, result.stdout.decode() + result.stderr
    files = next(line for line in result.stdout.decode().splitlines() if " files " in line)
    assert files.startswith("ok ") and "key in PKCS#11 token 'iotinvoke'" in files, files


def test_pin_value_in_a_private_key_file_works_without_pin_file(aws: StandIn, softhsm: Device, tmp_path: Path) -> None:
    key = tmp_path / "with-pin.key"
    key.write_bytes(hwkeys.provider_uri_pem(f"pkcs11:token=iotinvoke;object={hwkeys.KEY_LABEL};type=private"
                                            f"?pin-value={hwkeys.PIN}"))
    key.chmod(0o600)
    result = softhsm.run(softhsm.config(aws, key=key, pin_file=False), "dev", "{}", cache=tmp_path / "cache")
    assert result.code == 0, result.stderr
    doctor = softhsm.run(softhsm.config(aws, key=key, pin_file=False), "--doctor", "dev", cache=tmp_path / "cache")
    assert doctor.code == 0 and "readable by other users" not in doctor.stdout.decode()
    key.chmod(0o644)  # the PIN is in it: refused, as any secret others may read
    doctor = softhsm.run(softhsm.config(aws, key=key, pin_file=False), "--doctor", "dev", cache=tmp_path / "cache")
    assert doctor.code == 78 and "readable by others" in doctor.stderr and "[file-unsafe]" in doctor.stderr


def _case(softhsm: Device, aws: StandIn, tmp_path: Path, case: str) -> tuple[Path, dict[str, str]]:
    """The configuration (and environment) of one failure case."""
    if case == "provider not loaded":
        return softhsm.config(aws, "c.ini", openssl_conf=False), {}
    if case == "provider not configured":
        return softhsm.config(aws, "c.ini", openssl_conf=hwkeys.openssl_conf(tmp_path / "plain.cnf", None)), {}
    if case == "module missing":
        conf = hwkeys.openssl_conf(tmp_path / "nomodule.cnf", str(tmp_path / "libnothing.so"))
        return softhsm.config(aws, "c.ini", openssl_conf=conf), {}
    if case == "token absent":
        key = tmp_path / "absent.key"
        key.write_bytes(hwkeys.provider_uri_pem(f"pkcs11:token=absent;object={hwkeys.KEY_LABEL};type=private"))
        return softhsm.config(aws, "c.ini", key=key), {}
    if case == "wrong PIN":
        return softhsm.config(aws, "c.ini", pin_file=hwkeys.write_secret(tmp_path / "wrong", "0000")), {}
    if case == "no PIN":
        return softhsm.config(aws, "c.ini", pin_file=False), {}
    if case == "PIN file readable by others":
        return softhsm.config(aws, "c.ini", pin_file=hwkeys.write_secret(tmp_path / "open", hwkeys.PIN, 0o644)), {}
    if case == "PIN file missing":
        return softhsm.config(aws, "c.ini", pin_file=tmp_path / "nopin"), {}
    if case == "key not the certificate's":
        return softhsm.config(aws, "c.ini", cert=aws.certs["device"][0]), {}
    raise AssertionError(case)


FAILURES = [
    # case, exit status, reason, phrases of the error line, phrase of the doctor's cause
    ("provider not loaded", 78, "key-provider-missing",
     ["no OpenSSL provider for it is loaded", "OPENSSL_CONF is not set", "openssl_conf"],
     "no OpenSSL provider that reads it is loaded"),
    ("provider not configured", 78, "key-provider-missing", ["no OpenSSL provider for it is loaded", "plain.cnf"],
     "no OpenSSL provider that reads it is loaded"),
    ("module missing", 78, "pkcs11-module-missing", ["PKCS#11 module", "libnothing.so: No such file or directory"],
     "pkcs11-module-path"),
    ("token absent", 69, "pkcs11-token-absent", ["no PKCS#11 token matching", "token 'absent' wanted", "'iotinvoke'"],
     "no token that the key's URI"),
    ("wrong PIN", 77, "pkcs11-wrong-pin", ["token 'iotinvoke' refused the PIN", "PIN retries are limited", "token locks"],
     "PIN retries are"),
    ("no PIN", 78, "pkcs11-pin-missing", ["needs a PIN", "set pin_file in [iot]"], "needs a PIN and none is configured"),
    ("PIN file missing", 66, "pin-file-missing", ["PIN file", "No such file or directory"], "PIN file named by pin_file"),
    ("key not the certificate's", 78, "key-cert-mismatch", ["does not match the certificate"], "not the certificate's key"),
]


@pytest.mark.parametrize("case, code, reason, phrases, cause", FAILURES, ids=[f[0] for f in FAILURES])
def test_softhsm_failure_is_one_line_and_the_doctor_names_it(
    aws: StandIn, softhsm: Device, tmp_path: Path, case: str, code: int, reason: str, phrases: list[str], cause: str
) -> None:
    config, env = _case(softhsm, aws, tmp_path, case)
    result = softhsm.run(config, "dev", "{}", cache=tmp_path / "cache", env=env)
    one_error_line(result, code, *phrases, reason=reason)
    assert "cannot load the device certificate" not in result.stderr
    assert counts(aws) == (0, 0, 0), "nothing is sent when the key cannot be used"
    doctor = softhsm.run(config, "--doctor", "dev", cache=tmp_path / "cache", env=env)
    report = doctor.stdout.decode()
    assert doctor.code == code, report + doctor.stderr
    assert "FAIL  files" in report and cause in report and "fix:" in report, report


def test_a_pin_file_others_can_read_is_refused_before_the_token_is_asked(
    aws: StandIn, softhsm: Device, tmp_path: Path
) -> None:
    config, env = _case(softhsm, aws, tmp_path, "PIN file readable by others")
    for args in (("dev", "{}"), ("--doctor", "dev")):
        result = softhsm.run(config, *args, cache=tmp_path / "cache", env=env)
        assert result.code == 78 and len(result.lines) == 1, result.stderr
        assert "pin_file: " in result.stderr and "readable by others (mode 0644)" in result.stderr
        assert result.lines[0].endswith("[file-unsafe]")
    assert counts(aws) == (0, 0, 0)


def test_a_pem_key_that_is_not_the_certificates_is_named_so(aws: StandIn, tmp_path: Path) -> None:
    cert, _ = aws.certs["device"]
    _, other_key = aws.certs["nopolicy"]
    config = tmp_path / "c.ini"
    config.write_text(aws.config_path.read_text().replace("cert = certs/device.pem.crt", f"cert = {cert}")
                      .replace("key = certs/device.pem.key", f"key = {other_key}").replace("= ca.pem", f"= {aws.ca_path}"))
    result = run("dev", "{}", config=config, cache=tmp_path / "cache")
    one_error_line(result, 78, "does not match the certificate", reason="key-cert-mismatch")


def test_openssl_conf_missing_is_a_config_error(aws: StandIn, softhsm: Device, tmp_path: Path) -> None:
    result = softhsm.run(softhsm.config(aws, openssl_conf=tmp_path / "none.cnf"), "dev", "{}", cache=tmp_path)
    assert result.code == 78 and len(result.lines) == 1, result.stderr
    assert "[iot] openssl_conf: OpenSSL configuration" in result.stderr and "none.cnf: missing" in result.stderr


@pytest.mark.in_process
def test_openssl_conf_cannot_take_effect_once_openssl_is_initialised(
    aws: StandIn, softhsm: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process imported ssl long ago: OpenSSL has read its configuration already.
    import ssl  # noqa: F401

    monkeypatch.delenv("OPENSSL_CONF", raising=False)
    config = iotinvoke.load_config(str(softhsm.config(aws, "library.ini")))
    with pytest.raises(iotinvoke.ConfigError) as raised:
        iotinvoke.Client(config, use_cache=False)
    assert raised.value.exit_code == 78 and raised.value.reason == "openssl-conf-too-late"
    assert "already initialised" in str(raised.value) and "OPENSSL_CONF=" + str(softhsm.conf) in str(raised.value)
    assert "OPENSSL_CONF" not in os.environ
    # Set beforehand, as the message says, the same key is accepted.
    monkeypatch.setenv("OPENSSL_CONF", str(softhsm.conf))
    assert iotinvoke.Client(config, use_cache=False).config.openssl_conf == str(softhsm.conf)


# --- TPM 2.0 (swtpm + tpm2-pkcs11) ----------------------------------------------------------------------


def test_tpm_key_three_hops_then_warm(aws: StandIn, tpm: Device, tmp_path: Path) -> None:
    config = tpm.config(aws)
    cold = tpm.run(config, "dev", '{"test":"test1"}', cache=tmp_path)
    assert (cold.code, cold.stdout, cold.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 1)
    warm = tpm.run(config, "dev", '{"test":"test1"}', cache=tmp_path)
    assert (warm.code, warm.stdout, warm.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 2)


def test_tpm_wrong_pin_is_one_line_and_counts_toward_the_lockout(aws: StandIn, tpm: Device, tmp_path: Path) -> None:
    soft_tpm: hwkeys.SoftTpm = tpm.soft_tpm  # type: ignore[attr-defined]
    before = soft_tpm.lockout_counter()
    config = tpm.config(aws, "wrong.ini", pin_file=hwkeys.write_secret(tmp_path / "wrong", "0000"))
    result = tpm.run(config, "dev", "{}", cache=tmp_path / "cache")
    # tpm2-pkcs11 prints its own "ERROR: ..." lines on stderr: silenced, one line remains.
    one_error_line(result, 77, "token 'iotinvoke-tpm' refused the PIN", "PIN retries are limited", reason="pkcs11-wrong-pin")
    assert soft_tpm.lockout_counter() > before, "the TPM counted the wrong PIN"
    good = tpm.run(tpm.config(aws), "dev", "{}", cache=tmp_path / "cache")
    assert good.code == 0, good.stderr


def test_tpm_unreachable_is_token_absent(aws: StandIn, tpm: Device, tmp_path: Path) -> None:
    result = tpm.run(tpm.config(aws), "dev", "{}", cache=tmp_path, env={"TPM2_PKCS11_TCTI": "swtpm:host=127.0.0.1,port=1"})
    one_error_line(result, 69, "no PKCS#11 token matching", "token 'iotinvoke-tpm' wanted", reason="pkcs11-token-absent")
    doctor = tpm.run(tpm.config(aws), "--doctor", "dev", cache=tmp_path,
                     env={"TPM2_PKCS11_TCTI": "swtpm:host=127.0.0.1,port=1"})
    assert doctor.code == 69 and "TPM2_PKCS11_TCTI" in doctor.stdout.decode()


# --- the key file and PIN file, without a token -----------------------------------------------------------


@pytest.mark.in_process
@pytest.mark.parametrize("length", [10, 200, 70000])
def test_the_uri_is_read_from_a_provider_key_file_of_any_length(tmp_path: Path, length: int) -> None:
    uri = "pkcs11:token=t%20x;object=" + "k" * length + ";type=private?pin-value=1%3B2"
    key = tmp_path / "k"
    key.write_bytes(hwkeys.provider_uri_pem(uri))
    expected = uri if length < 8000 else ""  # only the first 8 KiB are read: then the provider decides
    assert iotinvoke._provider_key_uri(str(key)) == expected


@pytest.mark.in_process
def test_a_pem_key_is_not_a_provider_key(aws: StandIn) -> None:
    assert iotinvoke._provider_key_uri(str(aws.certs["device"][1])) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the PIN file to another user")
def test_a_pin_file_of_another_user_is_refused(aws: StandIn, tmp_path: Path) -> None:
    pin = hwkeys.write_secret(tmp_path / "pin", "0000")
    os.chown(pin, 1, 1)
    config = tmp_path / "c.ini"
    config.write_text(aws.config_path.read_text().replace("[iot]", f"[iot]\npin_file = {pin}")
                      .replace("= certs/", f"= {aws.workdir}/certs/").replace("= ca.pem", f"= {aws.ca_path}"))
    result = run("dev", "{}", config=config, cache=tmp_path / "cache")
    assert result.code == 78 and len(result.lines) == 1, result.stderr
    assert f"pin_file: {pin} belongs to uid 1, neither you (uid 0) nor root" in result.stderr
    assert result.lines[0].startswith("iotinvoke: config: ") and result.lines[0].endswith("[file-unsafe]")


def test_with_pin_value_a_wrong_pin_and_a_foreign_certificate_are_named_together(
    aws: StandIn, softhsm: Device, tmp_path: Path
) -> None:
    # The PIN is not asked for through the callback, so OpenSSL's reason is lost (SoftHSM2 leaves
    # a stale errno): the line names both possibilities rather than the wrong one.
    key = tmp_path / "with-pin.key"
    key.write_bytes(hwkeys.provider_uri_pem(f"pkcs11:token=iotinvoke;object={hwkeys.KEY_LABEL};type=private"
                                            f"?pin-value={hwkeys.PIN}"))
    key.chmod(0o600)
    config = softhsm.config(aws, "c.ini", key=key, cert=aws.certs["device"][0], pin_file=False)
    result = softhsm.run(config, "dev", "{}", cache=tmp_path / "cache")
    one_error_line(result, 77, "refused the PIN", "or its key is not the certificate's")


@pytest.mark.in_process
@pytest.mark.parametrize(
    "providers, tokens, pin_given, reason",
    [
        (["default"], [], True, "key-provider-missing"),
        (["default", "pkcs11"], OSError(2, "No such file or directory"), True, "pkcs11-module-missing"),
        (["default", "pkcs11"], [(("other", "SoftHSM project", "SoftHSM v2", "1"), 0)], True, "pkcs11-token-absent"),
        # SoftHSM2 never sets CKF_USER_PIN_LOCKED, so this branch is driven with the module's answer faked.
        (["default", "pkcs11"], [(("dev", "SoftHSM project", "SoftHSM v2", "1"), 0x00040000)], True, "pkcs11-pin-locked"),
        (["default", "pkcs11"], [(("dev", "SoftHSM project", "SoftHSM v2", "1"), 0)], False, "pkcs11-pin-missing"),
        (["default", "pkcs11"], [(("dev", "SoftHSM project", "SoftHSM v2", "1"), 0)], True, "pkcs11-wrong-pin"),
    ],
)
def test_each_key_failure_is_told_apart(monkeypatch: pytest.MonkeyPatch, providers: list[str], tokens: object,
                                        pin_given: bool, reason: str) -> None:
    import ssl

    ii = iotinvoke

    def module_tokens(module: str) -> object:
        if isinstance(tokens, OSError):
            raise tokens
        return tokens

    monkeypatch.setattr(ii, "_loaded_providers", lambda: providers)
    monkeypatch.setattr(ii, "_pkcs11_tokens", module_tokens)
    monkeypatch.setenv("PKCS11_PROVIDER_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    monkeypatch.delenv("OPENSSL_CONF", raising=False)
    error = ii._device_key_error("cert.pem", "key.pem", ssl.SSLError(9, "[SSL] PEM lib"),
                                 "pkcs11:token=dev;object=device;type=private", pin_given)
    assert error.reason == reason and error.exit_code == ii.REASONS[reason][0]
    assert "\n" not in str(error)
