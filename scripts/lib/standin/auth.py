"""SigV4 authentication of STS and Lambda requests against the issued credentials.

The order follows what AWS must do: the access key and session token are resolved first
(AWS decodes the token to find the session and its secret), so an unknown key or a token that
does not belong to the key is "invalid" and an expired session is "expired" whatever the
signature; only then is the signature checked, by the independent verifier in ``sigv4.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from . import sigv4
from .creds import CredentialStore, IssuedCredential
from .httpbase import Request

__all__ = ["AuthError", "Authenticated", "authenticate", "principal_context", "INVALID_TOKEN", "EXPIRED_TOKEN"]

INVALID_TOKEN: Final = "The security token included in the request is invalid."
EXPIRED_TOKEN: Final = "The security token included in the request is expired"

# Access key and region of the credential scope, read ahead of the verifier so the session
# can be resolved (and the region a request is "sent to" known) before the signature check.
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/")


class AuthError(Exception):
    """Authentication failed. ``kind`` is a sigv4.SigV4Error kind or 'expired_token'."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Authenticated:
    credential: IssuedCredential
    signed: sigv4.SignedRequest


def authenticate(request: Request, *, service: str, default_region: str, regions: frozenset[str],
                 store: CredentialStore, window_s: int) -> Authenticated:
    """Verify the request's SigV4 signature and session; raise AuthError on any failure."""
    access_key, scope_region = _scope(request)
    credential = store.get(access_key) if access_key else None
    if credential is not None:
        if request.header("x-amz-security-token") != credential.session_token:
            raise AuthError("unknown_key", INVALID_TOKEN)
        if credential.is_expired(request.received_at):
            raise AuthError("expired_token", EXPIRED_TOKEN)
    # One endpoint serves every region: a known region in the scope is the region the request
    # is addressed to; anything else is checked against the default, so the verifier rejects it.
    region = scope_region if scope_region in regions else default_region

    def lookup_secret(key: str) -> str | None:
        return credential.secret_access_key if credential is not None and key == access_key else None

    try:
        signed = sigv4.verify(
            request.method, request.wire_path, request.raw_query, request.headers, request.body,
            service=service, region=region, lookup_secret=lookup_secret,
            now=request.received_at, window_s=window_s,
        )
    except sigv4.SigV4Error as error:
        raise AuthError(error.kind, error.message) from None
    if credential is None:   # the verifier accepted a key we do not know: cannot happen, refuse anyway
        raise AuthError("unknown_key", INVALID_TOKEN)
    return Authenticated(credential, signed)


def _scope(request: Request) -> tuple[str | None, str | None]:
    authorization = request.header("authorization") or ""
    match = _SCOPE.search(authorization)
    if match is None:
        return None, None
    return match.group(1), match.group(2)


def principal_context(credential: IssuedCredential, now: datetime) -> dict[str, str]:
    """The global condition keys AWS sets for a request made with this credential."""
    principal = credential.principal
    return {
        "aws:PrincipalArn": credential.role_arn,
        "aws:PrincipalAccount": principal.account or "",
        "aws:PrincipalType": "AssumedRole",
        "aws:userid": credential.assumed_role_id,
        "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now.timestamp())),
        "aws:SecureTransport": "true",
        **credential.session_context,
    }
