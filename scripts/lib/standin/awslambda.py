"""Hop 3: Lambda Invoke, ``POST /2015-03-31/functions/{FunctionName}/invocations`` (REST-JSON).

Order of checks: SigV4 and session (auth.py), the operation, request size, parameter validation
(function name, qualifier, headers, client context), the qualifier and region derived from the
name, authorization (identity policies of the caller's role, its session policy and the
function's resource policy; before the existence check, so a function in another account does
not leak whether it exists), existence, the cross-account log rule, the payload's JSON, then
the run itself by invocation type.
"""
from __future__ import annotations

import base64
import binascii
import json
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Final
from urllib.parse import parse_qsl, unquote

from . import iam
from .auth import AuthError, authenticate, principal_context
from .creds import CredentialStore, IssuedCredential
from .httpbase import Fault, Request, Response, canned_response
from .runtime import ClientContext, FunctionRuntime
from .world import Function, World

__all__ = ["LambdaApp", "ModelledError", "invoke_errors", "LAMBDA_WINDOW_S", "MAX_SYNC_REQUEST_BYTES", "MAX_EVENT_REQUEST_BYTES"]

LAMBDA_WINDOW_S: Final = 300            # Lambda accepts requests signed up to 5 minutes off
MAX_SYNC_REQUEST_BYTES: Final = 6291456  # 6 MiB, "Request must be smaller than 6291456 bytes"
MAX_EVENT_REQUEST_BYTES: Final = 1048576  # 1 MB for Event invocations (256 KB before 2025)
MAX_CLIENT_CONTEXT_BYTES: Final = 3583
MAX_NAME_ONLY_LENGTH: Final = 64

_PATH: Final = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")
# botocore's Lambda model, NamespacedFunctionName and Qualifier.
_NAME_PATTERN: Final = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                        r"(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?")
_NAME: Final = re.compile(_NAME_PATTERN)
_QUALIFIER_PATTERN: Final = r"(|[a-zA-Z0-9$_-]+)"
_INVOCATION_TYPES: Final = ("Event", "RequestResponse", "DryRun")
_LOG_TYPES: Final = ("None", "Tail")

# x-amzn-ErrorType carries a namespace suffix for Lambda's own (modelled) errors and for
# the authentication layer; botocore and other clients cut it at the first ':'.
_LAMBDA_NS: Final = ":http://internal.amazon.com/coral/com.amazonaws.awsgirapi/"
_AUTH_NS: Final = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
_VALIDATE_NS: Final = ":http://internal.amazon.com/coral/com.amazon.coral.validate/"

Record = Callable[[dict[str, Any]], None]


class _LambdaError(Exception):
    def __init__(self, status: int, code: str, body: dict[str, Any], namespace: str = "",
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.body, self.namespace = status, code, body, namespace
        self.headers = headers or []


@dataclass(frozen=True)
class ModelledError:
    """One error shape of Invoke in botocore's Lambda model."""

    code: str                # the wire code (x-amzn-ErrorType): the shape's error.code, else its name
    status: int              # error.httpStatusCode
    sender_fault: bool       # error.senderFault: the caller's side ("Type": "User")
    members: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def invoke_errors() -> dict[str, ModelledError]:
    """Invoke's modelled errors, from the installed botocore (its lambda/2015-03-31/service-2.json),
    so that the stand-in answers each with the status and body members AWS's model gives it."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("lambda", "service-2")
    errors: dict[str, ModelledError] = {}
    for ref in model["operations"]["Invoke"].get("errors", []):
        shape = model["shapes"][ref["shape"]]
        error = shape.get("error") or {}
        code = error.get("code") or ref["shape"]
        errors[code] = ModelledError(code, int(error.get("httpStatusCode", 400)), bool(error.get("senderFault")),
                                     tuple(shape.get("members", {})))
    return errors


def modelled_error(params: dict[str, Any]) -> _LambdaError:
    """The "error" fault's answer: ``code`` (a modelled Invoke error, or any code with ``status``),
    optional ``status``, ``message``, ``reason`` (TooManyRequestsException's Reason), ``retry_after``
    (its Retry-After header, default 1; None: no header) and ``type`` ("User" or "Service", default from the model)."""
    code = str(params["code"])
    shape = invoke_errors().get(code)
    if shape is None and "status" not in params:
        raise ValueError(f"{code} is not an Invoke error in the installed botocore model: give its status")
    status = int(params.get("status", shape.status if shape else 500))
    members = shape.members if shape else ("Type", "message")
    body: dict[str, Any] = {"Type": params.get("type") or ("User" if (shape.sender_fault if shape else status < 500)
                                                             else "Service")}
    # Each shape spells its text member as the model does: "message" or "Message".
    body["message" if "message" in members else "Message"] = str(params.get("message", f"{code} (stand-in)"))
    if params.get("reason") is not None:
        body["Reason"] = str(params["reason"])
    headers: list[tuple[str, str]] = []
    if (status == 429 or code == "TooManyRequestsException") and params.get("retry_after", 1) is not None:
        headers.append(("Retry-After", str(params.get("retry_after", 1))))  # retry_after=None: none sent
    return _LambdaError(status, code, body, _LAMBDA_NS, headers)


def _user_error(status: int, code: str, message: str) -> _LambdaError:
    # Lambda's own errors say "message", except ResourceNotFoundException's "Message".
    key = "Message" if code == "ResourceNotFoundException" else "message"
    return _LambdaError(status, code, {"Type": "User", key: message}, _LAMBDA_NS)


def _validation(value: str, member: str, constraint: str) -> _LambdaError:
    return _LambdaError(400, "ValidationException", {
        "message": f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                   f"{constraint}"}, _VALIDATE_NS)


class LambdaApp:
    def __init__(self, world: World, store: CredentialStore, runtime: FunctionRuntime, default_region: str,
                 record: Record) -> None:
        self._world = world
        self._store = store
        self._runtime = runtime
        self._default_region = default_region
        self._record = record

    def handle(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except _LambdaError as error:
            return error_response(request, error)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "throttle":
            retry_after = str(fault.params.get("retry_after", 1))
            return error_response(request, _LambdaError(
                429, "TooManyRequestsException",
                {"Reason": "CallerRateLimitExceeded", "Type": "User", "message": "Rate Exceeded."},
                _LAMBDA_NS, [("Retry-After", retry_after)]))
        if fault.kind == "5xx":
            return error_response(request, _LambdaError(
                int(fault.params.get("status", 500)), "ServiceException",
                {"Type": "Service", "Message": "The service encountered an internal error. Please try again."},
                _LAMBDA_NS))
        if fault.kind == "error":
            return error_response(request, modelled_error(fault.params))
        return canned_response(fault)

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        try:
            authenticated = authenticate(request, service="lambda", default_region=self._default_region,
                                         regions=self._world.regions, store=self._store,
                                         window_s=LAMBDA_WINDOW_S)
        except AuthError as error:
            raise _auth_error(error) from None
        caller, region = authenticated.credential, authenticated.signed.region

        match = _PATH.fullmatch(request.wire_path)
        if match is None or request.method != "POST":
            raise _LambdaError(404, "UnknownOperationException", {"Message": None})
        invocation_type = request.header("x-amz-invocation-type") or "RequestResponse"
        limit = MAX_EVENT_REQUEST_BYTES if invocation_type == "Event" else MAX_SYNC_REQUEST_BYTES
        if len(request.body) > limit:
            raise _LambdaError(413, "RequestEntityTooLargeException", {
                "message": f"Request must be smaller than {limit} bytes for the InvokeFunction operation"})

        name_text = unquote(match.group(1))
        query_qualifier = dict(parse_qsl(request.raw_query, keep_blank_values=True)).get("Qualifier")
        arn_region, account, name, name_qualifier = _parse_name(name_text)
        log_type = request.header("x-amz-log-type") or "None"
        _validate_headers(query_qualifier, invocation_type, log_type)
        client_context = _client_context(request.header("x-amz-client-context"))

        if name_qualifier is not None and query_qualifier is not None and name_qualifier != query_qualifier:
            raise _user_error(400, "InvalidParameterValueException",
                              "The derived qualifier from the function name does not match the specified qualifier.")
        if arn_region is not None and arn_region != region:
            raise _user_error(404, "ResourceNotFoundException",
                              f"Functions from '{arn_region}' are not reachable in this region ('{region}')")
        qualifier = name_qualifier if name_qualifier is not None else query_qualifier or None
        account = account or caller.principal.account or ""
        function_arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
        resource = f"{function_arn}:{qualifier}" if qualifier else function_arn
        function = self._world.functions.get(function_arn)

        self._authorize(request, caller, function, resource, account)
        version = function.resolve(qualifier) if function is not None else None
        if function is None or version is None:
            raise _user_error(404, "ResourceNotFoundException", f"Function not found: {resource}")
        if log_type == "Tail" and caller.principal.account != account:
            raise _LambdaError(403, "AccessDeniedException", {"Message": "Cross-account log access is not allowed"})
        event = _event(request.body)

        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request.request_id)]
        if invocation_type == "DryRun":
            return Response(204, b"", headers)
        self._record({
            "function_arn": function_arn, "qualifier": qualifier, "invocation_type": invocation_type,
            "event": event, "caller_arn": caller.principal.arn, "version": version,
            "request_id": request.request_id,
            # Lambda passes the client context to synchronous invocations only.
            "client_context": client_context[1] if client_context and invocation_type != "Event" else None,
        })
        if invocation_type == "Event":
            self._runtime.run(function, version, resource, event, None, request.request_id, wait=False)
            return Response(202, b"", headers)
        outcome = self._runtime.run(function, version, resource, event,
                                    client_context[0] if client_context else None, request.request_id)
        assert outcome is not None
        headers.append(("X-Amz-Executed-Version", version))
        if outcome.function_error:
            headers.append(("X-Amz-Function-Error", outcome.function_error))
        if log_type == "Tail":
            headers.append(("X-Amz-Log-Result", outcome.log_tail()))
        return Response(200, outcome.payload, headers)

    def _authorize(self, request: Request, caller: IssuedCredential, function: Function | None, resource: str,
                   account: str) -> None:
        caller_role = self._world.roles.get(caller.role_arn)
        identity = caller_role.policies if caller_role is not None else []
        context = principal_context(caller, request.received_at)
        allowed, reason = iam.is_allowed(
            identity, function.resource_policy if function is not None else None, who=caller.principal,
            action="lambda:InvokeFunction", resource=resource, resource_account=account, context=context)
        if allowed and caller.session_policy is not None and iam.evaluate(
                [caller.session_policy], action="lambda:InvokeFunction", resource=resource,
                context=context) != "Allow":
            allowed, reason = False, "no session policy allows the lambda:InvokeFunction action"
        if not allowed:
            link = "with an" if reason.startswith("explicit deny") else "because"
            raise _LambdaError(403, "AccessDeniedException", {
                "Message": f"User: {caller.principal.arn} is not authorized to perform: lambda:InvokeFunction "
                           f"on resource: {resource} {link} {reason}"})


# -- parameters ------------------------------------------------------------------------------------

def _parse_name(text: str) -> tuple[str | None, str | None, str, str | None]:
    """(region, account, name, qualifier) of any accepted FunctionName form; validation errors raise."""
    if len(text) > 256:
        raise _validation(text, "functionName", "Member must have length less than or equal to 256")
    match = _NAME.fullmatch(text)
    if not text or match is None:
        raise _validation(text, "functionName", f"Member must satisfy regular expression pattern: {_NAME_PATTERN}")
    region = match.group(3)[:-1] if match.group(3) else None
    account = match.group(8)[:-1] if match.group(8) else None
    name = match.group(10)
    if len(name) > MAX_NAME_ONLY_LENGTH:
        raise _validation(text, "functionName", f"Member must have length less than or equal to {MAX_NAME_ONLY_LENGTH}")
    return region, account, name, match.group(12)


def _validate_headers(qualifier: str | None, invocation_type: str, log_type: str) -> None:
    if qualifier is not None:
        if not 1 <= len(qualifier) <= 128:
            bound = "greater than or equal to 1" if not qualifier else "less than or equal to 128"
            raise _validation(qualifier, "qualifier", f"Member must have length {bound}")
        if not re.fullmatch(_QUALIFIER_PATTERN, qualifier):
            raise _validation(qualifier, "qualifier",
                              f"Member must satisfy regular expression pattern: {_QUALIFIER_PATTERN}")
    if invocation_type not in _INVOCATION_TYPES:
        raise _validation(invocation_type, "invocationType",
                          f"Member must satisfy enum value set: [{', '.join(_INVOCATION_TYPES)}]")
    if log_type not in _LOG_TYPES:
        raise _validation(log_type, "logType", f"Member must satisfy enum value set: [{', '.join(_LOG_TYPES)}]")


def _client_context(header: str | None) -> tuple[ClientContext, dict[str, Any]] | None:
    """The decoded X-Amz-Client-Context: base64 of a JSON object, at most 3583 bytes as sent."""
    if header is None:
        return None
    if len(header.encode()) > MAX_CLIENT_CONTEXT_BYTES:
        raise _user_error(400, "InvalidParameterValueException",
                          f"Client context must be {MAX_CLIENT_CONTEXT_BYTES} bytes or less.")
    try:
        decoded = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        decoded = None
    if not isinstance(decoded, dict):
        raise _user_error(400, "InvalidParameterValueException",
                          "Client context must be a valid Base64-encoded JSON object.")
    return ClientContext(decoded), decoded


def _event(body: bytes) -> Any:
    """The payload as the function receives it; an empty body is an empty event ({})."""
    if not body.strip():
        return {}
    try:
        return json.loads(body, parse_int=_integer)
    except (ValueError, UnicodeDecodeError) as error:
        raise _user_error(400, "InvalidRequestContentException",
                          f"Could not parse request body into json: Could not parse payload into json: {error}") from None


def _integer(text: str) -> Any:
    # Lambda parses with Jackson, which takes integers of any length; Python refuses to convert
    # more than 4300 digits (sys.get_int_max_str_digits), so longer ones stay exact as Decimals.
    if len(text.lstrip("-")) <= 4000:
        return int(text)
    from decimal import Decimal

    return Decimal(text)


# -- responses ---------------------------------------------------------------------------------------

def _auth_error(error: AuthError) -> _LambdaError:
    code, status = {
        "missing": ("MissingAuthenticationTokenException", 403),
        "unknown_key": ("UnrecognizedClientException", 403),
        "expired_token": ("ExpiredTokenException", 403),
        "malformed": ("IncompleteSignatureException", 400),
    }.get(error.kind, ("InvalidSignatureException", 403))
    return _LambdaError(status, code, {"message": error.message}, _AUTH_NS)


def error_response(request: Request, error: _LambdaError) -> Response:
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request.request_id),
               ("x-amzn-ErrorType", error.code + error.namespace), *error.headers]
    return Response(error.status, json.dumps(error.body).encode(), headers)
