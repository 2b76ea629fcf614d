"""Temporary credentials the stand-in has issued, and the clock they expire by.

Every credential is a role session (the credentials provider and AssumeRole both issue role
sessions), so any AssumeRole made with one is role chaining.
"""
from __future__ import annotations

import base64
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Final

from .iam import Principal

__all__ = ["Clock", "CredentialStore", "IssuedCredential", "format_expiration"]

Clock = Callable[[], datetime]

_KEY_ALPHABET: Final = string.ascii_uppercase + string.digits
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits + "+/"
# Real session tokens run to several hundred characters; long enough to catch header-size
# and logging mistakes in clients.
_TOKEN_BYTES: Final = 480


def format_expiration(moment: datetime) -> str:
    """AWS's expiration format: ISO-8601 UTC, whole seconds, 'Z'."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class IssuedCredential:
    """One set of temporary credentials and the role session they stand for."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime              # whole seconds, as issued on the wire
    principal: Principal              # the assumed-role session
    role_arn: str
    session_name: str
    assumed_role_id: str              # "AROA...:<session name>"
    session_context: dict[str, str] = field(default_factory=dict)  # e.g. credentials-iot:ThingName
    session_policy: dict[str, Any] | None = None
    revoked: bool = False             # set by expire_all(): expired whatever the clock says

    def is_expired(self, now: datetime) -> bool:
        return self.revoked or now >= self.expiration


# Every store of this process, so that a test session can search all output for every secret.
ALL_STORES: list["CredentialStore"] = []


class CredentialStore:
    """Thread-safe registry of issued credentials, looked up by access key id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, IssuedCredential] = {}
        ALL_STORES.append(self)

    def issue(self, *, now: datetime, duration_s: int, principal: Principal, role_arn: str, session_name: str,
              role_id: str, session_context: dict[str, str] | None = None,
              session_policy: dict[str, Any] | None = None) -> IssuedCredential:
        expiration = now.replace(microsecond=0) + timedelta(seconds=duration_s)
        with self._lock:
            while True:
                access_key = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
                if access_key not in self._by_key:
                    break
            credential = IssuedCredential(
                access_key_id=access_key,
                secret_access_key="".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
                session_token=base64.b64encode(secrets.token_bytes(_TOKEN_BYTES)).decode(),
                expiration=expiration,
                principal=principal,
                role_arn=role_arn,
                session_name=session_name,
                assumed_role_id=f"{role_id}:{session_name}",
                session_context=dict(session_context or {}),
                session_policy=session_policy,
            )
            self._by_key[access_key] = credential
        return credential

    def get(self, access_key_id: str) -> IssuedCredential | None:
        with self._lock:
            return self._by_key.get(access_key_id)

    def expire_all(self) -> None:
        with self._lock:
            for credential in self._by_key.values():
                credential.revoked = True

    def secrets(self) -> list[str]:
        """Every secret access key and session token issued so far."""
        with self._lock:
            return [value for cred in self._by_key.values() for value in (cred.secret_access_key, cred.session_token)]
