"""The agent, ``iotinvoke --serve``: one warm process serving C callers over a Unix socket.

Each test starts the agent as a real process (``python iotinvoke.py --serve``) against this
module's own stand-in and talks to it the way scripts/example.c does, with the wire protocol
described in iotinvoke.py ("The agent (--serve)"): here a small Python client, ``ask``, and
the C caller itself (``example -a SOCKET``). What goes through the agent must come back exactly
as the CLI gives it: the same stdout bytes, exit status and stderr line.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from cli import OUTPUTS, PYTHON, ROOT, SCRIPT, SEED_ANSWER, Run, compile_example
from standin import StandIn

FN = "arn:aws:lambda:ap-northeast-1:111111111111:function"
TOOLS_ROLE = "arn:aws:iam::111111111111:role/iotinvoke-tools"
pytestmark = pytest.mark.own_standin(config=(
    f"\n[fail]\nfunction = {FN}:iotinvoke-tools-fail\nrole_arn = {TOOLS_ROLE}\n"
    f"\n[sleep]\nfunction = {FN}:iotinvoke-tools-sleep\nrole_arn = {TOOLS_ROLE}\n"))
MAGIC = b"IIA1"
REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # differs per call


def same(run: Run) -> tuple[int, bytes, str]:
    """A run with AWS's request ids (in error lines and error payloads) blanked."""
    return run.code, REQUEST_ID.sub("X", run.stdout.decode("latin-1")).encode("latin-1"), REQUEST_ID.sub("X", run.stderr)


# --- a client of the wire protocol, and the agent as a process ----------------------------------

def encode(argv: list[str], stdin: bytes = b"") -> bytes:
    fields = [struct.pack(">I", len(a.encode())) + a.encode() for a in argv]
    return MAGIC + struct.pack(">I", len(argv)) + b"".join(fields) + struct.pack(">I", len(stdin)) + stdin


def read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        assert chunk, f"the answer ended after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def read_answer(sock: socket.socket) -> Run:
    """One framed answer, read by its lengths, as example.c reads it: a refusing agent closes
    without reading our request, and Linux then reports ECONNRESET after the answer's bytes."""
    head = read_exact(sock, 12)
    assert head[:4] == MAGIC, f"not an agent answer: {head!r}"
    status, out_len = struct.unpack(">II", head[4:])
    out = read_exact(sock, out_len)
    (err_len,) = struct.unpack(">I", read_exact(sock, 4))
    err = read_exact(sock, err_len)
    OUTPUTS.extend((out, err))
    return Run(status, out, err.decode("utf-8", "replace"))


def ask(path: Path, *argv: str, stdin: bytes = b"", timeout: float = 60) -> Run:
    """One request, as example.c -a sends it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))  # blocking, as example.c's: a full backlog makes it wait, not fail
        sock.settimeout(timeout)
        try:
            sock.sendall(encode(list(argv), stdin))
        except BrokenPipeError:
            pass  # the agent refused us: its answer waits to be read
        return read_answer(sock)


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], path: Path, log: Path) -> None:
        self.proc, self.path, self.logfile = proc, path, log

    @property
    def log(self) -> str:
        return self.logfile.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))


def start_agent(config: Path, folder: Path, cache: Path, *extra: str, wrapper: list[str] | None = None,
                pass_fds: tuple[int, ...] = (), socket_path: Path | None = None) -> Agent:
    path = socket_path or folder / "run" / "agent.sock"
    log = folder / "agent.log"
    argv = [*(wrapper or []), PYTHON, str(SCRIPT), "--config", str(config), "--serve", "-v"]
    if socket_path is None and not pass_fds:
        argv += ["--socket", str(path)]
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv + list(extra), stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                env=cli.environment(cache), pass_fds=pass_fds)
    agent = Agent(proc, path, log)
    STARTED.append(proc)
    wait_for(lambda: proc.poll() is not None or connectable(path) and "serving" in agent.log, what="the agent")
    assert proc.poll() is None, f"the agent exited {proc.returncode}: {agent.log}"
    return agent


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_agent_left_behind() -> Iterator[None]:
    """An agent a failed test did not stop is killed, so it cannot outlive the session."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def agent(aws: StandIn, tmp_path: Path, cache: Path) -> Iterator[Agent]:
    started = start_agent(aws.config_path, tmp_path, cache)
    yield started
    assert started.stop() == 0, started.log
    OUTPUTS.append(started.logfile.read_bytes())
    assert not started.path.exists(), "the agent left its socket file behind"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # World-readable, so that a caller of another uid (nobody) can run it too.
    folder = Path(tempfile.mkdtemp(prefix="iotinvoke-agent-c-"))
    folder.chmod(0o755)
    yield compile_example(folder)
    shutil.rmtree(folder, ignore_errors=True)


def run_c(example: Path, *args: str, cache: Path, stdin: bytes = b"", user: str | None = None,
          wrapper: tuple[str, ...] = ()) -> Run:
    argv = [*wrapper, str(example), "-p", PYTHON, "-s", str(SCRIPT), *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup" if user == "nobody" else f"--regid={user}", "--clear-groups", *argv]
    done = subprocess.run(argv, input=stdin, capture_output=True, env=cli.environment(cache), timeout=120,
                          cwd="/")
    OUTPUTS.extend((done.stdout, done.stderr))
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def config_with(aws: StandIn, name: str, defaults: str) -> Path:
    """The stand-in's config with lines added to [DEFAULT], beside it (relative paths hold)."""
    text = aws.config_path.read_text().replace("[DEFAULT]\n", "[DEFAULT]\n" + defaults, 1)
    path = aws.workdir / name
    path.write_text(text)
    return path


def events(aws: StandIn, key: str) -> list[Any]:
    return [i["event"][key] for i in aws.invocations if isinstance(i["event"], dict) and key in i["event"]]


# --- the same answer as the CLI --------------------------------------------------------------------

CASES = {
    "seed": (["dev", '{"test":"test1"}'], b""),
    "stdin": (["stg"], b'{"from": "stdin", "n": [1, 2, 3]}'),
    "dash": (["stg", "-"], b'{"dash": true}'),
    "function-error": (["fail", "{}"], b""),
    "not-json": (["dev", "{nope"], b""),
    "unknown-env": (["nowhere", "{}"], b""),
    "usage": (["--event", "--dry-run", "dev", "{}"], b""),
    "dry-run": (["--dry-run", "dev", "{}"], b""),
    "event": (["--event", "stg", '{"async": 1}'], b""),
    "permission": (["noinvoke", "{}"], b""),
    "not-found": (["missing", "{}"], b""),
    "direct": (["direct", '{"one": "hop"}'], b""),
    "log-tail-direct": (["--log-tail", "direct", "{}"], b""),
    "version": (["--version"], b""),
    "too-big": (["stg", "-"], b'"' + b"x" * 6_291_460 + b'"'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_agent_answers_exactly_as_the_cli(agent: Agent, aws: StandIn, cache: Path, case: str) -> None:
    argv, stdin = CASES[case]
    expected = cli.run(*argv, config=aws.config_path, cache=cache, stdin=stdin)
    got = ask(agent.path, "--config", str(aws.config_path), *argv, stdin=stdin)
    assert same(got) == same(expected)
    assert got.stderr == "" if got.code == 0 else got.stderr.startswith("iotinvoke: ")
    # Without --config the agent's own configuration is used: the same answer again.
    assert same(ask(agent.path, *argv, stdin=stdin)) == same(expected)


def test_a_warm_agent_invokes_with_one_request_per_call(agent: Agent, aws: StandIn) -> None:
    assert ask(agent.path, "stg", "{}").code == 0
    aws.reset_counts()
    for n in range(5):
        assert ask(agent.path, "stg", json.dumps({"n": n})).code == 0
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (0, 0, 5)


def test_options_that_make_no_sense_through_the_agent_are_refused(agent: Agent, aws: StandIn, tmp_path: Path) -> None:
    aws.reset_counts()
    other = tmp_path / "other.ini"
    other.write_text(aws.config_path.read_text())
    payload_file = tmp_path / "p.json"
    payload_file.write_text("{}")
    for argv in (["--stream", "dev"], ["--serve"], ["--socket", "/tmp/x", "dev", "{}"],
                 ["--container-credentials", "1", "dev", "{}"], ["--config", str(other), "dev", "{}"],
                 ["--config", "iotinvoke.ini", "dev", "{}"], ["dev", "@" + str(payload_file)]):
        got = ask(agent.path, *argv)
        assert got.code == 64 and got.stdout == b"", argv
        assert got.lines[-1].startswith("iotinvoke: agent: ") and got.lines[-1].endswith("[agent-option-refused]")
    assert aws.count("iot") + aws.count("sts") + aws.count("lambda") == 0


def test_a_permanent_refusal_of_hop_2_is_cached_briefly_and_said(agent: Agent, aws: StandIn) -> None:
    first = ask(agent.path, "untrusted", "{}")
    assert first.code == 77 and "iotinvoke: sts: " in first.stderr and "cached refusal" not in first.stderr
    sts = aws.count("sts")
    second = ask(agent.path, "untrusted", "{}")
    assert second.code == 77 and "cached refusal" in second.stderr
    assert second.stderr.split("[")[-1] == first.stderr.split("[")[-1]  # the same reason
    assert aws.count("sts") == sts, "a cached refusal asked AWS again"
    # --clear-cache forgets it: AWS is asked again.
    assert ask(agent.path, "--clear-cache").code == 0
    third = ask(agent.path, "untrusted", "{}")
    assert third.code == 77 and "cached refusal" not in third.stderr and aws.count("sts") > sts


# --- the C caller: -a SOCKET, and its fallback ---------------------------------------------------

def test_c_caller_through_the_agent(example: Path, agent: Agent, aws: StandIn, cache: Path) -> None:
    plain = run_c(example, "-c", str(aws.config_path), "dev", '{"test":"test1"}', cache=cache)
    served = agent.log.count(": exit ")
    got = run_c(example, "-a", str(agent.path), "-c", str(aws.config_path), "dev", '{"test":"test1"}', cache=cache)
    assert (got.code, got.stdout, got.stderr) == (plain.code, plain.stdout, plain.stderr) == (
        0, SEED_ANSWER, "example: dev: ok, %d bytes (attempt 1)\n" % len(SEED_ANSWER))
    # The agent logs a request after answering it.
    wait_for(lambda: agent.log.count(": exit ") == served + 1, 10, "the agent's line: did the call go through it?")
    fail = run_c(example, "-a", str(agent.path), "-c", str(aws.config_path), "fail", "{}", cache=cache)
    assert fail.code == 1 and b"errorMessage" in fail.stdout and "iotinvoke: lambda: " in fail.stderr
    big = json.dumps({"blob": "y" * 1_000_000}).encode()
    echoed = run_c(example, "-a", str(agent.path), "-c", str(aws.config_path), "stg", cache=cache, stdin=big)
    assert echoed.code == 0 and json.loads(echoed.stdout)["event"] == json.loads(big)


def test_c_caller_falls_back_when_nothing_listens(example: Path, aws: StandIn, cache: Path, tmp_path: Path) -> None:
    plain = run_c(example, "-c", str(aws.config_path), "dev", '{"test":"test1"}', cache=cache)
    missing = run_c(example, "-a", str(tmp_path / "no.sock"), "-c", str(aws.config_path), "dev", '{"test":"test1"}',
                    cache=cache)
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:  # bound, never listening: ECONNREFUSED
        bound.bind(str(stale))
        refused = run_c(example, "-a", str(stale), "-c", str(aws.config_path), "dev", '{"test":"test1"}', cache=cache)
    failing = run_c(example, "-a", str(tmp_path / "no.sock"), "-c", str(aws.config_path), "nowhere", "{}", cache=cache)
    expected = run_c(example, "-c", str(aws.config_path), "nowhere", "{}", cache=cache)
    assert (missing.code, missing.stdout, missing.stderr) == (plain.code, plain.stdout, plain.stderr)
    assert (refused.code, refused.stdout, refused.stderr) == (plain.code, plain.stdout, plain.stderr)
    assert (failing.code, failing.stdout, failing.stderr) == (expected.code, expected.stdout, expected.stderr)
    assert plain.code == 0 and expected.code == 64


def test_c_caller_answer_lost_is_74_and_the_function_ran_once(example: Path, agent: Agent, aws: StandIn,
                                                              cache: Path) -> None:
    aws.fault("lambda", "drop_after")
    got = run_c(example, "-a", str(agent.path), "-c", str(aws.config_path), "stg", '{"once_c": 1}', cache=cache)
    assert got.code == 74 and "may have run" in got.stderr
    time.sleep(0.3)
    assert events(aws, "once_c") == [1]


def test_c_caller_through_the_agent_is_clean_under_valgrind(example: Path, agent: Agent, aws: StandIn,
                                                            cache: Path) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed: cannot check example.c's agent client for memory errors and leaks")
    wrapper = (valgrind, "-q", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=all",
               "--errors-for-leak-kinds=all")
    big = json.dumps("v" * 1_000_000).encode()
    got = run_c(example, "-a", str(agent.path), "-c", str(aws.config_path), "stg", cache=cache, stdin=big,
                wrapper=wrapper)
    assert got.code == 0 and json.loads(got.stdout)["event"] == json.loads(big), got.stderr
    refused = run_c(example, "-a", str(agent.path), "-c", "/etc/passwd", "dev", "{}", cache=cache, wrapper=wrapper)
    assert refused.code == 64, refused.stderr
    for result in (got, refused):
        assert "==" not in result.stderr, f"valgrind reported:\n{result.stderr}"


# --- at most once --------------------------------------------------------------------------------

def test_an_answer_lost_at_lambda_is_74_and_never_sent_again(agent: Agent, aws: StandIn) -> None:
    ask(agent.path, "stg", "{}")  # warm
    aws.fault("lambda", "drop_after")
    got = ask(agent.path, "stg", '{"once": 1}')
    assert got.code == 74 and got.stderr.startswith("iotinvoke: lambda: ")
    assert events(aws, "once") == [1]


def test_a_caller_that_hangs_up_does_not_get_its_call_run_twice(agent: Agent, aws: StandIn) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(agent.path))
        sock.sendall(encode(["sleep", '{"seconds": 0.5, "hangup": 1}']))
    # ... and a caller that hangs up half-way through its request: nothing runs.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(agent.path))
        sock.sendall(encode(["sleep", '{"seconds": 0, "hangup": 2}'])[:-3])
    wait_for(lambda: agent.log.count("exit 0") >= 1, what="the abandoned call to end")
    time.sleep(0.3)
    assert events(aws, "hangup") == [1]
    assert "hung up before its request was whole" in agent.log
    assert ask(agent.path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER


def test_sigterm_lets_the_invoke_in_flight_finish_then_exits_0(aws: StandIn, tmp_path: Path, cache: Path) -> None:
    agent = start_agent(aws.config_path, tmp_path, cache)
    results: list[Run] = []
    slow = threading.Thread(target=lambda: results.append(ask(agent.path, "sleep", '{"seconds": 1.5, "term": 1}')))
    slow.start()
    wait_for(lambda: events(aws, "term") == [1], what="the slow invoke to start")
    agent.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # A caller arriving now: told 75 (nothing ran), or finds no socket (and would run iotinvoke itself).
    try:
        late = ask(agent.path, "stg", '{"late": 1}')
        assert late.code == 75 and late.lines[-1].endswith("[agent-stopping; retry after 1 s]")
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    assert agent.proc.wait(30) == 0, agent.log
    slow.join(5)
    assert results and results[0].code == 0 and json.loads(results[0].stdout) == {"slept": 1.5}
    assert events(aws, "term") == [1] and events(aws, "late") == []
    assert not agent.path.exists()


def test_socket_activation_takes_descriptor_3_and_exits_when_idle(aws: StandIn, tmp_path: Path, cache: Path) -> None:
    config = config_with(aws, "agent-idle.ini", "agent_idle_exit = 1\n")
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    # systemd's side: the socket as descriptor 3, LISTEN_FDS=1 and LISTEN_PID = the service's pid,
    # which exec keeps.
    wrapper = [PYTHON, "-c", "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1'; "
               "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])",
               str(listener.fileno())]
    agent = start_agent(config, tmp_path, cache, wrapper=wrapper, pass_fds=(listener.fileno(),), socket_path=path)
    try:
        assert "(socket-activated)" in agent.log
        assert ask(path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER
        assert agent.proc.wait(15) == 0, agent.log  # idle for 1 s: gone
        assert "no caller for" in agent.log
        assert path.exists(), "the socket file is systemd's: the agent must leave it"
        # A caller now waits in the backlog that systemd keeps, for the next start.
        again = start_agent(config, tmp_path, cache, wrapper=wrapper, pass_fds=(listener.fileno(),), socket_path=path)
        assert ask(path, "stg", '{"second": 1}').code == 0
        assert again.proc.wait(15) == 0
    finally:
        listener.close()
        if agent.proc.poll() is None:
            agent.stop()


def test_socket_activation_ignores_descriptors_meant_for_another_pid(aws: StandIn, tmp_path: Path,
                                                                     cache: Path) -> None:
    # Run briefly and stop: it bound its own socket, since LISTEN_PID was not its pid.
    proc = subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "--serve", "--socket",
                             str(tmp_path / "s" / "a.sock")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli.environment(cache, {"LISTEN_FDS": "1", "LISTEN_PID": "1"}))
    wait_for(lambda: connectable(tmp_path / "s" / "a.sock"), what="the agent's own socket")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"socket-activated" not in err


# --- who may call, and the socket's place --------------------------------------------------------

def test_socket_and_folder_modes(agent: Agent) -> None:
    assert stat.S_IMODE(agent.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.path.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(agent.path.lstat().st_mode)


def test_a_second_agent_on_the_same_socket_is_refused(agent: Agent, aws: StandIn, cache: Path) -> None:
    done = subprocess.run([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "--serve", "--socket",
                           str(agent.path)], capture_output=True, env=cli.environment(cache), timeout=30)
    assert done.returncode == 69 and done.stderr.decode().endswith("[agent-running]\n")
    assert ask(agent.path, "dev", '{"test":"test1"}').code == 0  # the first one still serves


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a caller as another user (nobody)")
def test_a_caller_of_another_uid_is_refused_77_unless_allowed(example: Path, aws: StandIn, tmp_path: Path,
                                                               cache: Path) -> None:
    # Folder and socket opened up on purpose, as a mistaken set-up would: SO_PEERCRED still refuses.
    folder = Path(tempfile.mkdtemp(prefix="iotinvoke-agent-"))
    try:
        proc_log = tmp_path / "refusing.log"
        started: list[subprocess.Popen[bytes]] = []
        configs = (aws.config_path, config_with(aws, "agent-nobody.ini", "agent_users = nobody\n"))
        for config in configs:
            path = folder / ("agent-%d.sock" % len(started))
            with open(proc_log, "ab") as f:
                proc = subprocess.Popen([PYTHON, str(SCRIPT), "--config", str(config), "--serve", "--socket",
                                         str(path)], stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                        env=cli.environment(cache))
            started.append(proc)
            wait_for(lambda: connectable(path), what="the agent")
            folder.chmod(0o711)
            path.chmod(0o666)
        before = len(aws.invocations)
        refused = run_c(example, "-a", str(folder / "agent-0.sock"), "-c", str(aws.config_path), "dev", "{}",
                        cache=tmp_path / "nobody-cache", user="nobody")
        assert refused.code == 77, refused.stderr
        assert "[agent-peer-refused]" in refused.stderr and "uid 65534" in refused.stderr
        assert len(aws.invocations) == before, "a refused caller's call ran"
        allowed = run_c(example, "-a", str(folder / "agent-1.sock"), "-c", str(configs[1]), "dev",
                        '{"test":"test1"}', cache=tmp_path / "nobody-cache", user="nobody")
        assert (allowed.code, allowed.stdout) == (0, SEED_ANSWER), allowed.stderr
        # Invoking, yes; the role's credentials, no: those go to the agent's own user only.
        secrets = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                                  "import socket, struct, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                                  "a = [b'--credential-process', b'dev']; "
                                  "s.sendall(b'IIA1' + struct.pack('>I', 2) + b''.join(struct.pack('>I', len(x)) + x "
                                  "for x in a) + struct.pack('>I', 0)); sys.stdout.buffer.write(s.makefile('rb').read())",
                                  str(folder / "agent-1.sock")], capture_output=True, timeout=60, cwd="/")
        assert secrets.returncode == 0, secrets.stderr
        answer = secrets.stdout
        status, out_len = struct.unpack(">II", answer[4:12])
        OUTPUTS.append(answer)
        assert (status, out_len) == (77, 0) and b"[agent-option-refused]" in answer
        for proc in started:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        for proc in started:  # a failed assertion above must not leave agents behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


# --- callers at once, and hostile ones -----------------------------------------------------------

def test_a_hundred_callers_at_once_are_each_answered_once(agent: Agent, aws: StandIn) -> None:
    ask(agent.path, "stg", "{}")  # warm: credentials cached
    results: dict[int, Run] = {}
    busy = []
    go = threading.Event()

    def caller(n: int) -> None:
        go.wait()
        while True:
            got = ask(agent.path, "stg", json.dumps({"caller": n}))
            if got.code == 75 and "[agent-busy" in got.stderr:
                busy.append(n)  # nothing ran: example.c waits the hinted time and asks again
                time.sleep(0.05)
                continue
            results[n] = got
            return

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(100)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller is stuck"
    assert sorted(results) == list(range(100))
    for n, got in results.items():
        assert got.code == 0 and json.loads(got.stdout)["event"] == {"caller": n}
    assert sorted(events(aws, "caller")) == list(range(100)), "a call ran twice, or not at all"


def test_hostile_callers_do_not_harm_the_others(agent: Agent, aws: StandIn) -> None:
    def raw(data: bytes) -> Run:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(agent.path))
            try:
                sock.sendall(data)
            except BrokenPipeError:
                pass
            return read_answer(sock)

    garbage = raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert garbage.code == 64 and garbage.lines == [
        "iotinvoke: agent: not an iotinvoke agent request (protocol IIA1 expected) [agent-bad-request]"]
    huge = raw(MAGIC + struct.pack(">II", 1, 0x7FFFFFFF))
    assert huge.code == 64 and huge.lines[-1].endswith("[agent-bad-request]")
    many = raw(MAGIC + struct.pack(">I", 100000))
    assert many.code == 64
    huge_stdin = raw(MAGIC + struct.pack(">II", 0, 0xFFFFFFFF))
    assert huge_stdin.code == 65

    too_many_bytes = raw(MAGIC + struct.pack(">I", 3) + b"".join(struct.pack(">I", 100_000) + b"a" * 100_000
                                                              for _ in range(3)))
    assert too_many_bytes.code == 64 and too_many_bytes.lines[-1].endswith("[agent-bad-request]")

    # Callers that announce full-size payloads and send them slowly hold at most 64 MiB of the agent's
    # memory: the eleventh is told agent-busy at once; a small request still goes through.
    holding = []
    for _ in range(10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(agent.path))
        s.sendall(MAGIC + struct.pack(">II", 0, 6_300_000))
        holding.append(s)
    time.sleep(0.3)
    over = raw(MAGIC + struct.pack(">II", 0, 6_300_000))
    assert over.code == 75 and over.lines[-1].endswith("[agent-busy; retry after 1 s]")
    assert ask(agent.path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER
    for s in holding:
        s.close()

    # A request that never finishes holds its own connection only; the agent answers it 75 in the end.
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(str(agent.path))
    stuck.sendall(MAGIC + struct.pack(">I", 2))
    started = time.monotonic()
    assert ask(agent.path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER

    # 2,000 connections, 500 open at a time, that send nothing and hang up.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    try:
        for _ in range(4):
            batch = []
            for _ in range(500):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(agent.path))
                batch.append(s)
            for s in batch:
                s.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # At most AGENT_MAX_CONNECTIONS (128) connection threads, kept a minute for the next callers.
    assert agent.threads() <= 128 + 4
    assert ask(agent.path, "stg", '{"after": "storm"}').code == 0

    stuck.settimeout(30)
    timed_out = read_answer(stuck)
    stuck.close()
    assert timed_out.code == 75 and timed_out.lines[-1].endswith("[agent-request-timeout]")
    assert time.monotonic() - started >= 9  # it was given its AGENT_REQUEST_TIMEOUT_S
    assert agent.proc.poll() is None


def test_the_caller_beyond_the_bound_is_told_busy_at_once(agent: Agent, aws: StandIn) -> None:
    """128 callers that connect and say nothing hold every connection the agent serves (its workers
    wait up to 10 s for their requests); the next caller is answered 75 [agent-busy] at once by the
    one spare worker, and nothing runs; once they hang up, a call goes through."""
    assert ask(agent.path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER  # the watchdog thread is up
    aws.reset_counts()
    holding = []
    try:
        for _ in range(128):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(agent.path))
            holding.append(sock)
        # The main thread, the watchdog, 128 workers reading and one waiting.
        wait_for(lambda: agent.threads() >= 131, what="a worker for each silent caller, and a spare")
        started = time.monotonic()
        over = ask(agent.path, "dev", '{"test":"test1"}', timeout=30)
        assert over.code == 75 and over.lines[-1].endswith("[agent-busy; retry after 1 s]"), over
        assert time.monotonic() - started < 5
        assert agent.threads() <= 128 + 4
    finally:
        for sock in holding:
            sock.close()
    assert aws.count("lambda") == 0  # the refused caller sent nothing
    assert ask(agent.path, "dev", '{"test":"test1"}').stdout == SEED_ANSWER


# --- connections kept alive ----------------------------------------------------------------------

def count_accepts(aws: StandIn, hop: str) -> tuple[list[int], Any]:
    """Count the TLS connections the stand-in accepts on hop (each is one handshake)."""
    server = aws._servers[hop]  # noqa: SLF001 - the test counts what the stand-in does not
    accepted = [0]
    original = server.get_request

    def counting() -> Any:
        accepted[0] += 1
        return original()

    server.get_request = counting  # type: ignore[method-assign]
    return accepted, lambda: setattr(server, "get_request", original)


def test_the_agent_keeps_its_https_connection_between_calls(agent: Agent, aws: StandIn) -> None:
    ask(agent.path, "stg", "{}")
    accepted, restore = count_accepts(aws, "lambda")
    try:
        for n in range(10):
            assert ask(agent.path, "stg", json.dumps({"k": n})).code == 0
    finally:
        restore()
    assert accepted[0] <= 1, f"{accepted[0]} TLS handshakes for 10 calls"


def test_stream_reuses_its_connection_across_lines(aws: StandIn, cache: Path) -> None:
    cli.run("stg", "{}", config=aws.config_path, cache=cache)
    accepted, restore = count_accepts(aws, "lambda")
    try:
        lines = b"".join(json.dumps({"line": n}).encode() + b"\n" for n in range(10))
        got = cli.run("--stream", "stg", config=aws.config_path, cache=cache, stdin=lines)
    finally:
        restore()
    assert got.code == 0 and len(got.stdout.splitlines()) == 10
    assert accepted[0] == 1, f"{accepted[0]} TLS handshakes for 10 lines"


# --- the container credentials endpoint ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_container_endpoint_serves_botocore_and_requires_the_token(aws: StandIn, tmp_path: Path, cache: Path) -> None:
    import urllib.error
    import urllib.request

    from botocore.credentials import ContainerProvider

    port = free_port()
    agent = start_agent(aws.config_path, tmp_path, cache, "--container-credentials", str(port))
    try:
        token_file = agent.path.parent / "container-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text()
        assert len(token) >= 32 and token not in agent.log
        environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{port}/dev"}
        if "ENV_VAR_AUTH_TOKEN_FILE" in vars(ContainerProvider):
            environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file)
        else:  # botocore before 1.33 (Debian 12's 1.29) reads the token from the variable only
            environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
        creds = ContainerProvider(environ=environ).load()
        assert creds is not None
        frozen = creds.get_frozen_credentials()
        issued = set(aws.issued_secrets())
        assert frozen.access_key.startswith("ASIA") and frozen.secret_key in issued and frozen.token in issued
        # The same credentials the CLI would sign hop 3 with (the shared cache).
        done = subprocess.run([PYTHON, str(SCRIPT), "--config", str(aws.config_path), "--credential-process", "dev"],
                              capture_output=True, env=cli.environment(cache), timeout=60)
        assert json.loads(done.stdout)["AccessKeyId"] == frozen.access_key

        def status(headers: dict[str, str], path: str = "/dev") -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as e:
                return int(e.code)

        assert status({}) == 401
        assert status({"Authorization": "wrong"}) == 403
        assert status({"Authorization": token[:-1]}) == 403
        assert status({"Authorization": token}, "/nowhere") == 404
        assert status({"Authorization": token}) == 200
    finally:
        assert agent.stop() == 0
    assert not (agent.path.parent / "container-token").exists()


# --- memory --------------------------------------------------------------------------------------

def test_agent_rss_stays_flat(agent: Agent, aws: StandIn) -> None:
    """Over 3,000 calls after a warm-up of 300, RSS grows at most 2 MiB (scripts/bench runs 10,000)."""
    for _ in range(300):
        ask(agent.path, "stg", "{}")
    before = agent.rss_kib()
    for n in range(3000):
        assert ask(agent.path, "stg", '{"m": 1}').code == 0
    grown = agent.rss_kib() - before
    assert grown <= 2048, f"RSS grew {grown} KiB over 3,000 calls"


# --- the systemd units ---------------------------------------------------------------------------

def test_units_verify_and_agree(tmp_path: Path) -> None:
    socket_unit = (ROOT / "scripts" / "iotinvoke.socket").read_text()
    service_unit = (ROOT / "scripts" / "iotinvoke.service").read_text()
    assert "ListenStream=/run/iotinvoke/agent.sock" in socket_unit and "SocketMode=0660" in socket_unit
    exec_start = [line for line in service_unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == ["ExecStart=/usr/bin/python3 -m iotinvoke --config /etc/iotinvoke/iotinvoke.ini --serve"]
    # The folder the socket lives in must outlive an idle exit: else systemd removes the socket.
    assert "RuntimeDirectoryPreserve=yes" in service_unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units' syntax is not checked")
    for name in ("iotinvoke.socket", "iotinvoke.service"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / name)
    done = subprocess.run([analyze, "verify", str(tmp_path / "iotinvoke.socket"), str(tmp_path / "iotinvoke.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_container_endpoint_serves_the_aws_cli(aws: StandIn, tmp_path: Path, cache: Path) -> None:
    """The AWS CLI resolves its credentials from the agent (`aws configure list` shows the source);
    set IOTINVOKE_TEST_AWS to an `aws` executable (e.g. pip install awscli in a scratch venv)."""
    executable = os.environ.get("IOTINVOKE_TEST_AWS") or shutil.which("aws")
    if not executable:
        pytest.skip("no AWS CLI: set IOTINVOKE_TEST_AWS to one (pip install awscli in a scratch venv)")
    port = free_port()
    agent = start_agent(aws.config_path, tmp_path, cache, "--container-credentials", str(port))
    try:
        token_file = agent.path.parent / "container-token"
        base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_DEFAULT_REGION": "ap-northeast-1",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{port}/dev"}
        good = subprocess.run([executable, "configure", "list"], capture_output=True, text=True, timeout=60,
                              env=dict(base, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file)))
        bad = subprocess.run([executable, "configure", "list"], capture_output=True, text=True, timeout=60,
                             env=dict(base, AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong"))
    finally:
        assert agent.stop() == 0
    OUTPUTS.extend((good.stdout.encode(), bad.stdout.encode()))
    access = [line.split() for line in good.stdout.splitlines() if line.strip().startswith("access_key")]
    assert access and access[0][2] == "container-role", good.stdout + good.stderr
    assert "container-role" not in bad.stdout
