"""Property-based tests: whatever AWS (or something pretending to be AWS) answers, and whatever the
configuration file holds, iotinvoke either understands it or says so with its own error and exit
status; it never crashes with another exception."""
from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

NOW = 1_700_000_000.0
PROTOCOL_OR_OK = {ii.EX_PROTOCOL}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
credential_fields = st.fixed_dictionaries(
    {},
    optional={
        "accessKeyId": json_values | st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=20),
        "secretAccessKey": json_values | st.text(min_size=1, max_size=40),
        "sessionToken": json_values | st.text(min_size=1, max_size=60),
        "expiration": json_values | st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123Z", "soon"]),
    },
)


def response(status: int, body: bytes, headers: dict[str, str]) -> ii._Response:
    from urllib3._collections import HTTPHeaderDict

    return ii._Response(status, HTTPHeaderDict(headers), body)


@SETTINGS
@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode())
       | credential_fields.map(lambda c: json.dumps({"credentials": c}).encode()))
def test_iot_parser_total(body: bytes) -> None:
    try:
        creds = ii._parse_iot_credentials(body, NOW)
    except ii.IotInvokeError as e:
        assert e.exit_code == ii.EX_PROTOCOL and "\n" not in str(e)
    else:
        assert all(isinstance(v, str) and v for v in (creds.access_key, creds.secret_key, creds.token))
        assert isinstance(creds.expiration, float)


xml_text = st.text(alphabet=string.ascii_letters + string.digits + "<>/&;:=\"' \n", max_size=30)


def assume_role_xml(parts: dict[str, str], wrapper: str) -> bytes:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in parts.items())
    return (f'<{wrapper} xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials>{inner}</Credentials></AssumeRoleResult></{wrapper}>").encode()


@SETTINGS
@given(
    st.binary(max_size=400)
    | st.builds(
        assume_role_xml,
        st.dictionaries(st.sampled_from(["AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]), xml_text),
        st.sampled_from(["AssumeRoleResponse", "ErrorResponse", "x"]),
    )
)
def test_sts_parser_total(body: bytes) -> None:
    try:
        creds = ii._parse_assume_role(body, NOW)
    except ii.IotInvokeError as e:
        assert e.exit_code == ii.EX_PROTOCOL and "\n" not in str(e)
    else:
        assert creds.access_key and creds.secret_key and creds.token


headers = st.dictionaries(
    st.sampled_from(["x-amzn-ErrorType", "x-amzn-RequestId", "Retry-After", "Date", "Content-Type"]),
    st.text(max_size=40).filter(lambda s: "\r" not in s and "\n" not in s),
)


@SETTINGS
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()), headers)
def test_error_mapping_total(status: int, body: bytes, head: dict[str, str]) -> None:
    config = ii.Config("x.ini")
    env = ii.Environment(name="dev", function="f", role_arn="arn:aws:iam::111111111111:role/r")
    for error in (
        ii._aws_error(response(status, body, head), "iot", None, config),
        ii._aws_error(response(status, body, head), "sts", env, config),
        ii._aws_error(response(status, body, head), "lambda", env, config),
    ):
        assert isinstance(error, ii.IotInvokeError)
        assert error.exit_code in ii.EXIT_CODES and error.exit_code not in (ii.EX_OK, ii.EX_FUNCTION_ERROR)
        text = str(error)
        assert "\n" not in text and len(text) < 1200


ini_lines = st.lists(
    st.one_of(
        st.sampled_from(["[iot]", "[dev]", "[DEFAULT]", "[", "]", "=", ";c", "#c", ""]),
        st.tuples(
            st.sampled_from(sorted(ii._IOT_KEYS | ii._ENV_KEYS | ii._SHARED_KEYS) + ["bogus"]),
            st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", ""), max_size=30),
        ).map(lambda kv: f"{kv[0]} = {kv[1]}"),
        st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s),
    ),
    max_size=14,
)


@SETTINGS
@given(ini_lines)
def test_config_loader_total(tmp_path_factory: object, lines: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "iotinvoke.ini"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            config = ii.load_config(str(path), environ={})
        except ii.ConfigError as e:
            assert e.exit_code == ii.EX_CONFIG and "\n" not in str(e) and str(path) in str(e)
        else:
            assert config.iot_endpoint.startswith("https://") and config.role_alias
            for env in config.environments.values():
                assert env.region and env.lambda_endpoint.startswith("https://")
