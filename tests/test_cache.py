"""The credential cache: private files, atomic writes, refusing what is not ours, the refresh margin."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

NOW = 1_700_000_000.0


def creds(expiration: float = NOW + 3600, issued: float = NOW, token: str = "token-1") -> ii.Credentials:
    return ii.Credentials("ASIAEXAMPLE", "secret", token, expiration, issued)


def make(tmp_path: Path, logs: list[str] | None = None) -> ii._Cache:
    return ii._Cache(str(tmp_path / "cache"), (logs if logs is not None else []).append)


def test_round_trip_modes_and_atomic_write(tmp_path: Path) -> None:
    cache = make(tmp_path)
    cache.put("e.json", creds())
    folder = tmp_path / "cache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "e.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["e.json", "jitter.json"], "no temporary file left behind"
    got = cache.get("e.json")
    assert got is not None and (got.access_key, got.secret_key, got.token) == ("ASIAEXAMPLE", "secret", "token-1")
    assert (got.expiration, got.issued) == (NOW + 3600, NOW)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"AccessKeyId": "A"}', b'{"AccessKeyId": 1, "SecretAccessKey": "s", "SessionToken": "t", '
     b'"Expiration": 1, "Issued": 1}', b'{"AccessKeyId": "A", "SecretAccessKey": "s", "SessionToken": "t", '
     b'"Expiration": "later", "Issued": 1}', b"\x00\xff" * 10],
)
def test_torn_or_foreign_entries_are_misses(tmp_path: Path, content: bytes) -> None:
    cache = make(tmp_path)
    path = tmp_path / "cache" / "e.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    assert cache.get("e.json") is None


def test_loose_modes_and_symlinks_are_refused(tmp_path: Path) -> None:
    logs: list[str] = []
    cache = make(tmp_path, logs)
    cache.put("e.json", creds())
    entry = tmp_path / "cache" / "e.json"
    entry.chmod(0o644)
    assert cache.get("e.json") is None and "not a 0600 file of ours" in logs[-1]
    entry.chmod(0o600)
    (tmp_path / "cache" / "link.json").symlink_to(entry)
    assert cache.get("link.json") is None, "a symlink is never followed"
    assert cache.get("e.json") is not None


def test_unusable_folders_run_uncached(tmp_path: Path) -> None:
    logs: list[str] = []
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert ii._Cache(str(loose), logs.append).folder is None and "open to others" in logs[-1]
    link = tmp_path / "link"
    link.symlink_to(loose)
    assert ii._Cache(str(link), logs.append).folder is None and "not a folder" in logs[-1]
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert ii._Cache(str(blocker / "sub"), logs.append).folder is None and "cannot use" in logs[-1]
    # Uncached means every operation is a harmless no-op.
    uncached = ii._Cache(None, logs.append)
    uncached.put("e.json", creds())
    assert uncached.get("e.json") is None
    with uncached.lock("e.json", time.monotonic() + 20):
        pass


def test_refresh_point_is_drawn_once_stored_and_shared(tmp_path: Path) -> None:
    """The jittered refresh point (tests/test_policy.py checks its bounds) is drawn once, written
    with the entry, and read back by every process; an entry without one, or with one outside the
    policy's window, refreshes at the fixed 5-minute margin (at most half the lifetime)."""
    cache = make(tmp_path)
    fetched = creds()
    point = fetched.refresh_at()
    assert NOW + 3600 - 900 <= point <= NOW + 3600 - 300 and fetched.refresh_at() == point
    cache.put("e.json", fetched)
    assert json.loads((tmp_path / "cache" / "e.json").read_text())["Refresh"] == point
    for _ in range(3):
        other = cache.get("e.json")  # another process
        assert other is not None and other.refresh_at() == point
        assert other.fresh(point - 1) and not other.fresh(point)
    entry = tmp_path / "cache" / "e.json"
    for refresh in (None, "soon", True, NOW + 3600, NOW + 1000):  # absent, foreign or out of the window
        data = json.loads(entry.read_text())
        data.pop("Refresh", None)
        if refresh is not None:
            data["Refresh"] = refresh
        entry.write_text(json.dumps(data))
        old = cache.get("e.json")
        assert old is not None and old.fresh(NOW + 3600 - 301) and not old.fresh(NOW + 3600 - 300), refresh
    short = creds(expiration=NOW + 400, issued=NOW)  # a 400 s credential refreshes at half-life at the latest
    cache.put("short.json", short)
    data = json.loads((tmp_path / "cache" / "short.json").read_text())
    del data["Refresh"]
    (tmp_path / "cache" / "short.json").write_text(json.dumps(data))
    old_short = cache.get("short.json")
    assert old_short is not None and old_short.fresh(NOW + 199) and not old_short.fresh(NOW + 201)
    hour = creds()
    assert hour.valid(NOW + 3600 - 31) and not hour.valid(NOW + 3600 - 29)


def test_entries_of_one_board_share_its_refresh_fraction(tmp_path: Path) -> None:
    """Fetched credentials get the board's fraction of the window, drawn once into jitter.json:
    hop 1 and hop 2 fetched together refresh together; clearing the cache draws again."""
    cache = make(tmp_path)
    iot, sts = creds(token="iot"), creds(token="sts")
    cache.put("iot.json", iot)
    cache.put("sts.json", sts)
    fraction = json.loads((tmp_path / "cache" / "jitter.json").read_text())["fraction"]
    assert 0.0 <= fraction < 1.0
    assert iot.refresh_at() == sts.refresh_at() == ii.refresh_point(NOW, NOW + 3600, lambda: fraction)
    later = creds(expiration=NOW + 7200, issued=NOW + 3600)
    cache.put("iot.json", later)
    assert later.refresh_at() == ii.refresh_point(NOW + 3600, NOW + 7200, lambda: fraction)
    (tmp_path / "cache" / "jitter.json").write_text('{"fraction": 7}')  # foreign: drawn again
    cache.put("x.json", creds())
    assert 0.0 <= json.loads((tmp_path / "cache" / "jitter.json").read_text())["fraction"] < 1.0


def test_lock_serialises_and_is_bounded(tmp_path: Path) -> None:
    cache = make(tmp_path)
    order: list[str] = []
    with cache.lock("e.json", time.monotonic() + 20):
        def other() -> None:
            with cache.lock("e.json", time.monotonic() + 20):
                order.append("other")
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"]
    # A holder that never lets go is waited for until the deadline only.
    logs: list[str] = []
    stuck = ii._Cache(str(tmp_path / "cache"), logs.append)
    with cache.lock("e.json", time.monotonic() + 20):
        started = time.monotonic()
        with stuck.lock("e.json", started + 0.2):
            waited = time.monotonic() - started
    assert 0.2 <= waited < 5 and "going on unlocked" in logs[-1]


def test_clear_removes_entries_and_locks(tmp_path: Path) -> None:
    cache = make(tmp_path)
    cache.put("a.json", creds())
    with cache.lock("a.json", time.monotonic() + 20):
        pass
    assert cache.clear() == 3, "the entry, its lock and the board's refresh fraction"
    assert not list((tmp_path / "cache").iterdir())


def test_credential_process_format() -> None:
    document = creds(expiration=1516267086.0).to_json()
    assert document == {
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret",
        "SessionToken": "token-1",
        "Expiration": "2018-01-18T09:18:06Z",
    }
    json.dumps(document)
