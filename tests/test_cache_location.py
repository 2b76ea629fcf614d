"""Where the cache lives: the default order for services, each fallback, the once-per-boot note
when the cache cannot be used (and that the call still succeeds), and the doctor's cache line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import iotinvoke as ii
from cli import run
from standin import StandIn

SEED_ANSWER = b'{"statusCode": 200, "body": "\\"Hello from Lambda cross account test!\\""}'


@pytest.fixture
def run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/run/iotinvoke, moved into tmp_path (absent until a test makes it)."""
    folder = tmp_path / "run" / "iotinvoke"
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(ii, "_RUN_FOLDER", str(folder))
    return folder


def location(environ: dict[str, str], cache_dir: str | None = None) -> tuple[str | None, str]:
    config = ii.Config("x.ini")
    config.cache_dir = cache_dir
    return ii._cache_location(config, environ)


def test_the_order(tmp_path: Path, run_folder: Path) -> None:
    home = str(tmp_path / "home")
    everything = {"RUNTIME_DIRECTORY": "/run/iotinvoke", "XDG_RUNTIME_DIR": "/run/user/1000", "HOME": home}
    run_folder.mkdir(mode=0o700)  # ours (root or not), as tmpfiles.d makes it
    assert location(everything, "/elsewhere") == ("/elsewhere", "cache_dir or $IOTINVOKE_CACHE_DIR")
    assert location(everything)[0] == "/run/iotinvoke"
    del everything["RUNTIME_DIRECTORY"]
    assert location(everything)[0] == "/run/user/1000/iotinvoke"
    del everything["XDG_RUNTIME_DIR"]
    assert location(everything) == (str(run_folder), "/run/iotinvoke (tmpfiles.d)")
    run_folder.rmdir()
    folder, source = location(everything)
    if os.geteuid() == 0:  # root may make /run/iotinvoke itself
        assert (folder, source) == (str(run_folder), "/run/iotinvoke (root)")
        (tmp_path / "run").rename(tmp_path / "norun")  # no /run at all: the home folder
        folder, source = location(everything)
    assert folder == home + "/.cache/iotinvoke" and source.startswith("~/.cache")


def test_runtime_directory_of_another_service_gets_a_subfolder() -> None:
    assert location({"RUNTIME_DIRECTORY": "/run/sensor"})[0] == "/run/sensor/iotinvoke"
    assert location({"RUNTIME_DIRECTORY": "/run/iotinvoke:/run/other"})[0] == "/run/iotinvoke"
    assert location({"RUNTIME_DIRECTORY": "/run/user/1000/iotinvoke/"})[0] == "/run/user/1000/iotinvoke/"


def test_run_folder_of_another_user_is_skipped(tmp_path: Path, run_folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a folder of another user needs root")
    run_folder.mkdir(mode=0o700)
    os.chown(run_folder, 65534, 65534)
    assert location({"HOME": str(tmp_path / "home")})[0] == str(tmp_path / "home" / ".cache" / "iotinvoke")


def test_cache_object_warns_once_logs_always(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    logs: list[str] = []
    warnings: list[str] = []
    for _ in range(3):
        assert ii._Cache(str(loose), logs.append, warnings.append).folder is None
    assert len(logs) == 3 and len(warnings) == 1 and "open to others" in warnings[0]
    loose.chmod(0o700)
    assert ii._Cache(str(loose), logs.append, warnings.append).folder == str(loose)
    loose.chmod(0o755)
    assert ii._Cache(str(loose), logs.append, warnings.append).folder is None
    assert len(warnings) == 2, "after a repair, a new breakage is said again"


def test_cli_says_it_once_and_the_call_succeeds(aws: StandIn, tmp_path: Path) -> None:
    markers = tmp_path / "xdg"
    markers.mkdir(mode=0o700)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    env = {"XDG_RUNTIME_DIR": str(markers)}
    first = run("dev", "{}", config=aws.config_path, cache=loose, env=env)
    assert (first.code, first.stdout) == (0, SEED_ANSWER), first.stderr
    assert len(first.lines) == 1 and first.lines[0].startswith("iotinvoke: cache: ") and "open to others" in first.stderr
    assert "said once until reboot" in first.stderr
    second = run("dev", "{}", config=aws.config_path, cache=loose, env=env)
    assert (second.code, second.stdout, second.stderr) == (0, SEED_ANSWER, "")
    assert aws.count("iot") == 2, "both calls ran uncached"
    verbose = run("-v", "dev", "{}", config=aws.config_path, cache=loose, env=env)
    assert verbose.code == 0 and "open to others" in verbose.stderr, "-v says it every time"


def test_cli_default_is_the_runtime_directory(aws: StandIn, tmp_path: Path) -> None:
    runtime = tmp_path / "run-iotinvoke" / "iotinvoke"
    runtime.parent.mkdir()
    runtime.mkdir(mode=0o700)
    env = {"RUNTIME_DIRECTORY": str(runtime), "XDG_RUNTIME_DIR": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    result = run("dev", "{}", config=aws.config_path, env=env)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
    assert len(list(runtime.glob("iot-*.json")) + list(runtime.glob("sts-*.json"))) == 2, "entries in $RUNTIME_DIRECTORY"
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()


def test_doctor_line(tmp_path: Path, run_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ii.Config("x.ini")
    config.cache_dir = str(tmp_path / "c")
    assert ii._cache_report(config)[:3] == ("ok", "cache", f"{tmp_path}/c, from cache_dir or $IOTINVOKE_CACHE_DIR; made at first use")
    (tmp_path / "c").mkdir(mode=0o755)
    (tmp_path / "c").chmod(0o755)
    status, _, detail, cause, fix = ii._cache_report(config)
    assert status == "warn" and "open to others" in detail and "uncached" in cause and "chmod 700" in fix
    config.cache_dir = None
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    if os.geteuid() == 0:
        (tmp_path / "run").rename(tmp_path / "norun")
    status, _, detail, cause, fix = ii._cache_report(config)
    assert status == "warn" and "~/.cache" in detail and "SD card" in cause and "RuntimeDirectory=iotinvoke" in fix
