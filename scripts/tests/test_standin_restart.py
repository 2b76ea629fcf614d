"""scripts/standin.py started twice in one folder (the second start reuses the PKI), and the modes
and owner of the files it writes.

Not marked ``tooling``: scripts/test runs these with Debian 12's versions too, whose
requirements pin Debian 12's own cryptography (38.0.4, python3-cryptography), on which the
second start once crashed (cryptography 42's ``not_valid_after_utc``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from standin import StandIn, pki

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

REPO = Path(__file__).resolve().parents[2]


def _serve_once(folder: Path) -> None:
    """Start the command in folder, wait for it to be ready, stop it; fail with its stderr."""
    process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "standin.py"), "--dir", str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (folder / "ready").exists():
            if process.poll() is not None:
                pytest.fail(f"scripts/standin.py exited {process.returncode}: {process.communicate()[1]}")
            assert time.monotonic() < deadline, "scripts/standin.py was not ready within 30 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_command_starts_twice_in_the_same_folder(tmp_path: Path) -> None:
    _serve_once(tmp_path)
    first = {path.relative_to(tmp_path): path.read_bytes() for path in (tmp_path / "certs").iterdir()}
    first_ca = (tmp_path / "ca.pem").read_bytes()
    _serve_once(tmp_path)
    again = {path.relative_to(tmp_path): path.read_bytes() for path in (tmp_path / "certs").iterdir()}
    assert (tmp_path / "ca.pem").read_bytes() == first_ca, "the second start made a new CA: the PKI was not reused"
    assert again == first


@pytest.fixture(params=[0o077, 0o002], ids=["umask-077", "umask-002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_keys_are_0600_and_certificates_0644_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    files = pki.load_or_create(tmp_path)
    certificates = [files.ca_path, files.server_cert, tmp_path / "pki" / "foreign-ca.pem",
                    *(cert for cert, _ in files.device.values())]
    keys = [files.server_key, tmp_path / "pki" / "ca.key", tmp_path / "pki" / "foreign-ca.key",
            *(key for _, key in files.device.values())]
    for path in certificates:
        assert (path.name, path.stat().st_mode & 0o777) == (path.name, 0o644)
    for path in keys:
        assert (path.name, path.stat().st_mode & 0o777) == (path.name, 0o600)
    assert {path.stat().st_uid for path in certificates + keys} == {os.getuid()}
    assert not [path.name for path in tmp_path.rglob(".*.tmp")], "a temporary file was left behind"


def test_files_of_another_owner_or_mode_are_replaced(tmp_path: Path) -> None:
    """An older set (another mode, expired or not) is replaced by new files, not rewritten in place."""
    files = pki.load_or_create(tmp_path)
    key = files.device["device"][1]
    key.chmod(0o644)   # as if copied around loosely
    (tmp_path / "ca.pem").write_bytes(b"not a certificate")   # forces regeneration
    with StandIn(tmp_path):
        pass
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
