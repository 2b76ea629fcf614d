"""Smoke test of scripts/bench: a quick run prints the whole report with numbers that parse.

No assertion on times or ratios: machines are noisy. It builds .venv-bench on first use
(about 20-30 s with a warm pip cache) and then takes about 30 s. Deselect it with
`-k "not bench"` or by setting IOTINVOKE_BENCH_TEST=0.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "1. iotinvoke, warm cache",
    "1b. iotinvoke, warm cache",
    "2. iotinvoke, cold cache",
    "3. seed article: requests + boto3",
    "4. floor, warm",
    "4. floor, cold",
    "part: `python -c",
    "part: curl, hop 3 only",
    "part: curl, hops 1, 2, 3",
)
TARGETS = (
    "warm call ≤ 1.05 × the floor",
    "warm call ≥ 3 × faster than the seed",
    "cold call ≥ 2 × faster than the seed",
    "peak RSS of a warm call ≤ 55 % of the seed's",
    "streaming ≥ 30 × the invokes/s of one process per call",
    "`python -m iotinvoke`: warm call ≤ 1.05 × the floor",
    "`python -m iotinvoke`: warm call ≥ 3 × faster than the seed",
    "`python -m iotinvoke`: peak RSS ≤ 55 % of the seed's",
)
NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(cell: str) -> float:
    value = cell.rstrip("×").rstrip(" %")
    assert NUMBER.match(value), f"not a number: {cell!r}"
    return float(value)


@pytest.mark.skipif(os.environ.get("IOTINVOKE_BENCH_TEST") == "0", reason="IOTINVOKE_BENCH_TEST=0")
def test_bench_quick_run_prints_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--runs", "3", "--warmup", "1",
         "--stream-count", "20", "--stream-repeats", "1", "--seed", "1", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    lines = report.splitlines()

    for label in ROWS:
        row = [line for line in lines if line.startswith("|") and label in line]
        assert len(row) == 1, f"no single row {label!r} in:\n{report}"
        cells = _cells(row[0])
        assert len(cells) == 8, row[0]
        median, low, high, rss = (_number(cell) for cell in cells[2:6])
        assert 0 < low <= median <= high and rss > 0, row[0]
        for ratio in cells[6:]:
            assert ratio == "–" or _number(ratio) > 0, row[0]

    for target in TARGETS:
        row = [line for line in lines if line.startswith("|") and _cells(line)[0] == target]
        assert len(row) == 1, f"no target {target!r} in:\n{report}"
        measured, result = _cells(row[0])[1:]
        assert result in ("PASS", "FAIL", "n/a"), row[0]
        assert measured == "not available" or _number(measured) > 0, row[0]

    assert "Indicative only: 3 runs" in report
    assert "## Streaming" in report
    streamed = [line for line in lines if line.startswith("| one `--stream dev` process |")]
    assert len(streamed) == 1 and _number(_cells(streamed[0])[1]) > 0, report
    assert "`python -m iotinvoke dev …`" in report
    assert "## Import time of a warm call" in report
    imports = [line for line in lines if line.startswith("| ") and "`botocore" in line]
    assert imports, report
    assert "an ELF executable, not a shim" in report
    assert "- command: `scripts/bench --runs 3" in report
