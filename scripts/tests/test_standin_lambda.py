"""Stand-in hop 3: Lambda Invoke (SigV4, name forms, permissions, invocation types, limits)."""
from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest

from standin import StandIn
from standin.testclient import Creds, Reply, TestClient
from standin.world import Function

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

FN = "arn:aws:lambda:ap-northeast-1:111111111111:function"
ADC = f"{FN}:ADCCrossAccountTest"
DIRECT = f"{FN}:iotinvoke-direct-echo"
ROLE = "arn:aws:iam::111111111111:role"
SEED_BODY = b'{"statusCode": 200, "body": "\\"Hello from Lambda cross account test!\\""}'


def _error(reply: Reply) -> tuple[int, str | None, Any]:
    return reply.status, reply.error_code, reply.json()


@pytest.fixture
def device(aws_client: TestClient) -> Creds:
    return aws_client.device_creds()


@pytest.fixture
def dev(aws_client: TestClient, device: Creds) -> Creds:
    return aws_client.role_creds(device, f"{ROLE}/iotinvoke-dev")


@pytest.fixture
def tools(aws_client: TestClient, device: Creds) -> Creds:
    return aws_client.role_creds(device, f"{ROLE}/iotinvoke-tools")


def _identity(aws_client: TestClient, creds: Creds) -> str:
    reply = aws_client.sts(creds, {"Action": "GetCallerIdentity"})
    return reply.xml("sts:GetCallerIdentityResult/sts:Arn") or ""


def _allow(aws: StandIn, monkeypatch: pytest.MonkeyPatch, role: str, *resources: str) -> None:
    """Replace a role's identity policies by one allowing lambda:InvokeFunction on ``resources``."""
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": list(resources)}]}
    monkeypatch.setattr(aws.world.roles[role], "policies", [policy])


# -- the seed's call and the name forms -----------------------------------------------------------

def test_seed_function_answers_exactly_as_in_the_article(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, ADC, {"test": "test1"})
    assert reply.status == 200
    assert reply.body == SEED_BODY
    assert reply.header("X-Amz-Executed-Version") == "$LATEST"
    assert reply.header("X-Amz-Function-Error") is None
    assert reply.header("X-Amz-Log-Result") is None
    assert reply.header("x-amzn-RequestId")
    record = next(r for r in aws.invocations if r["request_id"] == reply.header("x-amzn-RequestId"))
    assert record["function_arn"] == ADC
    assert (record["qualifier"], record["invocation_type"], record["event"]) == (None, "RequestResponse",
                                                                                {"test": "test1"})
    assert record["caller_arn"] == "arn:aws:sts::111111111111:assumed-role/iotinvoke-dev/iotinvoke"
    assert record["client_context"] is None


@pytest.mark.parametrize("name,qualifier,version", [
    ("ADCCrossAccountTest", None, "$LATEST"),
    ("111111111111:function:ADCCrossAccountTest", None, "$LATEST"),
    (ADC, None, "$LATEST"),
    ("ADCCrossAccountTest:prod", None, "1"),
    (f"{ADC}:1", None, "1"),
    ("111111111111:function:ADCCrossAccountTest:$LATEST", None, "$LATEST"),
    (ADC, "prod", "1"),
    ("ADCCrossAccountTest:prod", "prod", "1"),
])
def test_name_forms_and_qualifiers(aws_client: TestClient, dev: Creds, name: str, qualifier: str | None,
                                   version: str) -> None:
    reply = aws_client.invoke(dev, name, qualifier=qualifier)
    assert reply.status == 200, reply.body
    assert reply.body == SEED_BODY
    assert reply.header("X-Amz-Executed-Version") == version


def test_qualifier_conflicting_with_the_name(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, "ADCCrossAccountTest:prod", qualifier="1")
    assert _error(reply) == (400, "InvalidParameterValueException", {
        "Type": "User",
        "message": "The derived qualifier from the function name does not match the specified qualifier."})


def test_unknown_qualifier_is_not_found(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, ADC, qualifier="staging")
    assert _error(reply) == (404, "ResourceNotFoundException",
                             {"Type": "User", "Message": f"Function not found: {ADC}:staging"})


def test_error_type_header_carries_a_namespace_suffix(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, ADC, qualifier="staging")
    assert (reply.header("x-amzn-ErrorType") or "").startswith("ResourceNotFoundException:http")


@pytest.mark.parametrize("name,constraint", [
    ("bad name!", "Member must satisfy regular expression pattern: "),
    ("f" * 65, "Member must have length less than or equal to 64"),
    ("arn:aws:lambda:ap-northeast-1:111111111111:function:" + "f" * 210,
     "Member must have length less than or equal to 256"),
])
def test_function_name_validation(aws_client: TestClient, dev: Creds, name: str, constraint: str) -> None:
    reply = aws_client.invoke(dev, name)
    assert (reply.status, reply.error_code) == (400, "ValidationException")
    assert reply.json()["message"].startswith(
        f"1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: {constraint}")


def test_function_in_another_region_is_not_reachable(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, "arn:aws:lambda:eu-west-1:111111111111:function:ADCCrossAccountTest")
    assert _error(reply) == (404, "ResourceNotFoundException", {
        "Type": "User", "Message": "Functions from 'eu-west-1' are not reachable in this region ('ap-northeast-1')"})


def test_prd_function_in_its_own_account_and_region(aws_client: TestClient, device: Creds) -> None:
    prd = aws_client.role_creds(device, "arn:aws:iam::222222222222:role/iotinvoke-prd")
    arn = "arn:aws:lambda:eu-west-1:222222222222:function:iotinvoke-prd-echo"
    reply = aws_client.invoke(prd, arn, {"n": 1}, region="eu-west-1")
    assert reply.status == 200
    assert reply.json() == {"event": {"n": 1}, "function": arn, "client_context": None}


def test_bare_name_belongs_to_the_callers_account(aws_client: TestClient, device: Creds) -> None:
    # For the device role (account 000000000000) a bare name means a function in 000000000000.
    reply = aws_client.invoke(device, "iotinvoke-direct-echo")
    assert reply.status == 403
    assert "arn:aws:lambda:ap-northeast-1:000000000000:function:iotinvoke-direct-echo" in reply.json()["Message"]


# -- permissions ---------------------------------------------------------------------------------------

def test_role_without_invoke_permission(aws_client: TestClient, device: Creds) -> None:
    creds = aws_client.role_creds(device, f"{ROLE}/iotinvoke-noinvoke")
    reply = aws_client.invoke(creds, ADC)
    assert _error(reply) == (403, "AccessDeniedException", {
        "Message": f"User: {_identity(aws_client, creds)} is not authorized to perform: lambda:InvokeFunction "
                   f"on resource: {ADC} because no identity-based policy allows the lambda:InvokeFunction action"})


def test_policy_on_the_unqualified_arn_does_not_cover_qualifiers(aws: StandIn, aws_client: TestClient, dev: Creds,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _allow(aws, monkeypatch, f"{ROLE}/iotinvoke-dev", ADC)
    assert aws_client.invoke(dev, ADC).status == 200
    reply = aws_client.invoke(dev, ADC, qualifier="prod")
    assert reply.status == 403
    assert f"on resource: {ADC}:prod because" in reply.json()["Message"]


def test_policy_on_one_alias_covers_only_that_alias(aws: StandIn, aws_client: TestClient, dev: Creds,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _allow(aws, monkeypatch, f"{ROLE}/iotinvoke-dev", f"{ADC}:prod")
    assert aws_client.invoke(dev, "ADCCrossAccountTest:prod").status == 200
    assert aws_client.invoke(dev, ADC).status == 403
    assert aws_client.invoke(dev, ADC, qualifier="1").status == 403


def test_missing_function_in_the_callers_account_is_404(aws_client: TestClient, device: Creds) -> None:
    wide = aws_client.role_creds(device, f"{ROLE}/iotinvoke-wide")
    reply = aws_client.invoke(wide, f"{FN}:iotinvoke-missing")
    assert _error(reply) == (404, "ResourceNotFoundException",
                             {"Type": "User", "Message": f"Function not found: {FN}:iotinvoke-missing"})


def test_missing_function_in_another_account_is_403_not_404(aws: StandIn, aws_client: TestClient, device: Creds,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _allow(aws, monkeypatch, "arn:aws:iam::000000000000:role/iotinvoke-device", f"{FN}:*")
    reply = aws_client.invoke(device, f"{FN}:iotinvoke-missing")
    assert reply.status == 403
    assert reply.json()["Message"].endswith("because no resource-based policy allows the lambda:InvokeFunction action")


def test_direct_mode_resource_policy_allows_the_device_role(aws: StandIn, aws_client: TestClient,
                                                            device: Creds) -> None:
    reply = aws_client.invoke(device, DIRECT, {"direct": True})
    assert reply.status == 200
    assert reply.json()["event"] == {"direct": True}
    assert aws.invocations[-1]["caller_arn"].startswith("arn:aws:sts::000000000000:assumed-role/iotinvoke-device/")


def test_thing_name_is_a_policy_variable_of_the_device_session(aws: StandIn, aws_client: TestClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # credentials-iot:ThingName is set only when hop 1 sent x-amzn-iot-thingname.
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": DIRECT,
        "Condition": {"StringEquals": {"credentials-iot:ThingName": "edge-0001"}}}]}
    monkeypatch.setattr(aws.world.roles["arn:aws:iam::000000000000:role/iotinvoke-device"], "policies", [policy])
    assert aws_client.invoke(aws_client.device_creds(thing="edge-0001"), DIRECT).status == 200
    assert aws_client.invoke(aws_client.device_creds(thing=None), DIRECT).status == 403


def test_direct_mode_without_resource_policy_is_denied(aws_client: TestClient, device: Creds) -> None:
    arn = f"{FN}:iotinvoke-direct-denied"
    reply = aws_client.invoke(device, arn)
    assert _error(reply) == (403, "AccessDeniedException", {
        "Message": f"User: {_identity(aws_client, device)} is not authorized to perform: lambda:InvokeFunction "
                   f"on resource: {arn} because no resource-based policy allows the lambda:InvokeFunction action"})


def test_direct_mode_needs_the_callers_identity_policy_too(aws: StandIn, aws_client: TestClient, device: Creds,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws.world.roles["arn:aws:iam::000000000000:role/iotinvoke-device"], "policies", [])
    reply = aws_client.invoke(device, DIRECT)
    assert reply.status == 403
    assert "because no identity-based policy allows" in reply.json()["Message"]


def test_explicit_deny_in_a_resource_policy(aws: StandIn, aws_client: TestClient, dev: Creds,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    deny = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "lambda:InvokeFunction", "Resource": ADC}]}
    monkeypatch.setattr(aws.world.functions[ADC], "resource_policy", deny)
    reply = aws_client.invoke(dev, ADC)
    assert reply.status == 403
    assert reply.json()["Message"].endswith(f"on resource: {ADC} with an explicit deny in a resource-based policy")


def test_session_policy_narrows_the_session(aws_client: TestClient, device: Creds) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": f"{FN}:nothing-else"}]})
    narrowed = aws_client.role_creds(device, f"{ROLE}/iotinvoke-dev", Policy=policy)
    reply = aws_client.invoke(narrowed, ADC)
    assert reply.status == 403
    assert reply.json()["Message"].endswith("because no session policy allows the lambda:InvokeFunction action")


# -- log tail ------------------------------------------------------------------------------------------

def test_tail_in_the_same_account_returns_the_log(aws_client: TestClient, tools: Creds) -> None:
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-print", {"lines": 3}, log_type="Tail")
    assert reply.status == 200
    request_id = reply.header("x-amzn-RequestId")
    log = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
    assert log.startswith(f"START RequestId: {request_id} Version: $LATEST\n"
                          "line 1 of 3\nline 2 of 3\nline 3 of 3\n"
                          f"END RequestId: {request_id}\n")
    assert re.search(rf"REPORT RequestId: {request_id}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t", log)


def test_tail_is_the_last_4_kb(aws_client: TestClient, tools: Creds) -> None:
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-print", {"lines": 500}, log_type="Tail")
    log = base64.b64decode(reply.header("X-Amz-Log-Result") or "")
    assert len(log) == 4096
    assert b"line 500 of 500\n" in log and b"line 1 of 500\n" not in log
    assert log.rstrip().split(b"\n")[-1].startswith(b"REPORT RequestId:")


def test_prints_of_concurrent_invocations_stay_apart(aws_client: TestClient, tools: Creds) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(lines: int) -> str:
        reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-print", {"lines": lines}, log_type="Tail")
        return base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()

    with ThreadPoolExecutor(8) as pool:
        logs = list(pool.map(run, range(1, 17)))
    for lines, log in zip(range(1, 17), logs):
        assert log.count(" of ") == lines and f"of {lines}\n" in log


def test_tail_across_accounts_is_refused(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.invoke(device, DIRECT, log_type="Tail")
    assert _error(reply) == (403, "AccessDeniedException", {"Message": "Cross-account log access is not allowed"})
    assert aws_client.invoke(device, DIRECT, log_type="None").status == 200


def test_tail_across_accounts_is_checked_after_authorization(aws_client: TestClient, device: Creds) -> None:
    reply = aws_client.invoke(device, f"{FN}:iotinvoke-direct-denied", log_type="Tail")
    assert reply.status == 403
    assert "is not authorized to perform" in reply.json()["Message"]


# -- invocation types ----------------------------------------------------------------------------------

def test_dry_run_checks_permission_and_runs_nothing(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    before = len(aws.invocations)
    reply = aws_client.invoke(dev, ADC, invocation_type="DryRun")
    assert (reply.status, reply.body) == (204, b"")
    assert len(aws.invocations) == before
    noinvoke = aws_client.role_creds(aws_client.device_creds(), f"{ROLE}/iotinvoke-noinvoke")
    assert aws_client.invoke(noinvoke, ADC, invocation_type="DryRun").status == 403


def test_event_is_accepted_and_runs_in_the_background(aws: StandIn, aws_client: TestClient, tools: Creds) -> None:
    started = time.monotonic()
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-sleep", {"seconds": 0.5}, invocation_type="Event",
                              client_context={"custom": {"a": 1}})
    assert (reply.status, reply.body) == (202, b"")
    assert time.monotonic() - started < 0.4      # did not wait for the function
    record = aws.invocations[-1]
    assert (record["invocation_type"], record["event"]) == ("Event", {"seconds": 0.5})
    assert record["client_context"] is None       # not passed to asynchronous invocations


def test_unknown_invocation_type(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, ADC, invocation_type="Sometime")
    assert (reply.status, reply.error_code) == (400, "ValidationException")
    assert "Member must satisfy enum value set: [Event, RequestResponse, DryRun]" in reply.json()["message"]


def test_unknown_log_type(aws_client: TestClient, dev: Creds) -> None:
    assert aws_client.invoke(dev, ADC, log_type="Head").error_code == "ValidationException"


# -- function errors and limits ---------------------------------------------------------------------------

def test_function_error_is_200_with_the_error_header(aws_client: TestClient, tools: Creds) -> None:
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-fail", {"why": "test"})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    body = reply.json()
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "iotinvoke-tools-fail was asked to fail: {'why': 'test'}"
    assert body["requestId"] == reply.header("x-amzn-RequestId")
    assert body["stackTrace"] and "tools_fail.py" in body["stackTrace"][-1]


def test_function_timeout(aws: StandIn, aws_client: TestClient, tools: Creds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws.world.functions[f"{FN}:iotinvoke-tools-sleep"], "timeout_s", 0.3)
    started = time.monotonic()
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-sleep", {"seconds": 2})
    assert time.monotonic() - started < 1.5
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert re.fullmatch(r"\S+Z [0-9a-f-]{36} Task timed out after 0\.30 seconds", reply.json()["errorMessage"])


def test_sleeping_within_the_timeout_returns(aws_client: TestClient, tools: Creds) -> None:
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-sleep", {"seconds": 0.1})
    assert (reply.status, reply.json()) == (200, {"slept": 0.1})


def test_context_object(aws_client: TestClient, tools: Creds) -> None:
    arn = f"{FN}:iotinvoke-tools-context"
    reply = aws_client.invoke(tools, arn, client_context={"custom": {"k": "v"}, "client": {"app_title": "edge"}})
    body = reply.json()
    assert body["function_name"] == "iotinvoke-tools-context"
    assert (body["function_version"], body["invoked_function_arn"]) == ("$LATEST", arn)
    assert body["memory_limit_in_mb"] == "128"
    assert body["aws_request_id"] == reply.header("x-amzn-RequestId")
    assert body["log_group_name"] == "/aws/lambda/iotinvoke-tools-context"
    assert 0 < body["remaining_ms"] <= 3000
    assert (body["custom"], body["app_title"]) == ({"k": "v"}, "edge")


@pytest.mark.parametrize("size,too_large", [(6291554, False), (6291555, True)])
def test_response_size_limit(aws_client: TestClient, tools: Creds, size: int, too_large: bool) -> None:
    reply = aws_client.invoke(tools, f"{FN}:iotinvoke-tools-size", {"bytes": size})
    assert reply.status == 200
    if too_large:
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == {
            "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "Function.ResponseSizeTooLarge"}
    else:
        assert reply.header("X-Amz-Function-Error") is None
        assert len(reply.body) == 6291556


def _payload_of(size: int) -> bytes:
    """A JSON string of exactly ``size`` bytes."""
    return b'"' + b"x" * (size - 2) + b'"'


@pytest.mark.parametrize("invocation_type,limit", [("RequestResponse", 6291456), ("Event", 1048576)])
def test_request_size_limit(aws_client: TestClient, dev: Creds, invocation_type: str, limit: int) -> None:
    assert aws_client.invoke(dev, ADC, _payload_of(limit), invocation_type=invocation_type).status in (200, 202)
    reply = aws_client.invoke(dev, ADC, _payload_of(limit + 1), invocation_type=invocation_type)
    assert _error(reply) == (413, "RequestEntityTooLargeException", {
        "message": f"Request must be smaller than {limit} bytes for the InvokeFunction operation"})


def test_payload_must_be_json(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(dev, ADC, b"{not json")
    status, code, body = _error(reply)
    assert (status, code, body["Type"]) == (400, "InvalidRequestContentException", "User")
    assert body["message"].startswith("Could not parse request body into json: ")


def test_empty_payload_is_an_empty_event(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    assert aws_client.invoke(dev, ADC, b"").status == 200
    assert aws.invocations[-1]["event"] == {}


# -- client context ---------------------------------------------------------------------------------------

def test_client_context_reaches_the_function(aws: StandIn, aws_client: TestClient, device: Creds) -> None:
    context = {"custom": {"device": "edge-0001"}, "env": {"locale": "ja"}, "ignored": 1}
    reply = aws_client.invoke(device, DIRECT, {}, client_context=context)
    assert reply.json()["client_context"] == {"client": None, "custom": {"device": "edge-0001"},
                                              "env": {"locale": "ja"}}
    assert aws.invocations[-1]["client_context"] == context


@pytest.mark.parametrize("header", [
    "not base64!",
    base64.b64encode(b"not json").decode(),
    base64.b64encode(b"[1, 2]").decode(),
    base64.b64encode(json.dumps({"custom": {"pad": "x" * 2700}}).encode()).decode(),   # > 3583 bytes as sent
])
def test_client_context_must_be_small_base64_json(aws_client: TestClient, device: Creds, header: str) -> None:
    reply = aws_client.invoke(device, DIRECT, {}, client_context=header)
    assert (reply.status, reply.error_code) == (400, "InvalidParameterValueException")


# -- authentication ---------------------------------------------------------------------------------------

def test_unsigned_request(aws_client: TestClient) -> None:
    reply = aws_client.send("lambda", "POST", "/2015-03-31/functions/ADCCrossAccountTest/invocations", body=b"{}")
    assert _error(reply) == (403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})


def test_unknown_key(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(Creds("ASIA" + "Q" * 16, dev.secret_key, dev.token), ADC)
    assert _error(reply) == (403, "UnrecognizedClientException",
                             {"message": "The security token included in the request is invalid."})


def test_wrong_token(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(Creds(dev.access_key, dev.secret_key, "forged"), ADC)
    assert reply.error_code == "UnrecognizedClientException"


def test_expired_token(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    aws.expire_all_tokens()
    assert _error(aws_client.invoke(dev, ADC)) == (
        403, "ExpiredTokenException", {"message": "The security token included in the request is expired"})


def test_wrong_secret(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.invoke(Creds(dev.access_key, "y" * 40, dev.token), ADC)
    assert (reply.status, reply.error_code) == (403, "InvalidSignatureException")
    assert reply.json()["message"].startswith("The request signature we calculated does not match")


@pytest.mark.parametrize("offset_min,prefix", [(6, "Signature expired: "), (-6, "Signature not yet current: ")])
def test_five_minute_window(aws: StandIn, aws_client: TestClient, dev: Creds, offset_min: int, prefix: str) -> None:
    aws.clock_offset_s = offset_min * 60
    reply = aws_client.invoke(dev, ADC)
    assert (reply.status, reply.error_code) == (403, "InvalidSignatureException")
    message = reply.json()["message"]
    assert message.startswith(prefix) and message.endswith(" 5 min.)")
    aws.clock_offset_s = -offset_min * 60 * 4 / 6   # 4 minutes the other way: inside the window
    assert aws_client.invoke(dev, ADC).status == 200


def test_unknown_operation(aws_client: TestClient, dev: Creds) -> None:
    reply = aws_client.signed("lambda", dev, "GET", "/2015-03-31/functions/ADCCrossAccountTest")
    assert (reply.status, reply.error_code) == (404, "UnknownOperationException")


def test_functions_added_by_a_test_are_served(aws: StandIn, aws_client: TestClient, dev: Creds,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    added = Function("iotinvoke-added", "111111111111", "ap-northeast-1", "echo")
    monkeypatch.setitem(aws.world.functions, added.arn, added)
    _allow(aws, monkeypatch, f"{ROLE}/iotinvoke-dev", added.arn)
    reply = aws_client.invoke(dev, added.arn, {"x": 1})
    assert reply.json()["function"] == added.arn


# -- the "error" fault: every modelled Invoke error, before or after the run ------------------------

def _model_errors() -> list[tuple[str, int, bool, list[str]]]:
    """(code, status, sender fault, members) of each Invoke error in the installed botocore model,
    read here independently of the stand-in's own reading."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("lambda", "service-2")
    rows = []
    for ref in model["operations"]["Invoke"]["errors"]:
        shape = model["shapes"][ref["shape"]]
        rows.append(((shape["error"].get("code") or ref["shape"]), shape["error"]["httpStatusCode"],
                     bool(shape["error"].get("senderFault")), list(shape["members"])))
    return rows


MODEL_ERRORS = _model_errors()


def test_the_model_lists_the_errors_the_issue_names() -> None:
    # A guard on the parametrization below: an empty or foreign model would make it pass vacuously.
    codes = {code for code, *_ in MODEL_ERRORS}
    assert {"TooManyRequestsException", "ServiceException", "ResourceConflictException",
            "KMSAccessDeniedException", "EFSMountFailureException"} <= codes


@pytest.mark.parametrize("code, status, sender, members", MODEL_ERRORS, ids=[row[0] for row in MODEL_ERRORS])
def test_error_fault_answers_each_modelled_error_with_its_wire_shape(
        aws: StandIn, aws_client: TestClient, dev: Creds, code: str, status: int, sender: bool,
        members: list[str]) -> None:
    before = len(aws.invocations)
    aws.fault("lambda", "error", code=code, message="injected")
    reply = aws_client.invoke(dev, ADC, {"n": 1})
    assert (reply.status, reply.error_code) == (status, code)
    assert (reply.header("x-amzn-ErrorType") or "").startswith(code + ":")
    assert reply.header("x-amzn-RequestId")
    body = reply.json()
    assert body["Type"] == ("User" if sender else "Service")
    text_member = "message" if "message" in members else "Message"
    assert body[text_member] == "injected"
    assert set(body) <= set(members), "only members the model declares"
    assert (reply.header("Retry-After") is not None) == (status == 429)
    assert len(aws.invocations) == before, "answered before the function ran"
    # botocore itself parses the answer into the same modelled error.
    from botocore.loaders import Loader
    from botocore.model import ServiceModel
    from botocore.parsers import create_parser

    model = ServiceModel(Loader().load_service_model("lambda", "service-2"))
    parsed = create_parser("rest-json").parse(
        {"status_code": reply.status, "headers": {k.lower(): v for k, v in reply.headers.items()}, "body": reply.body},
        model.operation_model("Invoke").output_shape)
    assert parsed["Error"]["Code"] == code


def test_error_fault_after_the_run_records_the_execution(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    before = len(aws.invocations)
    aws.fault("lambda", "error", code="ServiceException", after_run=True)
    reply = aws_client.invoke(dev, ADC, {"ran": "once"})
    assert (reply.status, reply.error_code) == (500, "ServiceException")
    assert [i["event"] for i in aws.invocations[before:]] == [{"ran": "once"}]
    assert aws_client.invoke(dev, ADC, {}).status == 200, "one request only"


def test_error_fault_throttle_reason_and_retry_after(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    aws.fault("lambda", "error", code="TooManyRequestsException",
              reason="ReservedFunctionConcurrentInvocationLimitExceeded", retry_after=7)
    reply = aws_client.invoke(dev, ADC, {})
    assert (reply.status, reply.header("Retry-After")) == (429, "7")
    assert reply.json()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_error_fault_unmodelled_code_needs_a_status(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    with pytest.raises(ValueError, match="give its status"):
        aws.fault("lambda", "error", code="FutureException")
    aws.fault("lambda", "error", code="FutureException", status=503)
    reply = aws_client.invoke(dev, ADC, {})
    assert (reply.status, reply.error_code, reply.json()["Type"]) == (503, "FutureException", "Service")


def test_error_fault_on_sts_and_iot(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    aws.fault("iot", "error", status=403, message="Access Denied")
    reply = aws_client.iot()
    assert (reply.status, reply.json()) == (403, {"message": "Access Denied"})
    device = aws_client.device_creds()
    aws.fault("sts", "error", code="RegionDisabledException", status=403)
    reply = aws_client.sts(device, {"Action": "GetCallerIdentity"})
    assert (reply.status, reply.error_code) == (403, "RegionDisabledException")


def test_a_5000_digit_integer_is_a_valid_event(aws: StandIn, aws_client: TestClient, dev: Creds) -> None:
    # Jackson, Lambda's parser, takes integers of any length (Python's int() stops at 4300 digits).
    number = "9" * 5000
    reply = aws_client.invoke(dev, ADC, '{"n": %s}' % number)
    assert (reply.status, reply.body) == (200, SEED_BODY)
    assert str(aws.invocations[-1]["event"]["n"]) == number
