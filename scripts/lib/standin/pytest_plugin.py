"""The pytest fixtures of the stand-in, shared by iotinvoke's tests (tests/) and the tooling's
(scripts/tests/): both conftest.py files load this module with ``pytest_plugins``.

Every test reaches the stand-in through one fixture, ``aws``: the stand-in with no faults, a true
clock and zeroed counters, checked afterwards for failures of its own. By default it is one
stand-in for the whole session. A test module that changes the stand-in's configuration or world
(more environments, shorter timeouts, another role) gets one of its own, started once for the
module, by declaring it:

    pytestmark = pytest.mark.own_standin(config="\\n[fail]\\nfunction = ...\\n")

``own_standin`` takes ``config`` (text appended to the stand-in's iotinvoke.ini), ``defaults``
(lines added to its [DEFAULT] section) and ``setup`` (called with the started stand-in), all
optional; without arguments it is simply a stand-in no other module touches.

The session-wide scan ``no_secret_in_any_output`` looks for every secret any stand-in issued in
every output list registered with ``scan_outputs`` (tests/conftest.py registers the output of
every iotinvoke run).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from standin import StandIn
from standin.creds import ALL_STORES
from standin.testclient import TestClient

_SCANNED: list[list[bytes]] = []


def scan_outputs(outputs: list[bytes]) -> None:
    """Have the session-wide scan search outputs (a list that keeps growing) for issued secrets."""
    if not any(outputs is known for known in _SCANNED):
        _SCANNED.append(outputs)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """After the whole session: no secret any stand-in issued appears in anything a registered
    output list holds (every iotinvoke run's stdout and stderr, at any verbosity)."""
    yield
    secrets = [secret for store in ALL_STORES for secret in store.secrets()]
    outputs = [output for outputs in _SCANNED for output in outputs]
    if not outputs or not secrets:
        return  # this session ran no CLI, or issued nothing: nothing to scan
    leaks = {secret[:6] + "..." for secret in secrets for output in outputs if secret.encode() in output}
    assert not leaks, f"issued secrets reached iotinvoke's output: {sorted(leaks)}"


def start_standin(
    folder: Path, *, config: str = "", defaults: str = "", setup: Callable[[StandIn], None] | None = None
) -> StandIn:
    """A started stand-in in folder, its iotinvoke.ini extended with config (appended) and
    defaults (added to [DEFAULT]), then setup(stand_in). The caller stops it."""
    stand_in = StandIn(folder).start()
    try:
        if config or defaults:
            text = stand_in.config_path.read_text()
            if defaults:
                assert "[DEFAULT]\n" in text, "the stand-in's iotinvoke.ini has no [DEFAULT] section"
                text = text.replace("[DEFAULT]\n", "[DEFAULT]\n" + defaults, 1)
            stand_in.config_path.write_text(text + config)
        if setup is not None:
            setup(stand_in)
    except BaseException:
        stand_in.stop()
        raise
    return stand_in


@pytest.fixture(scope="session")
def standin_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    stand_in = start_standin(tmp_path_factory.mktemp("standin"))
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="module")
def standin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The stand-in of this module's tests: its own when it is marked own_standin (see above),
    else the session's."""
    marker = request.node.get_closest_marker("own_standin")
    if marker is None:
        yield request.getfixturevalue("standin_session")
        return
    if marker.args:
        raise TypeError("own_standin takes keyword arguments only: config, defaults, setup")
    stand_in = start_standin(tmp_path_factory.mktemp("standin"), **marker.kwargs)
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def aws(standin: StandIn) -> Iterator[StandIn]:
    """The module's stand-in with no faults, a true clock and zeroed counters."""
    standin.clear_faults()
    standin.clock_offset_s = 0.0
    standin.reset_counts()
    errors_before = len(standin.server_errors)
    yield standin
    standin.clear_faults()
    standin.clock_offset_s = 0.0
    assert standin.server_errors[errors_before:] == [], "the stand-in itself failed"


@pytest.fixture
def aws_client(aws: StandIn) -> TestClient:
    return TestClient(aws)
