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
from fakes import Answer, FakeTransport, make_client, make_config

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


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ii.Config:
    return make_config(tmp_path_factory.mktemp("config"))


def hop(config: ii.Config, name: str, status: int, body: bytes, head: dict[str, str] | None = None) -> object:
    """What the Client makes of one answer of hop ``name`` (hops before it answered as expected)."""
    source = ii.Credentials("ASIAX", "secret", "token", 2e9, NOW)
    answer = Answer(status, body)
    answer.headers.update(head or {})
    transport = FakeTransport(**{name: [answer] * ii.MAX_ATTEMPTS})
    client = make_client(config, transport)
    if name == "iot":
        return client.fetch_iot_credentials()
    if name == "sts":
        return client.assume_role("dev", source)
    return client.invoke("dev", b"{}", credentials=source)


@SETTINGS
@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode())
       | credential_fields.map(lambda c: json.dumps({"credentials": c}).encode()))
def test_iot_parser_total(config: ii.Config, body: bytes) -> None:
    try:
        creds = hop(config, "iot", 200, body)
    except ii.IotInvokeError as e:
        assert e.exit_code == ii.EX_PROTOCOL and "\n" not in str(e)
    else:
        assert isinstance(creds, ii.Credentials)
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
def test_sts_parser_total(config: ii.Config, body: bytes) -> None:
    try:
        creds = hop(config, "sts", 200, body)
    except ii.IotInvokeError as e:
        assert e.exit_code == ii.EX_PROTOCOL and "\n" not in str(e)
    else:
        assert isinstance(creds, ii.Credentials) and creds.access_key and creds.secret_key and creds.token


headers = st.dictionaries(
    st.sampled_from(["x-amzn-ErrorType", "x-amzn-RequestId", "Retry-After", "Date", "Content-Type"]),
    st.text(max_size=40).filter(lambda s: "\r" not in s and "\n" not in s),
)


@SETTINGS
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()), headers)
def test_error_mapping_total(config: ii.Config, status: int, body: bytes, head: dict[str, str]) -> None:
    if status in (200, 202, 204):
        return  # not an error answer
    for name in ("iot", "sts", "lambda"):
        with pytest.raises(ii.IotInvokeError) as info:
            hop(config, name, status, body, head)
        error = info.value
        assert error.exit_code in ii.EXIT_CODES and error.exit_code not in (ii.EX_OK, ii.EX_FUNCTION_ERROR)
        text = str(error)
        assert "\n" not in text and len(text) < 1200


ini_lines = st.lists(
    st.one_of(
        st.sampled_from(["[iot]", "[dev]", "[DEFAULT]", "[", "]", "=", ";c", "#c", ""]),
        st.tuples(
            st.sampled_from(sorted(ii.CONFIG_KEYS) + ["bogus"]),
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


plain_ini_lines = st.lists(
    st.one_of(
        st.sampled_from(["[iot]", "[dev]", "[Dev]", "[DEFAULT]", "[a b]", "[x]y", "[]", "", "   ", ";c", "#c",
                         "  ;c", "  k = continued", "\tmore", "k", "= v", "[dev] ; c"]),
        st.tuples(
            st.sampled_from(["function", "Role_Arn", "ca", "ca_bundle", "a.b-c", "k k", "k\u00e9", ""]),
            st.sampled_from([" = ", "=", ": ", " :", " = x:", "\t=\t"]),
            st.text(alphabet="ab :=;#[]\t\u00a0\u00e9", max_size=12),
        ).map("".join),
    ),
    max_size=12,
).flatmap(lambda lines: st.sampled_from(["[iot]", "[DEFAULT]", "[Dev]", ""]).map(lambda head: [head] + lines))


@SETTINGS
@given(plain_ini_lines)
def test_plain_ini_reader_agrees_with_configparser(lines: list[str]) -> None:
    """Whatever _read_plain_ini accepts, configparser reads the same; what it refuses goes to
    configparser (whose result or error message load_config then uses)."""
    import configparser

    text_lines = [line + "\n" for line in lines]
    plain = ii._read_plain_ini(text_lines)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_file(text_lines, source="x.ini")
    except configparser.Error:
        assert plain is None
        return
    if plain is None:
        return
    assert plain.defaults() == dict(parser.defaults())
    assert plain.sections() == parser.sections()
    for name in parser.sections():
        assert plain.has_section(name)
        assert list(plain[name].items()) == list(parser[name].items())


def test_the_usual_configuration_is_read_without_configparser(tmp_path: Path) -> None:
    """The README's layout (inline comments, [DEFAULT], several environments) takes the fast path."""
    import subprocess
    import sys

    path = tmp_path / "iotinvoke.ini"
    path.write_text(
        "# devices of line 3\n[DEFAULT]\nca_bundle = ca.pem\n\n[iot]\n"
        "endpoint = c2abcdexample.credentials.iot.ap-northeast-1.amazonaws.com  ; describe-endpoint\n"
        "role_alias = ADCCrossAccountTestAlias\ncert = cert.pem.crt\nkey = private.pem.key\n"
        "thing_name = edge-0001        # sent as x-amzn-iot-thingname\n\n[dev]\n"
        "function = arn:aws:lambda:ap-northeast-1:111111111111:function:ADCCrossAccountTest\n"
        "role_arn = arn:aws:iam::111111111111:role/iotinvoke-dev   ; absent: one-hop mode\n"
        "[stg]\nfunction = 111111111111:function:f-stg\nregion: ap-northeast-1\n", encoding="utf-8")
    assert ii._read_plain_ini(path.read_text(encoding="utf-8").splitlines(keepends=True)) is not None
    code = ("import sys, iotinvoke; c = iotinvoke.load_config(sys.argv[1], environ={}); "
            "print(sorted(c.environments), c.environments['stg'].region, 'configparser' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          cwd=Path(ii.__file__).parent, check=True)
    assert done.stdout.split() == ["['dev',", "'stg']", "ap-northeast-1", "False"], done.stdout
