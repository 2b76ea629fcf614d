"""The stand-in's SigV4 verifier against AWS's published test vectors and against botocore's signer.

Data: scripts/tests/data/aws-sigv4-test-suite/v4 (AWS's suite as kept in awslabs/aws-c-auth), one folder
per case. The suite's request paths are raw, i.e. they are what "the wire" sent.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from standin.sigv4 import (
    SigV4Error,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    normalize_path,
    parse_authorization,
    signature,
    signing_key,
    string_to_sign,
    uri_encode,
    verify,
)

# AWS's suite (Apache-2.0, LICENSE beside it), kept in the repo so that it can never be skipped.
SUITE = Path(__file__).resolve().parent / "data" / "aws-sigv4-test-suite" / "v4"
CASES = sorted(p.name for p in SUITE.iterdir() if p.is_dir())
WINDOW_S = 300

# ---------------------------------------------------------------- reading the suite


@dataclass
class RawRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


def parse_http(data: bytes) -> RawRequest:
    """A raw HTTP/1.1 request as the suite writes it: LF line ends, folded header lines, raw UTF-8 target."""
    head, sep, body = data.partition(b"\n\n")
    if not sep:
        head, body = data.rstrip(b"\n"), b""
    lines = head.decode("utf-8").split("\n")
    request_line = lines[0]
    # The target may itself hold spaces (`/example space/`): method first, version last.
    method, _, rest = request_line.partition(" ")
    target, _, _version = rest.rpartition(" ")
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # obsolete line folding: continues the previous value
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
            continue
        name, _, value = line.partition(":")
        headers.append((name, value))
    return RawRequest(method, path, query, headers, body)


@dataclass
class Case:
    name: str
    context: dict
    request: RawRequest
    signed_request: RawRequest
    expected_canonical: str
    expected_sts: str
    expected_signature: str

    @property
    def secret(self) -> str:
        return self.context["credentials"]["secret_access_key"]

    @property
    def access_key(self) -> str:
        return self.context["credentials"]["access_key_id"]

    @property
    def timestamp(self) -> datetime:
        return datetime.strptime(self.context["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)

    @property
    def amz_date(self) -> str:
        return self.timestamp.strftime("%Y%m%dT%H%M%SZ")

    @property
    def scope(self) -> str:
        return f"{self.amz_date[:8]}/{self.context['region']}/{self.context['service']}/aws4_request"


def load(name: str) -> Case:
    folder = SUITE / name
    return Case(
        name=name,
        context=json.loads((folder / "context.json").read_text()),
        request=parse_http((folder / "request.txt").read_bytes()),
        signed_request=parse_http((folder / "header-signed-request.txt").read_bytes()),
        expected_canonical=(folder / "header-canonical-request.txt").read_text(encoding="utf-8"),
        expected_sts=(folder / "header-string-to-sign.txt").read_text(encoding="utf-8"),
        expected_signature=(folder / "header-signature.txt").read_text(encoding="utf-8").strip(),
    )


def headers_the_signer_adds(case: Case) -> list[tuple[str, str]]:
    """What a signer adds to request.txt before signing, per the suite's context.json."""
    headers = list(case.request.headers)
    headers.append(("X-Amz-Date", case.amz_date))
    token = case.context["credentials"].get("token")
    if token and not case.context.get("omit_session_token"):
        headers.append(("X-Amz-Security-Token", token))
    if case.context.get("sign_body"):
        headers.append(("X-Amz-Content-Sha256", hashlib.sha256(case.request.body).hexdigest()))
    return headers


def my_canonical(case: Case) -> str:
    headers = headers_the_signer_adds(case)
    signed = sorted({name.lower() for name, _ in headers})
    return canonical_request(
        case.request.method,
        case.request.path,
        case.request.query,
        headers,
        signed,
        hashlib.sha256(case.request.body).hexdigest(),
        normalize=case.context["normalize"],
    )


def verify_signed(case: Case, req: RawRequest | None = None, *, now: datetime | None = None):
    req = req or case.signed_request
    return verify(
        req.method,
        req.path,
        req.query,
        req.headers,
        req.body,
        service=case.context["service"],
        region=case.context["region"],
        lookup_secret={case.access_key: case.secret}.get,
        now=now or case.timestamp,
        window_s=WINDOW_S,
        normalize=case.context["normalize"],
    )


def replace_header(req: RawRequest, name: str, change) -> RawRequest:
    """A copy of `req` where the first header called `name` has its value passed through `change`."""
    headers = list(req.headers)
    for i, (key, value) in enumerate(headers):
        if key.lower() == name:
            headers[i] = (key, change(value))
            break
    else:
        raise AssertionError(f"no header {name}")
    return RawRequest(req.method, req.path, req.query, headers, req.body)


def alter_one_char(value: str) -> str:
    """Change one character so the value stays well-formed: the last digit, else the last letter's case."""
    for i in range(len(value) - 1, -1, -1):
        ch = value[i]
        if ch.isdigit():
            return value[:i] + str((int(ch) + 1) % 10) + value[i + 1 :]
    for i in range(len(value) - 1, -1, -1):
        if value[i].isalpha():
            return value[:i] + value[i].swapcase() + value[i + 1 :]
    raise AssertionError(f"nothing to alter in {value!r}")


# ---------------------------------------------------------------- the vectors


def test_suite_is_complete() -> None:
    assert len(CASES) == 38


@pytest.mark.parametrize("name", CASES)
def test_canonical_request_matches_vector(name: str) -> None:
    case = load(name)
    assert my_canonical(case) == case.expected_canonical


@pytest.mark.parametrize("name", CASES)
def test_string_to_sign_matches_vector(name: str) -> None:
    case = load(name)
    assert string_to_sign(case.amz_date, case.scope, case.expected_canonical) == case.expected_sts


@pytest.mark.parametrize("name", CASES)
def test_signature_matches_vector(name: str) -> None:
    case = load(name)
    got = signature(case.secret, case.amz_date, case.context["region"], case.context["service"], my_canonical(case))
    assert got == case.expected_signature


@pytest.mark.parametrize("name", CASES)
def test_verify_accepts_signed_request(name: str) -> None:
    case = load(name)
    result = verify_signed(case)
    assert result.access_key == case.access_key
    assert result.amz_date == case.timestamp
    assert (result.region, result.service) == (case.context["region"], case.context["service"])
    _, _, _, _, signed, _ = parse_authorization(dict((k.lower(), v) for k, v in case.signed_request.headers)["authorization"])
    assert list(result.signed_headers) == signed
    # The token is reported whether or not it was signed (post-sts-header-after sends it unsigned).
    assert result.security_token == case.context["credentials"].get("token")


@pytest.mark.parametrize("name", CASES)
def test_verify_rejects_altered_body(name: str) -> None:
    case = load(name)
    req = case.signed_request
    body = req.body[:-1] + bytes([req.body[-1] ^ 1]) if req.body else b"x"
    with pytest.raises(SigV4Error) as err:
        verify_signed(case, RawRequest(req.method, req.path, req.query, req.headers, body))
    assert err.value.kind == "signature"


@pytest.mark.parametrize("name", CASES)
def test_verify_rejects_each_altered_signed_header(name: str) -> None:
    case = load(name)
    auth = dict((k.lower(), v) for k, v in case.signed_request.headers)["authorization"]
    _, _, _, _, signed, _ = parse_authorization(auth)
    for header in signed:
        altered = replace_header(case.signed_request, header, alter_one_char)
        with pytest.raises(SigV4Error) as err:
            verify_signed(case, altered)
        assert err.value.kind == "signature", header


@pytest.mark.parametrize("name", CASES)
def test_verify_rejects_altered_signature(name: str) -> None:
    case = load(name)
    altered = replace_header(case.signed_request, "authorization", lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"))
    with pytest.raises(SigV4Error) as err:
        verify_signed(case, altered)
    assert err.value.kind == "signature"
    assert err.value.message.startswith("The request signature we calculated does not match")


@pytest.mark.parametrize("name", CASES)
def test_verify_enforces_the_window(name: str) -> None:
    case = load(name)
    edge = timedelta(seconds=WINDOW_S)
    verify_signed(case, now=case.timestamp + edge)  # exactly at the edge: still accepted
    verify_signed(case, now=case.timestamp - edge)
    with pytest.raises(SigV4Error) as late:
        verify_signed(case, now=case.timestamp + edge + timedelta(seconds=1))
    assert late.value.kind == "expired"
    with pytest.raises(SigV4Error) as early:
        verify_signed(case, now=case.timestamp - edge - timedelta(seconds=1))
    assert early.value.kind == "not_yet"


# ---------------------------------------------------------------- the building blocks


def test_uri_encode_keeps_unreserved_only() -> None:
    assert uri_encode("-._~AZaz09") == "-._~AZaz09"
    assert uri_encode("a b/c:d+ሴ") == "a%20b%2Fc%3Ad%2B%E1%88%B4"
    assert uri_encode("/a b/", safe="/") == "/a%20b/"


@pytest.mark.parametrize(
    "path, normalized",
    [("", "/"), ("/", "/"), ("//", "/"), ("/./", "/"), ("/example/..", "/"), ("//example//", "/example/"),
     ("/a/./b/../c", "/a/c"), ("/a%2F..%2Fb", "/a%2F..%2Fb"), ("/..", "/")],
)
def test_normalize_path(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized


def test_canonical_uri_encodes_the_wire_path_once_more() -> None:
    wire = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations"
    assert canonical_uri(wire) == wire.replace("%3A", "%253A")
    # S3 rule: the wire path (already encoded once) is the canonical URI.
    assert canonical_uri(wire, double_encode=False) == wire
    assert canonical_uri("//a//", normalize=False) == "//a//"


def test_canonical_query_decodes_reencodes_and_sorts() -> None:
    assert canonical_query("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c="
    assert canonical_query("Qualifier=prod") == "Qualifier=prod"
    assert canonical_query("k=a%3ab&sp=a%20b&plus=a+b") == "k=a%3Ab&plus=a%2Bb&sp=a%20b"
    assert canonical_query("") == ""


def test_canonical_headers_trim_collapse_and_join() -> None:
    headers = [("My-Header", "  a   b \n  c "), ("HOST", "h"), ("my-header", "d"), ("Ignored", "x")]
    assert canonical_headers(headers, ["host", "my-header"]) == "host:h\nmy-header:a b c,d\n"


def test_parse_authorization() -> None:
    value = "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab12"
    assert parse_authorization(value) == ("AK", "20150830", "us-east-1", "sts", ["host", "x-amz-date"], "ab12")


@pytest.mark.parametrize(
    "value, wording",
    [
        ("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/sts/aws4_request, Signature=ab",
         "Authorization header requires 'SignedHeaders' parameter."),
        ("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/sts, SignedHeaders=host, Signature=ab",
         "Credential must have exactly 5 slash-delimited elements"),
        ("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/sts/aws5_request, SignedHeaders=host, Signature=ab",
         "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."),
        ("AWS4-HMAC-SHA256 FooBar, SignedHeaders=host", "'FooBar' not a valid key=value pair (missing equal-sign)"),
        ("AWS4-HMAC-SHA512 Credential=x", "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'."),
        ("Bearer abc.def", "Authorization header requires 'Credential' parameter."),
    ],
)
def test_parse_authorization_rejects_malformed(value: str, wording: str) -> None:
    with pytest.raises(SigV4Error) as err:
        parse_authorization(value)
    assert err.value.kind == "malformed"
    assert wording in err.value.message


# ---------------------------------------------------------------- verify: every refusal, AWS's wording

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc)


def signed(
    *,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    body: bytes = b"Action=GetCallerIdentity&Version=2011-06-15",
    when: datetime = NOW,
    scope: tuple[str, str, str] | None = None,
    signed_names: list[str] | None = None,
    extra: list[tuple[str, str]] | None = None,
    date_header: str = "X-Amz-Date",
) -> list[tuple[str, str]]:
    """Headers of a request signed by this module's own primitives (for the refusal tests)."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date, region, service = scope or (amz_date[:8], "us-east-1", "sts")
    headers = [("Host", "sts.us-east-1.amazonaws.com"), (date_header, amz_date), *(extra or [])]
    names = signed_names or sorted(name.lower() for name, _ in headers)
    canonical = canonical_request(method, path, query, headers, names, hashlib.sha256(body).hexdigest())
    # Signed over the scope as given, even a wrong one, as a misconfigured client would.
    sts = string_to_sign(amz_date, f"{date}/{region}/{service}/aws4_request", canonical)
    sig = hmac.new(signing_key(SECRET, date, region, service), sts.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/{region}/{service}/aws4_request, SignedHeaders={';'.join(names)}, Signature={sig}"
    return [*headers, ("Authorization", auth)]


def check(headers: list[tuple[str, str]], *, body: bytes = b"Action=GetCallerIdentity&Version=2011-06-15",
          now: datetime = NOW, window_s: int = 900, method: str = "POST", path: str = "/", query: str = ""):
    return verify(method, path, query, headers, body, service="sts", region="us-east-1",
                  lookup_secret={"AKIDEXAMPLE": SECRET}.get, now=now, window_s=window_s)


def refusal(headers: list[tuple[str, str]], **kw) -> SigV4Error:
    with pytest.raises(SigV4Error) as err:
        check(headers, **kw)
    return err.value


def test_own_signer_is_accepted() -> None:
    assert check(signed()).access_key == "AKIDEXAMPLE"


def test_missing_authorization() -> None:
    err = refusal([("Host", "sts.us-east-1.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")])
    assert (err.kind, err.message) == ("missing", "Missing Authentication Token")


def test_bearer_token_is_incomplete_signature_without_echoing_the_token() -> None:
    err = refusal([("Host", "h"), ("Authorization", "Bearer s3cr3t-token")])
    assert err.kind == "malformed"
    assert err.message == (
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either "
        "a 'X-Amz-Date' or a 'Date' header. Authorization=Bearer"
    )
    assert "s3cr3t" not in err.message


def test_missing_date_header() -> None:
    headers = [(k, v) for k, v in signed() if k != "X-Amz-Date"]
    err = refusal(headers)
    assert err.kind == "malformed"
    assert err.message.startswith("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")


def test_duplicate_authorization_is_malformed() -> None:
    headers = signed()
    assert refusal(headers + [headers[-1]]).kind == "malformed"


def test_host_must_be_signed() -> None:
    err = refusal(signed(signed_names=["x-amz-date"]))
    assert (err.kind, err.message) == ("malformed", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")


def test_date_must_be_signed() -> None:
    err = refusal(signed(signed_names=["host"]))
    assert (err.kind, err.message) == ("malformed", "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")


def test_bad_date_format() -> None:
    headers = [(k, "2015-08-30T12:36:00Z" if k == "X-Amz-Date" else v) for k, v in signed()]
    err = refusal(headers)
    assert err.kind == "malformed"
    assert err.message == ("Date must be in ISO-8601 'basic format'. Got '2015-08-30T12:36:00Z'. "
                           "See http://en.wikipedia.org/wiki/ISO_8601")


def test_http_date_header_is_accepted_when_signed() -> None:
    headers = [(k, v) for k, v in signed() if k not in ("X-Amz-Date", "Authorization")]
    headers.append(("Date", "Sun, 30 Aug 2015 12:36:00 GMT"))
    # Sign over the Date header; the string to sign still uses the ISO-8601 basic time.
    canonical = canonical_request("POST", "/", "", headers, ["date", "host"],
                                  hashlib.sha256(b"Action=GetCallerIdentity&Version=2011-06-15").hexdigest())
    sig = signature(SECRET, "20150830T123600Z", "us-east-1", "sts", canonical)
    headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, "
                                     f"SignedHeaders=date;host, Signature={sig}"))
    assert check(headers).amz_date == NOW


def test_expired_wording_matches_aws() -> None:
    # Times of a Lambda InvalidSignatureException reported publicly (serverless/serverless#27,
    # aws/aws-cli#4600): "Signature expired: 20150806T131223Z is now earlier than ...".
    when = datetime(2015, 8, 6, 13, 12, 23, tzinfo=timezone.utc)
    err = refusal(signed(when=when), now=datetime(2015, 8, 6, 13, 20, 34, tzinfo=timezone.utc), window_s=300)
    assert (err.kind, err.message) == (
        "expired", "Signature expired: 20150806T131223Z is now earlier than 20150806T131534Z (20150806T132034Z - 5 min.)")


def test_not_yet_wording_matches_aws() -> None:
    when = NOW + timedelta(minutes=15, seconds=1)
    err = refusal(signed(when=when))
    assert (err.kind, err.message) == (
        "not_yet", "Signature not yet current: 20150830T125101Z is still later than 20150830T125100Z (20150830T123600Z + 15 min.)")


def test_window_is_checked_before_the_scope() -> None:
    # AWS reports the clock before a wrong region (scratchstack's error-ordering reproduction).
    err = refusal(signed(when=NOW - timedelta(hours=1), scope=("20150830", "eu-west-1", "sts")))
    assert err.kind == "expired"


def test_wrong_region() -> None:
    err = refusal(signed(scope=("20150830", "eu-west-1", "sts")))
    assert (err.kind, err.message) == ("region", "Credential should be scoped to a valid region. ")


def test_wrong_service() -> None:
    err = refusal(signed(scope=("20150830", "us-east-1", "lambda")))
    assert (err.kind, err.message) == ("service", "Credential should be scoped to correct service: 'sts'. ")


def test_wrong_scope_date() -> None:
    err = refusal(signed(scope=("20150829", "us-east-1", "sts")))
    assert err.kind == "scope_date"
    assert err.message == ("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                           "'20150829' != '20150830', from '20150830T123600Z'. ")


def test_every_scope_error_is_listed_kind_is_the_first() -> None:
    err = refusal(signed(scope=("20150829", "eu-west-1", "lambda")))
    assert err.kind == "region"
    assert "valid region" in err.message and "correct service" in err.message and "Date in Credential" in err.message


def test_wrong_terminator() -> None:
    headers = [(k, v.replace("/aws4_request", "/aws5_request") if k == "Authorization" else v) for k, v in signed()]
    err = refusal(headers)
    assert err.kind == "malformed"
    assert "valid terminator: 'aws4_request', not 'aws5_request'" in err.message


def test_unknown_key() -> None:
    headers = [(k, v.replace("AKIDEXAMPLE", "AKIDOTHER") if k == "Authorization" else v) for k, v in signed()]
    err = refusal(headers)
    assert (err.kind, err.message) == ("unknown_key", "The security token included in the request is invalid.")


def test_wrong_secret_is_a_signature_mismatch_and_never_echoes_a_secret() -> None:
    with pytest.raises(SigV4Error) as err:
        verify("POST", "/", "", signed(), b"Action=GetCallerIdentity&Version=2011-06-15", service="sts",
               region="us-east-1", lookup_secret=lambda _: "another-secret", now=NOW, window_s=900)
    assert err.value.kind == "signature"
    assert SECRET not in str(err.value) and "another-secret" not in str(err.value)


def test_content_sha256_header_must_match_the_body() -> None:
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    good = signed(extra=[("X-Amz-Content-Sha256", hashlib.sha256(body).hexdigest())])
    check(good)
    lie = signed(extra=[("X-Amz-Content-Sha256", hashlib.sha256(b"other").hexdigest())])
    err = refusal(lie)
    assert err.kind == "signature"
    assert "x-amz-content-sha256" in err.message


def test_unsigned_payload_is_signed_as_the_literal() -> None:
    headers = [("Host", "h"), ("X-Amz-Date", "20150830T123600Z"), ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")]
    names = ["host", "x-amz-content-sha256", "x-amz-date"]
    sig = signature(SECRET, "20150830T123600Z", "us-east-1", "sts",
                    canonical_request("POST", "/", "", headers, names, "UNSIGNED-PAYLOAD"))
    headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, "
                                     f"SignedHeaders={';'.join(names)}, Signature={sig}"))
    assert check(headers, body=b"anything").access_key == "AKIDEXAMPLE"
    # The same signature over the real body hash would not match: the literal is what was signed.
    bad = [(k, hashlib.sha256(b"anything").hexdigest() if k == "X-Amz-Content-Sha256" else v) for k, v in headers]
    assert refusal(bad, body=b"anything").kind == "signature"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        check(signed(), now=NOW.replace(tzinfo=None))


# ---------------------------------------------------------------- botocore's signer, checked independently

import botocore.auth as botocore_auth  # noqa: E402  (botocore is a runtime dependency: never skipped)
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

BOTO_KEY, BOTO_SECRET, BOTO_TOKEN = "ASIAEXAMPLEKEY000001", "botoSecret/with+chars", "FwoGZXIvYXdzEXAMPLE//token+=="


def botocore_signed(method: str, url: str, body: bytes, headers: dict[str, str], service: str, region: str):
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    signer = botocore_auth.SigV4Auth(Credentials(BOTO_KEY, BOTO_SECRET, BOTO_TOKEN), service, region)
    signer.add_auth(request)
    parts = urlsplit(url)
    # What the server receives: botocore's headers plus the Host header the HTTP client adds.
    wire_headers = [("Host", parts.netloc), *request.headers.items()]
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return signer, request, parts, wire_headers, when


def verify_boto(parts, wire_headers, body, service, region, when, window_s):
    return verify("POST", parts.path, parts.query, wire_headers, body, service=service, region=region,
                  lookup_secret={BOTO_KEY: BOTO_SECRET}.get, now=when, window_s=window_s)


def test_botocore_sts_assume_role_form_post_verifies() -> None:
    body = (b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fiotinvoke-dev"
            b"&RoleSessionName=edge-0001&DurationSeconds=3600")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    _, request, parts, wire, when = botocore_signed("POST", "https://sts.ap-northeast-1.amazonaws.com/", body, headers,
                                                    "sts", "ap-northeast-1")
    result = verify_boto(parts, wire, body, "sts", "ap-northeast-1", when, 900)
    assert result.access_key == BOTO_KEY
    assert result.security_token == BOTO_TOKEN
    assert "x-amz-security-token" in result.signed_headers and "content-type" in result.signed_headers
    with pytest.raises(SigV4Error) as err:
        verify_boto(parts, wire, body.replace(b"3600", b"7200"), "sts", "ap-northeast-1", when, 900)
    assert err.value.kind == "signature"


LAMBDA_ARN = "arn:aws:lambda:ap-northeast-1:111111111111:function:my-fn"
LAMBDA_URL = ("https://lambda.ap-northeast-1.amazonaws.com/2015-03-31/functions/"
              "arn%3Aaws%3Alambda%3Aap-northeast-1%3A111111111111%3Afunction%3Amy-fn/invocations?Qualifier=prod")


def test_botocore_lambda_invoke_with_encoded_arn_verifies() -> None:
    body = b'{"test":"test1"}'
    headers = {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "None"}
    signer, request, parts, wire, when = botocore_signed("POST", LAMBDA_URL, body, headers, "lambda", "ap-northeast-1")
    result = verify_boto(parts, wire, body, "lambda", "ap-northeast-1", when, 300)
    assert (result.service, result.region, result.security_token) == ("lambda", "ap-northeast-1", BOTO_TOKEN)

    # Same canonical request as botocore's own, with the ARN's %3A encoded again as %253A.
    mine = canonical_request("POST", parts.path, parts.query, wire, list(result.signed_headers),
                             hashlib.sha256(body).hexdigest())
    del request.headers["Authorization"]  # botocore would otherwise list it among the headers to sign
    assert mine == signer.canonical_request(request)
    assert "arn%253Aaws%253Alambda" in mine.split("\n")[1]
    # Encoding the wire path only once (the S3 rule) would not reproduce what botocore signed.
    assert canonical_request("POST", parts.path, parts.query, wire, list(result.signed_headers),
                             hashlib.sha256(body).hexdigest(), double_encode=False) != mine


def test_botocore_lambda_invoke_refused_when_tampered() -> None:
    body = b'{"test":"test1"}'
    _, _, parts, wire, when = botocore_signed("POST", LAMBDA_URL, body, {"X-Amz-Log-Type": "None"}, "lambda",
                                              "ap-northeast-1")
    other_qualifier = urlsplit(LAMBDA_URL.replace("Qualifier=prod", "Qualifier=dev"))
    other_function = urlsplit(LAMBDA_URL.replace("my-fn", "other-fn"))
    tail_requested = [(k, "Tail" if k == "X-Amz-Log-Type" else v) for k, v in wire]
    for p, w in ((other_qualifier, wire), (other_function, wire), (parts, tail_requested)):
        with pytest.raises(SigV4Error) as err:
            verify_boto(p, w, body, "lambda", "ap-northeast-1", when, 300)
        assert err.value.kind == "signature"
    with pytest.raises(SigV4Error) as err:
        verify_boto(parts, wire, body, "sts", "ap-northeast-1", when, 300)
    assert err.value.kind == "service"
    with pytest.raises(SigV4Error) as err:
        verify_boto(parts, wire, body, "lambda", "ap-northeast-1", when + timedelta(minutes=6), 300)
    assert err.value.kind == "expired"
