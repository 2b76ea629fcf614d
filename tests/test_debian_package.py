"""The board path as a Debian package: scripts/build-deb builds it, lintian finds no error, apt
installs it with Debian's own python3-urllib3 and python3-botocore (no virtual environment), the
system user iotinvoke invokes the stand-in with Debian's ``/usr/bin/python3 -m iotinvoke`` and
with ``/usr/bin/iotinvoke`` from ``/``, its credentials cached in /run/iotinvoke, ``--doctor``
passes, and ``apt-get purge`` removes what the package installed.

It changes this machine (a package installed then purged, Debian's python3-urllib3 and
python3-botocore left installed, the system user iotinvoke left in place as Debian packages do),
so it runs as root with apt and dpkg only (CI), and is skipped otherwise. The tests run in file
order: test_purge_removes_it purges; the module's fixture purges too if a test failed before it.
The last two tests need no installation.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cli
from cli import SEED_ANSWER
from standin import StandIn

pytestmark = pytest.mark.tooling  # packaging, not iotinvoke's own behaviour: run once

ROOT = Path(__file__).resolve().parents[1]
BUILD_DEB = ROOT / "scripts" / "build-deb"
USER = "iotinvoke"
CACHE = Path("/run/iotinvoke")
MODULE = Path("/usr/lib/python3/dist-packages/iotinvoke.py")
CONFFILE = Path("/etc/iotinvoke/iotinvoke.ini")
# What the iotinvoke user's processes get: none of this machine's AWS_* (it sets AWS_CA_BUNDLE),
# IOTINVOKE_*, XDG_* or PYTHON* variables; runuser adds HOME, USER and LOGNAME.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: installs and purges a Debian package (runs in CI as root)"
    for tool in ("apt-get", "dpkg", "dpkg-query", "runuser"):
        if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None:
            return f"needs Debian's {tool} (apt, dpkg, util-linux)"
    if not Path("/usr/bin/python3").exists():
        return "needs Debian's /usr/bin/python3"
    if _installed_version() is not None:
        return "the package iotinvoke is already installed here: this test would replace and purge it (apt-get purge iotinvoke first)"
    return None


def _installed_version() -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "iotinvoke"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.startswith("ii"):
        return None
    return done.stdout.split()[-1]


def _run(argv: list[str], env: dict[str, str] = CLEAN_ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    # DPkg::Lock::Timeout: wait for another apt run (a CI step, unattended-upgrades) to finish.
    return _run(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *args],
                env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})


@dataclass
class Package:
    deb: Path
    build_output: str
    files: list[Path]  # dpkg -L iotinvoke, right after installation


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Package]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run([str(BUILD_DEB), "--no-lintian", str(out)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    assert deb.parent == out and re.fullmatch(r"iotinvoke_[0-9][^_]*-[0-9]+_all\.deb", deb.name), built.stdout
    # apt-get, not dpkg -i: apt resolves the Depends from Debian's archive.
    installed = _apt("install", "--no-install-recommends", str(deb))
    try:
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr
        listed = _run(["dpkg", "-L", "iotinvoke"])
        assert listed.returncode == 0, listed.stderr
        yield Package(deb, built.stdout + built.stderr, [Path(line) for line in listed.stdout.splitlines() if line])
    finally:
        if _installed_version() is not None:  # a test failed before test_purge_removes_it
            _apt("purge", "iotinvoke")


def test_lintian_finds_no_error(package: Package) -> None:
    if shutil.which("lintian") is None:  # build-deb installs it as root with apt
        pytest.fail("lintian is not installed")
    done = _run(["lintian", "--info", "--display-info", str(package.deb)])
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_installed_with_debians_libraries(package: Package) -> None:
    # Debian's own packages, at least the versions scripts/test's Debian 12 run uses.
    for name, floor in (("python3-urllib3", "1.26.12"), ("python3-botocore", "1.29.27")):
        version = _run(["dpkg-query", "-W", "-f=${Version}", name]).stdout
        assert _run(["dpkg", "--compare-versions", version, "ge", floor]).returncode == 0, (name, version)
    depends = _run(["dpkg-query", "-W", "-f=${Depends}", "iotinvoke"]).stdout
    assert "certifi" not in depends  # the module builds in Amazon's roots
    assert "python3-urllib3" in depends and "python3-botocore" in depends
    assert MODULE in package.files and Path("/usr/bin/iotinvoke") in package.files
    # Byte-compiled at installation by py3compile (dh_python3's postinst).
    assert list(MODULE.parent.glob("__pycache__/iotinvoke.cpython-*.pyc")), "no byte-compiled module"
    # The example configuration is a conffile: an upgrade does not overwrite the board's.
    conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", "iotinvoke"]).stdout
    assert str(CONFFILE) in conffiles.split()
    for doc in ("copyright", "changelog.Debian.gz", "README.md.gz"):
        assert Path("/usr/share/doc/iotinvoke", doc) in package.files, doc
    assert "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" in \
        Path("/usr/share/doc/iotinvoke/copyright").read_text()
    assert Path("/usr/share/man/man1/iotinvoke.1.gz") in package.files


def test_systemd_units_only_with_the_agents(package: Package) -> None:
    units = [path for path in package.files if "/systemd/system/" in str(path) and path.suffix]
    if (ROOT / "scripts" / "iotinvoke.socket").exists():
        assert sorted(path.name for path in units) == ["iotinvoke.service", "iotinvoke.socket"]
    else:
        assert units == []  # scripts/iotinvoke.service alone is an example, never shipped


def test_system_user_and_cache_folder(package: Package) -> None:
    user = pwd.getpwnam(USER)
    assert user.pw_uid < 1000 and user.pw_shell.endswith("nologin")  # a system user, no login
    assert grp.getgrgid(user.pw_gid).gr_name == USER
    # Made by the package's postinst (systemd-tmpfiles --create, run whether or not systemd is
    # PID 1 here), not by this test.
    st = CACHE.lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)


# The device key's owner and mode: README's way (root keeps it, the iotinvoke group reads it), or
# the iotinvoke user's own file.
KEY_GROUP_READABLE = "root:iotinvoke 0640"
KEY_OWN = "iotinvoke:iotinvoke 0600"


@pytest.fixture
def board(request: pytest.FixtureRequest, package: Package, aws: StandIn) -> Iterator[Path]:
    """The stand-in's iotinvoke.ini, certificate, key and CA copied into a folder the iotinvoke
    user can read, the key as the parameter says (default KEY_GROUP_READABLE). Yields the
    configuration."""
    key_owner, key_mode = getattr(request, "param", KEY_GROUP_READABLE).split()
    key_uid, key_gid = (pwd.getpwnam(key_owner.split(":")[0]).pw_uid, grp.getgrnam(key_owner.split(":")[1]).gr_gid)
    gid = grp.getgrnam(USER).gr_gid
    folder = Path(tempfile.mkdtemp(prefix="iotinvoke-board-"))  # in /tmp: tmp_path is root's only
    try:
        os.chown(folder, 0, gid)
        folder.chmod(0o750)
        source = aws.config_path.parent
        copies: dict[Path, str] = {}

        def copy(match: re.Match[str]) -> str:
            name, value = match.group(1), match.group(2).strip()
            path = (source / value).resolve()
            if path not in copies:
                copies[path] = f"{len(copies)}-{path.name}"
                target = folder / copies[path]
                shutil.copyfile(path, target)
                if name == "key":
                    os.chown(target, key_uid, key_gid)
                    target.chmod(int(key_mode, 8))
                else:
                    target.chmod(0o644)
            return f"{name} = {copies[path]}"

        text = re.sub(r"(?m)^(cert|key|ca|ca_bundle)[ \t]*=(.*)$", copy, aws.config_path.read_text())
        assert len(copies) >= 3, "the stand-in's configuration names no certificate, key and CA"
        config = folder / "iotinvoke.ini"
        config.write_text(text)
        os.chown(config, 0, gid)
        config.chmod(0o640)
        yield config
    finally:
        shutil.rmtree(folder)


def _as_user(*argv: str | Path) -> cli.Run:
    done = subprocess.run(["runuser", "-u", USER, "--", *map(str, argv)], capture_output=True, cwd="/",
                          env=CLEAN_ENV, stdin=subprocess.DEVNULL, timeout=120)
    cli.OUTPUTS += [done.stdout, done.stderr]  # scanned for issued secrets at the session's end
    return cli.Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def test_invoke_as_the_iotinvoke_user(package: Package, aws: StandIn, board: Path) -> None:
    uid = pwd.getpwnam(USER).pw_uid
    assert list(CACHE.iterdir()) == []
    cold = _as_user("/usr/bin/python3", "-m", "iotinvoke", "--config", board, "dev", '{"test":"test1"}')
    assert (cold.code, cold.stdout, cold.stderr) == (0, SEED_ANSWER, "")
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 1, 1)
    cached = [path.lstat() for path in CACHE.iterdir()]
    assert cached, "nothing cached in /run/iotinvoke"
    assert all(st.st_uid == uid and stat.S_IMODE(st.st_mode) & 0o077 == 0 for st in cached)
    # The command, warm: the credentials the module's run cached in /run/iotinvoke are reused.
    warm = _as_user("/usr/bin/iotinvoke", "--config", board, "dev", '{"test":"test1"}')
    assert (warm.code, warm.stdout, warm.stderr) == (0, SEED_ANSWER, "")
    assert (aws.count("iot"), aws.count("sts"), aws.count("lambda")) == (1, 1, 2)


@pytest.mark.parametrize("board", [KEY_OWN, KEY_GROUP_READABLE], indirect=True)
def test_doctor_as_the_iotinvoke_user(package: Package, aws: StandIn, board: Path) -> None:
    for argv in (["/usr/bin/python3", "-m", "iotinvoke"], ["/usr/bin/iotinvoke"]):
        doctor = _as_user(*argv, "--config", board, "--doctor", "dev")
        lines = doctor.stdout.decode().splitlines()
        assert doctor.code == 0, doctor.stdout.decode() + doctor.stderr
        assert any(line.split()[:3] == ["ok", "cache", str(CACHE) + ","] for line in lines), lines
        assert lines and all(line.startswith("ok ") for line in lines), doctor.stdout.decode()


def test_example_configuration_is_found_and_refused(package: Package) -> None:
    # Every key of /etc/iotinvoke/iotinvoke.ini is commented out: iotinvoke finds it without
    # --config and says what is missing (exit 78, EX_CONFIG).
    done = _as_user("/usr/bin/iotinvoke", "dev", "{}")
    assert done.code == 78, done.stderr
    assert done.stderr.startswith(f"iotinvoke: config: {CONFFILE}: missing section [iot]"), done.stderr


def test_purge_removes_it(package: Package) -> None:
    compiled = list(MODULE.parent.glob("__pycache__/iotinvoke.cpython-*.pyc"))
    purged = _apt("purge", "iotinvoke")
    assert purged.returncode == 0, purged.stdout[-3000:] + purged.stderr
    assert _installed_version() is None
    left = [path for path in package.files + compiled + [CACHE] if os.path.lexists(path) and path != Path("/")]
    # What stays is shared folders only (/usr/bin, /etc, ...), which dpkg says other packages own
    # ("package[, package...]: /path" lines; one query: each one reads dpkg's whole database).
    owners = _run(["dpkg-query", "-S", *map(str, left)]).stdout if left else ""
    owned = {Path(line.split(": ", 1)[1]) for line in owners.splitlines() if ": " in line}
    kept = [path for path in left if not (path.is_dir() and path in owned)]
    assert kept == []
    imported = subprocess.run(["/usr/bin/python3", "-c", "import iotinvoke"], capture_output=True, text=True,
                              cwd="/", env=CLEAN_ENV)
    assert imported.returncode == 1 and "No module named 'iotinvoke'" in imported.stderr, imported.stderr
    # The system user stays, as in Debian practice (systemd-sysusers never removes users; a removed
    # user's ID could be reused by a later account and own what it left behind).
    assert pwd.getpwnam(USER).pw_uid < 1000


def test_man_page_names_every_option() -> None:
    """scripts/debian/iotinvoke.1 documents every option that iotinvoke --help lists."""
    done = subprocess.run([cli.PYTHON, str(cli.SCRIPT), "--help"], capture_output=True, text=True, env=cli.environment())
    assert done.returncode == 0, done.stderr
    options = set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z-]*)", done.stdout))
    assert len(options) > 10, done.stdout
    page = (ROOT / "scripts" / "debian" / "iotinvoke.1").read_text().replace("\\-", "-")
    assert sorted(option for option in options if option not in page) == []


def test_build_deb_ships_the_agents_units_and_follows_the_module_version(tmp_path: Path) -> None:
    """In a copy of the tree with scripts/iotinvoke.socket (the resident agent's units) and the
    module's version ahead of scripts/debian/changelog, build-deb ships both units and builds the
    module's version."""
    tree = tmp_path / "tree"
    for name in ("scripts/build-deb", "scripts/lib.sh", "scripts/debian", "README.md", "CHANGELOG.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, tree / name)
    module = (ROOT / "iotinvoke.py").read_text()
    assert re.search(r'(?m)^__version__ = "[^"]+"$', module)
    (tree / "iotinvoke.py").write_text(re.sub(r'(?m)^__version__ = "[^"]+"$', '__version__ = "99.0.1"', module))
    (tree / "scripts/iotinvoke.socket").write_text(
        "[Unit]\nDescription=test\n\n[Socket]\nListenStream=/run/iotinvoke-test.sock\n\n[Install]\nWantedBy=sockets.target\n")
    (tree / "scripts/iotinvoke.service").write_text("[Unit]\nDescription=test\n\n[Service]\nExecStart=/usr/bin/iotinvoke --version\n")
    built = subprocess.run([str(tree / "scripts/build-deb"), "--no-lintian", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=900)
    if built.returncode == 69:
        pytest.skip(built.stderr.strip().splitlines()[-1])  # build tools missing, not installable here
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(tmp_path / "out" / "iotinvoke_99.0.1-1_all.deb")
    assert "building 99.0.1-1" in built.stderr
    contents = subprocess.run(["dpkg-deb", "-c", built.stdout.strip()], capture_output=True, text=True, check=True).stdout
    units = sorted(re.findall(r"/systemd/system/(iotinvoke\.\w+)$", contents, re.M))
    assert units == ["iotinvoke.service", "iotinvoke.socket"], contents
