"""Issue 17, "nothing another local user can write steers a call": through the CLI and the C caller.

A board's C program often runs as root, from whatever folder it was started in; /tmp and other
mode-1777 folders are writable by every local user (and by every compromised daemon). Each test
plants what another user could write, owned by ``nobody``, and checks that iotinvoke does not
use it:

1. the configuration: found by search only in ``$XDG_CONFIG_HOME/iotinvoke`` (not for root) and
   ``/etc/iotinvoke``, never in the working directory; a file found or named must be a regular
   file owned by the caller or root and writable by its owner only, else exit 78 ``[config-unsafe]``;
2. every file the configuration names (cert, key, ca, ca_bundle, pin_file, openssl_conf): a
   regular file owned by the caller or root, the key and PIN file not readable by others, else
   exit 78 ``[file-unsafe]``: a FIFO never blocks the call;
3. Python's module path: the C caller starts iotinvoke in "/" with ``PYTHONSAFEPATH=1`` (and its
   relative paths made absolute first); a person types ``python3 -P -m iotinvoke`` or ``cd /``;
4. control characters from the network (the log tail, AWS's error messages) reach the terminal
   escaped, never raw;
5. XML from STS: UTF-8 only, and no DTD or entity in any encoding (exit 76);
6. ``learn_clock = false`` turns off learning AWS's time at boot: a board behind exits 75.

Tests that need another owner (chown to ``nobody``) run only as root and say so when skipped.
"""
from __future__ import annotations

import base64
import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from cli import OUTPUTS, PYTHON, ROOT, SCRIPT, SEED_ANSWER, Run, compile_example, environment, run
from hostile import TlsFront, server_certificate
from hwkeys import provider_uri_pem
from standin import StandIn

ETC_CONFIG = Path("/etc/iotinvoke/iotinvoke.ini")
# A bound for calls that must end at once (a FIFO is refused, not opened): far above any normal
# run on a loaded machine, far below "forever". Only used as a subprocess timeout.
HANG_LIMIT_S = 20.0

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the threat is a root caller, and planting files owned by nobody needs chown"
)


# --- helpers ----------------------------------------------------------------------------------------


def nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user 'nobody' to own the planted files")
    return entry.pw_uid, entry.pw_gid


def shared_folder(path: Path) -> Path:
    """A folder like /tmp: mode 1777, every local user may create files in it."""
    path.mkdir()
    path.chmod(0o1777)
    return path


def plant(path: Path, data: str | bytes, mode: int = 0o666) -> Path:
    """A file another local user wrote: owned by nobody, with mode."""
    uid, gid = nobody()
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def standalone_config(aws: StandIn, path: Path, *, iot: Mapping[str, str | None] | None = None,
                      defaults: Mapping[str, str | None] | None = None, mode: int = 0o600) -> Path:
    """The stand-in's configuration written to path with absolute file paths (so it works from any
    folder), [iot] and [DEFAULT] keys replaced (None: removed), owned by the caller, with mode."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(aws.config_path)
    for key in ("cert", "key", "ca"):
        parser["iot"][key] = str(aws.workdir / parser["iot"][key])
    parser["DEFAULT"]["ca_bundle"] = str(aws.workdir / parser["DEFAULT"]["ca_bundle"])
    for section, changes in (("iot", iot), ("DEFAULT", defaults)):
        for key, value in (changes or {}).items():
            if value is None:
                parser.remove_option(section, key)
            else:
                parser[section][key] = value
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        parser.write(out)
    path.chmod(mode)
    return path


def run_at(folder: Path | str, argv: list[str], *, cache: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> Run:
    """argv run from folder, as a C program or a person in that folder would, output recorded for
    the session's secret scan."""
    done = subprocess.run(argv, input=b"", capture_output=True, env=environment(cache, env), cwd=folder,
                          timeout=timeout)
    OUTPUTS.extend((done.stdout, done.stderr))
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def no_home(tmp_path: Path) -> dict[str, str]:
    """An environment whose home and XDG configuration folder hold no iotinvoke configuration."""
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def counts(aws: StandIn) -> tuple[int, int, int]:
    return aws.count("iot"), aws.count("sts"), aws.count("lambda")


def one_line(result: Run, code: int, reason: str) -> str:
    """The single stderr line of a failed run, with its exit status and [reason] checked."""
    assert result.code == code, (result.code, result.stderr)
    assert len(result.lines) == 1 and result.lines[0].startswith("iotinvoke: "), result.stderr
    assert result.lines[0].endswith("[%s]" % reason), result.stderr
    return result.lines[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_example(tmp_path_factory.mktemp("c"))


# --- 1. the configuration file ----------------------------------------------------------------------


@dataclass
class Planted:
    folder: Path          # mode 1777, holding iotinvoke.ini owned by nobody, mode 0666
    sts: TlsFront         # the other server, as the planted file names it for STS
    lambda_: TlsFront     # ... and for Lambda
    control: Path         # the same settings in a file root owns (mode 0600), CA file included

    def untouched(self) -> bool:
        return self.sts.connections == 0 and self.lambda_.connections == 0


@pytest.fixture
def planted(aws: StandIn, tmp_path: Path) -> Iterator[Planted]:
    """A mode-1777 folder holding an iotinvoke.ini another user wrote: the board's own certificate
    and key (their usual paths are no secret), STS and Lambda at another server with another CA.
    That server relays to the stand-in, so a call that used the file would work end to end."""
    nobody()
    cert, key = server_certificate(aws.workdir, tmp_path / "other-server", dns=("localhost",), issuer="foreign")
    foreign_ca = (aws.workdir / "pki" / "foreign-ca.pem").read_bytes()
    with TlsFront(aws.urls["sts"], cert, key, upstream_ca=aws.ca_path) as sts, \
            TlsFront(aws.urls["lambda"], cert, key, upstream_ca=aws.ca_path) as lambda_:
        folder = shared_folder(tmp_path / "shared")
        hostile = {"sts_endpoint": sts.url(), "lambda_endpoint": lambda_.url()}
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        (private / "other-ca.pem").write_bytes(foreign_ca)
        control = standalone_config(aws, private / "control.ini",
                                    defaults={**hostile, "ca_bundle": str(private / "other-ca.pem")})
        plant(folder / "other-ca.pem", foreign_ca, 0o644)
        text = standalone_config(aws, private / "text.ini",
                                 defaults={**hostile, "ca_bundle": str(folder / "other-ca.pem")}).read_text()
        plant(folder / "iotinvoke.ini", text, 0o666)
        yield Planted(folder, sts, lambda_, control)


def searching(call: Callable[[], Run]) -> Run:
    """call(), a run that searches for its configuration, skipped when /etc/iotinvoke/iotinvoke.ini
    exists before or after it (the machine is shared: something else may install one meanwhile)."""
    if ETC_CONFIG.exists():
        pytest.skip(f"{ETC_CONFIG} exists on this machine: the search would find it")
    result = call()
    if ETC_CONFIG.exists():
        pytest.skip(f"{ETC_CONFIG} appeared on this machine during the run: the search may have found it")
    return result


@as_root
def test_the_planted_settings_would_reach_the_other_server(aws: StandIn, planted: Planted, tmp_path: Path) -> None:
    # The premise of the next tests: a root-owned file with the same settings, named explicitly,
    # sends the payload and a signed Invoke to the other server, and the call works.
    result = run("dev", '{"from": "control"}', config=planted.control, cache=tmp_path / "cache")
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert planted.sts.requests == 1 and planted.lambda_.requests == 1
    assert planted.lambda_.request_heads[0].startswith(b"POST /2015-03-31/functions/")


@as_root
def test_cli_never_reads_a_config_in_the_working_directory(aws: StandIn, planted: Planted, tmp_path: Path) -> None:
    result = searching(lambda: run_at(planted.folder, [PYTHON, str(SCRIPT), "dev", '{"secret": "payload"}'],
                                      cache=tmp_path / "cache", env=no_home(tmp_path)))
    assert result.code == 78, f"the planted ./iotinvoke.ini was used: {result.code} {result.stderr}"
    assert len(result.lines) == 1 and "no configuration file" in result.stderr, result.stderr
    assert planted.untouched(), "the other server was contacted"
    assert counts(aws) == (0, 0, 0)


@as_root
@pytest.mark.parametrize("form", ["module", "script"])
def test_c_caller_never_reads_a_config_in_its_working_directory(
    example: Path, aws: StandIn, planted: Planted, tmp_path: Path, form: str
) -> None:
    # The C caller without -c, started from the folder: iotinvoke searches for its configuration.
    where = ["-d", str(ROOT)] if form == "module" else ["-s", str(SCRIPT)]
    argv = [str(example), "-p", PYTHON, *where, "-r", "0", "dev", '{"secret": "payload"}']
    result = searching(lambda: run_at(planted.folder, argv, cache=tmp_path / "cache", env=no_home(tmp_path)))
    assert (result.code, result.stdout) == (78, b""), f"the planted ./iotinvoke.ini was used: {result.stderr}"
    assert "no configuration file" in result.stderr, result.stderr
    assert planted.untouched(), "the other server was contacted"
    assert counts(aws) == (0, 0, 0)


@as_root
def test_root_does_not_search_xdg_config_home(aws: StandIn, tmp_path: Path) -> None:
    # The XDG folder is searched for a user that is not root: root's environment may be another
    # user's (sudo -E), so as root a configuration there is not found.
    env = no_home(tmp_path)
    folder = Path(env["XDG_CONFIG_HOME"]) / "iotinvoke"
    folder.mkdir()
    standalone_config(aws, folder / "iotinvoke.ini")
    result = searching(lambda: run_at(tmp_path, [PYTHON, str(SCRIPT), "dev", "{}"], cache=tmp_path / "cache", env=env))
    assert result.code == 78 and "no configuration file" in result.stderr, result.stderr
    assert counts(aws) == (0, 0, 0)


@as_root
@pytest.mark.parametrize("how", ["--config", "IOTINVOKE_CONFIG"])
@pytest.mark.parametrize("owner,mode", [("nobody", 0o644), ("nobody", 0o600), ("root", 0o664), ("root", 0o646)],
                         ids=["nobody-0644", "nobody-0600", "root-0664", "root-0646"])
def test_an_explicit_config_another_user_can_write_is_refused(
    aws: StandIn, tmp_path: Path, how: str, owner: str, mode: int
) -> None:
    path = standalone_config(aws, tmp_path / "iotinvoke.ini", mode=mode)
    if owner == "nobody":
        os.chown(path, *nobody())
    args, env = (["--config", str(path)], {}) if how == "--config" else ([], {"IOTINVOKE_CONFIG": str(path)})
    result = run_at(tmp_path, [PYTHON, str(SCRIPT), *args, "dev", "{}"], cache=tmp_path / "cache", env=env)
    line = one_line(result, 78, "config-unsafe")
    assert line.startswith(f"iotinvoke: config: {path}"), line
    assert counts(aws) == (0, 0, 0)


@pytest.mark.parametrize("how", ["--config", "IOTINVOKE_CONFIG"])
def test_an_explicit_config_the_caller_owns_mode_0644_is_used(aws: StandIn, tmp_path: Path, how: str) -> None:
    path = standalone_config(aws, tmp_path / "iotinvoke.ini", mode=0o644)
    args, env = (["--config", str(path)], {}) if how == "--config" else ([], {"IOTINVOKE_CONFIG": str(path)})
    result = run_at(tmp_path, [PYTHON, str(SCRIPT), *args, "dev", "{}"], cache=tmp_path / "cache", env=env)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")


# --- 2. the files the configuration names -----------------------------------------------------------


def refused_file(result: Run, path: Path | str, key: str) -> None:
    line = one_line(result, 78, "file-unsafe")
    assert str(path) in line and re.search(r"\b%s\b" % key, line), line


def test_a_pin_file_that_is_a_fifo_is_refused_at_once(aws: StandIn, tmp_path: Path) -> None:
    fifo = tmp_path / "pin"
    os.mkfifo(fifo, 0o600)  # nobody will ever write to it: opening it for reading blocks forever
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"pin_file": str(fifo)})
    try:
        result = run("dev", "{}", config=config, cache=tmp_path / "cache", timeout=HANG_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"iotinvoke was still running after {HANG_LIMIT_S:.0f} s: it opened the FIFO pin_file")
    refused_file(result, fifo, "pin_file")
    assert counts(aws) == (0, 0, 0)


def test_a_key_others_can_read_is_refused(aws: StandIn, tmp_path: Path) -> None:
    key = tmp_path / "device.key"
    shutil.copyfile(aws.certs["device"][1], key)
    key.chmod(0o644)
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"key": str(key)})
    refused_file(run("dev", "{}", config=config, cache=tmp_path / "cache"), key, "key")
    assert counts(aws) == (0, 0, 0)


def test_a_key_its_group_can_read_is_used(aws: StandIn, tmp_path: Path) -> None:
    # Owner and group may read (a service user in a group "iot-keys"); others may not.
    key = tmp_path / "device.key"
    shutil.copyfile(aws.certs["device"][1], key)
    key.chmod(0o640)
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"key": str(key)})
    result = run("dev", "{}", config=config, cache=tmp_path / "cache")
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")


def test_a_provider_uri_key_file_with_a_pin_value_others_can_read_is_refused(aws: StandIn, tmp_path: Path) -> None:
    # pkcs11-provider's key file names the key in a token; with pin-value (a query attribute of
    # the PKCS#11 URI, RFC 7512 section 2.3) it also holds the PIN.
    key = tmp_path / "token.key"
    key.write_bytes(provider_uri_pem("pkcs11:token=iot;object=device;type=private?pin-value=123456"))
    key.chmod(0o644)
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"key": str(key)})
    refused_file(run("dev", "{}", config=config, cache=tmp_path / "cache"), key, "key")


def test_a_provider_uri_key_file_without_a_pin_others_can_read_is_not_refused_for_it(aws: StandIn,
                                                                                      tmp_path: Path) -> None:
    # Without pin-value it names a key but holds no secret: mode 0644 is fine (the call fails
    # later, for want of the token, which this machine need not have).
    key = tmp_path / "token.key"
    key.write_bytes(provider_uri_pem("pkcs11:token=iot;object=device;type=private"))
    key.chmod(0o644)
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"key": str(key)})
    result = run("dev", "{}", config=config, cache=tmp_path / "cache")
    assert result.code != 0 and "[file-unsafe]" not in result.stderr, result.stderr


@as_root
@pytest.mark.parametrize("key", ["cert", "key", "ca", "ca_bundle", "pin_file", "openssl_conf"])
def test_a_named_file_another_user_owns_is_refused(aws: StandIn, tmp_path: Path, key: str) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    sources = {"cert": aws.certs["device"][0], "key": aws.certs["device"][1], "ca": aws.ca_path,
               "ca_bundle": aws.ca_path}
    target = folder / key
    if key in sources:
        shutil.copyfile(sources[key], target)
    elif key == "pin_file":
        target.write_text("123456\n")
    else:  # an OpenSSL configuration can load any module into the process: whoever writes it runs code
        target.write_text("openssl_conf = openssl_init\n[openssl_init]\n")
    os.chown(target, *nobody())
    target.chmod(0o600 if key in ("key", "pin_file") else 0o644)
    settings = {key: str(target)}
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot=settings if key != "ca_bundle" else None,
                               defaults=settings if key == "ca_bundle" else None)
    refused_file(run("dev", "{}", config=config, cache=tmp_path / "cache"), target, key)
    assert counts(aws) == (0, 0, 0)


@pytest.mark.parametrize("key", ["ca", "cert"])
def test_a_device_file_is_refused(aws: StandIn, tmp_path: Path, key: str) -> None:
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={key: "/dev/zero"})
    try:
        result = run("dev", "{}", config=config, cache=tmp_path / "cache", timeout=HANG_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"iotinvoke was still running after {HANG_LIMIT_S:.0f} s reading /dev/zero as {key}")
    refused_file(result, "/dev/zero", key)
    assert counts(aws) == (0, 0, 0)


# --- 3. Python's module path ------------------------------------------------------------------------


def plant_modules(folder: Path, marker: Path) -> None:
    """urllib3.py and iotinvoke.py, as another user would leave them: importing either writes
    marker (root runs it) and exits 99."""
    body = f"import pathlib\npathlib.Path({str(marker)!r}).write_text(__name__)\nraise SystemExit(99)\n"
    for name in ("urllib3.py", "iotinvoke.py"):
        plant(folder / name, body, 0o666)


def python_at_least(version: tuple[int, int]) -> bool:
    done = subprocess.run([PYTHON, "-c", f"import sys; print(sys.version_info >= {version!r})"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


@as_root
def test_c_caller_runs_python_with_no_module_path_others_can_write(example: Path, aws: StandIn,
                                                                     tmp_path: Path) -> None:
    folder = shared_folder(tmp_path / "shared")
    marker = tmp_path / "planted-code-ran"
    plant_modules(folder, marker)
    result = run_at(folder, [str(example), "-p", PYTHON, "-d", str(ROOT), "-c", str(aws.config_path), "-r", "0",
                             "dev", '{"test":"test1"}'], cache=tmp_path / "cache")
    assert not marker.exists(), f"a planted module ran: {marker.read_text()}"
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr


def test_c_caller_starts_the_child_in_root_with_pythonsafepath_and_absolute_paths(example: Path,
                                                                                   tmp_path: Path) -> None:
    # A fake interpreter shows what the child gets: its working directory, argv and environment.
    here = tmp_path.resolve()
    fake = here / "bin" / "fake-python"
    fake.parent.mkdir()
    fake.write_text(f"#!{PYTHON}\nimport json, os, sys\nsys.stdin.read()\n"
                    "print(json.dumps([os.getcwd(), sys.argv[1:], os.environ.get('PYTHONSAFEPATH'),"
                    " os.environ.get('PYTHONPATH')]))\n")
    fake.chmod(0o755)
    for args, pythonpath, inherited in (
        (["-d", "lib/iot", "-c", "etc/iotinvoke.ini"], str(here / "lib/iot"), {}),
        (["-d", "", "-c", "./etc/../etc/iotinvoke.ini"], "/opt/x", {"PYTHONPATH": "/opt/x", "PYTHONSAFEPATH": ""}),
        (["-s", "lib/iot/iotinvoke.py"], None, {}),
    ):
        done = subprocess.run([str(example), "-p", "bin/fake-python", *args, "dev", "{}"], capture_output=True,
                              env=environment(tmp_path, inherited), cwd=here, timeout=30)
        assert done.returncode == 0, (args, done.stderr)
        cwd, argv, safe_path, child_pythonpath = json.loads(done.stdout)
        assert cwd == "/", (args, cwd)
        assert safe_path == "1", args
        assert child_pythonpath == pythonpath, args
        if "-s" in args:
            assert argv == [str(here / "lib/iot/iotinvoke.py"), "--", "dev", "-"]
        else:
            config = os.path.join(here, args[3])  # made absolute, not resolved: no file needs to exist
            assert argv == ["-m", "iotinvoke", "--config", config, "--", "dev", "-"], argv


@as_root
def test_people_have_a_safe_form_of_python_m_iotinvoke(aws: StandIn, tmp_path: Path) -> None:
    # What a person types in a shell whose working directory is like /tmp: README's forms.
    folder = shared_folder(tmp_path / "shared")
    marker = tmp_path / "planted-code-ran"
    plant_modules(folder, marker)
    env = {"PYTHONPATH": str(ROOT)}
    argv = ["-m", "iotinvoke", "--config", str(aws.config_path), "dev", '{"test":"test1"}']
    # The premise: the plain form imports what the folder holds (Python's documented rule).
    plain = run_at(folder, [PYTHON, *argv], cache=tmp_path / "cache", env=env)
    assert plain.code == 99 and marker.exists(), "the planted modules were not imported: the test proves nothing"
    marker.unlink()
    forms: list[tuple[str | Path, list[str], dict[str, str]]] = [("/", [PYTHON, *argv], env)]
    if python_at_least((3, 11)):
        forms += [(folder, [PYTHON, "-P", *argv], env), (folder, [PYTHON, *argv], {**env, "PYTHONSAFEPATH": "1"})]
    for where, command, environ in forms:
        result = run_at(where, command, cache=tmp_path / "cache", env=environ)
        assert not marker.exists(), (command, where)
        assert (result.code, result.stdout) == (0, SEED_ANSWER), (command, where, result.stderr)


# --- 4. control characters from the network ---------------------------------------------------------

# A title change (OSC 0 ... BEL), clear screen, cursor up, erase line, a carriage return that
# overwrites the line with a forged one, and C1 controls (CSI, NEL) as 8-bit terminals read them.
HOSTILE_TEXT = "\x1b]0;owned\x07\x1b[2J\x1b[1A\r\x1b[2Kiotinvoke: ok\u009b31m\u0085forged\x08\x00!"


def raw_controls(text: str, allowed: str = "\n") -> list[str]:
    """C0 and C1 control characters in text (but those allowed), as their repr."""
    return sorted({repr(c) for c in text if (ord(c) < 0x20 and c not in allowed) or 0x80 <= ord(c) <= 0x9F})


def test_log_tail_reaches_the_terminal_escaped(aws: StandIn, tmp_path: Path) -> None:
    log = f"START RequestId: 0-0 Version: $LATEST\n\tindented\n{HOSTILE_TEXT}\nEND RequestId: 0-0\n"
    aws.fault("lambda", "respond", status=200, body=SEED_ANSWER, headers={
        "Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": "0-0",
        "X-Amz-Log-Result": base64.b64encode(log.encode()).decode()})
    result = run("--log-tail", "dev", "{}", config=aws.config_path, cache=tmp_path / "cache")
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert raw_controls(result.stderr, allowed="\n\t") == [], result.stderr
    assert "\tindented" in result.stderr and "START RequestId: 0-0" in result.stderr  # tabs and lines kept
    assert "\\x1b]0;owned" in result.stderr, "ESC is shown as \\x1b"


def error_answer(hop: str) -> dict[str, object]:
    if hop == "sts":
        # XML 1.0 allows neither ESC nor BEL, even as references; CR (&#13;) and C1 controls it allows.
        body = ("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
                "<Code>AccessDenied</Code><Message>denied&#13;\u009b2K\u0085iotinvoke: ok</Message></Error>"
                "<RequestId>0-0</RequestId></ErrorResponse>")
        return {"status": 403, "headers": {"Content-Type": "text/xml"}, "body": body.encode()}
    headers = {"Content-Type": "application/json", "x-amzn-RequestId": "0-0"}
    if hop == "lambda":
        headers["x-amzn-ErrorType"] = "InvalidParameterValueException"
    document = {"message": "bad value " + HOSTILE_TEXT}
    return {"status": 400 if hop == "lambda" else 403, "headers": headers, "body": json.dumps(document).encode()}


@pytest.mark.parametrize("hop", ["iot", "sts", "lambda"])
def test_aws_error_messages_reach_the_terminal_escaped(aws: StandIn, tmp_path: Path, hop: str) -> None:
    aws.fault(hop, "respond", count=10, **error_answer(hop))
    result = run("dev", "{}", config=aws.config_path, cache=tmp_path / "cache")
    assert result.code not in (0, 70), result.stderr
    assert len(result.lines) == 1, result.stderr
    assert raw_controls(result.stderr) == [], result.stderr
    shown = "\\x9b2K" if hop == "sts" else "\\x1b]0;owned"
    assert shown in result.stderr, f"AWS's message is quoted, its controls shown as escapes like {shown}"


# --- 5. XML from STS --------------------------------------------------------------------------------

ENTITY_SECRET = "wJalrXUtnFEMIxK7MDENGxbPxRfiCYENTITYKEY1"  # what an entity would smuggle into the credentials


def assume_role_answer(secret: str, dtd: str = "") -> str:
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    return (f"{dtd}<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"
            "<Credentials><AccessKeyId>ASIAENTITYEXAMPLE123</AccessKeyId>"
            f"<SecretAccessKey>{secret}</SecretAccessKey><SessionToken>token{secret}</SessionToken>"
            f"<Expiration>{expiration}</Expiration></Credentials>"
            "<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId>"
            "<Arn>arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/s</Arn></AssumedRoleUser>"
            "</AssumeRoleResult><ResponseMetadata><RequestId>0-0</RequestId></ResponseMetadata>"
            "</AssumeRoleResponse>")


ENTITY_DTD = f'<!DOCTYPE AssumeRoleResponse [<!ENTITY s "{ENTITY_SECRET}">]>'
STS_ANSWERS = {
    # UTF-16 with its byte order mark and an internal entity: b"<!DOCTYPE" is not in its bytes.
    "utf16-entity": ('<?xml version="1.0" encoding="UTF-16"?>' + assume_role_answer("&s;", ENTITY_DTD)).encode("utf-16"),
    # UTF-16, no DTD: AWS only sends UTF-8, anything else is not AWS's answer.
    "utf16-plain": ('<?xml version="1.0" encoding="UTF-16"?>' + assume_role_answer(ENTITY_SECRET)).encode("utf-16"),
    "utf8-entity": ('<?xml version="1.0" encoding="UTF-8"?>' + assume_role_answer("&s;", ENTITY_DTD)).encode(),
}


@pytest.mark.parametrize("answer", sorted(STS_ANSWERS))
def test_sts_answers_with_a_dtd_or_not_in_utf8_are_76(aws: StandIn, tmp_path: Path, answer: str) -> None:
    cache = tmp_path / "cache"
    aws.fault("sts", "respond", count=10, status=200, headers={"Content-Type": "text/xml"}, body=STS_ANSWERS[answer])
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 76, result.stderr
    assert len(result.lines) == 1 and re.search(r"\[answer-(not-utf8|dtd)\]$", result.lines[0]), result.stderr
    assert aws.count("lambda") == 0, "credentials from that answer signed an invoke"
    assert ENTITY_SECRET not in result.stderr and ENTITY_SECRET.encode() not in result.stdout
    cached = [p for p in cache.rglob("*") if p.is_file() and ENTITY_SECRET.encode() in p.read_bytes()]
    assert cached == [], "the answer's credentials reached the cache"


# --- 6. learning AWS's time at boot can be turned off -----------------------------------------------


def faketime() -> str:
    tool = shutil.which("faketime")
    if tool is None:
        pytest.skip("faketime is not installed (Debian package faketime; scripts/test installs it)")
    return tool


@pytest.mark.parametrize("section", ["iot", "DEFAULT"])
def test_learn_clock_false_a_board_behind_exits_75(aws: StandIn, tmp_path: Path, section: str) -> None:
    setting = {"learn_clock": "false"}
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot=setting if section == "iot" else None,
                               defaults=setting if section == "DEFAULT" else None)
    cache = tmp_path / "cache"
    result = run("-v", "dev", "{}", config=config, cache=cache, wrapper=[faketime(), "-f", "-730d"])
    assert result.code == 75, result.stderr
    last = result.lines[-1]
    assert last.startswith("iotinvoke: iot: ") and "[clock-wrong" in last, result.stderr
    assert "learned at boot" not in result.stderr
    assert (aws.count("sts"), aws.count("lambda")) == (0, 0)
    assert not (cache / "clock.json").exists(), "a time was learned"


@pytest.mark.parametrize("setting", [None, "true"])
def test_learn_clock_default_and_true_learn_as_before(aws: StandIn, tmp_path: Path, setting: str | None) -> None:
    config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot={"learn_clock": setting} if setting else None)
    result = run("-v", "dev", "{}", config=config, cache=tmp_path / "cache", wrapper=[faketime(), "-f", "-730d"])
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert "learned at boot" in result.stderr
    assert (aws.count("sts"), aws.count("lambda")) == (1, 1)


CLOCK_FLOOR = 1793491200.0  # 2026-11-01T00:00:00Z: README "Clock at boot", no earlier time is learned
DAY = 86400


@pytest.mark.parametrize("learn", ["default", "false"])
def test_at_boot_a_trusted_but_expired_certificate_teaches_the_time_unless_learn_clock_is_false(
    aws: StandIn, tmp_path: Path, learn: str
) -> None:
    # README "Clock at boot": a man in the middle of a board that booted behind, holding the key of
    # a certificate for the endpoint's name that chains to a trusted root and expired after the
    # release, answers with a Date inside its validity. Here: 28 to 12 days ago, a Date 20 days ago.
    if time.time() - 20 * DAY < CLOCK_FLOOR:
        pytest.skip("this machine's date is too early for a certificate that expired after the release")
    tool = faketime()
    cert, key = server_certificate(aws.workdir, tmp_path / "expired", dns=("localhost",),
                                   valid_from=timedelta(days=-28), valid_for=timedelta(days=16))
    aws.clock_offset_s = -20 * DAY   # the Dates it relays are the man in the middle's
    with TlsFront(aws.urls["iot"], cert, key, upstream_ca=aws.ca_path, upstream_client_cert=aws.certs["device"],
                  client_ca=aws.ca_path) as front:
        iot = {"endpoint": front.url(), **({"learn_clock": "false"} if learn == "false" else {})}
        config = standalone_config(aws, tmp_path / "iotinvoke.ini", iot=iot)
        cache = tmp_path / "cache"
        result = run("-v", "dev", "{}", config=config, cache=cache, wrapper=[tool, "-f", "-730d"])
        if learn == "default":  # what learn_clock = false is for: the expired certificate was trusted
            assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
            assert "learned at boot" in result.stderr
            assert any(head.startswith(b"GET /role-aliases/") for head in front.request_heads)
        else:
            assert result.code == 75 and "[clock-wrong" in result.lines[-1], result.stderr
            assert all(head.startswith(b"HEAD ") for head in front.request_heads), front.request_heads
            assert (aws.count("sts"), aws.count("lambda")) == (0, 0)
            assert not (cache / "clock.json").exists()
