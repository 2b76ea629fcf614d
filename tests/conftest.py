"""Shared fixtures: one stand-in of AWS for the whole session, reset before each test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cli
from standin import StandIn
from standin.creds import ALL_STORES
from standin.testclient import TestClient


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """After the whole session: no secret any stand-in issued appears in anything any iotinvoke
    run printed (stdout or stderr, at any verbosity), except where a test declared it expected."""
    yield
    secrets = [secret for store in ALL_STORES for secret in store.secrets()]
    if not cli.OUTPUTS or not secrets:
        return  # this session ran no CLI, or issued nothing: nothing to scan
    leaks = {secret[:6] + "..." for secret in secrets for output in cli.OUTPUTS if secret.encode() in output}
    assert not leaks, f"issued secrets reached iotinvoke's output: {sorted(leaks)}"


@pytest.fixture(scope="session")
def standin_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    with StandIn(Path(tmp_path_factory.mktemp("standin"))) as aws:
        yield aws


@pytest.fixture
def aws(standin_session: StandIn) -> Iterator[StandIn]:
    """The session's stand-in with no faults, a true clock and zeroed counters."""
    standin_session.clear_faults()
    standin_session.clock_offset_s = 0.0
    standin_session.reset_counts()
    errors_before = len(standin_session.server_errors)
    yield standin_session
    standin_session.clear_faults()
    standin_session.clock_offset_s = 0.0
    assert standin_session.server_errors[errors_before:] == [], "the stand-in itself failed"


@pytest.fixture
def aws_client(aws: StandIn) -> TestClient:
    return TestClient(aws)
