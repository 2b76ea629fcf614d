"""README's first part, run as written: the commands a first user types cannot drift from what works.

README's first part (everything before the heading "# Reference") marks each fenced ``sh`` block
with an HTML comment on the line before it: ``<!-- run: NAME -->`` names a step of STEPS below,
which runs that block's lines, or ``<!-- not run: WHY -->`` says why no test can. What is not run,
and why (the README says the same in each comment):

- ``scripts/test``: it runs this file itself, with every other test;
- ``scp`` / ``ssh`` to a board: there is no second machine here;
- ``aws iot create-role-alias``, ``aws lambda add-permission``, ``scripts/provision``: they need
  AWS accounts (scripts/tests/test_provision.py runs scripts/provision against moto);
- in the step ``copy-install``, the line ``sudo apt install python3-urllib3 python3-botocore``:
  the test's interpreter already has the libraries, and installing Debian's would change this
  machine outside the package test (tests/test_debian_package.py).

The steps run the blocks' own text, with as few substitutions as a machine without a board needs,
each said where it is made: ``sudo`` dropped (the test runs as root or not at all) and
``sudo -u iotinvoke`` as ``runuser -u iotinvoke --`` (util-linux; sudo is not installed everywhere);
``python3`` as the interpreter of the tests or of the demo; ``/usr/local/lib/iotinvoke`` and
``/etc/iotinvoke/iotinvoke.ini`` as temporary stand-ins of those places; the configuration the
README tells the user to fill in (``sudoedit``) written from the stand-in's.

scripts/demo and scripts/build-deb run once, in a fresh ``git clone`` of this repository (so
they run what is committed: commit before running this file). The demo installs its libraries
from PyPI into the clone's .venv-demo; the package steps need root with apt, dpkg and runuser,
install the package and purge it again, and are skipped, saying why, elsewhere.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import cli
from cli import PYTHON, SEED_ANSWER
from standin import StandIn

pytestmark = pytest.mark.tooling  # documentation, run once with current releases

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = "\n# Reference\n"
# What the iotinvoke user's processes get on a board: nothing of this machine's AWS_* (it sets
# AWS_CA_BUNDLE), IOTINVOKE_* or PYTHON* variables.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass
class Block:
    kind: str  # "run" or "not run"
    what: str  # the step's name, or why it is not run
    lines: list[str]  # the block's command lines, continuation lines joined, comments kept

    @property
    def name(self) -> str:
        return self.what.split()[0]


_MARKED = re.compile(r"(?m)^(?P<indent>[ \t]*)<!-- (?P<kind>run|not run): (?P<what>[^\n]*?) -->\n"
                     r"(?P=indent)```sh\n(?P<body>.*?)\n(?P=indent)```[ \t]*$", re.S)


def first_part() -> str:
    text = README.read_text(encoding="utf-8")
    assert REFERENCE in text, "README lost its heading '# Reference', where the first user's part ends"
    return text.split(REFERENCE, 1)[0]


def blocks() -> list[Block]:
    found = []
    for match in _MARKED.finditer(first_part()):
        indent = match.group("indent")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in match.group("body").splitlines())
        found.append(Block(match.group("kind"), match.group("what"), body.replace("\\\n", " ").splitlines()))
    return found


def block(name: str) -> Block:
    [found] = [b for b in blocks() if b.kind == "run" and b.name == name]
    return found


def sh(command: str, *, cwd: Path | str, env: dict[str, str], timeout: float = 300,
       stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, input=stdin, capture_output=True,
                          timeout=timeout)
    cli.OUTPUTS += [done.stdout, done.stderr]  # scanned for issued secrets at the session's end
    return done


def said(done: subprocess.CompletedProcess[bytes]) -> str:
    return (done.stdout + done.stderr).decode("utf-8", "replace")[-4000:]


# --- every block is marked, and every step has its block ------------------------------------------

def test_every_command_block_of_the_first_part_says_whether_it_is_run() -> None:
    part = first_part()
    fenced = len(re.findall(r"(?m)^[ \t]*```sh[ \t]*$", part))
    marked = blocks()
    assert fenced == len(marked), "a ```sh block before '# Reference' has no <!-- run: --> / <!-- not run: --> line"
    names = [b.name for b in marked if b.kind == "run"]
    assert sorted(names) == sorted(STEPS), "README's run: names and this file's steps differ"
    assert all(b.what.strip() for b in marked if b.kind == "not run"), "a not run: says no reason"
    # Commands shown indented (not fenced) in the first part would escape this test.
    indented = [line for line in part.splitlines() if re.match(r"^    (sudo|scripts/|python3|gcc|\./)", line)]
    assert indented == [], indented


# --- a fresh clone: scripts/demo, the stand-in by hand, scripts/build-deb -------------------------

@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and this repository's history (a git checkout) for a fresh clone")
    target = tmp_path_factory.mktemp("readme") / "iotinvoke"
    done = subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture(scope="module")
def demo(clone: Path) -> subprocess.CompletedProcess[bytes]:
    [line] = block("demo").lines
    # The machine's AWS_CA_BUNDLE is kept: the demo must set it aside itself, as it says.
    return sh(line, cwd=clone, env=dict(os.environ), timeout=900)


def test_demo_in_a_fresh_clone(demo: subprocess.CompletedProcess[bytes]) -> None:
    assert demo.returncode == 0, said(demo)
    out = demo.stdout.decode()
    # What README says it prints: the seed's answer, cold and warm, then the echo in one-hop mode.
    seed = re.search(r"the seed\s+article's answer, `([^`]+)`", first_part())
    assert seed and seed.group(1).encode() == SEED_ANSWER, "README no longer quotes the seed's answer"
    assert out.count(seed.group(1)) == 2, out
    echo = re.search(r"which answers with what it received:\s+`([^`]+)`", first_part())
    assert echo, "README no longer quotes the echo function's answer"
    assert re.search(".*?".join(map(re.escape, echo.group(1).split("..."))), out), (echo.group(1), out)
    assert out.count("(exit status 0)") == 3, out


def test_the_stand_in_by_hand_after_the_demo(clone: Path, demo: subprocess.CompletedProcess[bytes]) -> None:
    assert demo.returncode == 0, said(demo)
    start, call = block("by-hand").lines
    assert start.endswith(" &")
    # "python3 here needs the demo's libraries: .venv-demo/bin/python" (README).
    python = ".venv-demo/bin/python "
    start, call = start[:-2].replace("python3 ", python, 1), call.replace(" python3 ", " " + python, 1)
    assert python in start and python in call
    ready = clone / "demo-run" / "ready"
    ready.unlink(missing_ok=True)
    # A machine-wide AWS_CA_BUNDLE that would break the call: the line's "AWS_CA_BUNDLE=" must clear it.
    env = {**cli.environment(), "AWS_CA_BUNDLE": "/nonexistent/ca-bundle.pem"}
    standin = subprocess.Popen(["bash", "-c", "exec " + start], cwd=clone, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(300):
            if ready.exists() or standin.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), standin.stderr.read().decode() if standin.poll() is not None else "not ready in 30 s"
        done = sh(call, cwd=clone, env={**env, "IOTINVOKE_CACHE_DIR": str(clone / "demo-run" / "cache")})
        assert (done.returncode, done.stdout) == (0, SEED_ANSWER), said(done)
    finally:
        os.killpg(standin.pid, signal.SIGTERM)
        standin.wait(timeout=30)


@pytest.fixture(scope="module")
def deb(clone: Path) -> Path:
    [line] = block("build-deb").lines
    done = sh(line, cwd=clone, env=dict(os.environ), timeout=900)
    if done.returncode == 69:  # its documented status when the build tools are missing and not installable
        pytest.skip(done.stderr.decode().strip().splitlines()[-1])
    assert done.returncode == 0, said(done)
    made = re.search(r"# makes (\S+)", line)
    assert made, "README's build-deb line no longer says what it makes"
    path = Path(done.stdout.decode().strip().splitlines()[-1])
    assert path == clone / made.group(1), (path, "README says", made.group(1))  # README's version is current
    return path


def test_build_deb_prints_the_package_the_readme_installs(deb: Path) -> None:
    assert deb.is_file()
    copied = " ".join(block("board-install").lines) + " " + " ".join(
        b.lines[0] for b in blocks() if b.kind == "not run" and b.lines[0].startswith("scp "))
    assert copied.count(deb.name) == 2, (deb.name, copied)  # scp and apt-get name the file build-deb made


# --- on a board: the Debian package ---------------------------------------------------------------

def _board_skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: installs and purges the Debian package (runs in CI as root)"
    for tool in ("apt-get", "dpkg", "dpkg-query", "runuser"):
        if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None:
            return f"needs Debian's {tool} (apt, dpkg, util-linux)"
    if not Path("/usr/bin/python3").exists():
        return "needs Debian's /usr/bin/python3"
    status = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "iotinvoke"], capture_output=True, text=True)
    if status.stdout.startswith("ii"):
        return "the package iotinvoke is already installed here: this test would replace and purge it"
    return None


def as_root(line: str) -> str:
    """A README line typed with sudo, as the root this test runs as."""
    line = re.sub(r"\bsudo -u (\S+) ", r"runuser -u \1 -- ", line)
    return re.sub(r"(^|&& )sudo ", r"\1", line)


def test_install_on_a_board(deb: Path, aws: StandIn, tmp_path: Path) -> None:
    reason = _board_skip_reason()
    if reason:
        pytest.skip(reason)
    etc = Path("/etc/iotinvoke")
    env = {**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    [install] = block("board-install").lines
    # apt-get asks before installing dependencies; with no terminal it must be told yes.
    install = as_root(install).replace("apt-get install ", "apt-get install -y -q -o DPkg::Lock::Timeout=300 ", 1)
    added: list[Path] = []
    try:
        done = sh(install, cwd=deb.parent, env=env, timeout=900)
        assert done.returncode == 0, said(done)
        # The device's files, as the README's user has them in the folder they type in.
        source = aws.config_path.parent
        text = aws.config_path.read_text()
        device = dict(re.findall(r"(?m)^(cert|key)[ \t]*=[ \t]*(\S+)", text))
        steps = block("board-setup").lines
        [edit] = [line for line in steps if line.startswith("sudoedit ")]
        names = re.search(r"cert = ([^,\s]+), key = ([^,\s]+)", edit)
        assert names, "README's sudoedit line no longer names the cert and key files"
        shutil.copyfile(source / device["cert"], tmp_path / names.group(1))
        shutil.copyfile(source / device["key"], tmp_path / names.group(2))
        for line in steps:
            command = as_root(line.split("  #", 1)[0].strip() if line.startswith("sudoedit ") else line)
            if line.startswith("sudoedit "):
                # The user fills in the configuration; here, the stand-in's, with the file names the
                # README uses and its CA files beside them.
                def copy(match: re.Match[str]) -> str:
                    key, value = match.group(1), match.group(2).strip()
                    if key in ("cert", "key"):
                        return f"{key} = {names.group(1) if key == 'cert' else names.group(2)}"
                    target = etc / ("standin-" + Path(value).name)
                    shutil.copyfile(source / value, target)
                    target.chmod(0o644)
                    added.append(target)
                    return f"{key} = {target.name}"

                config = etc / "iotinvoke.ini"
                config.write_text(re.sub(r"(?m)^(cert|key|ca|ca_bundle)[ \t]*=(.*)$", copy, text))
                config.chmod(0o644)
                continue
            if command.startswith("install "):
                added.append(Path(shlex.split(command)[-1]))
            done = sh(command, cwd=tmp_path if command.startswith("install ") else "/", env=CLEAN_ENV, timeout=120)
            if "--doctor" in line:
                report = done.stdout.decode()
                assert done.returncode == 0, said(done)
                assert report and all(row.startswith("ok ") for row in report.splitlines()), report
                assert any(row.split()[:3] == ["ok", "cache", "/run/iotinvoke,"] for row in report.splitlines()), report
            elif "iotinvoke dev " in line:
                assert (done.returncode, done.stdout) == (0, SEED_ANSWER), said(done)
            else:
                assert done.returncode == 0, said(done)
        key = (etc / "private.pem.key").stat()
        assert (key.st_uid, oct(key.st_mode & 0o777)) == (0, "0o640")  # README's root:iotinvoke 0640
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", "iotinvoke"], env=env, capture_output=True, timeout=600)
        for path in added:
            path.unlink(missing_ok=True)
        if etc.exists() and not any(etc.iterdir()):
            etc.rmdir()


# --- without a package, and from C ----------------------------------------------------------------

def test_install_without_a_package(aws: StandIn, tmp_path: Path) -> None:
    apt, *lines = block("copy-install").lines
    assert apt.startswith("sudo apt install "), "the first line installs Debian's libraries (not run: see above)"
    folder = tmp_path / "lib"
    env = cli.environment(tmp_path / "cache", {"IOTINVOKE_CONFIG": str(aws.config_path)})
    for line in lines:
        assert "/usr/local/lib/iotinvoke" in line
        command = as_root(line).replace("/usr/local/lib/iotinvoke", str(folder)).replace("python3 ", PYTHON + " ")
        done = sh(command, cwd=ROOT, env=env)
        if "-m iotinvoke " in line:
            assert (done.returncode, done.stdout) == (0, SEED_ANSWER), said(done)
        else:
            assert (done.returncode, done.stderr) == (0, b""), said(done)
    assert list(folder.glob("__pycache__/iotinvoke.*.pyc")), "compileall made nothing"


def test_calling_it_from_c(aws: StandIn, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    build, call = block("c-caller").lines
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")  # the line names scripts/example.c, relative
    done = sh(build, cwd=tmp_path, env=cli.environment())
    assert (done.returncode, done.stderr) == (0, b""), said(done)  # no warning under -Wall -Wextra
    # The board's configuration is the stand-in's, and the module is this repository's, not
    # /usr/local/lib/iotinvoke: -p and -d say so.
    assert "/etc/iotinvoke/iotinvoke.ini" in call and "./example " in call
    call = call.replace("/etc/iotinvoke/iotinvoke.ini", str(aws.config_path)).replace(
        "./example ", f"./example -p {shlex.quote(PYTHON)} -d {shlex.quote(str(ROOT))} ", 1)
    done = sh(call, cwd=tmp_path, env=cli.environment(tmp_path / "cache"))
    assert (done.returncode, done.stdout) == (0, SEED_ANSWER), said(done)


STEPS: dict[str, Callable[..., None]] = {
    "demo": test_demo_in_a_fresh_clone,
    "by-hand": test_the_stand_in_by_hand_after_the_demo,
    "build-deb": test_build_deb_prints_the_package_the_readme_installs,
    "board-install": test_install_on_a_board,
    "board-setup": test_install_on_a_board,
    "copy-install": test_install_without_a_package,
    "c-caller": test_calling_it_from_c,
}
