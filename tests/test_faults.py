"""The fault matrix: every fault of the stand-in on every hop, once and persistent, through the CLI.

Each case checks the exit status, the one stderr line, that an invoke that may have run is never
sent twice, and that the cache is intact afterwards (the next call succeeds from it). The same
table is README's "What it survives": `python tests/test_faults.py` rewrites that section, and
test_readme_table_matches fails when the two differ.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cli import OUTPUTS, SEED_ANSWER, Run, run
from standin import StandIn

PERSISTENT = 50  # more requests than all retries together

# fault -> what the stand-in does
FAULTS = {
    "throttle": "throttled (429, or STS's 400 Throttling)",
    "5xx": "server error (500)",
    "drop_before": "connection closed before the request is read",
    "drop_after": "connection closed after the request was processed",
    "delay": "answer later than the read timeout",
}
HOP_NAMES = {"iot": "1 IoT credentials provider", "sts": "2 STS AssumeRole", "lambda": "3 Lambda Invoke"}
# (hop, fault) -> (exit status when it happens once, exit status when it persists)
MATRIX = {
    **{(hop, fault): (0, 75) for hop in ("iot", "sts") for fault in FAULTS},
    ("lambda", "throttle"): (0, 75),
    ("lambda", "5xx"): (74, 74),  # a ServiceException may come after the function ran
    ("lambda", "drop_before"): (74, 74),
    ("lambda", "drop_after"): (74, 74),
    ("lambda", "delay"): (74, 74),
}
OUTCOME = {
    0: "exit 0: retried, then invoked",
    74: "exit 74: the function may have run; never re-sent",
    75: "exit 75 after 3 attempts: retry later",
}
PHRASES = {74: "may have run", 75: "after 3 attempts"}
# Situations beyond the fault switches, all of which end in a normal invoke (exit 0).
SITUATIONS = [
    ("AWS's clock 1 h ahead of the board's", "exit 0: offset taken from AWS's Date, re-signed, kept for later calls"),
    ("board clock off by -1 day, -1 h or +1 h at boot (test_e2e)", "exit 0: the same"),
    ("every issued session token expired or revoked", "exit 0: refused credentials dropped, fetched once more"),
    ("refresh of hop 1 or 2 fails, cached credentials still valid", "exit 0: the cached credentials are used"),
    ("cache entry torn, foreign, symlinked or loosely permitted", "exit 0: treated as a miss (test_cache)"),
    ("cache folder unusable (not ours, not 0700, a file)", "exit 0: the call runs uncached (test_cache)"),
    ("cache file system full or read-only", "exit 0: the call runs uncached"),
    ("garbled, oversized, empty, HTML or DTD-laden answers", "exit 76: one line naming the hop"),
    # The hostile network of tests/hostile.py, through the CLI in tests/test_hostile.py.
    ("HTTPS_PROXY tunnel cut after the invoke went out", "exit 74: the function ran once; never re-sent"),
    ("TLS handshake cut (proxy or server) before the invoke went out", "exit 75 after 2-3 attempts: nothing ran"),
    ("answer cut short (full Content-Length, half the body)",
     "hops 1-2: retried, then exit 75; hop 3: exit 74, no partial payload printed"),
    ("answer gzip-encoded (a 1.5 MB bomb expanding to 1.5 GB)", "exit 76 [answer-encoded], never decoded"),
    ("credentials answer dripping 8 bytes/s", "exit 75 [answer-timeout] within connect_timeout + credentials_timeout per attempt"),
    ("endpoint given as an IP address", "works when the certificate names the IP; else exit 69 [tls-name-mismatch], "
     "the device certificate not presented"),
    ("each Lambda Invoke error in botocore's model (test_error_table)",
     "as the exit-status table decides: re-sent only when it proves the function did not run"),
]


# This module's own stand-in, with short timeouts, so that "later than the read timeout" is quick to reach.
pytestmark = pytest.mark.own_standin(defaults="credentials_timeout = 1\nread_timeout = 1\n")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def call(aws: StandIn, cache: Path, env: str = "dev") -> Run:
    return run(env, "{}", config=aws.config_path, cache=cache)


def warm(aws: StandIn, cache: Path) -> None:
    assert call(aws, cache).code == 0
    aws.reset_counts()


def assert_cache_intact(aws: StandIn, cache: Path) -> None:
    for entry in cache.glob("*.json"):
        json.loads(entry.read_text())  # whole, parseable files only
    assert not list(cache.glob("*.tmp")), "no temporary file left behind"
    after = call(aws, cache)
    assert (after.code, after.stdout, after.stderr) == (0, SEED_ANSWER, "")


@pytest.mark.parametrize("hop, fault", sorted(MATRIX))
@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
def test_fault_matrix(aws: StandIn, cache: Path, hop: str, fault: str, persistent: bool) -> None:
    if hop == "lambda":
        warm(aws, cache)  # so that hops 1 and 2 are not asked
    else:
        aws.reset_counts()
    expected = MATRIX[(hop, fault)][persistent]
    params = {"seconds": 1.5} if fault == "delay" else {"retry_after": 0} if fault == "throttle" else {}
    aws.fault(hop, fault, count=PERSISTENT if persistent else 1, **params)
    before = len(aws.invocations)
    result = call(aws, cache)
    assert result.code == expected, result.stderr
    if expected == 0:
        assert (result.stdout, result.stderr) == (SEED_ANSWER, "")
    else:
        assert result.stdout == b"" and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"iotinvoke: {hop}: ") and PHRASES[expected] in result.stderr
    if hop == "lambda" and expected == 74:
        assert aws.count("lambda") == 1, "an invoke that may have run is never re-sent"
        ran = 1 if fault in ("drop_after", "delay") else 0
        assert len(aws.invocations) - before == ran
    elif persistent:
        assert aws.count(hop) == 3, "bounded: three attempts"
    aws.clear_faults()
    assert_cache_intact(aws, cache)


def test_clock_ahead_on_aws_side_at_every_hop(aws: StandIn, cache: Path) -> None:
    aws.clock_offset_s = 3600.0
    result = call(aws, cache)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert_cache_intact(aws, cache)


def test_expired_tokens_are_replaced(aws: StandIn, cache: Path) -> None:
    warm(aws, cache)
    aws.expire_all_tokens()
    result = call(aws, cache)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 2, 2)
    assert_cache_intact(aws, cache)


@pytest.mark.parametrize("hop", ["iot", "sts"])
def test_failed_refresh_falls_back_to_valid_cached_credentials(aws: StandIn, cache: Path, hop: str) -> None:
    warm(aws, cache)
    # Entries inside their refresh margin (10 s of an hour left... still valid for 100 s).
    import time

    for entry in cache.glob("*.json"):
        data = json.loads(entry.read_text())
        data["Issued"], data["Expiration"] = time.time() - 3500, time.time() + 100
        entry.write_text(json.dumps(data))
    aws.fault(hop, "5xx", count=PERSISTENT)
    result = call(aws, cache)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
    assert aws.count(hop) == 3


# --- hostile answers and unusable caches, through the CLI ----------------------------------------

HOSTILE = [
    ("iot", 200, {"Content-Type": "text/html"}, b"<html><body>Welcome to the hotel Wi-Fi</body></html>", "not the expected JSON"),
    ("iot", 200, {"Content-Type": "application/json"}, b"", "not the expected JSON"),
    ("iot", 200, {"Content-Type": "application/json"}, b'{"credentials": "' + b"A" * 200_000 + b'"}', "larger than"),
    ("sts", 200, {"Content-Type": "text/xml"}, b"\xff\xfe<AssumeRoleResponse>", "not in UTF-8"),
    ("sts", 200, {"Content-Type": "text/xml"},
     b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><x>&b;</x>', "DTD"),
    ("sts", 200, {"Content-Type": "text/xml"}, b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"/>', "no credentials"),
    ("lambda", 302, {"Location": "https://example.com/"}, b"", "unexpected answer"),
]


@pytest.mark.parametrize("hop, status, headers, body, phrase", HOSTILE, ids=[f"{h[0]}-{i}" for i, h in enumerate(HOSTILE)])
def test_hostile_answers_are_one_clear_line(aws: StandIn, cache: Path, hop: str, status: int, headers: dict[str, str],
                                           body: bytes, phrase: str) -> None:
    if hop == "lambda":
        warm(aws, cache)
    aws.fault(hop, "respond", status=status, headers=headers, body=body)
    result = call(aws, cache)
    assert result.code == 76 and result.stdout == b"", result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"iotinvoke: {hop}: ")
    assert phrase in result.stderr
    assert_cache_intact(aws, cache)


def _mount_tmpfs(folder: Path, options: str) -> None:
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_unwritable_cache_filesystem_degrades_to_uncached(aws: StandIn, tmp_path: Path, kind: str) -> None:
    import subprocess

    mount = tmp_path / "fs"
    _mount_tmpfs(mount, "size=64k,mode=0700")
    try:
        if kind == "full":
            (mount / "cache").mkdir(mode=0o700)
            import os

            fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass  # ENOSPC: the file system is full
            finally:
                os.close(fd)
        else:
            (mount / "cache").mkdir(mode=0o700)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for _ in range(2):
            result = run("-v", "dev", "{}", config=aws.config_path, cache=mount / "cache")
            assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
            assert "cache:" in result.stderr and "uncached" in result.stderr
        assert not list((mount / "cache").glob("*.json"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def survival_table() -> str:
    rows = ["| hop | fault | once | persistent |", "|---|---|---|---|"]
    for (hop, fault), (once, persistent) in sorted(MATRIX.items(), key=lambda item: (HOP_NAMES[item[0][0]], item[0][1])):
        rows.append(f"| {HOP_NAMES[hop]} | {FAULTS[fault]} | {OUTCOME[once]} | {OUTCOME[persistent]} |")
    rows += ["", "| situation | outcome |", "|---|---|"]
    rows += [f"| {situation} | {outcome} |" for situation, outcome in SITUATIONS]
    return "\n".join(rows) + "\n"


README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- survives:start (generated by tests/test_faults.py) -->\n", "<!-- survives:end -->\n"


def test_readme_table_matches() -> None:
    text = README.read_text()
    assert START in text and END in text, "README lacks the 'What it survives' markers"
    current = text.split(START, 1)[1].split(END, 1)[0]
    assert current == survival_table(), "README's table is stale: run python tests/test_faults.py"


if __name__ == "__main__":
    text = README.read_text()
    head, rest = text.split(START, 1)
    README.write_text(head + START + survival_table() + END + rest.split(END, 1)[1])
    print("README.md: 'What it survives' rewritten", file=sys.stderr)
