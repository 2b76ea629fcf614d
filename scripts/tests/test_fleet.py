"""scripts/fleet: its simulation core on small fleets, checked against hand calculations.
In-process, a second or so, without matplotlib."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import random
import sys
from pathlib import Path

import pytest

import iotinvoke

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

PATH = Path(__file__).resolve().parents[2] / "scripts" / "fleet"
_loader = importlib.machinery.SourceFileLoader("fleet", str(PATH))
_spec = importlib.util.spec_from_loader("fleet", _loader)
assert _spec is not None
fleet = importlib.util.module_from_spec(_spec)
sys.modules["fleet"] = fleet  # dataclasses look their module up there
_loader.exec_module(fleet)


def lockstep() -> object:
    """Every random draw 0: no refresh jitter, in-process retries at once, the caller waits 1 s."""
    return fleet.Policy("lockstep", lambda: 0.0, lambda: 0.0,
                        lambda retry, retry_after: iotinvoke.caller_wait(lambda: 0.0, retry_after))


def test_the_policy_is_iotinvokes_own() -> None:
    assert fleet.iotinvoke is iotinvoke, "imported, not copied"
    assert not any(name in vars(fleet) for name in ("refresh_point", "retry_delay", "retry_allowed", "caller_wait"))


def test_1000_boards_against_100_per_second_by_hand() -> None:
    """1,000 boards boot at t = 0 against a hop-1 bucket of 100/s (burst 100); hops 2 and 3 are
    unlimited. Each second k = 0..9, the 1000 - 100 k boards still waiting each make 3 attempts
    at once (retry_delay 0); the first 100 attempts get a token, and every other board is
    throttled 3 times, exits 75, and is run again 1 s later (caller_wait 1). So:
      served:    100 boards at each of t = 0, 1, ..., 9; the 990th (99 %) at t = 9 s;
      attempts:  sum over k of 100 + 3 (900 - 100 k) = 1,000 + 3 * 4,500 = 14,500;
      throttled: 13,500, a share of 13,500 / 14,500 = 93.1 %;
      peak:      2,800 requests in second 0 (100 + 3 * 900); served 100/s, the bucket's rate.
    """
    scenario = fleet.Scenario("hand", boards=1000, duration_s=60, boot_spread_s=0.0,
                              rates={"iot": 100.0, "sts": 1e6, "lambda": 1e6}, caller_retries=100)
    result = fleet.simulate(scenario, lockstep(), random.Random(0))
    assert result.served["iot"][:11] == [100] * 10 + [0]
    assert result.peak_served("iot") == 100
    assert sum(result.offered["iot"]) == 14_500 and sum(result.throttled["iot"]) == 13_500
    assert abs(result.throttled_share("iot") - 13_500 / 14_500) < 1e-12
    assert result.peak("iot") == 2_800 and result.offered["iot"][1] == 100 + 3 * 800
    assert result.served99_s == 9.0
    assert result.failed == 0
    assert result.peak("sts") == 100 and result.throttled_share("sts") == 0.0, "hop 2 follows hop 1 at once"


def test_a_caller_that_gives_up_makes_failed_calls_by_hand() -> None:
    """The same fleet, but the caller runs iotinvoke again 3 times at most (example.c's -r): in
    seconds 0..3 400 boards are served, the other 600 calls fail; they call again 300 s later."""
    scenario = fleet.Scenario("hand", boards=1000, duration_s=200, period_s=300, boot_spread_s=0.0,
                              rates={"iot": 100.0, "sts": 1e6, "lambda": 1e6}, caller_retries=3)
    result = fleet.simulate(scenario, lockstep(), random.Random(0))
    assert result.failed == 600 and sum(result.served["iot"]) == 400 and result.served99_s is None


def test_jitter_desynchronises_a_rebooted_fleet() -> None:
    """2,000 boards booted together: without jitter their refreshes come back together an hour
    later; with iotinvoke's jitter the refresh peak is far lower and no call fails."""
    results = {}
    for make in (fleet.fixed, fleet.jittered):
        rng = random.Random(5)
        scenario = fleet.Scenario("reboot", boards=2000, duration_s=5400, period_s=60,
                                  rates={"iot": 100.0, "sts": 100.0, "lambda": 10_000.0})
        results[make.__name__] = fleet.simulate(scenario, make(rng), rng)
    later = slice(1800, 5400)  # the refreshes, after the boot storm
    fixed_peak = max(results["fixed"].offered["sts"][later])
    jittered_peak = max(results["jittered"].offered["sts"][later])
    assert jittered_peak * 3 < fixed_peak, (jittered_peak, fixed_peak)
    assert results["jittered"].failed == 0 and results["jittered"].served99_s is not None


def test_command_no_plot_prints_the_table_without_matplotlib(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run([sys.executable, str(PATH), "--no-plot", "--boards", "300", "--hours", "0.5",
                           "--png", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "policy" not in line]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| " + s, p] for s in ("steady", "reboot", "outage") for p in ("without jitter", "with jitter")]
    assert not (tmp_path / "x.png").exists()
