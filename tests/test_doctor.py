"""--doctor: each hop checked afresh for an environment; every failure named with its likely cause
and fix. Each diagnosis is reached by a real cause in the stand-in's world."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli import Run, run
from standin import StandIn
from standin.world import DEVICE_ROLE_ARN, Role


def _add_other_invoker(stand_in: StandIn) -> None:
    """A role that trusts the IoT role, outside what the IoT role may assume (iotinvoke-*):
    AssumeRole is refused by the caller's identity policy, not by the trust policy."""
    stand_in.world.add_role(Role(
        arn="arn:aws:iam::111111111111:role/other-invoker",
        trust_policy={"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                               "Principal": {"AWS": DEVICE_ROLE_ARN}}]},
    ))


# This module's own stand-in, with environment identity-denied using that role.
pytestmark = pytest.mark.own_standin(
    setup=_add_other_invoker,
    config="\n[identity-denied]\nfunction = arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest\n"
           "role_arn = arn:aws:iam::111111111111:role/other-invoker\n",
)


def doctor(aws: StandIn, tmp_path: Path, env: str, replace: tuple[str, str] | None = None) -> Run:
    config = aws.config_path
    if replace is not None:
        text = config.read_text()
        assert replace[0] in text
        config = tmp_path / "variant.ini"
        config.write_text(text.replace(replace[0], replace[1]).replace("= certs/", f"= {aws.workdir}/certs/")
                          .replace("ca = ", f"ca = {aws.workdir}/").replace("ca_bundle = ", f"ca_bundle = {aws.workdir}/"))
    return run("--doctor", env, config=config, cache=tmp_path / "cache")


def report(result: Run) -> dict[str, str]:
    """check -> its status word, from the report's lines."""
    lines = result.stdout.decode().splitlines()
    return {line[6:15].strip(): line[:5].strip() for line in lines if not line.startswith(" ")}


def test_healthy_two_hop_and_one_hop(aws: StandIn, tmp_path: Path) -> None:
    before = len(aws.invocations)
    aws.reset_counts()
    ok = doctor(aws, tmp_path, "dev")
    assert ok.code == 0 and ok.stderr == ""
    assert report(ok) == {"config": "ok", "cache": "ok", "files": "ok", "hop 1": "ok", "clock": "ok", "identity": "ok",
                          "hop 2": "ok", "hop 3": "ok"}
    assert "assumed-role/iotinvoke-device/" in ok.stdout.decode()
    direct = doctor(aws, tmp_path, "direct")
    assert direct.code == 0
    assert report(direct)["hop 2"] == "skip" and report(direct)["log tail"] == "note"
    assert "Lambda returns the log tail only when the function is in the IoT role's account" in direct.stdout.decode()
    assert len(aws.invocations) == before, "DryRun runs nothing"
    assert aws.count("lambda") == 2, "but each doctor asked Lambda"


DIAGNOSES = [
    # (environment, config change, exit status, failing check, words of the cause, words of the fix)
    # A certificate from an unknown CA gets the same HTTP 403 as an inactive one, as on AWS
    # (scripts/lib/standin/iot.py): the answer does not tell the two apart, so the cause names both.
    ("dev", ("device.pem", "foreign.pem"), 77, "hop 1", "not registered with AWS IoT", "describe-certificate --certificate-id"),
    ("dev", ("device.pem", "inactive.pem"), 77, "hop 1", "inactive, revoked", "update-certificate"),
    ("dev", ("thing_name = edge-0001", "thing_name = edge-0009"), 77, "hop 1", "not attached", "attach-thing-principal"),
    ("dev", ("role_alias = iotinvoke-alias", "role_alias = iotinvoke-gone"), 69, "hop 1", "no role alias", "describe-role-alias"),
    ("dev", ("role_alias = iotinvoke-alias", "role_alias = iotinvoke-norole"), 69, "hop 1",
     "does not trust credentials.iot.amazonaws.com", '"Service": "credentials.iot.amazonaws.com"'),
    ("dev", ("role_alias = iotinvoke-alias", "role_alias = iotinvoke-long"), 69, "hop 1", "MaxSessionDuration", "update-role-alias"),
    ("untrusted", None, 77, "hop 2", "(a) the trust policy of arn:aws:iam::111111111111:role/iotinvoke-untrusted", "get-role --role-name iotinvoke-untrusted"),
    ("identity-denied", None, 77, "hop 2", "(b) arn:aws:iam::000000000000:role/iotinvoke-device is not allowed sts:AssumeRole", "get-role-policy --role-name iotinvoke-device"),
    ("noinvoke", None, 77, "hop 3", "is not allowed lambda:InvokeFunction", "identity policy allowing lambda:InvokeFunction"),
    ("direct-denied", None, 77, "hop 3", "resource policy naming arn:aws:iam::000000000000:role/iotinvoke-device", "aws lambda add-permission"),
    ("missing", None, 69, "hop 3", "no such function", "aws lambda get-function"),
]


@pytest.mark.parametrize("env, change, code, check, cause, fix", DIAGNOSES, ids=[f"{d[0]}-{d[3]}-{d[2]}-{i}" for i, d in enumerate(DIAGNOSES)])
def test_each_failure_named_with_cause_and_fix(aws: StandIn, tmp_path: Path, env: str, change: tuple[str, str] | None,
                                               code: int, check: str, cause: str, fix: str) -> None:
    result = doctor(aws, tmp_path, env, change)
    assert result.code == code, result.stdout.decode() + result.stderr
    text = result.stdout.decode()
    assert report(result)[check] == "FAIL", text
    cause_line = next(line for line in text.splitlines() if line.strip().startswith("cause:"))
    fix_line = next(line for line in text.splitlines() if line.strip().startswith("fix:"))
    assert cause in cause_line, text
    assert fix in fix_line, text


def test_wrong_endpoint_type_is_named_before_any_request(aws: StandIn, tmp_path: Path) -> None:
    data_endpoint = "a1b2c3d4e5f6g7-ats.iot.ap-northeast-1.amazonaws.com"
    result = doctor(aws, tmp_path, "dev", (aws.urls["iot"], data_endpoint))
    assert result.code == 78
    assert "this is the IoT data endpoint" in result.stderr and "iot:CredentialProvider" in result.stderr


def test_clock_skew_is_reported(aws: StandIn, tmp_path: Path) -> None:
    aws.clock_offset_s = 900.0
    result = doctor(aws, tmp_path, "dev")
    assert result.code == 0, result.stdout.decode()
    assert report(result)["clock"] == "warn"
    import re

    assert re.search(r"the board's clock is (899|900|901) s behind AWS's", result.stdout.decode())
    assert "NTP" in result.stdout.decode()
