"""End to end: the real CLI as a subprocess against the local stand-in of AWS, over real TLS.

One stand-in serves the whole module; each test gets its own credential cache. At the end,
everything every run printed is searched for every secret the stand-in issued.
"""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cli import OUTPUTS, SEED_ANSWER, Run, run
from standin import StandIn

FN = "arn:aws:lambda:ap-northeast-1:111111111111:function"
TOOLS_ROLE = "arn:aws:iam::111111111111:role/iotinvoke-tools"
# This module's own stand-in, with four environments for the test functions (fail, sleep, print, size).
pytestmark = pytest.mark.own_standin(config="".join(
    f"\n[{name}]\nfunction = {FN}:iotinvoke-tools-{name}\nrole_arn = {TOOLS_ROLE}\n"
    for name in ("fail", "sleep", "print", "size")
))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def call(aws: StandIn, cache: Path, *args: str, **kw: object) -> Run:
    return run(*args, config=aws.config_path, cache=cache, **kw)  # type: ignore[arg-type]


def counts(aws: StandIn) -> tuple[int, int, int]:
    return aws.count("iot"), aws.count("sts"), aws.count("lambda")


def one_error_line(result: Run, code: int, *phrases: str) -> None:
    assert result.code == code, result.stderr
    assert len(result.lines) == 1, result.stderr
    assert result.lines[0].startswith("iotinvoke: ")
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


# --- the main job ------------------------------------------------------------------------------------


def test_seed_answer_cold_then_warm_from_cache(aws: StandIn, cache: Path) -> None:
    cold = call(aws, cache, "dev", '{"test":"test1"}')
    assert (cold.code, cold.stdout, cold.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 1)
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}

    warm = call(aws, cache, "dev", '{"test":"test1"}')
    assert (warm.code, warm.stdout, warm.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 2), "a warm call makes no request to hops 1 and 2"
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files, "a warm call writes nothing"
    event = aws.invocations[-1]
    assert event["event"] == {"test": "test1"}
    assert event["caller_arn"].startswith("arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/")


def test_three_environments_reach_their_own_roles_and_functions(aws: StandIn, cache: Path) -> None:
    for env, function, caller in (
        ("stg", f"{FN}:iotinvoke-stg-echo", "arn:aws:sts::111111111111:assumed-role/iotinvoke-stg/"),
        ("prd", "arn:aws:lambda:eu-west-1:222222222222:function:iotinvoke-prd-echo",
         "arn:aws:sts::222222222222:assumed-role/iotinvoke-prd/"),
        ("dev", f"{FN}:ADCCrossAccountTest", "arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/"),
    ):
        result = call(aws, cache, env, json.dumps({"env": env}))
        assert result.code == 0, result.stderr
        assert aws.invocations[-1]["function_arn"] == function
        assert aws.invocations[-1]["caller_arn"].startswith(caller)
        assert aws.invocations[-1]["event"] == {"env": env}
    assert counts(aws) == (1, 3, 3), "one IoT fetch serves every environment"


def test_one_hop_mode_skips_sts(aws: StandIn, cache: Path) -> None:
    result = call(aws, cache, "direct", '{"n": 1}')
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["event"] == {"n": 1}
    assert counts(aws) == (1, 0, 1)
    assert aws.invocations[-1]["caller_arn"].startswith("arn:aws:sts::000000000000:assumed-role/iotinvoke-device/")


def test_payload_from_stdin_dash_and_file(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    payload = '{"unicode": "\u3053\u3093\u306b\u3061\u306f", "n": [1, 2.5, null]}'.encode()
    assert call(aws, cache, "stg", stdin=payload).code == 0
    assert aws.invocations[-1]["event"] == json.loads(payload)
    assert call(aws, cache, "stg", "-", stdin=payload).code == 0
    assert aws.invocations[-1]["event"] == json.loads(payload)
    (tmp_path / "p.json").write_bytes(payload)
    assert call(aws, cache, "stg", f"@{tmp_path / 'p.json'}").code == 0
    assert aws.invocations[-1]["event"] == json.loads(payload)


def test_event_and_dry_run(aws: StandIn, cache: Path) -> None:
    before = len(aws.invocations)
    event = call(aws, cache, "--event", "stg", '{"async": true}')
    assert (event.code, event.stdout, event.stderr) == (0, b"", "")
    dry = call(aws, cache, "--dry-run", "stg", '{"dry": true}')
    assert (dry.code, dry.stdout, dry.stderr) == (0, b"", "")
    runs = aws.invocations[before:]
    assert [r["invocation_type"] for r in runs] == ["Event"], "DryRun runs nothing"
    denied = call(aws, cache, "--dry-run", "noinvoke", "{}")
    one_error_line(denied, 77, "lambda:", "invoke of", "denied")


def test_function_error_exit_1_payload_on_stdout(aws: StandIn, cache: Path) -> None:
    result = call(aws, cache, "fail", "{}")
    assert result.code == 1
    payload = json.loads(result.stdout)
    assert payload["errorType"] == "ValueError"
    one_error_line(result, 1, "function reported an error (Unhandled)", "ValueError")


def test_log_tail_and_qualifier_and_client_context(aws: StandIn, cache: Path) -> None:
    tail = call(aws, cache, "--log-tail", "print", '{"lines": 3}')
    assert tail.code == 0, tail.stderr
    assert "START RequestId:" in tail.stderr and "END RequestId:" in tail.stderr
    direct = call(aws, cache, "--log-tail", "direct", "{}")
    # One-hop mode: the IoT role's account is not configured, so Lambda decides (the stand-in's
    # function is in another account): 64, nothing ran.
    one_error_line(direct, 64, "across accounts", "Cross-account log access", "[cross-account-log]")
    prod = call(aws, cache, "--qualifier", "prod", "dev", "{}")
    assert prod.code == 0 and aws.invocations[-1]["qualifier"] == "prod"
    context = {"custom": {"device": "edge-0001"}}
    echoed = call(aws, cache, "--client-context", json.dumps(context), "stg", "{}")
    assert echoed.code == 0, echoed.stderr
    assert aws.invocations[-1]["client_context"] == context


def test_cache_files_are_private(aws: StandIn, cache: Path) -> None:
    assert call(aws, cache, "dev", "{}").code == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    entries = [p for p in cache.iterdir() if p.suffix == ".json"]
    # One entry per hop, and the board's fraction of the refresh window.
    assert sorted(p.name.split("-")[0] for p in entries) == ["iot", "jitter.json", "sts"]
    for entry in entries:
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
        assert entry.stat().st_uid == os.geteuid()


def test_expired_cached_credentials_are_refreshed(aws: StandIn, cache: Path) -> None:
    assert call(aws, cache, "dev", "{}").code == 0
    # Entries past their refresh time: fetched anew before the call.
    for entry in cache.glob("*.json"):
        data = json.loads(entry.read_text())
        data["Expiration"] = data["Issued"] = 1000.0
        entry.write_text(json.dumps(data))
    assert call(aws, cache, "dev", "{}").code == 0
    assert counts(aws) == (2, 2, 2)
    # Entries that look fresh but AWS refuses: dropped, fetched once more, the call succeeds.
    aws.expire_all_tokens()
    result = call(aws, cache, "dev", "{}")
    assert result.code == 0, result.stderr
    assert counts(aws) == (3, 4, 4)


def test_no_cache_option(aws: StandIn, cache: Path) -> None:
    for _ in range(2):
        assert call(aws, cache, "--no-cache", "dev", "{}").code == 0
    assert counts(aws) == (2, 2, 2)
    assert not cache.exists()


def test_credential_process_and_clear_cache(aws: StandIn, cache: Path) -> None:
    result = call(aws, cache, "--credential-process", "dev")
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Version"] == 1 and document["AccessKeyId"].startswith("ASIA")
    assert document["Expiration"].endswith("Z")
    OUTPUTS.pop(-2)  # this stdout carries secrets by design; keep it out of the leak scan
    cleared = call(aws, cache, "--clear-cache")
    assert cleared.code == 0 and not list(cache.glob("*.json"))


# --- every exit code, reached by a real cause ------------------------------------------------------


def test_exit_64_bad_command_line(aws: StandIn, cache: Path) -> None:
    one_error_line(call(aws, cache), 64, "missing ENV")
    one_error_line(call(aws, cache, "--frobnicate", "dev"), 64, "unknown option --frobnicate")
    one_error_line(call(aws, cache, "dev", "{}", "extra"), 64, "too many arguments")
    one_error_line(call(aws, cache, "--event", "--dry-run", "dev", "{}"), 64, "exclude each other")
    one_error_line(call(aws, cache, "--read-timeout", "soon", "dev", "{}"), 64, "--read-timeout")
    one_error_line(call(aws, cache, "qa", "{}"), 64, "unknown environment 'qa'", "dev")
    assert counts(aws) == (0, 0, 0)


def test_exit_65_bad_payload_before_any_request(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    one_error_line(call(aws, cache, "dev", "{'single': 'quotes'}"), 65, "not valid JSON")
    one_error_line(call(aws, cache, "dev", stdin=b""), 65, "payload is empty", "null or {}")
    big = tmp_path / "big.json"
    big.write_bytes(b'"' + b"x" * 1048576 + b'"')
    one_error_line(call(aws, cache, "--event", "dev", f"@{big}"), 65, "over 1048576 bytes")
    one_error_line(call(aws, cache, "--client-context", "[1]", "dev", "{}"), 65, "client-context")
    assert counts(aws) == (0, 0, 0)


def test_exit_66_missing_files(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    one_error_line(call(aws, cache, "dev", f"@{tmp_path / 'absent.json'}"), 66, "payload file", "absent.json")
    config = with_iot(aws, tmp_path, "device.pem.key", "gone.pem.key")
    one_error_line(run("dev", "{}", config=config, cache=cache), 66, "private key", "missing")
    assert counts(aws) == (0, 0, 0)


def with_iot(aws: StandIn, tmp_path: Path, old: str, new: str) -> Path:
    config = tmp_path / "variant.ini"
    text = aws.config_path.read_text()
    assert old in text
    config.write_text(text.replace(old, new).replace("= certs/", f"= {aws.workdir}/certs/").replace("ca = ", f"ca = {aws.workdir}/")
                      .replace("ca_bundle = ", f"ca_bundle = {aws.workdir}/"))
    return config


def test_exit_69_permanent_refusals(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    missing = call(aws, cache, "missing", "{}")
    one_error_line(missing, 69, "lambda: function not found", "ResourceNotFoundException", "HTTP 404")
    # The IoT policy allows rolealias/iotinvoke-*, so the alias's absence is what AWS reports.
    config = with_iot(aws, tmp_path, "role_alias = iotinvoke-alias", "role_alias = iotinvoke-nosuch")
    one_error_line(run("dev", "{}", config=config, cache=cache), 69, "iot: role alias 'iotinvoke-nosuch' does not exist")


def test_exit_77_permission_denied_at_each_hop(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    one_error_line(call(aws, cache, "untrusted", "{}"), 77, "sts: AssumeRole into", "AccessDenied", "HTTP 403")
    one_error_line(call(aws, cache, "noinvoke", "{}"), 77, "lambda: invoke of", "AccessDeniedException")
    one_error_line(call(aws, cache, "direct-denied", "{}"), 77, "resource policy must allow the IoT role")
    # A certificate from an unknown CA passes the handshake and gets HTTP 403 "Certificate is
    # invalid on this endpoint", as on AWS (scripts/lib/standin/iot.py); a TLS-level refusal of
    # it (a proxy with its own trust) is the stand-in's "tls_refuse" fault.
    for cert, phrases in (("nopolicy", ("iot:AssumeRoleWithCertificate",)),
                          ("foreign", ("HTTP 403", "[certificate-inactive]")), ("expired", ("TLS handshake",)),
                          ("inactive", ("HTTP 403",)), ("foreign tls_refuse", ("TLS handshake", "[certificate-refused]"))):
        cache_folder = tmp_path / cert.replace(" ", "-")
        if cert.endswith(" tls_refuse"):
            cert = cert.split()[0]
            aws.fault("iot", "tls_refuse", count=10)
        config = with_iot(aws, tmp_path, "device.pem", f"{cert}.pem")
        config.write_text(config.read_text().replace("thing_name = edge-0001\n", ""))
        one_error_line(run("dev", "{}", config=config, cache=cache_folder), 77, "iot:", *phrases)
    aws.clear_faults()
    config = with_iot(aws, tmp_path, "thing_name = edge-0001", "thing_name = edge-0002")
    one_error_line(run("dev", "{}", config=config, cache=cache), 77, "thing_name 'edge-0002' is not attached")


def test_exit_78_configuration(aws: StandIn, cache: Path, tmp_path: Path) -> None:
    one_error_line(run("dev", "{}", config=tmp_path / "absent.ini", cache=cache), 78, "configuration file not found")
    one_error_line(run("dev", "{}", cache=cache, env={"IOTINVOKE_CONFIG": str(tmp_path / "x.ini")}), 78, "x.ini")
    broken = tmp_path / "broken.ini"
    broken.write_text(aws.config_path.read_text().replace("role_arn", "rolearn", 1))
    one_error_line(run("dev", "{}", config=broken, cache=cache), 78, "[dev] rolearn: unknown key")


def test_exit_76_garbled_answers(aws: StandIn, cache: Path) -> None:
    aws.fault("iot", "respond", status=200, headers={"Content-Type": "application/json"}, body=b'{"credentials": {"accessKeyId"')
    one_error_line(call(aws, cache, "dev", "{}"), 76, "iot:", "not the expected JSON")
    aws.fault("sts", "respond", status=200, headers={"Content-Type": "text/xml"}, body=b"<AssumeRoleResponse><Assume")
    one_error_line(call(aws, cache, "dev", "{}"), 76, "sts:", "not well-formed XML")
    aws.fault("lambda", "respond", status=418, headers={}, body=b"\xff\xfe")
    one_error_line(call(aws, cache, "dev", "{}"), 76, "lambda:", "unexpected answer")


def test_exit_75_transient_after_retries(aws: StandIn, cache: Path) -> None:
    aws.fault("sts", "5xx", count=10)
    one_error_line(call(aws, cache, "dev", "{}"), 75, "sts: AWS server error", "after 3 attempts")
    assert aws.count("sts") == 3
    aws.clear_faults()
    aws.fault("lambda", "throttle", count=1, retry_after=0)
    result = call(aws, cache, "dev", "{}")
    assert (result.code, result.stdout) == (0, SEED_ANSWER), "one throttle is retried"


def test_exit_74_invoke_answer_lost_is_never_resent(aws: StandIn, cache: Path) -> None:
    assert call(aws, cache, "stg", "{}").code == 0
    before = len(aws.invocations)
    aws.fault("lambda", "drop_after")
    one_error_line(call(aws, cache, "stg", '{"once": true}'), 74, "may have run")
    assert aws.count("lambda") == 2, "not re-sent"
    assert [r["event"] for r in aws.invocations[before:]] == [{"once": True}], "the function ran once"


def test_verbose_says_what_happens(aws: StandIn, cache: Path) -> None:
    result = call(aws, cache, "-v", "dev", "{}")
    assert result.code == 0
    assert [line.split(":")[1].strip() for line in result.lines] == ["config", "cache", "cache", "iot", "sts", "lambda"]
    assert result.lines[0] == f"iotinvoke: config: {aws.config_path}"
    assert result.lines[1:3] == ["iotinvoke: cache: sts absent", "iotinvoke: cache: iot absent"]
    warm = call(aws, cache, "-v", "dev", "{}")
    assert warm.lines[1].startswith("iotinvoke: cache: sts fresh until ")
    assert [line.split(":")[1].strip() for line in warm.lines] == ["config", "cache", "lambda"]


def test_the_secret_scan_has_secrets_to_look_for(aws: StandIn, cache: Path) -> None:
    # conftest's session-wide scan searches every output in OUTPUTS for every issued secret.
    from standin.creds import ALL_STORES

    assert call(aws, cache, "dev", "{}").code == 0
    issued = aws.issued_secrets()
    assert len(issued) >= 4  # secret and token of hops 1 and 2
    assert set(issued) <= {secret for store in ALL_STORES for secret in store.secrets()}
    assert OUTPUTS and OUTPUTS[-2] == SEED_ANSWER  # the runs' output is recorded for the scan


def test_help_and_version(aws: StandIn, cache: Path) -> None:
    helped = call(aws, cache, "--help")
    assert helped.code == 0 and helped.stdout.startswith(b"usage: iotinvoke") and helped.stderr == ""
    version = call(aws, cache, "--version")
    assert (version.code, version.stderr) == (0, "") and version.stdout.startswith(b"iotinvoke 0.")


def test_log_tail_decodes_base64(aws: StandIn, cache: Path) -> None:
    result = call(aws, cache, "-v", "--log-tail", "print", '{"lines": 2}')
    assert result.code == 0
    assert not any(_is_base64(line) for line in result.lines)


def _is_base64(text: str) -> bool:
    try:
        return len(text) > 20 and base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except ValueError:
        return False


# --- clock and concurrency ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-3600.0, 3600.0, -86400.0])
def test_clock_skew_is_corrected_and_remembered(aws: StandIn, cache: Path, offset: float) -> None:
    # AWS's clock is `offset` away from the board's: the first signed request is refused for its
    # time stamp, iotinvoke takes the server's Date, re-signs, and keeps the offset for later calls.
    aws.clock_offset_s = offset
    first = call(aws, cache, "-v", "dev", "{}")
    assert (first.code, first.stdout) == (0, SEED_ANSWER), first.stderr
    assert "clock" in first.stderr
    stored = json.loads((cache / "clock.json").read_text())["offset"]
    assert abs(stored - offset) < 5
    aws.reset_counts()
    second = call(aws, cache, "-v", "stg", "{}")
    assert second.code == 0 and "clock" not in second.stderr, "the next process starts corrected"
    assert counts(aws) == (0, 1, 1)


def test_50_concurrent_cold_starts_fetch_once_per_hop_and_environment(aws: StandIn, cache: Path) -> None:
    import subprocess

    from cli import PYTHON, SCRIPT, environment

    environ = environment(cache)
    envs = ["dev", "stg", "prd"]
    procs = [
        subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(aws.config_path), envs[i % 3], json.dumps({"i": i})],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
        for i in range(50)
    ]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        OUTPUTS.extend((out, err))
        assert proc.returncode == 0, err
        assert out == SEED_ANSWER if envs[i % 3] == "dev" else json.loads(out)["event"] == {"i": i}
    assert counts(aws) == (1, 3, 50), "one request to hop 1, one to hop 2 per environment"
    for entry in cache.glob("*.json"):
        json.loads(entry.read_text())


def test_killed_in_the_middle_of_a_refresh_leaves_a_usable_cache(aws: StandIn, cache: Path) -> None:
    import signal
    import subprocess
    import time

    from cli import PYTHON, SCRIPT, environment

    aws.fault("sts", "delay", seconds=5)
    proc = subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "dev", "{}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(cache))
    deadline = time.monotonic() + 20
    while aws.count("sts") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert aws.count("sts") == 1, "the victim never reached hop 2"
    proc.send_signal(signal.SIGKILL)  # holding the locks, between the two hops
    proc.wait(10)
    aws.clear_faults()
    started = time.monotonic()
    result = call(aws, cache, "dev", "{}")
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
    assert time.monotonic() - started < 10, "a dead process's lock does not block"
    assert counts(aws) == (1, 2, 1), "hop 1 came from the cache the victim wrote"


# --- streaming mode ----------------------------------------------------------------------------------


def test_stream_one_result_line_per_payload_line(aws: StandIn, cache: Path) -> None:
    lines = [b'{"n": 1}', b"", b"{not json", b'{"n": 2}']
    result = call(aws, cache, "--stream", "stg", stdin=b"\n".join(lines) + b"\n")
    assert result.code == 0 and result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["exit"] for r in records] == [0, 65, 65, 0], "one answer line per input line, a blank one included"
    assert json.loads(records[0]["payload"])["event"] == {"n": 1} and json.loads(records[3]["payload"])["event"] == {"n": 2}
    assert records[1]["reason"] == "payload-empty"
    assert records[2]["error"].startswith("payload: payload is not valid JSON")
    assert counts(aws) == (1, 1, 2), "credentials fetched once for the whole stream"


def test_stream_reports_function_errors_and_refusals_per_line(aws: StandIn, cache: Path) -> None:
    failed = call(aws, cache, "--stream", "fail", stdin=b"{}\n{}\n")
    records = [json.loads(line) for line in failed.stdout.splitlines()]
    assert [(r["exit"], r["function_error"]) for r in records] == [(1, "Unhandled")] * 2
    assert json.loads(records[0]["payload"])["errorType"] == "ValueError"
    denied = call(aws, cache, "--stream", "noinvoke", stdin=b"{}\n")
    record = json.loads(denied.stdout)
    assert (denied.code, record["exit"], record["status"]) == (0, 77, 403)


def test_exit_70_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Exit 70 is for bugs only, so no real cause reaches it: a fault is injected in-process.
    import iotinvoke

    def broken(*args: object, **options: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(iotinvoke, "_run", broken)
    assert iotinvoke.main(["dev", "{}"]) == 70
    assert capsys.readouterr().err == "iotinvoke: internal error: KeyError: 'a bug' [internal-error]\n"


@pytest.mark.parametrize("shift", ["-1d", "-1h", "+1h"])
def test_board_clock_wrong_at_boot(aws: StandIn, cache: Path, shift: str) -> None:
    # The board's own clock is shifted (libfaketime): TLS, signing and expiry must all still work,
    # and the second process starts from the remembered offset.
    import shutil

    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.skip("faketime is not installed (Debian package faketime; scripts/test installs it)")
    wrapper = [faketime, "-f", shift]
    first = call(aws, cache, "-v", "dev", "{}", wrapper=wrapper)
    assert (first.code, first.stdout) == (0, SEED_ANSWER), first.stderr
    assert "clock" in first.stderr
    second = call(aws, cache, "dev", "{}", wrapper=wrapper)
    assert (second.code, second.stdout, second.stderr) == (0, SEED_ANSWER, "")
    assert counts(aws) == (1, 1, 2)


def test_closed_stdout_is_one_line_and_exit_74(aws: StandIn, cache: Path) -> None:
    import subprocess

    from cli import PYTHON, SCRIPT, environment

    read_end, write_end = os.pipe()
    os.close(read_end)  # the caller stopped reading before the answer came
    try:
        done = subprocess.run([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "dev", "{}"],
                              stdout=write_end, stderr=subprocess.PIPE, env=environment(cache), timeout=60)
    finally:
        os.close(write_end)
    OUTPUTS.append(done.stderr)
    assert done.returncode == 74
    assert done.stderr.decode().splitlines() == [
        "iotinvoke: output: cannot write the answer to standard output (Broken pipe): the function ran and its "
        "answer is lost [stdout-failed]"]
