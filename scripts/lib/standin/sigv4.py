"""AWS Signature Version 4 verifier (AWS4-HMAC-SHA256, Authorization header) for the local stand-in.

Written from the SigV4 specification with hashlib, hmac and urllib.parse only, so that it checks
botocore's signer independently: it must not import botocore. It reproduces every `header-*`
vector of AWS's SigV4 test suite (scripts/tests/test_standin_sigv4.py).

The one rule that trips raw clients, stated once: for every service but S3 the canonical URI is
the path *as sent on the wire* (already percent-encoded by the client), normalized, then
percent-encoded once more:

    canonical URI = uri_encode(normalize_path(wire_path), safe="/")

so a Lambda invoke of `/2015-03-31/functions/arn%3Aaws%3Alambda%3A...` is signed over
`/2015-03-31/functions/arn%253Aaws%253Alambda%253A...`. AWS's test suite writes its request
paths raw (`/example space/`); taken as the wire path, the same rule yields its `/example%20space/`.

Error precedence and wording follow what AWS returns (checked against public reproductions of
AWS's messages, e.g. the scratchstack-aws-signature test suite): Authorization parsing, then the
date header, then `host` signed, then the date format, then the time window, then the credential
scope, then the access key, then the signature.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "SigV4Error",
    "SignedRequest",
    "uri_encode",
    "normalize_path",
    "canonical_uri",
    "canonical_query",
    "canonical_headers",
    "canonical_request",
    "string_to_sign",
    "signing_key",
    "signature",
    "parse_authorization",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
# Literal payload hash S3-style clients send when they do not hash the body.
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# HTTP whitespace (RFC 9110 OWS plus the CR/LF of obsolete line folding): the runs SigV4 collapses.
_HEADER_SPACE_RE = re.compile(r"[ \t\r\n]+")

_MSG_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class SigV4Error(Exception):
    """A request that fails SigV4 verification.

    `kind` says which check failed, so the server can pick AWS's error code and status:
    'missing' (no Authorization header), 'malformed' (header not AWS4-HMAC-SHA256 or unparsable,
    Credential/SignedHeaders/Signature missing, bad credential shape or terminator, date header
    missing or not ISO-8601 basic format, host or the date header not signed),
    'scope_date' (scope date != the request date), 'region', 'service',
    'expired' (request time < now - window), 'not_yet' (request time > now + window),
    'unknown_key' (lookup_secret returned None), 'signature' (mismatch).
    `message` is AWS's own wording; it never contains a secret.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"SigV4Error({self.kind!r}, {self.message!r})"


@dataclass(frozen=True)
class SignedRequest:
    """What a verified request proves: who signed it, when, and for which scope."""

    access_key: str
    amz_date: datetime  # UTC, timezone-aware
    region: str
    service: str
    signed_headers: tuple[str, ...]
    security_token: str | None  # x-amz-security-token header, signed or not (AWS allows both)


# ---------------------------------------------------------------- canonical request pieces


def uri_encode(s: str, *, safe: str = "") -> str:
    """Percent-encode UTF-8 `s`: RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) and `safe`
    are kept, everything else becomes %XX with uppercase hex."""
    return quote(s.encode("utf-8"), safe=safe)


def normalize_path(path: str) -> str:
    """Remove `.` and `..` segments and empty segments (duplicate slashes), keep a trailing slash.

    `''` -> `/`, `//example//` -> `/example/`, `/example/..` -> `/`. Works on the encoded wire path,
    so an encoded `%2F` is not a separator.
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if segments and path.endswith("/"):
        normalized += "/"
    return normalized


def canonical_uri(wire_path: str, *, normalize: bool = True, double_encode: bool = True) -> str:
    """The canonical URI of the path as received on the wire.

    double_encode=True (every service but S3): uri_encode(normalize(wire_path)) keeping `/`, i.e.
    the client's encoding is encoded once more (`%3A` -> `%253A`). double_encode=False (S3): the
    path is decoded then encoded once, which equals a correctly encoded wire path.
    `wire_path` is text; non-ASCII characters are taken as their UTF-8 bytes.
    """
    path = normalize_path(wire_path) if normalize else (wire_path or "/")
    if not double_encode:
        return quote(unquote_to_bytes(path), safe="/")
    return uri_encode(path, safe="/")


def canonical_query(raw_query: str) -> str:
    """Each `k=v` decoded then encoded once (unreserved kept), sorted by key then value; a key
    without `=` becomes `k=`. `+` is taken literally (SigV4 clients encode a space as %20)."""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((quote(unquote_to_bytes(key), safe=""), quote(unquote_to_bytes(value), safe="")))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def canonical_headers(headers: list[tuple[str, str]], signed: list[str]) -> str:
    """`name:value\\n` for each signed header, in the order of `signed`.

    Names are lowercased; each value is trimmed with inner whitespace runs (including folded
    continuation lines) collapsed to one space; repeated headers are joined with `,` in the order
    received. A signed header that is absent gives an empty value (and so a mismatch).
    """
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(_HEADER_SPACE_RE.sub(" ", value).strip())
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in (s.lower() for s in signed))


def canonical_request(
    method: str,
    wire_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    signed_headers: list[str],
    payload_hash: str,
    *,
    normalize: bool = True,
    double_encode: bool = True,
) -> str:
    """The six lines SigV4 hashes: method, canonical URI, query, headers, signed header list, payload hash."""
    return "\n".join(
        [
            method,
            canonical_uri(wire_path, normalize=normalize, double_encode=double_encode),
            canonical_query(raw_query),
            canonical_headers(headers, signed_headers),
            ";".join(name.lower() for name in signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    """`AWS4-HMAC-SHA256`, the request time, the credential scope and the canonical request's SHA-256."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC chain `AWS4`+secret -> date -> region -> service -> `aws4_request`."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, _TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret: str, amz_date: str, region: str, service: str, canonical_request: str) -> str:
    """Hex signature of `canonical_request` for the scope `amz_date[:8]/region/service/aws4_request`."""
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{_TERMINATOR}"
    key = signing_key(secret, date, region, service)
    return hmac.new(key, string_to_sign(amz_date, scope, canonical_request).encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- Authorization header


def parse_authorization(value: str) -> tuple[str, str, str, str, list[str], str]:
    """Split `AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request, SignedHeaders=a;b,
    Signature=hex` into (access_key, date, region, service, signed_headers, signature).

    Raises SigV4Error('malformed') with AWS's wording for any other shape, including a wrong
    terminator (AWS reports that one together with scope errors; here it is 'malformed').
    """
    fields, missing = _parse_fields(value)
    if missing:
        raise SigV4Error("malformed", _missing_message(missing, date_missing=False, value=value))
    access_key, date, region, service, terminator = _split_credential(fields["Credential"])
    if terminator != _TERMINATOR:
        raise SigV4Error("malformed", _terminator_message(terminator))
    return access_key, date, region, service, _split_signed_headers(fields["SignedHeaders"]), fields["Signature"]


def _parse_fields(value: str) -> tuple[dict[str, str], list[str]]:
    """Fields of the header and the names of the required ones that are missing."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm.startswith("AWS4-"):
            raise SigV4Error("malformed", f"Unsupported AWS 'algorithm': '{algorithm}'.")
        # AWS answers a Bearer/Basic/other header as an incomplete SigV4 one (IncompleteSignature).
        return {}, ["Credential", "Signature", "SignedHeaders"]
    fields: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, field_value = item.partition("=")
        if not eq:
            raise SigV4Error(
                "malformed",
                f"'{item}' not a valid key=value pair (missing equal-sign) in Authorization header: '{_redact(value)}'",
            )
        fields[name.strip()] = field_value.strip()
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    return fields, missing


def _missing_message(missing: list[str], *, date_missing: bool, value: str) -> str:
    parts = [f"Authorization header requires '{name}' parameter." for name in missing]
    if date_missing:
        parts.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    # AWS echoes the header after "Authorization="; only its scheme word, so no token is echoed.
    parts.append(f"Authorization={value.strip().partition(' ')[0]}")
    return " ".join(parts)


def _redact(value: str) -> str:
    """The header with its signature cut, for messages: AWS echoes it, a log needs no more."""
    return re.sub(r"(Signature=)[0-9A-Za-z]+", r"\1...", value)


def _split_credential(credential: str) -> tuple[str, str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5:
        raise SigV4Error(
            "malformed",
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'",
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _split_signed_headers(value: str) -> list[str]:
    return [name for name in value.split(";") if name]


def _terminator_message(terminator: str) -> str:
    return f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', not '{terminator}'."


# ---------------------------------------------------------------- verification


def verify(
    method: str,
    wire_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    service: str,
    region: str,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    window_s: int,
    normalize: bool = True,
    double_encode: bool = True,
) -> SignedRequest:
    """Verify a header-signed request as a non-S3 AWS service does; raise SigV4Error if it fails.

    `headers` are the (name, value) pairs as received, duplicates included; `wire_path` and
    `raw_query` are the request target as sent (still percent-encoded). `now` must be
    timezone-aware; `window_s` is the allowed clock difference (300 for Lambda, 900 for STS).
    `normalize` and `double_encode` keep their non-S3 defaults except for S3-style vectors.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)

    authorizations = by_name.get("authorization", [])
    if not authorizations:
        raise SigV4Error("missing", "Missing Authentication Token")
    if len(authorizations) > 1:
        raise SigV4Error("malformed", "Authorization header may appear only once.")
    authorization = authorizations[0]

    # 1. The header's fields, reported together with a missing date header, as AWS does.
    fields, missing = _parse_fields(authorization)
    date_header = "x-amz-date" if "x-amz-date" in by_name else "date" if "date" in by_name else None
    if missing or date_header is None:
        raise SigV4Error("malformed", _missing_message(missing, date_missing=date_header is None, value=authorization))
    signed = _split_signed_headers(fields["SignedHeaders"])
    signed_lower = [name.lower() for name in signed]

    # 2. host and the date header must be signed, or the signature could be replayed elsewhere or later.
    if "host" not in signed_lower:
        raise SigV4Error("malformed", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if date_header not in signed_lower:
        label = "X-Amz-Date" if date_header == "x-amz-date" else "Date"
        raise SigV4Error("malformed", f"'{label}' must be a 'SignedHeader' in the AWS Authorization.")

    # 3. The request time, then the window around the server's clock.
    date_values = by_name[date_header]
    if len(date_values) > 1:
        raise SigV4Error("malformed", f"Only one '{date_header}' header is allowed.")
    request_time = _parse_request_time(date_values[0], date_header)
    amz_date = request_time.strftime(_AMZ_DATE_FORMAT)
    _check_window(request_time, now, window_s)

    # 4. The credential scope: AWS lists every wrong part in one message; kind = the first one.
    access_key, scope_date, scope_region, scope_service, terminator = _split_credential(fields["Credential"])
    problems: list[tuple[str, str]] = []
    if scope_region != region:
        problems.append(("region", "Credential should be scoped to a valid region. "))
    if scope_service != service:
        problems.append(("service", f"Credential should be scoped to correct service: '{service}'. "))
    if terminator != _TERMINATOR:
        problems.append(("malformed", _terminator_message(terminator) + " "))
    if scope_date != amz_date[:8]:
        problems.append(
            (
                "scope_date",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'. ",
            )
        )
    if problems:
        raise SigV4Error(problems[0][0], "".join(text for _, text in problems))

    # 5. The key, then the body hash and the signature itself.
    secret = lookup_secret(access_key)
    if secret is None:
        raise SigV4Error("unknown_key", "The security token included in the request is invalid.")
    body_hash = hashlib.sha256(body).hexdigest()
    payload_hash = body_hash
    declared = by_name.get("x-amz-content-sha256")
    if declared is not None:
        payload_hash = declared[0].strip()
        if payload_hash != _UNSIGNED_PAYLOAD and payload_hash != body_hash:
            raise SigV4Error("signature", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical = canonical_request(
        method, wire_path, raw_query, headers, signed, payload_hash, normalize=normalize, double_encode=double_encode
    )
    expected = signature(secret, amz_date, scope_region, scope_service, canonical)
    if not hmac.compare_digest(expected.encode("ascii"), fields["Signature"].encode("utf-8", "replace")):
        raise SigV4Error("signature", _MSG_SIGNATURE)

    tokens = by_name.get("x-amz-security-token")
    return SignedRequest(
        access_key=access_key,
        amz_date=request_time,
        region=scope_region,
        service=scope_service,
        signed_headers=tuple(signed_lower),
        security_token=",".join(tokens) if tokens else None,
    )


def _parse_request_time(value: str, header: str) -> datetime:
    """x-amz-date must be ISO-8601 basic (20150830T123600Z); Date may also be an HTTP date."""
    value = value.strip()
    if _AMZ_DATE_RE.fullmatch(value):
        try:
            return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            pass  # e.g. month 13: reported below like any other bad date
    elif header == "date":
        parsed: datetime | None
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(timezone.utc)
    raise SigV4Error(
        "malformed", f"Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _check_window(request_time: datetime, now: datetime, window_s: int) -> None:
    window = timedelta(seconds=window_s)
    minutes = f"{window_s // 60}" if window_s % 60 == 0 else f"{window_s / 60:g}"
    stamp = request_time.strftime(_AMZ_DATE_FORMAT)
    now_stamp = now.astimezone(timezone.utc).strftime(_AMZ_DATE_FORMAT)
    if request_time < now - window:
        bound = (now - window).astimezone(timezone.utc).strftime(_AMZ_DATE_FORMAT)
        raise SigV4Error(
            "expired", f"Signature expired: {stamp} is now earlier than {bound} ({now_stamp} - {minutes} min.)"
        )
    if request_time > now + window:
        bound = (now + window).astimezone(timezone.utc).strftime(_AMZ_DATE_FORMAT)
        raise SigV4Error(
            "not_yet", f"Signature not yet current: {stamp} is still later than {bound} ({now_stamp} + {minutes} min.)"
        )
