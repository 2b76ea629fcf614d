"""The contract's promises that need a process: through the CLI, as a C program runs it.

Signals mid-invoke, a missing dependency, hostile cache files, a full disk, --stream's byte-exact
answers and bounded lines, and a board that reboots behind with a warm cache."""
from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli import OUTPUTS, PYTHON, SCRIPT, SEED_ANSWER, Run, environment, run
from standin import StandIn

pytestmark = pytest.mark.own_standin(
    config="\n[sleep]\nfunction = 111111111111:function:iotinvoke-tools-sleep\n"
           "role_arn = arn:aws:iam::111111111111:role/iotinvoke-tools\nregion = ap-northeast-1\n")


def warm(aws: StandIn, cache: Path, env: str = "dev") -> None:
    first = run(env, '{"seconds": 0}' if env == "sleep" else "{}", config=aws.config_path, cache=cache)
    assert first.code == 0, first.stderr
    aws.reset_counts()


@pytest.mark.parametrize("signum, status, name", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGHUP, 129, "hangup")])
def test_a_signal_mid_invoke_says_the_function_may_have_run(aws: StandIn, tmp_path: Path, signum: int,
                                                           status: int, name: str) -> None:
    warm(aws, tmp_path, "sleep")
    before = len(aws.invocations)
    argv = [PYTHON, str(SCRIPT), "--config", str(aws.config_path), "sleep", '{"seconds": 2.5}']
    # The signal's default disposition, as a C program's child has it: a runner started under
    # nohup (SIGHUP ignored) or in a shell's background (SIGINT ignored) would pass its own on.
    proc = subprocess.Popen(argv, env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    deadline = time.monotonic() + 20
    while len(aws.invocations) == before and time.monotonic() < deadline:
        time.sleep(0.02)  # until the stand-in runs the function: the invoke is on the way
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    OUTPUTS.extend([out, err])
    assert proc.returncode == status, err
    lines = err.decode().splitlines()
    assert lines == ["iotinvoke: %s after the invoke was sent: the function may have run [%s]" % (name, name)]
    assert out == b""


def test_a_hangup_ignored_at_start_stays_ignored(aws: StandIn, tmp_path: Path) -> None:
    # `nohup iotinvoke ...` (or a parent that ignores SIGHUP) means: finish even when the terminal
    # goes. iotinvoke handles SIGHUP only where it found the default disposition (POSIX nohup).
    warm(aws, tmp_path, "sleep")
    before = len(aws.invocations)
    argv = [PYTHON, str(SCRIPT), "--config", str(aws.config_path), "sleep", '{"seconds": 1.5}']
    proc = subprocess.Popen(argv, env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.monotonic() + 20
    while len(aws.invocations) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    OUTPUTS.extend([out, err])
    assert proc.returncode == 0 and err == b"", err
    assert json.loads(out) == {"slept": 1.5}, out
    assert len(aws.invocations) == before + 1


def test_a_signal_before_anything_was_sent_says_so(aws: StandIn, tmp_path: Path) -> None:
    # Hop 1's endpoint is a listening socket that never accepts: the call waits in its handshake.
    import socket

    from hostile import config_with

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        ini = config_with(aws.config_path, iot="https://localhost:%d" % server.getsockname()[1])
        proc = subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(ini), "--connect-timeout", "30", "dev", "{}"],
                                env=environment(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    OUTPUTS.extend([out, err])
    assert proc.returncode == 143, err
    assert err.decode().splitlines() == ["iotinvoke: terminated before the invoke was sent [terminated]"]


@pytest.mark.parametrize("args", [("dev", "{}"), ("--doctor", "dev")])
def test_a_missing_dependency_is_one_line_naming_the_package(aws: StandIn, tmp_path: Path,
                                                             args: tuple[str, ...]) -> None:
    # python -S: no site-packages, so neither urllib3 nor botocore can be imported.
    done = subprocess.run([PYTHON, "-S", str(SCRIPT), "--config", str(aws.config_path), *args],
                          env=environment(tmp_path), capture_output=True, timeout=60)
    OUTPUTS.extend([done.stdout, done.stderr])
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 69, done.stderr
    assert len(lines) == 1 and lines[0].endswith("[dependency-missing]"), lines
    assert "apt-get install python3-urllib3" in lines[0] and "pip install urllib3" in lines[0]


def test_a_cache_file_nested_deep_is_a_miss_not_a_crash(aws: StandIn, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    for name in ("clock.json", "jitter.json"):
        (cache / name).write_text("[" * 60_000)
        (cache / name).chmod(0o600)
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")


def test_a_full_cache_disk_is_said_once_and_the_calls_work(aws: StandIn, tmp_path: Path) -> None:
    """A file size limit stands in for a full disk: every cache write fails (EFBIG, as ENOSPC would)."""
    markers = tmp_path / "xdg"
    markers.mkdir(mode=0o700)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    def call() -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "dev", "{}"],
                              env=environment(tmp_path / "cache", {"XDG_RUNTIME_DIR": str(markers)}),
                              capture_output=True, timeout=60, preexec_fn=small_files)
        OUTPUTS.extend([done.stdout, done.stderr])
        return done

    first, second = call(), call()
    assert (first.returncode, first.stdout) == (0, SEED_ANSWER), first.stderr
    lines = first.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "said once until reboot" in lines[0], lines
    assert (second.returncode, second.stdout, second.stderr) == (0, SEED_ANSWER, b"")
    assert aws.count("iot") == 2, "both calls ran uncached"


def test_stream_answers_are_byte_exact(aws: StandIn, tmp_path: Path) -> None:
    exact = b'{"a": 1.50, "a": 2, "big": 1e400, "s": "\\u00e9"}'
    aws.fault("lambda", "respond", count=1, status=200, headers={"Content-Type": "application/json"}, body=exact)
    result = run("--stream", "dev", config=aws.config_path, cache=tmp_path, stdin=b"{}\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.code == 0 and len(records) == 1, result.stderr
    assert records[0]["payload"].encode() == exact


def test_stream_bounds_a_line_and_answers_every_line(aws: StandIn, tmp_path: Path) -> None:
    huge = b'{"x": "' + b"a" * (6291456 + 10) + b'"}'
    result = run("--stream", "dev", config=aws.config_path, cache=tmp_path,
                 stdin=b"{}\n" + huge + b"\n\n" + b"{}\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.code == 0, result.stderr
    assert [(r["exit"], r["reason"]) for r in records] == [(0, None), (65, "payload-too-large"),
                                                           (65, "payload-empty"), (0, None)]
    assert [r["payload"].encode() for r in records if r["exit"] == 0] == [SEED_ANSWER] * 2


def test_a_board_that_reboots_behind_with_a_warm_cache_sends_once(aws: StandIn, tmp_path: Path) -> None:
    """It exited 74 "the invoke was sent ... may have run" when nothing had been sent: the TLS
    handshake failed on the certificate's dates before the request went out."""
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.skip("faketime is not installed (Debian package faketime; scripts/test installs it)")
    warm(aws, tmp_path)
    before = len(aws.invocations)
    result = run("-v", "dev", "{}", config=aws.config_path, cache=tmp_path, wrapper=[faketime, "-f", "-730d"])
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert "learned at boot" in result.stderr and "retrying" not in result.stderr
    assert (aws.count("iot"), aws.count("sts")) == (0, 0), "warm: no credentials fetched"
    assert len(aws.invocations) - before == 1 and aws.count("lambda") == 2, "one HEAD to learn the time, one invoke"
