"""scripts/example.c, the C caller, compiled with gcc and run against the local stand-in of AWS.

It runs the real iotinvoke.py as its subprocess (cli.PYTHON as interpreter), exactly as a program
on a board would: payload on the child's stdin, response from its stdout, branch on exit status.
Most cases run it as a copied script (-s iotinvoke.py); others as the README installs it,
"python3 -m iotinvoke" with the module's folder first on PYTHONPATH (-d), the C program's default.
A few cases use a small Python script in place of iotinvoke.py, or in place of the interpreter, to
drive the C program's own edge cases (a child that writes a lot before reading, an oversized
answer, a killed child, an interpreter or module that is missing).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import OUTPUTS, PYTHON, ROOT, SCRIPT, SEED_ANSWER, Run, compile_example, environment
from standin import StandIn

SOURCE = ROOT / "scripts" / "example.c"
FN = "arn:aws:lambda:ap-northeast-1:111111111111:function"
TOOLS_ROLE = "arn:aws:iam::111111111111:role/iotinvoke-tools"
# This module's own stand-in, with an environment whose function raises.
pytestmark = pytest.mark.own_standin(config=f"\n[fail]\nfunction = {FN}:iotinvoke-tools-fail\nrole_arn = {TOOLS_ROLE}\n")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_example(tmp_path_factory.mktemp("c"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A fresh credential cache for each test."""
    return tmp_path / "cache"


def run_c(
    binary: Path,
    *args: str | Path,
    cache: Path,
    config: Path | None = None,
    script: Path | None = SCRIPT,
    python: str = PYTHON,
    stdin: bytes = b"",
    wrapper: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Run:
    environ = environment(cache, env)
    # script None: the C program's default form, python -m iotinvoke, with this repository as DIR.
    argv = [*wrapper, str(binary), "-p", python, *(["-s", str(script)] if script else ["-d", str(ROOT)])]
    if config is not None:
        argv += ["-c", str(config)]
    argv += [str(a) for a in args]
    # Not from this repository's folder: python -m puts the current folder first on sys.path.
    done = subprocess.run(argv, input=stdin, capture_output=True, env=environ, timeout=timeout, cwd=cache.parent)
    OUTPUTS.extend((done.stdout, done.stderr))
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def call(example: Path, aws: StandIn, cache: Path, *args: str, **kw: object) -> Run:
    return run_c(example, *args, cache=cache, config=aws.config_path, **kw)  # type: ignore[arg-type]


# --- against the stand-in, with the real iotinvoke.py ------------------------------------------------


def test_success_prints_the_seed_answer_and_exits_0(example: Path, aws: StandIn, cache: Path) -> None:
    result = call(example, aws, cache, "dev", stdin=b'{"test":"test1"}')
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert result.lines == [f"example: dev: ok, {len(SEED_ANSWER)} bytes (attempt 1)"]
    assert aws.invocations[-1]["event"] == {"test": "test1"}
    assert (aws.count("sts"), aws.count("lambda")) == (1, 1)


def test_default_form_python_m_iotinvoke_with_its_folder(example: Path, aws: StandIn, cache: Path) -> None:
    result = call(example, aws, cache, "dev", '{"test":"test1"}', script=None)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert result.lines == [f"example: dev: ok, {len(SEED_ANSWER)} bytes (attempt 1)"]
    assert (aws.count("sts"), aws.count("lambda")) == (1, 1)


def test_payload_as_argument_and_from_stdin_arrive_intact(example: Path, aws: StandIn, cache: Path) -> None:
    payload = {"unicode": "\u3053\u3093\u306b\u3061\u306f", "n": [1, 2.5, None]}
    text = json.dumps(payload, ensure_ascii=False)
    for args, stdin in ((("stg", text), b""), (("stg", "-"), text.encode()), (("stg",), text.encode())):
        result = call(example, aws, cache, *args, stdin=stdin)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["event"] == payload
        assert aws.invocations[-1]["event"] == payload


def test_function_error_exits_1_with_the_error_payload(example: Path, aws: StandIn, cache: Path) -> None:
    result = call(example, aws, cache, "fail", '{"why": "test"}')
    assert result.code == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["errorType"] == "ValueError" and "asked to fail" in payload["errorMessage"]
    assert len(result.lines) == 1 and "the function reported an error" in result.stderr
    assert "ValueError" in result.stderr, "iotinvoke's own line is passed on"
    assert aws.count("lambda") == 1, "a function error is not retried"


def test_transient_75_is_retried_then_succeeds(example: Path, aws: StandIn, cache: Path) -> None:
    # iotinvoke makes 3 attempts at STS itself, then exits 75; the C program's retry gets through.
    aws.fault("sts", "5xx", count=3)
    result = call(example, aws, cache, "-w", "0", "dev", '{"retry": true}')  # -w 0: its own backoff
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert len(result.lines) == 2, result.stderr
    assert result.lines[0].startswith("example: dev: transient failure, retrying in 1.")
    assert "(retry 1 of 3)" in result.lines[0] and "sts: AWS server error" in result.lines[0]
    assert result.lines[1] == f"example: dev: ok, {len(SEED_ANSWER)} bytes (attempt 2)"
    assert (aws.count("sts"), aws.count("lambda")) == (4, 1), "two runs of iotinvoke, one invoke"


def test_the_wait_iotinvoke_asks_for_is_honoured_up_to_w(example: Path, aws: StandIn, cache: Path) -> None:
    import re

    aws.fault("sts", "5xx", count=3)
    result = call(example, aws, cache, "-w", "2", "dev", "{}")
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    asked = int(re.search(r"\[server-error; retry after (\d+) s\]", result.lines[0]).group(1))
    assert 1 <= asked <= 120  # a fleet's boards are spread over two minutes
    assert result.lines[0].startswith("example: dev: transient failure, retrying in %d.0 s" % min(asked, 2))


def test_transient_75_gives_up_after_the_retries(example: Path, aws: StandIn, cache: Path) -> None:
    aws.fault("sts", "5xx", count=10)
    result = call(example, aws, cache, "-r", "1", "-w", "1", "dev", "{}")
    assert (result.code, result.stdout) == (75, b""), result.stderr
    assert len(result.lines) == 2, result.stderr
    assert "retrying" in result.lines[0] and "(retry 1 of 1)" in result.lines[0]
    assert result.lines[1].startswith("example: dev: transient failure, giving up after 2 attempts: ")
    assert (aws.count("sts"), aws.count("lambda")) == (6, 0), "exactly two runs of iotinvoke"

    aws.clear_faults()
    aws.reset_counts()
    aws.fault("sts", "5xx", count=10)
    once = call(example, aws, cache, "-r", "0", "dev", "{}")
    assert once.code == 75 and "retrying in" not in once.stderr and aws.count("sts") == 3


def test_answer_lost_74_is_not_retried_and_the_function_ran_once(example: Path, aws: StandIn, cache: Path) -> None:
    before = len(aws.invocations)
    aws.fault("lambda", "drop_after")
    result = call(example, aws, cache, "stg", '{"once": true}')
    assert (result.code, result.stdout) == (74, b""), result.stderr
    assert len(result.lines) == 1 and "retrying in" not in result.stderr, result.stderr
    assert "may have run; not retrying" in result.stderr and "iotinvoke: " in result.stderr
    assert aws.count("lambda") == 1, "the invoke was not re-sent"
    assert [r["event"] for r in aws.invocations[before:]] == [{"once": True}], "the function ran once"


def test_one_megabyte_round_trip(example: Path, aws: StandIn, cache: Path) -> None:
    big = "x" * 1_000_000 + "\u00e9"
    payload = json.dumps(big).encode()
    result = call(example, aws, cache, "stg", stdin=payload, timeout=60)
    assert result.code == 0, result.stderr
    assert len(result.stdout) > 1_000_000
    assert json.loads(result.stdout)["event"] == big
    assert aws.invocations[-1]["event"] == big


def test_unknown_environment_exits_64(example: Path, aws: StandIn, cache: Path) -> None:
    before = len(aws.invocations)
    result = call(example, aws, cache, "nosuchenv", "{}")
    assert (result.code, result.stdout) == (64, b""), result.stderr
    assert len(result.lines) == 1, result.stderr
    assert result.lines[0].startswith("example: nosuchenv: failed with exit status 64: iotinvoke: ")
    assert "unknown environment 'nosuchenv'" in result.stderr
    assert len(aws.invocations) == before


# --- the C program's own edges, with stand-ins for iotinvoke.py ---------------------------------------


def test_own_usage_errors_exit_64(example: Path, tmp_path: Path) -> None:
    for args in ((), ("-r", "11", "dev"), ("-r", "x", "dev"), ("-w", "-1", "dev"), ("-w", "3601", "dev"), ("-z", "dev"),
                 ("dev", "{}", "extra")):
        result = run_c(example, *args, cache=tmp_path)
        assert (result.code, result.stdout) == (64, b""), (args, result.stderr)
        assert result.stderr, args


def test_missing_python_is_reported(example: Path) -> None:
    done = subprocess.run(
        [str(example), "-p", "/nonexistent/python3", "-s", str(SCRIPT), "dev", "{}"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (69, "")
    assert done.stderr == "example: cannot run /nonexistent/python3: No such file or directory\n"


def interpreter(tmp_path: Path, body: str) -> str:
    """An executable standing in for the Python interpreter (-p): a Python script running body."""
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!{PYTHON}\nimport json, os, sys\n{body}")
    fake.chmod(0o755)
    return str(fake)


def test_default_command_and_pythonpath(example: Path, tmp_path: Path) -> None:
    # The child's argv and PYTHONPATH, as a fake interpreter sees them, with and without -d.
    show = interpreter(tmp_path, "sys.stdin.read()\n"
                                 "print(json.dumps([sys.argv[1:], os.environ.get('PYTHONPATH')]))\n")
    for args, inherited, wanted in (
        ((), None, "/usr/local/lib/iotinvoke"),
        ((), "/opt/x", "/usr/local/lib/iotinvoke:/opt/x"),
        (("-d", "/srv/iot", "-c", "/etc/a.ini"), "", "/srv/iot"),
        (("-d", ""), "/opt/x", "/opt/x"),
    ):
        env = {"PYTHONPATH": inherited} if inherited is not None else {}
        done = subprocess.run([str(example), "-p", show, *args, "dev", "{}"], capture_output=True,
                              env=environment(tmp_path, env), timeout=30)
        assert done.returncode == 0, done.stderr
        argv, pythonpath = json.loads(done.stdout)
        config = ["--config", "/etc/a.ini"] if "-c" in args else []
        assert argv == ["-m", "iotinvoke", *config, "--", "dev", "-"], args
        assert pythonpath == wanted, (args, inherited)


def test_iotinvoke_that_cannot_start_exits_69(example: Path, tmp_path: Path) -> None:
    # Python's own exit statuses: 1 "No module named iotinvoke" (-m), 2 "can't open file" (a script).
    no_module = subprocess.run([str(example), "-p", PYTHON, "-d", str(tmp_path), "dev", "{}"], capture_output=True,
                               text=True, env=environment(tmp_path), cwd=tmp_path, timeout=30)
    assert (no_module.returncode, no_module.stdout) == (69, ""), no_module.stderr
    assert re.fullmatch(r"example: dev: iotinvoke could not be started \(\S+ exited 1; check -p, -d, -s\): "
                        r"\S+: No module named iotinvoke\n", no_module.stderr), no_module.stderr
    no_script = run_c(example, "dev", "{}", script=tmp_path / "missing.py", cache=tmp_path)
    assert (no_script.code, no_script.stdout) == (69, b""), no_script.stderr
    assert no_script.lines[0].startswith("example: dev: iotinvoke could not be started (") and " exited 2;" in no_script.stderr
    assert "can't open file" in no_script.stderr
    # A missing dependency, as Python reports it from inside the module: still cannot start.
    dependency = interpreter(tmp_path, "sys.stdin.read()\nimport urllib3_missing_for_this_test\n")
    missing = run_c(example, "dev", "{}", python=dependency, cache=tmp_path)
    assert (missing.code, missing.stdout) == (69, b""), missing.stderr
    assert missing.lines == [f"example: dev: iotinvoke could not be started ({dependency} exited 1; check -p, -d, -s): "
                             "ModuleNotFoundError: No module named 'urllib3_missing_for_this_test'"]
    # A wrapper that could not exec the interpreter (a shell's 127 and 126).
    for status in (127, 126):
        wrapper = interpreter(tmp_path, f"sys.stderr.write('wrapper: python3: not found\\n'); sys.exit({status})\n")
        failed = run_c(example, "dev", "{}", python=wrapper, cache=tmp_path)
        assert (failed.code, failed.lines) == (69, [
            f"example: dev: iotinvoke could not be started ({wrapper} exited {status}; check -p, -d, -s): "
            "wrapper: python3: not found"]), failed.stderr


def test_python_exit_1_without_iotinvokes_line_is_a_crash_not_a_function_error(example: Path, tmp_path: Path) -> None:
    crash = interpreter(tmp_path, "sys.stdin.read()\nsys.stdout.write('partial')\nraise RuntimeError('boom')\n")
    result = run_c(example, "dev", "{}", python=crash, cache=tmp_path)
    assert (result.code, result.stdout) == (70, b""), result.stderr
    assert result.lines == [f"example: dev: iotinvoke crashed ({crash} exited 1): RuntimeError: boom"]


def test_readme_and_example_c_agree_on_the_install_layout() -> None:
    readme = (ROOT / "README.md").read_text()
    installed = re.search(r"sudo install -D -m 0644 iotinvoke.py (\S+)/iotinvoke.py", readme)
    assert installed, "README's install section lost its install command"
    folder = installed.group(1)
    default = re.search(r'#define DEFAULT_DIR "([^"]+)"', SOURCE.read_text())
    assert default and default.group(1) == folder, "example.c's default -d is not where the README installs"
    process = re.search(r"^credential_process = (.+)$", readme, re.M)
    assert process and process.group(1).startswith(f"env PYTHONPATH={folder} python3 -m iotinvoke "), process
    assert f"PYTHONPATH={folder} python3 -m iotinvoke" in readme


def test_child_writing_before_reading_does_not_deadlock(example: Path, tmp_path: Path) -> None:
    # 1 MiB on stderr and on stdout before reading a byte of the 2 MiB payload: a caller that
    # wrote the whole payload first, or read one stream at a time, would hang here forever.
    chatty = tmp_path / "chatty.py"
    chatty.write_text(
        "import sys\n"
        "sys.stderr.write('e' * 1048576 + '\\nthe last line\\n'); sys.stderr.flush()\n"
        "sys.stdout.write('o' * 1048576); sys.stdout.flush()\n"
        "data = sys.stdin.buffer.read()\n"
        "sys.stdout.write('|%d|%s' % (len(data), sys.argv[1:]))\n"
    )
    payload = json.dumps("p" * 2 * 1048576).encode()
    result = run_c(example, "dev", script=chatty, cache=tmp_path, stdin=payload, timeout=30)
    assert result.code == 0, result.stderr[-300:]
    assert result.stdout == b"o" * 1048576 + b"|%d|['--', 'dev', '-']" % len(payload)


def test_child_exit_codes_and_signals_pass_through(example: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import os, signal, sys\n"
        "sys.stdin.buffer.read()\n"
        "mode = os.environ['FAKE_MODE']\n"
        "if mode == 'big':\n"
        "    sys.stdout.buffer.write(b'b' * (7 * 1048576 + 1)); sys.exit(0)\n"
        "if mode == 'kill':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "print('iotinvoke: lambda: refused', file=sys.stderr); sys.exit(69)\n"
    )
    big = run_c(example, "dev", "{}", script=fake, cache=tmp_path, env={"FAKE_MODE": "big"})
    assert (big.code, big.stdout) == (76, b""), big.stderr
    assert "the response is over 7340032 bytes" in big.stderr
    killed = run_c(example, "dev", "{}", script=fake, cache=tmp_path, env={"FAKE_MODE": "kill"})
    assert (killed.code, killed.stdout) == (70, b"")
    assert killed.lines == ["example: dev: iotinvoke was killed by signal 9"]
    refused = run_c(example, "dev", "{}", script=fake, cache=tmp_path, env={"FAKE_MODE": "refused"})
    assert (refused.code, refused.lines) == (69, ["example: dev: failed with exit status 69: iotinvoke: lambda: refused"])


# --- memory ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["retry", "big", "module"])
def test_clean_under_valgrind(example: Path, aws: StandIn, cache: Path, case: str) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed: cannot check scripts/example.c for memory errors and leaks")
    wrapper = (valgrind, "-q", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=all",
               "--errors-for-leak-kinds=all")
    if case == "retry":
        aws.fault("sts", "5xx", count=3)
        result = call(example, aws, cache, "-w", "1", "dev", "{}", wrapper=wrapper)
        assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
        assert "retrying" in result.stderr
    elif case == "module":  # python -m iotinvoke: the child's environment is built and freed
        result = call(example, aws, cache, "dev", "{}", wrapper=wrapper, script=None)
        assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    else:
        big = "v" * 1_000_000
        result = call(example, aws, cache, "stg", stdin=json.dumps(big).encode(), wrapper=wrapper)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["event"] == big
    assert "==" not in result.stderr, f"valgrind reported:\n{result.stderr}"


# --- the whole call's bound (-t) -----------------------------------------------------------------------


def test_with_the_network_down_a_cold_call_ends_within_its_bound(example: Path, aws: StandIn, cache: Path,
                                                                tmp_path: Path) -> None:
    """Issue 18: with the network down and a cold cache the C example waited 216 s. Hop 1's endpoint
    here accepts no connection (a listening socket nobody accepts on): -t 4 ends the call, 75."""
    import socket

    from hostile import config_with

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        config = config_with(aws.config_path, iot="https://localhost:%d" % server.getsockname()[1],
                             defaults={"connect_timeout": "30"})
        started = time.monotonic()
        result = run_c(example, "-t", "4", "dev", cache=cache, config=config, stdin=b"{}")
        elapsed = time.monotonic() - started
    assert result.code == 75, result.stderr
    assert "the call's bound of 4 s ran out" in result.stderr and "before the invoke was sent" in result.stderr
    assert elapsed < 4 + 8, elapsed  # the bound, then iotinvoke's line after SIGTERM (not 30 s, not minutes)
    assert aws.count("lambda") == 0


def test_a_bound_that_runs_out_after_the_invoke_went_out_is_74(example: Path, aws: StandIn, cache: Path) -> None:
    warm = call(example, aws, cache, "dev", stdin=b"{}")
    assert warm.code == 0, warm.stderr
    before = len(aws.invocations)
    aws.fault("lambda", "delay", count=1, seconds=8)  # the function runs, its answer comes late
    result = call(example, aws, cache, "-t", "3", "dev", stdin=b"{}")
    assert result.code == 74, result.stderr
    assert "may have run" in result.stderr and len(aws.invocations) - before == 1


def test_retries_stop_when_the_bound_leaves_no_time(example: Path, aws: StandIn, cache: Path) -> None:
    from hostile import config_with

    config = config_with(aws.config_path, defaults={"max_attempts": "1"})  # iotinvoke answers 75 at once
    aws.fault("lambda", "throttle", count=50)
    warm_up = run_c(example, "-r", "0", "dev", cache=cache, config=config, stdin=b"{}")  # fills the cache
    assert warm_up.code == 75, warm_up.stderr
    started = time.monotonic()
    result = run_c(example, "-t", "2", "-r", "5", "dev", cache=cache, config=config, stdin=b"{}")
    elapsed = time.monotonic() - started
    assert result.code == 75 and "leaves no time to retry" in result.stderr, result.stderr
    assert elapsed < 2 + 8, elapsed
