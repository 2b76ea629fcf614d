"""Smoke test of scripts/bench: a quick run prints the whole report with numbers that parse.

No assertion on times or ratios: machines are noisy. It builds .venv-bench and .venv-debian12-like
on first use (about 20-30 s each with a warm pip cache) and then takes about a minute. Deselect it
with `-k "not bench"` or by setting IOTINVOKE_BENCH_TEST=0.
"""
from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

ROOT = Path(__file__).resolve().parents[2]

ROWS = (
    "1. iotinvoke, warm cache",
    "1b. iotinvoke, warm cache",
    "2. iotinvoke, cold cache",
    "1, 1-CA bundle",
    "1b, 1-CA bundle",
    "2, 1-CA bundle",
    "3. seed article: requests + boto3",
    "4. floor, warm",
    "4. floor, cold",
    "part: `python -c",
    "part: curl, hop 3 only",
    "part: curl, hops 1, 2, 3",
)
TARGETS = (
    "warm `python -m iotinvoke` ≤ 1.05 × the floor",
    "warm `python iotinvoke.py` ≤ 1.20 × the floor",
    "peak RSS of a warm `python -m iotinvoke` ≤ 30 MiB",
    "`--stream` ≥ 50 × the invokes/s of one `-m` process per call",
    "warm `-m` ≥ 3 × faster than the seed",
    "warm script ≥ 2.5 × faster than the seed",
    "cold ≥ 2 × faster than the seed",
    "peak RSS of a warm `-m` ≤ 55 % of the seed's",
)
SETS = ("current", "debian12")
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
         "--stream-count", "20", "--stream-repeats", "1", "--sets", ",".join(SETS), "--no-callgrind",
         "--seed", "1", "--dir", str(tmp_path), "--agent-against", "HEAD", "--agent-floor"],
        cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    lines = report.splitlines()

    headings = [line for line in lines if line.startswith("### ")]
    assert len(headings) == 2 and headings[0].startswith("### current releases: Python 3"), headings
    assert headings[1].startswith("### Debian 12's libraries: Python 3") and "urllib3 1.26.12, botocore 1.29.27" \
        in headings[1], headings
    for label in ROWS:
        rows = [line for line in lines if line.startswith("|") and label in line]
        assert len(rows) == len(SETS), f"not one row {label!r} per set in:\n{report}"
        for row in rows:
            cells = _cells(row)
            assert len(cells) == 9, row
            median, low, high, rss = (_number(cell) for cell in cells[2:6])
            assert 0 < low <= median <= high and rss > 0, row
            assert cells[6] == "–", row  # --no-callgrind
            for ratio in cells[7:]:
                assert ratio == "–" or _number(ratio) > 0, row

    for target in TARGETS:
        rows = [line for line in lines if line.startswith("|") and _cells(line)[0] == target]
        assert [_cells(row)[1] for row in rows] == list(SETS), f"target {target!r} not once per set in:\n{report}"
        for row in rows:
            measured, result = _cells(row)[2:]
            assert result == "n/a", row  # 3 runs are too few to judge a target
            assert measured == "not available" or _number(measured.replace(" MiB", "")) > 0, row

    assert "Indicative only: 3 runs" in report
    assert "## Streaming" in report
    streamed = [line for line in lines if line.startswith("| current |") or line.startswith("| debian12 |")]
    assert len(streamed) == 2 and all(_number(_cells(line)[2]) > 0 for line in streamed), report
    for line in streamed:  # the ratio is to the `-m` calls run beside --stream, shown in the same row
        per_call, rate, ratio = _number(_cells(line)[1]), _number(_cells(line)[2]), _number(_cells(line)[5])
        assert abs(ratio - rate / per_call) <= 0.06 * ratio + 0.1, line
        module_cpu, stream_cpu, cpu_ratio = (_number(cell) for cell in _cells(line)[6:9])
        assert 0 < stream_cpu < module_cpu and abs(cpu_ratio - module_cpu / stream_cpu) <= 0.06 * cpu_ratio + 0.1, line
    assert "5 of them (wall time, median) run before each `--stream` run" in report
    for key in SETS:  # --agent-against: the committed version's agent, side by side, in the same rounds
        rows = [line for line in lines if line.startswith(f"| agent at HEAD, {key} |")]
        assert len(rows) == 1 and _number(_cells(rows[0])[5]) > 0, report
        for library in ("urllib3", "http.client"):  # --agent-floor: its two agents, answering in the same rounds
            rows = [line for line in lines if line.startswith(f"| floor agent, botocore + {library}, {key} |")]
            assert len(rows) == 1 and _number(_cells(rows[0])[5]) > 0 and _cells(rows[0])[7].endswith("×"), report
    assert "## Import time of a warm call" in report
    imports = [line for line in lines if line.startswith("| ") and "`botocore" in line]
    assert imports, report
    assert report.count("an ELF executable, not a shim") == len(SETS)
    assert "- command: `scripts/bench --runs 3" in report
    # Rows 1, 1b and 2 ran with a CA file of exactly the default trust store plus the stand-in's CA.
    trust = (tmp_path / "standin" / "trust-current.pem").read_text()
    assert trust.count("BEGIN CERTIFICATE") == 6, trust


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_come_from_callgrind() -> None:
    bench = runpy.run_path(str(ROOT / "scripts" / "bench"), run_name="bench")
    small = bench["instructions"](["/bin/true"], dict(os.environ), lambda sample: None)
    larger = bench["instructions"]([sys.executable, "-c", "sum(range(200000))"], dict(os.environ), lambda sample: None)
    assert 0 < small < larger
