"""The AWS "world" the stand-in serves: accounts, roles, role aliases, certificates, functions.

Plain mutable dataclasses, so a test can change the world before a call (add a function,
replace a policy, deactivate a certificate). Policies are the JSON documents AWS would hold,
evaluated by ``iam.py`` with AWS's rules.

The default world (``default_world``) is the one described in the stand-in's brief: the IoT
account 000000000000 with the device role and its role aliases, the Lambda accounts
111111111111 (ap-northeast-1) and 222222222222 (eu-west-1) with one role per environment.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "Certificate", "Function", "Role", "RoleAlias", "World", "default_world",
    "IOT_ACCOUNT", "IOT_REGION", "LAMBDA_ACCOUNT", "LAMBDA_REGION", "PRD_ACCOUNT", "PRD_REGION",
    "DEVICE_ROLE_ARN", "IOT_SERVICE_PRINCIPAL",
]

IOT_ACCOUNT: Final = "000000000000"
IOT_REGION: Final = "ap-northeast-1"
LAMBDA_ACCOUNT: Final = "111111111111"
LAMBDA_REGION: Final = "ap-northeast-1"
PRD_ACCOUNT: Final = "222222222222"
PRD_REGION: Final = "eu-west-1"
DEVICE_ROLE_ARN: Final = f"arn:aws:iam::{IOT_ACCOUNT}:role/iotinvoke-device"
IOT_SERVICE_PRINCIPAL: Final = "credentials.iot.amazonaws.com"

# Regions a SigV4 credential scope may name. One local endpoint serves them all, so the
# signing region decides which region a request is "sent to".
KNOWN_REGIONS: Final = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
})

Policy = dict[str, Any]


@dataclass
class Role:
    """An IAM role: its trust policy (who may assume it) and identity policies (what it may do)."""

    arn: str
    trust_policy: Policy
    policies: list[Policy] = field(default_factory=list)
    max_session_s: int = 3600

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    @property
    def role_id(self) -> str:
        """A stable unique id shaped like AWS's ("AROA" + 17 characters)."""
        return "AROA" + _stable_id(self.arn, 17)


@dataclass
class RoleAlias:
    """An AWS IoT role alias: the name a device asks the credentials provider for."""

    name: str
    role_arn: str
    duration_s: int = 3600


@dataclass
class Certificate:
    """An AWS IoT registry entry for one device certificate."""

    name: str                       # the harness's name for it ("device", "inactive", ...)
    status: str                     # ACTIVE | INACTIVE | REVOKED
    policies: list[Policy] = field(default_factory=list)   # attached IoT policies
    things: list[str] = field(default_factory=list)        # attached things


@dataclass
class Function:
    """A Lambda function backed by a Python handler file in ``functions/``."""

    name: str
    account: str
    region: str
    module: str                     # file stem in functions/, called as <module>.handler(event, context)
    timeout_s: float = 3.0
    memory_mb: int = 128
    versions: set[str] = field(default_factory=set)        # published versions besides $LATEST
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    resource_policy: Policy | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"

    def resolve(self, qualifier: str | None) -> str | None:
        """The version a qualifier runs ($LATEST, a version or an alias), None if unknown."""
        if qualifier is None or qualifier == "$LATEST":
            return "$LATEST"
        if qualifier in self.versions:
            return qualifier
        return self.aliases.get(qualifier)


@dataclass
class World:
    """Everything the three endpoints know, indexed the way AWS looks it up."""

    iot_account: str = IOT_ACCOUNT
    iot_region: str = IOT_REGION
    roles: dict[str, Role] = field(default_factory=dict)              # by role ARN
    role_aliases: dict[str, RoleAlias] = field(default_factory=dict)  # by alias name
    certificates: dict[str, Certificate] = field(default_factory=dict)  # by certificateId
    functions: dict[str, Function] = field(default_factory=dict)      # by unqualified function ARN
    regions: frozenset[str] = KNOWN_REGIONS

    def add_role(self, role: Role) -> Role:
        self.roles[role.arn] = role
        return role

    def add_function(self, function: Function) -> Function:
        self.functions[function.arn] = function
        return function

    def role_alias_arn(self, alias: str) -> str:
        return f"arn:aws:iot:{self.iot_region}:{self.iot_account}:rolealias/{alias}"

    def certificate_named(self, name: str) -> Certificate:
        return next(cert for cert in self.certificates.values() if cert.name == name)


def default_world(certificate_ids: dict[str, str]) -> World:
    """The world of the brief; ``certificate_ids`` maps harness cert names to certificateIds."""
    world = World()
    _add_iot_account(world, certificate_ids)
    _add_lambda_accounts(world)
    return world


# -- building blocks ---------------------------------------------------------------------------

def _stable_id(seed: str, length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[byte % 32] for byte in digest[:length])


def _statement(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def _policy(*statements: dict[str, Any]) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _trust(principal: dict[str, Any], condition: dict[str, Any] | None = None) -> Policy:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return _policy(statement)


def _function_arn(name: str, account: str = LAMBDA_ACCOUNT, region: str = LAMBDA_REGION) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def _invoke(*arns: str) -> Policy:
    """Allow lambda:InvokeFunction on each function ARN and on its qualified ARNs (":*")."""
    resources = [form for arn in arns for form in (arn, f"{arn}:*")]
    return _policy(_statement("lambda:InvokeFunction", resources))


def _add_iot_account(world: World, certificate_ids: dict[str, str]) -> None:
    device_role = world.add_role(Role(
        arn=DEVICE_ROLE_ARN,
        trust_policy=_trust({"Service": IOT_SERVICE_PRINCIPAL}),
        policies=[
            _policy(_statement("sts:AssumeRole", [f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-*",
                                                  f"arn:aws:iam::{PRD_ACCOUNT}:role/iotinvoke-*"])),
            _invoke(_function_arn("iotinvoke-direct-echo"), _function_arn("iotinvoke-direct-denied")),
        ],
    ))
    # A role the credentials provider may not assume: it trusts Lambda, not credentials.iot.
    untrusting = world.add_role(Role(
        arn=f"arn:aws:iam::{IOT_ACCOUNT}:role/iotinvoke-device-untrusting",
        trust_policy=_trust({"Service": "lambda.amazonaws.com"}),
    ))
    for alias in (RoleAlias("iotinvoke-alias", device_role.arn, 3600),
                  RoleAlias("iotinvoke-long", device_role.arn, 7200),
                  RoleAlias("iotinvoke-norole", untrusting.arn, 3600)):
        world.role_aliases[alias.name] = alias

    may_assume = _policy(_statement("iot:AssumeRoleWithCertificate",
                                    world.role_alias_arn("iotinvoke-*")))
    may_connect_only = _policy(_statement("iot:Connect", f"arn:aws:iot:{IOT_REGION}:{IOT_ACCOUNT}:client/*"))
    registry = {
        "device": Certificate("device", "ACTIVE", [may_assume], ["edge-0001"]),
        "inactive": Certificate("inactive", "INACTIVE", [may_assume], ["edge-0003"]),
        "revoked": Certificate("revoked", "REVOKED", [may_assume], ["edge-0004"]),
        "expired": Certificate("expired", "ACTIVE", [may_assume], ["edge-0005"]),
        "nopolicy": Certificate("nopolicy", "ACTIVE", [may_connect_only], ["edge-0006"]),
        "other-thing": Certificate("other-thing", "ACTIVE", [may_assume], ["edge-0002"]),
        # "foreign" is deliberately absent: its CA is not registered, so AWS never sees it.
    }
    for name, cert in registry.items():
        world.certificates[certificate_ids[name]] = cert


def _add_lambda_accounts(world: World) -> None:
    trusts_device = _trust({"AWS": DEVICE_ROLE_ARN})
    adc = _function_arn("ADCCrossAccountTest")
    stg = _function_arn("iotinvoke-stg-echo")
    prd = _function_arn("iotinvoke-prd-echo", PRD_ACCOUNT, PRD_REGION)
    tools = f"arn:aws:lambda:{LAMBDA_REGION}:{LAMBDA_ACCOUNT}:function:iotinvoke-tools-*"

    for role in (
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-dev", trusts_device, [_invoke(adc)]),
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-stg",
             _trust({"AWS": DEVICE_ROLE_ARN}, {"StringEquals": {"sts:ExternalId": "stg-6b1c2f"}}),
             [_invoke(stg)]),
        Role(f"arn:aws:iam::{PRD_ACCOUNT}:role/iotinvoke-prd", trusts_device, [_invoke(prd)]),
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-untrusted",
             _trust({"AWS": f"arn:aws:iam::{IOT_ACCOUNT}:role/someone-else"}), [_invoke(adc)]),
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-noinvoke", trusts_device, []),
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-wide", trusts_device,
             [_policy(_statement("lambda:InvokeFunction", f"arn:aws:lambda:*:{LAMBDA_ACCOUNT}:function:*"))]),
        Role(f"arn:aws:iam::{LAMBDA_ACCOUNT}:role/iotinvoke-tools", trusts_device, [_invoke(tools)]),
    ):
        world.add_role(role)

    world.add_function(Function("ADCCrossAccountTest", LAMBDA_ACCOUNT, LAMBDA_REGION, "adc_cross_account_test",
                                versions={"1"}, aliases={"prod": "1"}))
    world.add_function(Function("iotinvoke-stg-echo", LAMBDA_ACCOUNT, LAMBDA_REGION, "echo"))
    world.add_function(Function("iotinvoke-prd-echo", PRD_ACCOUNT, PRD_REGION, "echo"))
    direct = _function_arn("iotinvoke-direct-echo")
    world.add_function(Function(
        "iotinvoke-direct-echo", LAMBDA_ACCOUNT, LAMBDA_REGION, "echo",
        # What `lambda add-permission --principal <device role ARN>` creates.
        resource_policy=_policy(_statement("lambda:InvokeFunction", [direct, f"{direct}:*"],
                                           Sid="iotinvoke-device", Principal={"AWS": DEVICE_ROLE_ARN})),
    ))
    world.add_function(Function("iotinvoke-direct-denied", LAMBDA_ACCOUNT, LAMBDA_REGION, "echo"))
    world.add_function(Function("iotinvoke-tools-fail", LAMBDA_ACCOUNT, LAMBDA_REGION, "tools_fail"))
    world.add_function(Function("iotinvoke-tools-sleep", LAMBDA_ACCOUNT, LAMBDA_REGION, "tools_sleep", timeout_s=3.0))
    world.add_function(Function("iotinvoke-tools-print", LAMBDA_ACCOUNT, LAMBDA_REGION, "tools_print"))
    world.add_function(Function("iotinvoke-tools-size", LAMBDA_ACCOUNT, LAMBDA_REGION, "tools_size"))
    world.add_function(Function("iotinvoke-tools-context", LAMBDA_ACCOUNT, LAMBDA_REGION, "tools_context"))
