"""Shared fixtures: one stand-in of AWS for the whole session, reset before each test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from standin import StandIn
from standin.testclient import TestClient


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
