"""A small IAM policy evaluator for the local stand-in (stdlib only).

It decides what AWS decides for the policies the stand-in holds: role trust policies, identity
policies of roles, Lambda resource-based policies. Sources: the IAM User Guide pages "Policy
evaluation logic", "IAM JSON policy elements: Principal / Condition operators" and "IAM policy
elements: Variables and tags". Not modelled: SCPs/RCPs, permissions boundaries, session policies,
Date/IP/Binary condition operators, multi-valued context keys, `${key, 'default'}` variables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Principal", "principal_matches", "evaluate", "is_allowed"]

# Policy variables exist only in this policy language version; older policies take `${...}` literally.
_VARIABLES_VERSION = "2012-10-17"
_VARIABLE_RE = re.compile(r"\$\{([^}]*)\}")
# `${*}`, `${?}`, `${$}` stand for the literal character (IAM's escape for wildcard characters).
_LITERAL_VARIABLES = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True)
class Principal:
    """Who makes the request, as IAM sees it."""

    arn: str  # "arn:aws:sts::000000000000:assumed-role/R/S", an IAM ARN, or a service name
    account: str | None  # None for service principals
    role_arn: str | None = None  # for assumed-role sessions: "arn:aws:iam::000000000000:role/R"
    service: str | None = None  # for service principals: "credentials.iot.amazonaws.com"


class _Unresolved(Exception):
    """A policy variable with no value in the request context."""


# ---------------------------------------------------------------- principals

# How a Principal element matched: IAM treats an account principal as a delegation to the
# account's own identity policies, so in the same account it does not allow by itself.
_SPECIFIC, _ACCOUNT = "specific", "account"


def principal_matches(principal_element: str | dict[str, Any] | list[Any], who: Principal) -> bool:
    """Whether a Principal element names `who` (standard IAM semantics).

    "*" and {"AWS": "*"} match anyone; an account id or "arn:aws:iam::ACCOUNT:root" matches every
    principal of that account; a role ARN matches that role's sessions; an assumed-role ARN matches
    exactly that session; {"Service": x} matches service principal x. Lists are allowed everywhere.
    """
    return _principal_match(principal_element, who) is not None


def _principal_match(element: Any, who: Principal) -> str | None:
    best: str | None = None
    if isinstance(element, list):
        candidates = [("AWS", value) for value in element]
    elif isinstance(element, dict):
        candidates = [(kind, value) for kind, values in element.items() for value in _as_list(values)]
    else:
        candidates = [("AWS", element)]
    for kind, value in candidates:
        if value == "*":
            return _SPECIFIC
        if kind == "Service":
            if who.service is not None and value == who.service:
                return _SPECIFIC
        elif kind == "AWS":
            how = _aws_principal_match(str(value), who)
            if how == _SPECIFIC:
                return how
            best = best or how
    return best


def _aws_principal_match(value: str, who: Principal) -> str | None:
    if re.fullmatch(r"\d{12}", value):
        return _ACCOUNT if who.account == value else None
    arn = _split_arn(value)
    if arn is None:
        return _SPECIFIC if value == who.arn else None
    _, service, _, account, resource = arn
    if service == "iam" and resource == "root":
        return _ACCOUNT if who.account == account else None
    if service == "iam" and resource.startswith("role/"):
        # A role principal covers the role's sessions; the session ARN carries no path, so compare
        # account and role name (names are unique within an account whatever the path).
        role_name = resource.rsplit("/", 1)[-1]
        for candidate in (who.role_arn, who.arn):
            parts = _split_arn(candidate or "")
            if parts and parts[1] == "iam" and parts[3] == account and parts[4].startswith("role/") \
                    and parts[4].rsplit("/", 1)[-1] == role_name:
                return _SPECIFIC
        return None
    return _SPECIFIC if value == who.arn else None


def _split_arn(value: str) -> tuple[str, str, str, str, str] | None:
    """(partition, service, region, account, resource) of `arn:...`, else None."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return parts[1], parts[2], parts[3], parts[4], parts[5]


# ---------------------------------------------------------------- matching with wildcards and variables


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _lookup(context: dict[str, str], key: str) -> str | None:
    """Context keys are case-insensitive, as IAM condition keys and variables are."""
    wanted = key.strip().lower()
    for name, value in context.items():
        if name.lower() == wanted:
            return value
    return None


def _pattern(text: str, context: dict[str, str], *, variables: bool, ignore_case: bool) -> re.Pattern[str]:
    """Regex for a policy string with `*`/`?` wildcards; substituted variable values stay literal."""
    out: list[str] = []
    pos = 0
    for match in _VARIABLE_RE.finditer(text) if variables else ():
        out.append(_wildcards(text[pos : match.start()]))
        name = match.group(1).strip()
        value = _LITERAL_VARIABLES.get(name) or _lookup(context, name)
        if value is None:
            raise _Unresolved(name)
        out.append(re.escape(value))
        pos = match.end()
    out.append(_wildcards(text[pos:]))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _wildcards(text: str) -> str:
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text)


def _substitute(text: str, context: dict[str, str], *, variables: bool) -> str:
    """A condition value with its variables replaced (no wildcards: for the ...Equals operators)."""
    if not variables:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        found = _LITERAL_VARIABLES.get(name) or _lookup(context, name)
        if found is None:
            raise _Unresolved(name)
        return found

    return _VARIABLE_RE.sub(value, text)


def _matches_any(patterns: Any, value: str, context: dict[str, str], *, variables: bool, ignore_case: bool) -> bool:
    """Whether any entry matches; an entry with an unknown variable matches nothing."""
    for entry in _as_list(patterns):
        try:
            if _pattern(str(entry), context, variables=variables, ignore_case=ignore_case).fullmatch(value):
                return True
        except _Unresolved:
            continue
    return False


# ---------------------------------------------------------------- conditions


def _string(value: Any) -> str:
    # JSON true/false in a policy mean the strings "true"/"false".
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnEquals/ArnLike: each of the six colon-separated parts matched on its own, with wildcards."""
    want, got = pattern.split(":", 5), value.split(":", 5)
    if len(want) != 6 or len(got) != 6:
        return False
    return all(re.fullmatch(_wildcards(w), g, re.DOTALL) for w, g in zip(want, got))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def test(policy: str, actual: str) -> bool:
        left, right = _number(actual), _number(policy)
        return left is not None and right is not None and compare(left, right)

    return test


# Each operator: (test(policy_value, context_value), negated, policy values take wildcards).
# Negated operators are true when no value matches (and, per the IAM guide, when the key is absent).
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool, bool]] = {
    "StringEquals": (lambda p, v: p == v, False, False),
    "StringNotEquals": (lambda p, v: p == v, True, False),
    "StringEqualsIgnoreCase": (lambda p, v: p.casefold() == v.casefold(), False, False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.casefold() == v.casefold(), True, False),
    "StringLike": (lambda p, v: re.fullmatch(_wildcards(p), v, re.DOTALL) is not None, False, True),
    "StringNotLike": (lambda p, v: re.fullmatch(_wildcards(p), v, re.DOTALL) is not None, True, True),
    "ArnEquals": (_arn_like, False, True),
    "ArnLike": (_arn_like, False, True),
    "ArnNotEquals": (_arn_like, True, True),
    "ArnNotLike": (_arn_like, True, True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False, False),
    "NumericEquals": (_numeric(lambda a, b: a == b), False, False),
    "NumericNotEquals": (_numeric(lambda a, b: a == b), True, False),
    "NumericLessThan": (_numeric(lambda a, b: a < b), False, False),
    "NumericLessThanEquals": (_numeric(lambda a, b: a <= b), False, False),
    "NumericGreaterThan": (_numeric(lambda a, b: a > b), False, False),
    "NumericGreaterThanEquals": (_numeric(lambda a, b: a >= b), False, False),
}


def _condition_holds(operator: str, block: dict[str, Any], context: dict[str, str], *, variables: bool) -> bool:
    """One operator block: every key must hold (AND); a key holds if any of its values does (OR)."""
    name = operator
    for_all = False
    if ":" in name:
        qualifier, name = name.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise ValueError(f"unsupported condition qualifier: {qualifier}")
        # With single-valued context keys both qualifiers compare the one value; ForAllValues is
        # also true when the key is absent (the empty set), which is what makes it dangerous.
        for_all = qualifier == "ForAllValues"
    if_exists = name.endswith("IfExists") and name != "IfExists"
    if if_exists:
        name = name[: -len("IfExists")]
    for key, policy_values in block.items():
        actual = _lookup(context, key)
        if name == "Null":
            wants_absent = any(_string(v).lower() == "true" for v in _as_list(policy_values))
            if (actual is None) != wants_absent:
                return False
            continue
        if name not in _OPERATORS:
            raise ValueError(f"unsupported condition operator: {operator}")
        test, negated, wildcards = _OPERATORS[name]
        if actual is None:
            if if_exists or for_all or negated:
                continue
            return False
        matched = False
        for raw in _as_list(policy_values):
            try:
                value = _substitute(_string(raw), context, variables=variables)
            except _Unresolved:
                continue  # a value naming an unknown variable matches nothing
            if test(value, actual):
                matched = True
                break
        if matched == negated:
            return False
    return True


# ---------------------------------------------------------------- statements and policies


def _statement_applies(
    statement: dict[str, Any],
    *,
    action: str,
    resource: str,
    context: dict[str, str],
    who: Principal | None,
    variables: bool,
) -> str | None:
    """None if the statement does not apply; else how its principal matched (specific or account)."""
    how = _SPECIFIC
    if "Principal" in statement or "NotPrincipal" in statement:
        if who is None:
            return None
        if "Principal" in statement:
            matched = _principal_match(statement["Principal"], who)
            if matched is None:
                return None
            how = matched
        elif _principal_match(statement["NotPrincipal"], who) is not None:
            return None

    if "Action" in statement:
        if not _matches_any(statement["Action"], action, context, variables=False, ignore_case=True):
            return None
    elif "NotAction" in statement:
        if _matches_any(statement["NotAction"], action, context, variables=False, ignore_case=True):
            return None
    else:
        return None

    # Trust policies carry no Resource: the role itself is the resource.
    if "Resource" in statement:
        if not _matches_any(statement["Resource"], resource, context, variables=variables, ignore_case=False):
            return None
    elif "NotResource" in statement:
        if _matches_any(statement["NotResource"], resource, context, variables=variables, ignore_case=False):
            return None

    for operator, block in (statement.get("Condition") or {}).items():
        if not _condition_holds(operator, block, context, variables=variables):
            return None
    return how


def _evaluate(
    policies: list[dict[str, Any]], action: str, resource: str, context: dict[str, str], who: Principal | None
) -> tuple[str, bool]:
    """("Allow" | "Deny" | "NoMatch", whether some Allow named the principal specifically)."""
    allowed = specific = False
    for policy in policies:
        variables = policy.get("Version") == _VARIABLES_VERSION
        for statement in _as_list(policy.get("Statement", [])):
            how = _statement_applies(
                statement, action=action, resource=resource, context=context, who=who, variables=variables
            )
            if how is None:
                continue
            if statement.get("Effect") == "Deny":
                return "Deny", False  # explicit deny wins, whatever else allows
            if statement.get("Effect") == "Allow":
                allowed = True
                specific = specific or how == _SPECIFIC
    return ("Allow" if allowed else "NoMatch"), specific


def evaluate(
    policies: list[dict[str, Any]],
    *,
    action: str,
    resource: str,
    context: dict[str, str],
    who: Principal | None = None,
) -> str:
    """"Allow", "Deny" (an explicit Deny applies) or "NoMatch" (implicit deny) for one request.

    Principal/NotPrincipal are checked only where present (resource and trust policies), against
    `who`. Actions match case-insensitively, resources case-sensitively, both with `*` and `?`.
    Policy variables (`${aws:username}`, `${credentials-iot:ThingName}`) are filled from `context`
    in Resource and condition values of 2012-10-17 policies; an unknown one matches nothing.
    """
    return _evaluate(policies, action, resource, context, who)[0]


def is_allowed(
    identity_policies: list[dict[str, Any]],
    resource_policy: dict[str, Any] | None,
    *,
    who: Principal,
    action: str,
    resource: str,
    resource_account: str,
    context: dict[str, str],
    resource_must_allow: bool = False,
) -> tuple[bool, str]:
    """AWS's decision for `who` doing `action` on `resource`, and the reason when refused.

    An explicit Deny in any policy refuses. In the same account, an Allow in the identity policies
    or in the resource policy suffices, except that a resource policy naming only the account
    (`123456789012` / `:root`) delegates to identity policies and does not allow by itself. Across
    accounts both must allow. `resource_must_allow=True` is for role trust policies (and KMS key
    policies), which must allow even in the same account.

    The reason completes AWS's AccessDenied message: "User: <arn> is not authorized to perform:
    <action> on resource: <resource> because <reason>" for "no ... policy allows the <action>
    action", and "... with an <reason>" for "explicit deny in a/an ... policy".
    """
    identity, _ = _evaluate(identity_policies, action, resource, context, who)
    if resource_policy is not None:
        by_resource, specific = _evaluate([resource_policy], action, resource, context, who)
    else:
        by_resource, specific = "NoMatch", False
    if identity == "Deny":
        return False, "explicit deny in an identity-based policy"
    if by_resource == "Deny":
        return False, "explicit deny in a resource-based policy"

    no_identity = f"no identity-based policy allows the {action} action"
    no_resource = f"no resource-based policy allows the {action} action"
    if who.account is not None and who.account == resource_account:
        if resource_must_allow:
            if by_resource != "Allow":
                return False, no_resource
            return (True, "") if specific or identity == "Allow" else (False, no_identity)
        if identity == "Allow" or (by_resource == "Allow" and specific):
            return True, ""
        return False, no_identity
    if identity != "Allow" and who.service is None:
        return False, no_identity
    if by_resource != "Allow":
        return False, no_resource
    return True, ""
