"""Running iotinvoke exactly as a C program does: a subprocess, payload in argv or on stdin.

Every output of every run is kept in OUTPUTS, so that a session-wide check can look for the
secrets the stand-in issued (no secret may reach stdout or stderr, at any verbosity).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "iotinvoke.py"
# The interpreter that runs iotinvoke: scripts/test sets IOTINVOKE_TEST_PYTHON to a Python 3.9
# environment for one run; the tests themselves keep running on sys.executable. Made absolute
# (symbolic links kept: a virtual environment's python finds its packages by its own path), as
# some tests run it from another folder.
PYTHON = os.path.abspath(os.environ.get("IOTINVOKE_TEST_PYTHON") or sys.executable)
OUTPUTS: list[bytes] = []
# What the stand-in's function ADCCrossAccountTest (environment dev) answers: the seed article's
# function, byte for byte as Lambda returns a Python handler's dict.
SEED_ANSWER = b'{"statusCode": 200, "body": "\\"Hello from Lambda cross account test!\\""}'


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def environment(cache: Path | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without AWS_* and IOTINVOKE_* (this machine sets AWS_CA_BUNDLE,
    which would override the stand-in's ca_bundle), plus the cache folder and env."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTINVOKE_"))}
    if cache is not None:
        environ["IOTINVOKE_CACHE_DIR"] = str(cache)
    environ.update(env or {})
    return environ


def run(
    *args: str | Path,
    config: Path | None = None,
    cache: Path | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    wrapper: list[str] | None = None,
) -> Run:
    """Run iotinvoke.py with args; wrapper (e.g. faketime and its options) goes in front."""
    environ = environment(cache, env)
    argv = (wrapper or []) + [PYTHON, str(SCRIPT)]
    if config is not None:
        argv += ["--config", str(config)]
    argv += [str(a) for a in args]
    done = subprocess.run(
        argv, input=stdin if stdin is not None else b"", capture_output=True, env=environ, timeout=timeout
    )
    OUTPUTS.append(done.stdout)
    OUTPUTS.append(done.stderr)
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L", "-O2"]


def compile_example(folder: Path) -> Path:
    """scripts/example.c compiled into folder with CFLAGS (a warning fails); skips without gcc."""
    import shutil

    import pytest

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile scripts/example.c")
    binary = folder / "example"
    done = subprocess.run([gcc, *CFLAGS, "-o", str(binary), str(ROOT / "scripts" / "example.c")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", f"gcc {' '.join(CFLAGS)}:\n{done.stderr}"
    return binary
