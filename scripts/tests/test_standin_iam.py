"""The stand-in's IAM evaluator: every rule with a case it allows and a case it refuses."""
from __future__ import annotations

import pytest

from standin.iam import Principal, evaluate, is_allowed, principal_matches

pytestmark = pytest.mark.tooling  # not iotinvoke's own tests: run once, with current releases

IOT, LAMBDA = "000000000000", "111111111111"
SESSION = Principal(
    arn=f"arn:aws:sts::{IOT}:assumed-role/iotinvoke-device/abc123",
    account=IOT,
    role_arn=f"arn:aws:iam::{IOT}:role/iotinvoke-device",
)
OTHER_SESSION = Principal(
    arn=f"arn:aws:sts::{IOT}:assumed-role/other-role/abc123", account=IOT, role_arn=f"arn:aws:iam::{IOT}:role/other-role"
)
DEV_SESSION = Principal(
    arn=f"arn:aws:sts::{LAMBDA}:assumed-role/iotinvoke-dev/edge-0001",
    account=LAMBDA,
    role_arn=f"arn:aws:iam::{LAMBDA}:role/iotinvoke-dev",
)
USER = Principal(arn=f"arn:aws:iam::{IOT}:user/alice", account=IOT)
IOT_SERVICE = Principal(arn="credentials.iot.amazonaws.com", account=None, service="credentials.iot.amazonaws.com")
FUNCTION = f"arn:aws:lambda:ap-northeast-1:{LAMBDA}:function:my-fn"


def policy(*statements: dict, version: str = "2012-10-17") -> dict:
    return {"Version": version, "Statement": list(statements)}


def allow(**fields) -> dict:
    return {"Effect": "Allow", **fields}


def deny(**fields) -> dict:
    return {"Effect": "Deny", **fields}


def decide(*statements: dict, action: str = "lambda:InvokeFunction", resource: str = FUNCTION,
           context: dict[str, str] | None = None, who: Principal | None = None, version: str = "2012-10-17") -> str:
    return evaluate([policy(*statements, version=version)], action=action, resource=resource,
                    context=context or {}, who=who)


# ---------------------------------------------------------------- principals


@pytest.mark.parametrize(
    "element, who, expected",
    [
        # "*" and {"AWS": "*"} match anyone, service principals included.
        ("*", IOT_SERVICE, True),
        ({"AWS": "*"}, SESSION, True),
        ({"AWS": "arn:aws:iam::222222222222:root"}, SESSION, False),
        # An account, by id or by :root, matches every principal of that account and nobody else.
        ({"AWS": IOT}, SESSION, True),
        ({"AWS": IOT}, USER, True),
        ({"AWS": LAMBDA}, SESSION, False),
        (f"arn:aws:iam::{IOT}:root", USER, True),
        ({"AWS": f"arn:aws:iam::{LAMBDA}:root"}, USER, False),
        ({"AWS": IOT}, IOT_SERVICE, False),
        # A role ARN matches that role's sessions (with or without a path in the policy), not other roles'.
        ({"AWS": f"arn:aws:iam::{IOT}:role/iotinvoke-device"}, SESSION, True),
        ({"AWS": f"arn:aws:iam::{IOT}:role/devices/iotinvoke-device"}, SESSION, True),
        ({"AWS": f"arn:aws:iam::{IOT}:role/iotinvoke-device"}, OTHER_SESSION, False),
        ({"AWS": f"arn:aws:iam::{LAMBDA}:role/iotinvoke-device"}, SESSION, False),
        # An assumed-role ARN matches exactly that session.
        ({"AWS": SESSION.arn}, SESSION, True),
        ({"AWS": f"arn:aws:sts::{IOT}:assumed-role/iotinvoke-device/other"}, SESSION, False),
        # A user ARN matches that user.
        ({"AWS": USER.arn}, USER, True),
        ({"AWS": f"arn:aws:iam::{IOT}:user/bob"}, USER, False),
        # A service principal matches only as a Service, and only that service.
        ({"Service": "credentials.iot.amazonaws.com"}, IOT_SERVICE, True),
        ({"Service": "lambda.amazonaws.com"}, IOT_SERVICE, False),
        ({"AWS": "credentials.iot.amazonaws.com"}, IOT_SERVICE, True),
        ({"Service": "credentials.iot.amazonaws.com"}, SESSION, False),
        # Lists, at the top and inside a key.
        ({"AWS": [LAMBDA, SESSION.arn]}, SESSION, True),
        ({"AWS": [LAMBDA, USER.arn]}, SESSION, False),
        ([LAMBDA, IOT], USER, True),
        ({"Service": ["lambda.amazonaws.com"], "AWS": [LAMBDA]}, IOT_SERVICE, False),
    ],
)
def test_principal_matches(element, who: Principal, expected: bool) -> None:
    assert principal_matches(element, who) is expected


# ---------------------------------------------------------------- statements


def test_statement_may_be_a_single_dict() -> None:
    single = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}}
    assert evaluate([single], action="lambda:InvokeFunction", resource=FUNCTION, context={}) == "Allow"
    assert evaluate([single], action="sts:AssumeRole", resource=FUNCTION, context={}) == "NoMatch"


def test_allow_and_no_match() -> None:
    assert decide(allow(Action="lambda:InvokeFunction", Resource=FUNCTION)) == "Allow"
    assert decide(allow(Action="lambda:GetFunction", Resource=FUNCTION)) == "NoMatch"
    assert evaluate([], action="lambda:InvokeFunction", resource=FUNCTION, context={}) == "NoMatch"


def test_explicit_deny_wins_in_any_order() -> None:
    a, d = allow(Action="lambda:*", Resource="*"), deny(Action="lambda:InvokeFunction", Resource=FUNCTION)
    assert decide(a, d) == "Deny"
    assert decide(d, a) == "Deny"
    assert evaluate([policy(a), policy(d)], action="lambda:InvokeFunction", resource=FUNCTION, context={}) == "Deny"
    # A Deny that does not apply leaves the Allow standing.
    assert decide(a, deny(Action="lambda:DeleteFunction", Resource="*")) == "Allow"


def test_unknown_effect_is_ignored() -> None:
    assert decide({"Effect": "allow", "Action": "*", "Resource": "*"}) == "NoMatch"


@pytest.mark.parametrize(
    "pattern, action, expected",
    [
        ("lambda:InvokeFunction", "lambda:InvokeFunction", "Allow"),
        ("LAMBDA:invokefunction", "lambda:InvokeFunction", "Allow"),  # actions are case-insensitive
        ("lambda:Invoke*", "lambda:InvokeFunction", "Allow"),
        ("lambda:Invoke*", "lambda:GetFunction", "NoMatch"),
        ("sts:AssumeRol?", "sts:AssumeRole", "Allow"),
        ("sts:AssumeRol?", "sts:AssumeRoleWithSAML", "NoMatch"),
        ("*", "iot:Connect", "Allow"),
        (["s3:*", "lambda:InvokeFunction"], "lambda:InvokeFunction", "Allow"),
        (["s3:*", "lambda:GetFunction"], "lambda:InvokeFunction", "NoMatch"),
    ],
)
def test_action_wildcards(pattern, action: str, expected: str) -> None:
    assert decide(allow(Action=pattern, Resource="*"), action=action) == expected


def test_not_action() -> None:
    assert decide(allow(NotAction="iam:*", Resource="*"), action="lambda:InvokeFunction") == "Allow"
    assert decide(allow(NotAction="lambda:*", Resource="*"), action="lambda:InvokeFunction") == "NoMatch"


def test_statement_without_action_never_applies() -> None:
    assert decide(allow(Resource="*")) == "NoMatch"
    assert decide(allow(Resource="*", Action="*")) == "Allow"


@pytest.mark.parametrize(
    "pattern, expected",
    [
        (FUNCTION, "Allow"),
        (f"arn:aws:lambda:*:{LAMBDA}:function:*", "Allow"),
        (f"arn:aws:lambda:ap-northeast-1:{LAMBDA}:function:my-f?", "Allow"),
        (f"arn:aws:lambda:ap-northeast-1:{LAMBDA}:function:My-Fn", "NoMatch"),  # resources are case-sensitive
        (f"arn:aws:lambda:ap-northeast-1:{LAMBDA}:function:my-fn:*", "NoMatch"),
        ([f"arn:aws:lambda:*:{IOT}:function:*", FUNCTION], "Allow"),
    ],
)
def test_resource_wildcards(pattern, expected: str) -> None:
    assert decide(allow(Action="lambda:InvokeFunction", Resource=pattern)) == expected


def test_not_resource() -> None:
    assert decide(allow(Action="*", NotResource=f"arn:aws:lambda:*:{IOT}:function:*")) == "Allow"
    assert decide(allow(Action="*", NotResource=f"arn:aws:lambda:*:{LAMBDA}:function:*")) == "NoMatch"


def test_statement_without_resource_matches_any_resource() -> None:
    # Trust policies name no Resource: the role they are attached to is the resource.
    trust = allow(Principal={"Service": "credentials.iot.amazonaws.com"}, Action="sts:AssumeRole")
    assert decide(trust, action="sts:AssumeRole", resource="arn:aws:iam::0:role/x", who=IOT_SERVICE) == "Allow"
    assert decide(trust, action="sts:AssumeRole", resource="arn:aws:iam::0:role/x", who=SESSION) == "NoMatch"


def test_principal_is_checked_only_when_present() -> None:
    with_principal = allow(Principal={"AWS": IOT}, Action="lambda:InvokeFunction", Resource=FUNCTION)
    assert decide(with_principal, who=SESSION) == "Allow"
    assert decide(with_principal, who=DEV_SESSION) == "NoMatch"
    assert decide(with_principal, who=None) == "NoMatch"  # a Principal cannot match nobody
    assert decide(allow(Action="lambda:InvokeFunction", Resource=FUNCTION), who=None) == "Allow"


def test_not_principal() -> None:
    everyone_but_iot = deny(NotPrincipal={"AWS": IOT}, Action="*", Resource="*")
    assert decide(everyone_but_iot, who=DEV_SESSION) == "Deny"
    assert decide(everyone_but_iot, who=SESSION) == "NoMatch"


# ---------------------------------------------------------------- conditions


def conditioned(condition: dict, context: dict[str, str], version: str = "2012-10-17") -> str:
    return decide(allow(Action="*", Resource="*", Condition=condition), context=context, version=version)


@pytest.mark.parametrize(
    "operator, policy_value, actual, expected",
    [
        ("StringEquals", "edge-0001", "edge-0001", "Allow"),
        ("StringEquals", "edge-0001", "EDGE-0001", "NoMatch"),
        ("StringNotEquals", "edge-0001", "edge-0002", "Allow"),
        ("StringNotEquals", "edge-0001", "edge-0001", "NoMatch"),
        ("StringEqualsIgnoreCase", "edge-0001", "EDGE-0001", "Allow"),
        ("StringEqualsIgnoreCase", "edge-0001", "edge-0002", "NoMatch"),
        ("StringNotEqualsIgnoreCase", "edge-0001", "edge-0002", "Allow"),
        ("StringNotEqualsIgnoreCase", "edge-0001", "EDGE-0001", "NoMatch"),
        ("StringLike", "edge-*", "edge-0001", "Allow"),
        ("StringLike", "edge-00?", "edge-0001", "NoMatch"),
        ("StringLike", "Edge-*", "edge-0001", "NoMatch"),  # case-sensitive
        ("StringNotLike", "lab-*", "edge-0001", "Allow"),
        ("StringNotLike", "edge-*", "edge-0001", "NoMatch"),
        ("ArnEquals", f"arn:aws:iam::{IOT}:role/*", f"arn:aws:iam::{IOT}:role/iotinvoke-device", "Allow"),
        ("ArnEquals", f"arn:aws:iam::{IOT}:role/x", f"arn:aws:iam::{IOT}:role/iotinvoke-device", "NoMatch"),
        ("ArnLike", "arn:aws:iot:*:*:thing/edge-*", f"arn:aws:iot:ap-northeast-1:{IOT}:thing/edge-1", "Allow"),
        ("ArnLike", "arn:aws:iot:*:*:thing/edge-*", f"arn:aws:iot:ap-northeast-1:{IOT}:cert/edge-1", "NoMatch"),
        ("ArnLike", "arn:aws:iot:*", f"arn:aws:iot:ap-northeast-1:{IOT}:thing/edge-1", "NoMatch"),  # six parts each
        ("ArnLike", "arn:aws:iot:*:*:*", "not-an-arn", "NoMatch"),
        ("ArnNotEquals", f"arn:aws:iam::{LAMBDA}:*", f"arn:aws:iam::{IOT}:role/r", "Allow"),
        ("ArnNotEquals", f"arn:aws:iam::{IOT}:*", f"arn:aws:iam::{IOT}:role/r", "NoMatch"),
        ("ArnNotLike", f"arn:aws:iam::{LAMBDA}:role/*", f"arn:aws:iam::{IOT}:role/r", "Allow"),
        ("ArnNotLike", f"arn:aws:iam::{IOT}:role/*", f"arn:aws:iam::{IOT}:role/r", "NoMatch"),
        ("Bool", "true", "true", "Allow"),
        ("Bool", True, "true", "Allow"),  # JSON true is the string "true"
        ("Bool", "true", "false", "NoMatch"),
        ("NumericEquals", "3600", "3600", "Allow"),
        ("NumericEquals", "3600", "3601", "NoMatch"),
        ("NumericNotEquals", "3600", "3601", "Allow"),
        ("NumericNotEquals", "3600", "3600", "NoMatch"),
        ("NumericLessThan", "3600", "3599", "Allow"),
        ("NumericLessThan", "3600", "3600", "NoMatch"),
        ("NumericLessThanEquals", "3600", "3600", "Allow"),
        ("NumericLessThanEquals", "3600", "3601", "NoMatch"),
        ("NumericLessThanEquals", "3600", "not-a-number", "NoMatch"),
        ("NumericGreaterThan", "900", "901", "Allow"),
        ("NumericGreaterThan", "900", "900", "NoMatch"),
        ("NumericGreaterThanEquals", "900", "900", "Allow"),
        ("NumericGreaterThanEquals", "900", "899", "NoMatch"),
    ],
)
def test_condition_operators(operator: str, policy_value, actual: str, expected: str) -> None:
    assert conditioned({operator: {"k:Key": policy_value}}, {"k:Key": actual}) == expected


@pytest.mark.parametrize(
    "operator, expected",
    [("StringEquals", "NoMatch"), ("StringLike", "NoMatch"), ("ArnLike", "NoMatch"), ("Bool", "NoMatch"),
     ("NumericLessThan", "NoMatch"),
     # IAM guide: "If the policy condition requires that the key is not matched, such as StringNotLike
     # or ArnNotLike, and the right key is not present, the condition is true."
     ("StringNotEquals", "Allow"), ("StringNotLike", "Allow"), ("ArnNotLike", "Allow"), ("ArnNotEquals", "Allow"),
     ("StringEqualsIfExists", "Allow"), ("ArnLikeIfExists", "Allow"), ("NumericLessThanIfExists", "Allow")],
)
def test_missing_key(operator: str, expected: str) -> None:
    assert conditioned({operator: {"k:Absent": "x"}}, {"k:Other": "x"}) == expected


def test_if_exists_still_checks_a_present_key() -> None:
    assert conditioned({"StringEqualsIfExists": {"k:Key": "a"}}, {"k:Key": "a"}) == "Allow"
    assert conditioned({"StringEqualsIfExists": {"k:Key": "a"}}, {"k:Key": "b"}) == "NoMatch"


def test_null() -> None:
    assert conditioned({"Null": {"k:Key": "true"}}, {}) == "Allow"
    assert conditioned({"Null": {"k:Key": "true"}}, {"k:Key": "x"}) == "NoMatch"
    assert conditioned({"Null": {"k:Key": "false"}}, {"k:Key": "x"}) == "Allow"
    assert conditioned({"Null": {"k:Key": False}}, {}) == "NoMatch"


def test_values_of_one_key_are_ored() -> None:
    assert conditioned({"StringEquals": {"k:Key": ["a", "b"]}}, {"k:Key": "b"}) == "Allow"
    assert conditioned({"StringEquals": {"k:Key": ["a", "b"]}}, {"k:Key": "c"}) == "NoMatch"
    # Negated: true only when no value matches.
    assert conditioned({"StringNotEquals": {"k:Key": ["a", "b"]}}, {"k:Key": "c"}) == "Allow"
    assert conditioned({"StringNotEquals": {"k:Key": ["a", "b"]}}, {"k:Key": "b"}) == "NoMatch"


def test_keys_and_operators_are_anded() -> None:
    ctx = {"k:A": "1", "k:B": "2"}
    assert conditioned({"StringEquals": {"k:A": "1", "k:B": "2"}}, ctx) == "Allow"
    assert conditioned({"StringEquals": {"k:A": "1", "k:B": "3"}}, ctx) == "NoMatch"
    assert conditioned({"StringEquals": {"k:A": "1"}, "StringLike": {"k:B": "2*"}}, ctx) == "Allow"
    assert conditioned({"StringEquals": {"k:A": "1"}, "StringLike": {"k:B": "3*"}}, ctx) == "NoMatch"


def test_condition_keys_are_case_insensitive() -> None:
    assert conditioned({"StringEquals": {"CREDENTIALS-IOT:thingname": "edge-1"}},
                       {"credentials-iot:ThingName": "edge-1"}) == "Allow"
    assert conditioned({"StringEquals": {"credentials-iot:ThingNames": "edge-1"}},
                       {"credentials-iot:ThingName": "edge-1"}) == "NoMatch"


def test_set_qualifiers_on_single_valued_keys() -> None:
    assert conditioned({"ForAnyValue:StringLike": {"k:Key": "a*"}}, {"k:Key": "ab"}) == "Allow"
    assert conditioned({"ForAnyValue:StringLike": {"k:Key": "a*"}}, {"k:Key": "ba"}) == "NoMatch"
    assert conditioned({"ForAnyValue:StringLike": {"k:Key": "a*"}}, {}) == "NoMatch"
    assert conditioned({"ForAllValues:StringEquals": {"k:Key": "a"}}, {}) == "Allow"  # the empty set
    assert conditioned({"ForAllValues:StringEquals": {"k:Key": "a"}}, {"k:Key": "b"}) == "NoMatch"


def test_unsupported_operator_is_an_error_not_a_silent_match() -> None:
    with pytest.raises(ValueError):
        conditioned({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.0.0.1"})
    with pytest.raises(ValueError):
        conditioned({"ForSomeValues:StringEquals": {"k:Key": "a"}}, {"k:Key": "a"})


# ---------------------------------------------------------------- policy variables

THING_CTX = {"credentials-iot:ThingName": "edge-0001", "iot:Connection.Thing.ThingName": "edge-0001"}


def test_variable_in_resource() -> None:
    stmt = allow(Action="iot:Publish", Resource="arn:aws:iot:*:*:topic/things/${credentials-iot:ThingName}/*")
    assert decide(stmt, action="iot:Publish", resource="arn:aws:iot:r:1:topic/things/edge-0001/up",
                  context=THING_CTX) == "Allow"
    assert decide(stmt, action="iot:Publish", resource="arn:aws:iot:r:1:topic/things/edge-0002/up",
                  context=THING_CTX) == "NoMatch"


def test_unknown_variable_makes_that_resource_entry_not_match() -> None:
    stmt = allow(Action="*", Resource=["arn:aws:iot:*:*:thing/${iot:Connection.Thing.ThingName}", "arn:aws:s3:::b/*"])
    assert decide(stmt, resource="arn:aws:iot:r:1:thing/edge-0001", context={}) == "NoMatch"
    assert decide(stmt, resource="arn:aws:iot:r:1:thing/edge-0001", context=THING_CTX) == "Allow"
    assert decide(stmt, resource="arn:aws:s3:::b/k", context={}) == "Allow"  # the other entry still matches


def test_variable_value_is_literal_not_a_wildcard() -> None:
    stmt = allow(Action="*", Resource="arn:aws:s3:::b/${aws:username}")
    assert decide(stmt, resource="arn:aws:s3:::b/alice", context={"aws:username": "*"}) == "NoMatch"
    assert decide(stmt, resource="arn:aws:s3:::b/*", context={"aws:username": "*"}) == "Allow"


def test_escaped_wildcard_variable_is_literal() -> None:
    stmt = allow(Action="*", Resource="arn:aws:s3:::b/${*}")
    assert decide(stmt, resource="arn:aws:s3:::b/*") == "Allow"
    assert decide(stmt, resource="arn:aws:s3:::b/anything") == "NoMatch"


def test_variable_in_condition_value() -> None:
    cond = {"StringEquals": {"iot:ClientId": "${iot:Connection.Thing.ThingName}"}}
    assert conditioned(cond, {**THING_CTX, "iot:ClientId": "edge-0001"}) == "Allow"
    assert conditioned(cond, {**THING_CTX, "iot:ClientId": "edge-0002"}) == "NoMatch"
    assert conditioned(cond, {"iot:ClientId": "edge-0001"}) == "NoMatch"  # unknown variable: no match


def test_variables_need_policy_version_2012_10_17() -> None:
    stmt = allow(Action="*", Resource="arn:aws:s3:::b/${aws:username}")
    ctx = {"aws:username": "alice"}
    assert decide(stmt, resource="arn:aws:s3:::b/alice", context=ctx, version="2012-10-17") == "Allow"
    assert decide(stmt, resource="arn:aws:s3:::b/alice", context=ctx, version="2008-10-17") == "NoMatch"
    assert decide(stmt, resource="arn:aws:s3:::b/${aws:username}", context=ctx, version="2008-10-17") == "Allow"


# ---------------------------------------------------------------- is_allowed: AWS's evaluation logic

INVOKE = allow(Action="lambda:InvokeFunction", Resource=FUNCTION)
SAME = dict(action="lambda:InvokeFunction", resource=FUNCTION, resource_account=LAMBDA, context={})


def function_policy(principal) -> dict:
    return policy(allow(Principal=principal, Action="lambda:InvokeFunction", Resource=FUNCTION))


def test_explicit_deny_in_identity_policy() -> None:
    denied = [policy(INVOKE, deny(Action="lambda:*", Resource="*"))]
    assert is_allowed(denied, function_policy({"AWS": DEV_SESSION.arn}), who=DEV_SESSION, **SAME) == (
        False, "explicit deny in an identity-based policy")
    assert is_allowed([policy(INVOKE)], None, who=DEV_SESSION, **SAME) == (True, "")


def test_explicit_deny_in_resource_policy() -> None:
    rp = policy(deny(Principal="*", Action="lambda:InvokeFunction", Resource=FUNCTION))
    assert is_allowed([policy(INVOKE)], rp, who=DEV_SESSION, **SAME) == (False, "explicit deny in a resource-based policy")
    assert is_allowed([policy(INVOKE)], function_policy("*"), who=DEV_SESSION, **SAME) == (True, "")


def test_same_account_identity_policy_alone_allows() -> None:
    assert is_allowed([policy(INVOKE)], None, who=DEV_SESSION, **SAME) == (True, "")
    assert is_allowed([], None, who=DEV_SESSION, **SAME) == (
        False, "no identity-based policy allows the lambda:InvokeFunction action")


def test_same_account_resource_policy_naming_the_principal_alone_allows() -> None:
    by_role = function_policy({"AWS": DEV_SESSION.role_arn})
    assert is_allowed([], by_role, who=DEV_SESSION, **SAME) == (True, "")
    by_other_role = function_policy({"AWS": f"arn:aws:iam::{LAMBDA}:role/someone-else"})
    assert is_allowed([], by_other_role, who=DEV_SESSION, **SAME) == (
        False, "no identity-based policy allows the lambda:InvokeFunction action")


def test_same_account_resource_policy_naming_the_account_delegates_to_identity_policies() -> None:
    by_account = function_policy({"AWS": LAMBDA})
    assert is_allowed([], by_account, who=DEV_SESSION, **SAME) == (
        False, "no identity-based policy allows the lambda:InvokeFunction action")
    assert is_allowed([policy(INVOKE)], by_account, who=DEV_SESSION, **SAME) == (True, "")


def test_cross_account_needs_both() -> None:
    cross = dict(SAME)
    rp = function_policy({"AWS": SESSION.role_arn})
    assert is_allowed([policy(INVOKE)], rp, who=SESSION, **cross) == (True, "")
    assert is_allowed([policy(INVOKE)], None, who=SESSION, **cross) == (
        False, "no resource-based policy allows the lambda:InvokeFunction action")
    assert is_allowed([policy(INVOKE)], function_policy({"AWS": "222222222222"}), who=SESSION, **cross) == (
        False, "no resource-based policy allows the lambda:InvokeFunction action")
    assert is_allowed([], rp, who=SESSION, **cross) == (
        False, "no identity-based policy allows the lambda:InvokeFunction action")
    # A cross-account account principal is enough on the resource side (the identity side still decides).
    assert is_allowed([policy(INVOKE)], function_policy({"AWS": IOT}), who=SESSION, **cross) == (True, "")


ASSUME = dict(action="sts:AssumeRole", resource=f"arn:aws:iam::{LAMBDA}:role/iotinvoke-dev", context={})
ASSUME_ALLOW = allow(Action="sts:AssumeRole", Resource=f"arn:aws:iam::{LAMBDA}:role/iotinvoke-dev")


def trust(principal) -> dict:
    return policy(allow(Principal=principal, Action="sts:AssumeRole"))


def test_trust_policy_must_allow_even_in_the_same_account() -> None:
    caller = Principal(arn=f"arn:aws:iam::{LAMBDA}:user/ops", account=LAMBDA)
    kw = dict(ASSUME, resource_account=LAMBDA, resource_must_allow=True)
    assert is_allowed([policy(ASSUME_ALLOW)], trust({"AWS": "arn:aws:iam::999999999999:root"}), who=caller, **kw) == (
        False, "no resource-based policy allows the sts:AssumeRole action")
    assert is_allowed([], trust({"AWS": caller.arn}), who=caller, **kw) == (True, "")
    assert is_allowed([], trust({"AWS": LAMBDA}), who=caller, **kw) == (
        False, "no identity-based policy allows the sts:AssumeRole action")
    assert is_allowed([policy(ASSUME_ALLOW)], trust({"AWS": LAMBDA}), who=caller, **kw) == (True, "")
    # Without the flag the same-account rule is "either allows".
    assert is_allowed([policy(ASSUME_ALLOW)], None, who=caller, **dict(ASSUME, resource_account=LAMBDA)) == (True, "")


def test_service_principal_needs_only_the_trust_policy() -> None:
    kw = dict(ASSUME, resource_account=IOT, resource_must_allow=True)
    assert is_allowed([], trust({"Service": "credentials.iot.amazonaws.com"}), who=IOT_SERVICE, **kw) == (True, "")
    assert is_allowed([], trust({"Service": "lambda.amazonaws.com"}), who=IOT_SERVICE, **kw) == (
        False, "no resource-based policy allows the sts:AssumeRole action")


def test_two_hop_role_chain_scenario() -> None:
    """The product's hop 2: the IoT-account session assumes the dev role in the Lambda account."""
    kw = dict(ASSUME, resource_account=LAMBDA, resource_must_allow=True)
    trust_device_role = trust({"AWS": f"arn:aws:iam::{IOT}:role/iotinvoke-device"})
    assert is_allowed([policy(ASSUME_ALLOW)], trust_device_role, who=SESSION, **kw) == (True, "")
    assert is_allowed([policy(ASSUME_ALLOW)], trust_device_role, who=OTHER_SESSION, **kw) == (
        False, "no resource-based policy allows the sts:AssumeRole action")
