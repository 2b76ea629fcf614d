"""--credential-process: AWS tools on the board use iotinvoke's credentials through a profile.

botocore (and the AWS CLI, when installed) reads a profile whose credential_process runs
iotinvoke, then calls the stand-in's Lambda with those credentials.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import PYTHON, ROOT, SCRIPT, SEED_ANSWER, environment
from standin import StandIn

FUNCTION = "arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest"
pytestmark = pytest.mark.own_standin()  # a stand-in no other module touches


@pytest.fixture
def profile(aws: StandIn, tmp_path: Path) -> dict[str, str]:
    """Environment for an AWS tool whose profile iot-dev gets its credentials from iotinvoke."""
    config = tmp_path / "aws-config"
    command = f"{PYTHON} {SCRIPT} --config {aws.config_path} --credential-process dev"
    config.write_text(f"[profile iot-dev]\ncredential_process = {command}\nregion = ap-northeast-1\n")
    env = environment(tmp_path / "cache")
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PROFILE="iot-dev")
    return env


def test_botocore_invokes_with_iotinvoke_credentials(aws: StandIn, profile: dict[str, str]) -> None:
    program = f"""
import json, botocore.session
session = botocore.session.Session()
client = session.create_client("lambda", endpoint_url={aws.urls['lambda']!r}, verify={str(aws.ca_path)!r})
answer = client.invoke(FunctionName={FUNCTION!r}, Payload=b'{{"via": "botocore"}}')
print(answer["Payload"].read().decode())
frozen = session.get_credentials().get_frozen_credentials()
print(frozen.access_key)
"""
    done = subprocess.run([sys.executable, "-c", program], env=profile, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    payload, access_key = done.stdout.splitlines()
    assert json.loads(payload) == json.loads(SEED_ANSWER)
    assert aws.invocations[-1]["event"] == {"via": "botocore"}
    assert aws.invocations[-1]["caller_arn"].startswith("arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/")
    # The same credentials iotinvoke itself cached: the tools share one cache.
    cached = [json.loads(p.read_text()) for p in Path(profile["IOTINVOKE_CACHE_DIR"]).glob("sts-*.json")]
    assert [entry["AccessKeyId"] for entry in cached] == [access_key]


def test_aws_cli_invokes_with_iotinvoke_credentials(aws: StandIn, profile: dict[str, str], tmp_path: Path) -> None:
    aws_cli = shutil.which("aws")
    if aws_cli is None:
        pytest.skip("the AWS CLI is not installed on this machine")
    out = tmp_path / "out.json"
    version = subprocess.run([aws_cli, "--version"], capture_output=True, text=True, env=profile).stdout
    raw = [] if version.startswith("aws-cli/1.") else ["--cli-binary-format", "raw-in-base64-out"]  # v2 wants base64
    done = subprocess.run(
        [aws_cli, "lambda", "invoke", "--function-name", FUNCTION, "--endpoint-url", aws.urls["lambda"],
         "--ca-bundle", str(aws.ca_path), *raw, "--payload", '{"via": "aws-cli"}', str(out)],
        env=profile, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == json.loads(SEED_ANSWER)
    assert aws.invocations[-1]["event"] == {"via": "aws-cli"}


def test_failure_is_reported_to_the_tool(aws: StandIn, profile: dict[str, str], tmp_path: Path) -> None:
    config = Path(profile["AWS_CONFIG_FILE"])
    config.write_text(config.read_text().replace("--credential-process dev", "--credential-process untrusted"))
    program = "import botocore.session; botocore.session.Session().get_credentials()"
    done = subprocess.run([sys.executable, "-c", program], env=profile, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "AccessDenied" in done.stderr and "iotinvoke: sts:" in done.stderr


def test_the_readmes_credential_process_line_works(aws: StandIn, tmp_path: Path) -> None:
    # README's line, with this repository as the install folder and this test's interpreter.
    line = re.search(r"^credential_process = (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert line, "README lost its credential_process example"
    command = line.group(1).replace("/usr/local/lib/iotinvoke", str(ROOT)).replace("python3 ", f"{PYTHON} ", 1)
    assert command != line.group(1) and "--credential-process dev" in command
    config = tmp_path / "aws-config"
    config.write_text(f"[profile iot-dev]\ncredential_process = {command}\nregion = ap-northeast-1\n")
    env = environment(tmp_path / "cache", {"IOTINVOKE_CONFIG": str(aws.config_path)})
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PROFILE="iot-dev")
    program = "import botocore.session; print(botocore.session.Session().get_credentials().get_frozen_credentials().access_key)"
    # Not from this repository's folder: python -m would find iotinvoke there without PYTHONPATH.
    done = subprocess.run([sys.executable, "-c", program], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    cached = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("sts-*.json")]
    assert [entry["AccessKeyId"] for entry in cached] == [done.stdout.strip()]
