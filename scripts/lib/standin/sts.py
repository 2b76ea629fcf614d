"""Hop 2: STS over the Query API (AssumeRole, plus GetCallerIdentity for diagnostics).

Order of checks, as AWS answers them: SigV4 and session (auth.py), the Action and Version,
parameter validation (ValidationError with AWS's model wording), the role's trust policy and,
across accounts, the caller's identity policy (AccessDenied, the same for a role that does not
exist, so role names do not leak), then the role-chaining duration limit.
"""
from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from . import iam
from .auth import AuthError, authenticate, principal_context
from .creds import CredentialStore, IssuedCredential, format_expiration
from .httpbase import Fault, Request, Response, canned_response
from .world import World

__all__ = ["StsApp", "STS_WINDOW_S"]

STS_WINDOW_S: Final = 900          # STS accepts requests signed up to 15 minutes off
NAMESPACE: Final = "https://sts.amazonaws.com/doc/2011-06-15/"
API_VERSION: Final = "2011-06-15"
CHAINING_LIMIT_S: Final = 3600     # role chaining caps sessions at one hour

_ROLE_ARN: Final = re.compile(r"arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
_SESSION_NAME_PATTERN: Final = r"[\w+=,.@-]*"
_EXTERNAL_ID_PATTERN: Final = r"[\w+=,.@:\/-]*"
_POLICY_CHARACTERS: Final = re.compile(r"[\u0009\u000A\u000D\u0020-\u00FF]+")


class _StsError(Exception):
    def __init__(self, status: int, code: str, message: str, sender: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.sender = status, code, message, sender


class StsApp:
    def __init__(self, world: World, store: CredentialStore, default_region: str) -> None:
        self._world = world
        self._store = store
        self._default_region = default_region

    def handle(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except _StsError as error:
            return error_response(request, error.status, error.code, error.message, sender=error.sender)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "throttle":
            return error_response(request, 400, "Throttling", "Rate exceeded")
        if fault.kind == "5xx":
            return error_response(request, int(fault.params.get("status", 500)), "InternalFailure",
                                  "An internal error has occurred", sender=False)
        if fault.kind == "error":
            status = int(fault.params.get("status", 400))
            return error_response(request, status, str(fault.params["code"]),
                                  str(fault.params.get("message", "injected by the stand-in")), sender=status < 500)
        return canned_response(fault)

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        try:
            caller = authenticate(request, service="sts", default_region=self._default_region,
                                  regions=self._world.regions, store=self._store, window_s=STS_WINDOW_S).credential
        except AuthError as error:
            raise _auth_error(error) from None
        params = _parameters(request)
        action = params.get("Action")
        if not action:
            raise _StsError(400, "MissingAction", "Missing Action")
        version = params.get("Version", "NO_VERSION_SPECIFIED")
        if action not in ("AssumeRole", "GetCallerIdentity") or version != API_VERSION:
            raise _StsError(400, "InvalidAction", f"Could not find operation {action} for version {version}")
        if action == "GetCallerIdentity":
            return _success(request, "GetCallerIdentity",
                            f"<Arn>{escape(caller.principal.arn)}</Arn>"
                            f"<UserId>{escape(caller.assumed_role_id)}</UserId>"
                            f"<Account>{caller.principal.account}</Account>")
        return self._assume_role(request, caller, params)

    def _assume_role(self, request: Request, caller: IssuedCredential, params: dict[str, str]) -> Response:
        role_arn, session_name, duration_s, external_id, policy = _validate(params)
        role_match = _ROLE_ARN.fullmatch(role_arn)
        if role_match is None:
            raise _StsError(400, "ValidationError", "Request ARN is invalid")

        role = self._world.roles.get(role_arn)
        denied = f"User: {caller.principal.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        context = principal_context(caller, request.received_at)
        context["sts:RoleSessionName"] = session_name
        if external_id is not None:
            context["sts:ExternalId"] = external_id
        if role is None or not self._allowed(caller, role.trust_policy, role_arn, role.account, context):
            raise _StsError(403, "AccessDenied", denied)

        # Every credential the stand-in issues is a role session, so every AssumeRole is role
        # chaining, capped at one hour. A role's MaxSessionDuration is at least one hour, so the
        # chaining cap is the only duration limit that can bind here.
        requested = duration_s if duration_s is not None else CHAINING_LIMIT_S
        if requested > CHAINING_LIMIT_S:
            raise _StsError(400, "ValidationError",
                            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")

        session_policy = json.loads(policy) if policy is not None else None
        credential = self._store.issue(
            now=request.received_at, duration_s=requested,
            principal=iam.Principal(arn=f"arn:aws:sts::{role.account}:assumed-role/{role.name}/{session_name}",
                                    account=role.account, role_arn=role.arn),
            role_arn=role.arn, session_name=session_name, role_id=role.role_id, session_policy=session_policy,
        )
        packed = "<PackedPolicySize>6</PackedPolicySize>" if policy is not None else ""
        return _success(request, "AssumeRole", (
            f"<AssumedRoleUser><Arn>{escape(credential.principal.arn)}</Arn>"
            f"<AssumedRoleId>{escape(credential.assumed_role_id)}</AssumedRoleId></AssumedRoleUser>"
            f"<Credentials><AccessKeyId>{credential.access_key_id}</AccessKeyId>"
            f"<SecretAccessKey>{credential.secret_access_key}</SecretAccessKey>"
            f"<SessionToken>{credential.session_token}</SessionToken>"
            f"<Expiration>{format_expiration(credential.expiration)}</Expiration></Credentials>{packed}"
        ))

    def _allowed(self, caller: IssuedCredential, trust: dict, role_arn: str, role_account: str,
                 context: dict[str, str]) -> bool:
        """Trust policy must allow; across accounts the caller's own policies must allow too."""
        caller_role = self._world.roles.get(caller.role_arn)
        identity = caller_role.policies if caller_role is not None else []
        allowed, _ = iam.is_allowed(identity, trust, who=caller.principal, action="sts:AssumeRole",
                                    resource=role_arn, resource_account=role_account, context=context,
                                    resource_must_allow=True)
        if allowed and caller.session_policy is not None:
            # A session policy narrows what its session may do, trust notwithstanding.
            allowed = iam.evaluate([caller.session_policy], action="sts:AssumeRole", resource=role_arn,
                                   context=context) == "Allow"
        return allowed


# -- parameters ------------------------------------------------------------------------------------

def _parameters(request: Request) -> dict[str, str]:
    """Query-string parameters, then form-body ones (POST), as the Query protocol accepts both."""
    params = dict(parse_qsl(request.raw_query, keep_blank_values=True))
    content_type = (request.header("content-type") or "").lower()
    if request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _validate(params: dict[str, str]) -> tuple[str, str, int | None, str | None, str | None]:
    """Model validation of AssumeRole's parameters, all problems reported at once as AWS does."""
    problems: list[str] = []
    role_arn = params.get("RoleArn")
    session_name = params.get("RoleSessionName")
    external_id = params.get("ExternalId")
    policy = params.get("Policy")

    def check(name: str, value: str | None, low: int, high: int, pattern: str | None = None,
              required: bool = False) -> None:
        if value is None:
            if required:
                problems.append(f"Value null at '{name}' failed to satisfy constraint: Member must not be null")
            return
        if len(value) < low:
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: "
                            f"Member must have length greater than or equal to {low}")
        elif len(value) > high:
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: "
                            f"Member must have length less than or equal to {high}")
        if pattern is not None and not re.fullmatch(pattern, value):
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: "
                            f"Member must satisfy regular expression pattern: {pattern}")

    check("roleArn", role_arn, 20, 2048, required=True)
    check("roleSessionName", session_name, 2, 64, _SESSION_NAME_PATTERN, required=True)
    check("externalId", external_id, 2, 1224, _EXTERNAL_ID_PATTERN)
    if policy is not None:
        check("policy", policy, 1, 2048)
        if policy and not _POLICY_CHARACTERS.fullmatch(policy):
            problems.append(f"Value '{policy}' at 'policy' failed to satisfy constraint: "
                            "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+")

    duration_s: int | None = None
    raw_duration = params.get("DurationSeconds")
    if raw_duration is not None:
        try:
            duration_s = int(raw_duration)
        except ValueError:
            raise _StsError(400, "ValidationError",
                            f"Value '{raw_duration}' for parameter DurationSeconds is invalid. "
                            "It must be an integer.") from None
        if duration_s < 900:
            problems.append(f"Value '{duration_s}' at 'durationSeconds' failed to satisfy constraint: "
                            "Member must have value greater than or equal to 900")
        elif duration_s > 43200:
            problems.append(f"Value '{duration_s}' at 'durationSeconds' failed to satisfy constraint: "
                            "Member must have value less than or equal to 43200")
    if problems:
        count = len(problems)
        raise _StsError(400, "ValidationError",
                        f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))
    if policy is not None:
        try:
            parsed = json.loads(policy)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or "Statement" not in parsed:
            raise _StsError(400, "MalformedPolicyDocument", "The policy is not in the valid JSON format.")
    assert role_arn is not None and session_name is not None
    return role_arn, session_name, duration_s, external_id, policy


# -- responses ---------------------------------------------------------------------------------------

def _auth_error(error: AuthError) -> _StsError:
    if error.kind == "missing":
        return _StsError(403, "MissingAuthenticationToken", "Request is missing Authentication Token")
    if error.kind == "unknown_key":
        return _StsError(403, "InvalidClientTokenId", error.message)
    if error.kind == "expired_token":
        return _StsError(403, "ExpiredToken", error.message)
    if error.kind == "malformed":
        return _StsError(400, "IncompleteSignature", error.message)
    return _StsError(403, "SignatureDoesNotMatch", error.message)


def _success(request: Request, action: str, result: str) -> Response:
    body = (
        f'<{action}Response xmlns="{NAMESPACE}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata><RequestId>{request.request_id}</RequestId></ResponseMetadata>\n"
        f"</{action}Response>\n"
    )
    return Response(200, body.encode(), _headers(request))


def error_response(request: Request, status: int, code: str, message: str, *, sender: bool = True) -> Response:
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}">\n'
        f"  <Error>\n    <Type>{'Sender' if sender else 'Receiver'}</Type>\n"
        f"    <Code>{code}</Code>\n    <Message>{escape(message)}</Message>\n  </Error>\n"
        f"  <RequestId>{request.request_id}</RequestId>\n"
        f"</ErrorResponse>\n"
    )
    return Response(status, body.encode(), _headers(request))


def _headers(request: Request) -> list[tuple[str, str]]:
    return [("Content-Type", "text/xml"), ("x-amzn-RequestId", request.request_id)]

