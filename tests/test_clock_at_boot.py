"""A board whose clock is years off at boot (no RTC, NTP not answered yet), under libfaketime,
through the CLI: behind, AWS's time is learned (forward only) and the call works, cold and warm;
ahead, the certificate looks expired and the call is a transient 75 naming the clock."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli import SEED_ANSWER, Run, run
from standin import StandIn

YEARS = 365 * 86400


def board(aws: StandIn, cache: Path, shift: str, *args: str) -> Run:
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.skip("faketime is not installed (Debian package faketime; scripts/test installs it)")
    return run(*args, config=aws.config_path, cache=cache, wrapper=[faketime, "-f", shift])


@pytest.mark.parametrize("shift", ["-730d", "-20000d"])  # two years behind; 1971, as a board without fake-hwclock
def test_a_board_behind_learns_aws_time_and_works_cold_and_warm(aws: StandIn, tmp_path: Path, shift: str) -> None:
    cache = tmp_path / "cache"
    cold = board(aws, cache, shift, "-v", "dev", "{}")
    assert (cold.code, cold.stdout) == (0, SEED_ANSWER), cold.stderr
    assert "learned at boot" in cold.stderr
    # One HEAD to the credentials endpoint learns the time (the stand-in counts it), then the three hops.
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (2, 1, 1)
    warm = board(aws, cache, shift, "dev", "{}")
    assert (warm.code, warm.stdout, warm.stderr) == (0, SEED_ANSWER, "")
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (2, 1, 2)  # warm: the invoke only


def test_a_board_ahead_is_told_its_clock_is_wrong(aws: StandIn, tmp_path: Path) -> None:
    result = board(aws, tmp_path / "cache", "+730d", "dev", "{}")
    assert result.code == 75, result.stderr
    assert len(result.lines) == 1 and result.lines[0].startswith("iotinvoke: iot: ")
    assert "clock is wrong" in result.stderr and "timedatectl" in result.stderr
    assert "valid from" in result.stderr  # the certificate's window, learned without trusting its dates
    assert result.stderr.rstrip().endswith("[clock-wrong; retry after 30 s]")
    # Only the HEAD that learned the window reached the endpoint; no credentials were asked for.
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 0, 0)


def test_a_board_ahead_is_never_moved_back(aws: StandIn, tmp_path: Path) -> None:
    # Forward only: even after a failed call, the corrected clock stays the board's own.
    cache = tmp_path / "cache"
    board(aws, cache, "+730d", "dev", "{}")
    assert not (cache / "clock.json").exists()


def test_doctor_names_the_clock(aws: StandIn, tmp_path: Path) -> None:
    result = board(aws, tmp_path / "cache", "+730d", "--doctor", "dev")
    assert result.code == 75
    assert b"NTP" in result.stdout and b"clock" in result.stdout


def test_a_board_ahead_with_a_warm_cache_invokes_nothing(aws: StandIn, tmp_path: Path) -> None:
    # Credentials cached while the clock was right look expired to a board two years ahead: it
    # asks for new ones, the handshake says the clock is wrong, and nothing is invoked.
    cache = tmp_path / "cache"
    right = run("dev", "{}", config=aws.config_path, cache=cache)
    assert (right.code, right.stdout) == (0, SEED_ANSWER), right.stderr
    ahead = board(aws, cache, "+730d", "dev", "{}")
    assert ahead.code == 75 and ahead.stderr.rstrip().endswith("[clock-wrong; retry after 30 s]"), ahead.stderr
    assert (aws.count("sts"), aws.count("lambda")) == (1, 1)  # only the first, right-clock call's


def test_doctor_on_a_board_years_behind_says_how_far(aws: StandIn, tmp_path: Path) -> None:
    """It said "within 0 s of AWS's" on a board 3 years behind (measured against the corrected
    clock), while -v said 94,607,999 s behind: the clock line now compares AWS with the board."""
    result = board(aws, tmp_path / "cache", "-1095d", "--doctor", "dev")
    report = result.stdout.decode()
    assert result.code == 0, report + result.stderr
    clock = [line for line in report.splitlines() if line.split()[:2] == ["warn", "clock"]]
    assert len(clock) == 1 and "behind AWS's" in clock[0], report
    seconds = int(clock[0].split("clock is ")[1].split(" s ")[0])
    assert abs(seconds - 1095 * 86400) < 600, clock[0]
    assert "expired" not in report


def test_doctor_on_a_board_ahead_does_not_blame_the_certificate(aws: StandIn, tmp_path: Path) -> None:
    result = board(aws, tmp_path / "cache", "+730d", "--doctor", "dev")
    report = result.stdout.decode()
    assert result.code == 75
    # The device certificate looks expired by the board's clock only: a warning naming the clock,
    # not a failure telling the operator to issue a new certificate; hop 1 fails on the clock.
    assert not any(line.startswith("FAIL  files") for line in report.splitlines()), report
    assert "or the board's clock is ahead" in report and "FAIL  hop 1" in report and "[clock-wrong" in report
