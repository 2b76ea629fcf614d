"""The configuration file: search order, relative paths, validation that names file, section and key."""
from __future__ import annotations

import textwrap
import os
from pathlib import Path

import pytest

import iotinvoke
from iotinvoke import EX_CONFIG, ConfigError, load_config

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

IOT = """\
[iot]
endpoint = c2abcdexample.credentials.iot.ap-northeast-1.amazonaws.com
role_alias = ADCCrossAccountTestAlias
cert = cert.pem.crt
key = private.pem.key
"""


def write(tmp_path: Path, text: str, name: str = "iotinvoke.ini") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_seed_layout_two_hop_and_direct(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        IOT
        + """
[dev]
function = arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest
role_arn = arn:aws:iam::111111111111:role/iotinvoke-dev
external_id = ext-123

[direct]
function = arn:aws:lambda:eu-west-1:111111111111:function:f
""",
    )
    config = load_config(str(path), environ={})
    assert config.iot_endpoint == "https://c2abcdexample.credentials.iot.ap-northeast-1.amazonaws.com"
    assert config.cert == str(tmp_path / "cert.pem.crt")  # relative to the file's folder
    assert config.ca is None
    dev = config.environments["dev"]
    assert not dev.direct and dev.external_id == "ext-123"
    assert dev.region == "ap-northeast-1"
    assert dev.sts_endpoint == "https://sts.ap-northeast-1.amazonaws.com"
    assert dev.lambda_endpoint == "https://lambda.ap-northeast-1.amazonaws.com"
    direct = config.environments["direct"]
    assert direct.direct and direct.region == "eu-west-1"
    assert direct.lambda_endpoint == "https://lambda.eu-west-1.amazonaws.com"


def test_region_falls_back_to_the_iot_endpoint_and_china_suffix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        IOT.replace("ap-northeast-1.amazonaws.com", "cn-north-1.amazonaws.com.cn")
        + "[dev]\nfunction = my-function\nrole_arn = arn:aws-cn:iam::111111111111:role/r\n",
    )
    dev = load_config(str(path), environ={}).environments["dev"]
    assert dev.region == "cn-north-1"
    assert dev.sts_endpoint == "https://sts.cn-north-1.amazonaws.com.cn"


def test_endpoint_overrides_follow_boto3_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[DEFAULT]\nsts_endpoint = https://localhost:1001\nlambda_endpoint = https://localhost:1002\n"
        "ca_bundle = ca.pem\n\n" + IOT + "[dev]\nfunction = 111111111111:function:f\nregion = us-east-1\n",
    )
    dev = load_config(str(path), environ={}).environments["dev"]
    assert (dev.sts_endpoint, dev.lambda_endpoint) == ("https://localhost:1001", "https://localhost:1002")
    assert dev.ca_bundle == str(tmp_path / "ca.pem")
    env = {"AWS_ENDPOINT_URL": "https://all:1", "AWS_ENDPOINT_URL_LAMBDA": "https://lam:2", "AWS_CA_BUNDLE": "/x.pem"}
    dev = load_config(str(path), environ=env).environments["dev"]
    assert (dev.sts_endpoint, dev.lambda_endpoint, dev.ca_bundle) == ("https://all:1", "https://lam:2", "/x.pem")


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, IOT, "explicit.ini")
    from_env = write(tmp_path, IOT, "env.ini")
    (tmp_path / "xdg" / "iotinvoke").mkdir(parents=True)
    user = write(tmp_path / "xdg" / "iotinvoke", IOT)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, IOT)  # ./iotinvoke.ini: never searched (a C program inherits its caller's folder)
    assert iotinvoke.find_config(str(explicit), {"IOTINVOKE_CONFIG": str(from_env)}) == str(explicit)
    assert iotinvoke.find_config(None, {"IOTINVOKE_CONFIG": str(from_env)}) == str(from_env)
    if os.geteuid() != 0:
        assert iotinvoke.find_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == str(user)
    elif not Path("/etc/iotinvoke/iotinvoke.ini").exists():
        # Root takes the board's file only: its environment may be another user's (sudo).
        with pytest.raises(ConfigError, match="create /etc/iotinvoke/iotinvoke.ini"):
            iotinvoke.find_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    if not Path("/etc/iotinvoke/iotinvoke.ini").exists():
        with pytest.raises(ConfigError, match="no configuration file.*/etc/iotinvoke/iotinvoke.ini"):
            iotinvoke.find_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "nowhere")})


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_configuration_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, IOT + "[dev]\nfunction = f\nregion = eu-west-1\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert (info.value.exit_code, info.value.reason) == (EX_CONFIG, "config-unsafe") and "writable" in str(info.value)
    path.chmod(0o644)
    assert load_config(str(path), environ={}).environments["dev"].region == "eu-west-1"


@pytest.mark.parametrize("key, mode, problem", [("key", 0o644, "readable by others"), ("key", 0o622, "writable"),
                                                ("cert", 0o666, "writable"), ("ca", 0o646, "writable")])
def test_files_the_configuration_names_are_checked(tmp_path: Path, key: str, mode: int, problem: str) -> None:
    for name in ("cert.pem.crt", "private.pem.key", "ca.pem"):
        (tmp_path / name).write_text("x")
        (tmp_path / name).chmod(0o600)
    target = {"key": "private.pem.key", "cert": "cert.pem.crt", "ca": "ca.pem"}[key]
    (tmp_path / target).chmod(mode)
    path = write(tmp_path, IOT + "ca = ca.pem\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert (info.value.reason, info.value.key) == ("file-unsafe", key) and problem in str(info.value)


def test_a_fifo_named_by_the_configuration_is_refused_at_once(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pin")
    path = write(tmp_path, IOT + "pin_file = pin\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert info.value.reason == "file-unsafe" and "not a regular file" in str(info.value)


BAD = [
    ("", "missing section \\[iot\\]"),
    ("[iot]\nendpoint = x.credentials.iot.us-east-1.amazonaws.com\n", "\\[iot\\] role_alias: missing required key"),
    (IOT.replace("ADCCrossAccountTestAlias", "bad alias!"), "\\[iot\\] role_alias: invalid value"),
    (IOT.replace("credentials.iot", "iot"), "\\[iot\\] endpoint: this is the IoT data endpoint"),
    (IOT.replace("c2abcdexample.credentials.iot", "sts"), "\\[iot\\] endpoint: this is the endpoint of another AWS service"),
    (IOT.replace("c2abcdexample.credentials", "http://c2abcdexample.credentials"), "\\[iot\\] endpoint: invalid value"),
    (IOT + "thing_name = has space\n", "\\[iot\\] thing_name: invalid value"),
    (IOT + "[dev]\nrole_arn = arn:aws:iam::111111111111:role/r\n", "\\[dev\\] function: missing required key"),
    (IOT + "[dev]\nfunction = arn:aws:s3:::bucket\n", "\\[dev\\] function: invalid value .*expected a function name"),
    (IOT + "[dev]\nfunction = f\nrolearn = arn:aws:iam::111111111111:role/r\n", "\\[dev\\] rolearn: unknown key"),
    (IOT + "[dev]\nfunction = f\nrole_arn = arn:aws:iam::1111:role/r\n", "\\[dev\\] role_arn: invalid value"),
    (IOT + "[dev]\nfunction = f\nexternal_id = abc\n", "\\[dev\\] external_id: external_id needs role_arn"),
    (IOT + "[dev]\nfunction = f\nrole_arn = arn:aws:iam::111111111111:role/r\nexternal_id = a\n",
     "\\[dev\\] external_id: invalid value"),
    (IOT + "[dev]\nfunction = f\nregion = Tokyo\n", "\\[dev\\] region: invalid value"),
    (IOT + "[dev]\nfunction = f\nrole_arn = arn:aws:iam::111111111111:role/r\nduration_seconds = 7200\n",
     "\\[dev\\] duration_seconds: invalid value '7200': expected a whole number from 900 to 3600"),
    ("[DEFAULT]\nfunction = f\n" + IOT, "\\[DEFAULT\\] function: unknown key"),
    (IOT + "connect_timeout = soon\n", "connect_timeout: invalid value 'soon': expected seconds"),
    (IOT + "[dev\n", "not a valid INI file"),
    (IOT + "[dev]\nfunction = f\nfunction = g\n", "not a valid INI file"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_every_mistake_names_its_place(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert info.value.exit_code == EX_CONFIG
    assert str(path) in str(info.value)
    assert __import__("re").search(message, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_region_required_for_a_bare_name_on_a_custom_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, IOT.replace("c2abcdexample.credentials.iot.ap-northeast-1.amazonaws.com", "https://localhost:8443")
                 + "[dev]\nfunction = f\n")
    with pytest.raises(ConfigError, match="\\[dev\\] region: cannot tell the region"):
        load_config(str(path), environ={})


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(str(tmp_path / "absent.ini"), environ={})
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"\xff\xfe[iot]\n")
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(str(binary), environ={})


def test_settings_in_the_wrong_section_are_errors_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "[DEFAULT]\nconnect_timeout = 2\n" + IOT + "[dev]\nfunction = f\nconnect_timeout = 9\n")
    with pytest.raises(ConfigError, match="\\[dev\\] connect_timeout: unknown key"):
        load_config(str(path), environ={})
    path = write(tmp_path, "[DEFAULT]\nconnect_timeout = 2\ncredentials_timeout = 3\n" + IOT + "[dev]\nfunction = f\n")
    config = load_config(str(path), environ={})
    assert (config.connect_timeout, config.credentials_timeout) == (2.0, 3.0)
    path = write(tmp_path, IOT + "sts_endpoint = https://localhost:1\n")
    with pytest.raises(ConfigError, match="\\[iot\\] sts_endpoint: unknown key"):
        load_config(str(path), environ={})


def test_each_key_is_accepted_where_its_row_says_and_refused_elsewhere(tmp_path: Path) -> None:
    """CONFIG_KEYS (from which README's table is made) is what the loader accepts where."""
    values = {"sts_endpoint": "https://sts.example", "lambda_endpoint": "https://lambda.example", "ca_bundle": "ca.pem",
              "cache_dir": "cache", "connect_timeout": "2", "credentials_timeout": "3", "read_timeout": "4",
              "max_attempts": "5", "learn_clock": "false"}
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "ca.pem").chmod(0o644)
    dev = "\n[dev]\nfunction = arn:aws:lambda:ap-northeast-1:111111111111:function:f\n"
    for key, (scope, *_) in iotinvoke.CONFIG_KEYS.items():
        if key not in values:
            continue
        setting = f"{key} = {values[key]}\n"
        load_config(str(write(tmp_path, "[DEFAULT]\n" + setting + IOT + dev)), environ={})
        in_iot, in_env = IOT + setting + dev, IOT + dev + setting
        for text, allowed in ((in_iot, scope == "global"), (in_env, scope == "per-env")):
            if allowed:
                load_config(str(write(tmp_path, text)), environ={})
            else:
                with pytest.raises(ConfigError) as refused:
                    load_config(str(write(tmp_path, text)), environ={})
                assert refused.value.exit_code == EX_CONFIG and key in str(refused.value)


def test_partitions_match_the_installed_botocore() -> None:
    """Every partition iotinvoke knows has the DNS suffix and region pattern of botocore's own data
    (partitions.json where this botocore has it, else endpoints.json), and every region botocore
    lists for those partitions is accepted with the right suffix."""
    import json
    import os
    import re

    import botocore

    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    known = {name: (suffix, pattern) for name, suffix, pattern in iotinvoke.PARTITIONS}
    with open(os.path.join(data, "endpoints.json")) as f:
        partitions = {p["partition"]: p for p in json.load(f)["partitions"]}
    checked = 0
    for name, (suffix, pattern) in known.items():
        if name not in partitions:
            continue  # an older botocore (Debian 12's 1.29) predates aws-eusc
        partition = partitions[name]
        assert partition["dnsSuffix"] == suffix, name
        # The same pattern, or (an older botocore: Debian 12's 1.29 predates il and mx) one whose
        # alternatives are all ours.
        theirs, ours = partition["regionRegex"].replace("\\", ""), "^" + pattern.replace("\\", "") + "$"
        head = re.compile(r"\^\(([a-z|]+)\)(.*)")
        if theirs != ours:
            assert head.match(theirs) and head.match(ours), (name, theirs, ours)
            assert set(head.match(theirs).group(1).split("|")) <= set(head.match(ours).group(1).split("|")), name
            assert head.match(theirs).group(2) == head.match(ours).group(2), name
        for region in partition["regions"]:
            assert [p[0] for p in iotinvoke.PARTITIONS if re.fullmatch(p[2], region, re.ASCII)] == [name], region
            checked += 1
    assert checked >= 30
    for name in set(partitions) - set(known):
        assert name.startswith("aws-iso"), "a new partition in botocore: %s" % name
    iso = next(iter(r for p in partitions.values() if p["partition"].startswith("aws-iso") for r in p["regions"]))
    assert not any(re.fullmatch(p[2], iso, re.ASCII) for p in iotinvoke.PARTITIONS)


@pytest.mark.parametrize("endpoint, problem", [("https://h.example:99999", "port"), ("https://h.example:0", "port"),
                                               ("h.example:\u0664\u0664\u0663", "port"), ("a..b", "host"),
                                               ("https://[::g]", "host")])
def test_a_bad_endpoint_is_a_configuration_error(tmp_path: Path, endpoint: str, problem: str) -> None:
    path = write(tmp_path, IOT + "[dev]\nfunction = f\nregion = eu-west-1\nlambda_endpoint = %s\n" % endpoint)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert (info.value.exit_code, info.value.key) == (EX_CONFIG, "lambda_endpoint"), problem
