"""Hop 1: the AWS IoT credentials provider, ``GET /role-aliases/<alias>/credentials`` over mTLS.

The TLS layer refuses in the handshake only what cannot be a device certificate at all: none, an
expired one, a wrong SNI. A certificate from a CA the stand-in does not know completes the
handshake (tlsverify.py), as it must on AWS, which accepts device certificates whose CA is not
registered (multi-account registration). What gets through is checked here in this order (each
step's answer is what AWS's own helper library observed against AWS, listed in
awslabs/aws-iot-core-credential-provider-session-helper, docs/dev_notes.md):

1. the certificate's registry entry: unknown (another CA, or never registered), INACTIVE or
   REVOKED -> 403, x-amzn-ErrorType AccessDeniedException, {"message":"Certificate is invalid on
   this endpoint"}  (see below)
2. ``x-amzn-iot-thingname``, when sent, must be a thing attached to the certificate
   -> 403 "Invalid thing name passed"
3. the certificate's IoT policies must allow iot:AssumeRoleWithCertificate on the alias ARN
   -> 403 "Access Denied" (checked before the alias lookup, so names do not leak)
4. the alias must exist -> 404 "Role alias does not exist"
5. the role must exist and trust credentials.iot.amazonaws.com
   -> 400 "Unable to assume the role, or the role to assume does not exist"
6. the alias duration must not exceed the role's MaxSessionDuration
   -> 400 "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role"

The answer of step 1, as recorded: docs/dev_notes.md of the helper library shows a curl -v
exchange with the credentials endpoint whose response carries ``x-amzn-ErrorType:
AccessDeniedException`` and the body ``{"message":"Certificate is invalid on this endpoint"}``
exactly, the connection "left intact" (so the handshake had completed). The same file says its
author did NOT test "an invalid certificate (e.g., one not registered with AWS IoT Core)", elides
the status line of that exchange and does not say which certificate produced it. UNCONFIRMED,
then: the status 403 (stated with this message only in third-party troubleshooting notes, for
devices that sent no SNI), and that an unregistered, inactive, revoked or unknown-CA certificate
gets exactly this answer; it is the only observed answer that names the certificate. The order
of 2-4 is not documented either. A TLS-level refusal (a proxy or custom endpoint with its own
trust) stays available as the "tls_refuse" fault (harness.StandIn.fault).
"""
from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import unquote

from . import iam
from .creds import CredentialStore, format_expiration
from .httpbase import Fault, Request, Response, canned_response
from .pki import certificate_id
from .world import IOT_SERVICE_PRINCIPAL, World

__all__ = ["IotApp"]

_PATH: Final = re.compile(r"/role-aliases/([^/]+)/credentials")
_ALIAS_NAME: Final = re.compile(r"[\w=,@-]{1,128}")

CERTIFICATE_INVALID: Final = "Certificate is invalid on this endpoint"
INVALID_THING: Final = "Invalid thing name passed"
ACCESS_DENIED: Final = "Access Denied"
NO_ALIAS: Final = "Role alias does not exist"
CANNOT_ASSUME: Final = "Unable to assume the role, or the role to assume does not exist"
DURATION_TOO_LONG: Final = "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role"


class IotApp:
    """The credentials provider of the IoT account ``world.iot_account``."""

    def __init__(self, world: World, store: CredentialStore) -> None:
        self._world = world
        self._store = store

    def handle(self, request: Request) -> Response:
        world = self._world
        match = _PATH.fullmatch(request.wire_path)
        if match is None:
            return _error(request, 404, "Not Found")
        if request.method != "GET":
            return _error(request, 405, "Method Not Allowed", [("Allow", "GET")])
        alias_name = unquote(match.group(1))

        cert_id = certificate_id(request.peer_cert_der) if request.peer_cert_der else None
        certificate = world.certificates.get(cert_id) if cert_id else None
        if certificate is None or certificate.status != "ACTIVE":
            return _error(request, 403, CERTIFICATE_INVALID, [("x-amzn-ErrorType", "AccessDeniedException")])
        assert cert_id is not None

        thing_name = request.header("x-amzn-iot-thingname")
        if thing_name is not None and thing_name not in certificate.things:
            return _error(request, 403, INVALID_THING)

        alias_arn = world.role_alias_arn(alias_name)
        decision = iam.evaluate(certificate.policies, action="iot:AssumeRoleWithCertificate", resource=alias_arn,
                                context=_iot_policy_context(cert_id, thing_name))
        if decision != "Allow":
            return _error(request, 403, ACCESS_DENIED)

        alias = world.role_aliases.get(alias_name) if _ALIAS_NAME.fullmatch(alias_name) else None
        if alias is None:
            return _error(request, 404, NO_ALIAS)

        role = world.roles.get(alias.role_arn)
        service = iam.Principal(arn=IOT_SERVICE_PRINCIPAL, account=None, service=IOT_SERVICE_PRINCIPAL)
        if role is None or not iam.is_allowed(
            [], role.trust_policy, who=service, action="sts:AssumeRole", resource=role.arn,
            resource_account=role.account, context={}, resource_must_allow=True,
        )[0]:
            return _error(request, 400, CANNOT_ASSUME)
        if alias.duration_s > role.max_session_s:
            return _error(request, 400, DURATION_TOO_LONG)

        # The session is named after the certificate id, and the IoT policy variables documented
        # for the credentials provider are set as session context for later IAM checks.
        session_context = {"credentials-iot:AwsCertificateId": cert_id}
        if thing_name is not None:
            session_context["credentials-iot:ThingName"] = thing_name
        credential = self._store.issue(
            now=request.received_at, duration_s=alias.duration_s,
            principal=iam.Principal(arn=f"arn:aws:sts::{role.account}:assumed-role/{role.name}/{cert_id}",
                                    account=role.account, role_arn=role.arn),
            role_arn=role.arn, session_name=cert_id, role_id=role.role_id, session_context=session_context,
        )
        body = {"credentials": {
            "accessKeyId": credential.access_key_id,
            "secretAccessKey": credential.secret_access_key,
            "sessionToken": credential.session_token,
            "expiration": format_expiration(credential.expiration),
        }}
        return Response(200, json.dumps(body).encode(), _headers(request))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "throttle":
            return _error(request, 429, "Rate exceeded")
        if fault.kind == "5xx":
            return _error(request, int(fault.params.get("status", 500)), "Internal Server Error")
        if fault.kind == "error":
            # The credentials provider's errors carry only a message (no code), e.g. 403 "Access Denied".
            return _error(request, int(fault.params["status"]), str(fault.params["message"]))
        return canned_response(fault)


def _iot_policy_context(cert_id: str, thing_name: str | None) -> dict[str, str]:
    # IoT policy variables available to an IoT policy on the credentials endpoint.
    context = {"iot:Certificate.Id": cert_id}
    if thing_name is not None:
        context["iot:Connection.Thing.ThingName"] = thing_name
    return context


def _headers(request: Request, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("x-amzn-RequestId", request.request_id), *(extra or [])]


def _error(request: Request, status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps({"message": message}).encode(), _headers(request, extra))
