"""Every error AWS's models list has a decision, and the CLI acts on it.

The first half reads the installed botocore's service models (Lambda Invoke, STS AssumeRole and
GetCallerIdentity) and iotinvoke's ``AWS_ERRORS`` (with REASONS): an error shape without a row fails, so a
future AWS error gets a decision rather than a default; each row is checked against the rules
its modelled HTTP status implies. The IoT credentials provider has no model: its documented
answers (https://docs.aws.amazon.com/iot/latest/developerguide/authorizing-direct-aws.html) are
listed here.

The second half runs the CLI against the stand-in once per modelled Lambda Invoke error and
counts sends and executions: an answer is re-sent only when its row says so, and an error that
may come after the run (exit 74) leaves exactly one execution.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.loaders import Loader

import iotinvoke
from cli import SEED_ANSWER, Run, run
from standin import StandIn

ATTEMPTS = 2  # max_attempts in the test configuration: a re-sent error is sent exactly this often
PERSISTENT = 50
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
DOCUMENTED_EXITS = {0, 1, 64, 65, 66, 69, 70, 74, 75, 76, 77, 78}


def modelled_errors(service: str, *operations: str) -> dict[str, int]:
    """wire code -> modelled HTTP status of each error of the operations, from the installed botocore.
    The wire code is the shape's error.code when set (STS: "MalformedPolicyDocument"), else its name."""
    model = Loader().load_service_model(service, "service-2")
    errors = {}
    for operation in operations:
        for ref in model["operations"][operation].get("errors", []):
            error = model["shapes"][ref["shape"]].get("error") or {}
            errors[error.get("code") or ref["shape"]] = int(error.get("httpStatusCode", 400))
    return errors


LAMBDA = modelled_errors("lambda", "Invoke")
STS = modelled_errors("sts", "AssumeRole", "GetCallerIdentity")
RENEWED = ("token-expired", "token-invalid", "clock-skew")  # sent again once: new credentials, AWS's clock


class _Table(dict):  # type: ignore[type-arg]
    """(hop, code) -> (exit status, reason, re-sent), from iotinvoke's public AWS_ERRORS and REASONS."""

    def __missing__(self, key: tuple[str, str]) -> tuple[int, str, bool]:
        reason = iotinvoke.AWS_ERRORS[key]
        exit_code = iotinvoke.REASONS[reason][0]
        return exit_code, reason, exit_code == 75 or reason in RENEWED

    def __contains__(self, key: object) -> bool:
        return key in iotinvoke.AWS_ERRORS


TABLE = _Table()

# The decisions the issue asks for, by name (issue 9); the model decides which of them exist.
RESEND = {"TooManyRequestsException", "ResourceConflictException", "SnapStartNotReadyException",
          "ResourceNotReadyException", "EC2ThrottledException", "EC2UnexpectedException",
          "EFSMountConnectivityException", "EFSMountTimeoutException", "S3FilesMountConnectivityException",
          "S3FilesMountTimeoutException", "SnapStartTimeoutException"}
MAY_HAVE_RUN = {"ServiceException", "EFSIOException"}
OWNER_MUST_FIX = {"KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
                  "KMSNotFoundException", "InvalidSubnetIDException", "InvalidSecurityGroupIDException",
                  "ENILimitReachedException", "SubnetIPAddressLimitReachedException", "EC2AccessDeniedException",
                  "InvalidRuntimeException", "InvalidZipFileException", "EFSMountFailureException",
                  "S3FilesMountFailureException", "SnapStartException"}
# The credentials provider's documented answers: (status, message) -> (exit status, resend).
IOT_ANSWERS = [
    (403, "Invalid thing name passed", 77),
    (403, "Access Denied", 77),
    (403, "Certificate is invalid on this endpoint", 77),
    (404, "Role alias does not exist", 69),
    (400, "Unable to assume the role, or the role to assume does not exist", 69),
    (400, "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role", 69),
]


@pytest.mark.in_process
def test_the_installed_models_are_read() -> None:
    # Guards the parametrizations below against an empty or foreign model passing vacuously.
    assert {"TooManyRequestsException", "ServiceException", "ResourceNotFoundException"} <= set(LAMBDA)
    assert {"MalformedPolicyDocument", "PackedPolicyTooLarge", "RegionDisabledException"} <= set(STS)
    assert LAMBDA["ServiceException"] == 500 and LAMBDA["TooManyRequestsException"] == 429


@pytest.mark.in_process
@pytest.mark.parametrize("hop, code", [("lambda", c) for c in sorted(LAMBDA)] + [("sts", c) for c in sorted(STS)])
def test_every_modelled_error_has_a_row(hop: str, code: str) -> None:
    assert (hop, code) in TABLE, f"{hop} {code} (HTTP {(LAMBDA if hop == 'lambda' else STS)[code]}) has no row"


@pytest.mark.in_process
@pytest.mark.parametrize("key", sorted(iotinvoke.AWS_ERRORS), ids=[f"{h}-{c}" for h, c in sorted(iotinvoke.AWS_ERRORS)])
def test_rows_are_well_formed(key: tuple[str, str]) -> None:
    exit_code, reason, resend = TABLE[key]
    assert key[0] in ("iot", "sts", "lambda")
    assert exit_code in DOCUMENTED_EXITS - {0, 1}, "an error answer never exits as if the function answered"
    assert SLUG.fullmatch(reason), reason
    if key[0] == "lambda" and exit_code == 74:
        assert not resend, "74 means: may have run, never re-sent"
    if exit_code == 75:
        assert resend, "75 says 'safe to retry', so iotinvoke itself may retry it"


@pytest.mark.in_process
@pytest.mark.parametrize("code", sorted(LAMBDA), ids=sorted(LAMBDA))
def test_lambda_rows_follow_the_modelled_status(code: str) -> None:
    status = LAMBDA[code]
    exit_code, reason, resend = TABLE[("lambda", code)]
    if status >= 500:
        assert exit_code not in (0, 1, 77), "a server-side failure is neither an answer nor an IAM denial"
    if status == 429:
        assert (exit_code, resend) == (75, True)
    if status == 408:
        assert (exit_code, resend) == (75, True), "a timeout before the handler ran clears by itself"
    if resend:
        assert exit_code == 75
    if code in RESEND:
        assert (exit_code, resend) == (75, True)
    if code in MAY_HAVE_RUN:
        assert (exit_code, resend) == (74, False)
    if code in OWNER_MUST_FIX:
        assert (exit_code, resend) == (69, False), "only the function's owner can fix it: not 75, never 77"


@pytest.mark.in_process
@pytest.mark.parametrize("code", sorted(STS), ids=sorted(STS))
def test_sts_rows_follow_the_modelled_status(code: str) -> None:
    status = STS[code]
    exit_code, _, resend = TABLE[("sts", code)]
    if status >= 500 or status == 429:
        assert (exit_code, resend) == (75, True)
    if code in ("MalformedPolicyDocument", "PackedPolicyTooLarge", "RegionDisabledException"):
        assert (exit_code, resend) == (69, False), "the configuration or an account setting must change"


def decided(tmp_path: Path, hop: str, status: int, code: str | None, message: str = "") -> iotinvoke.IotInvokeError:
    """What the Client makes of one error answer at ``hop`` (answered the same at every attempt)."""
    import json

    from fakes import Answer, FakeTransport, make_client, make_config

    headers = {"x_amzn_ErrorType": code} if code else {}
    answer = Answer(status, json.dumps({"message": message}).encode() if message else b"", **headers)
    source = iotinvoke.Credentials("ASIAX", "secret", "token", 2e9, 1e9)
    client = make_client(make_config(tmp_path), FakeTransport(**{hop: [answer] * iotinvoke.MAX_ATTEMPTS}))
    with pytest.raises(iotinvoke.IotInvokeError) as info:
        if hop == "iot":
            client.fetch_iot_credentials()
        elif hop == "sts":
            client.assume_role("dev", source)
        else:
            client.invoke("dev", b"{}", credentials=source)
    return info.value


@pytest.mark.in_process
def test_unknown_errors_are_decided_by_status(tmp_path: Path) -> None:
    def status(hop: str, code: int, error: str | None, message: str = "") -> int:
        return decided(tmp_path, hop, code, error, message).exit_code

    assert status("lambda", 503, "SomeFutureException") == 74
    assert status("lambda", 500, None) == 74
    assert status("lambda", 429, "SomeFutureThrottle") == 75
    assert status("sts", 503, "SomeFutureFailure") == 75
    assert status("iot", 500, None) == 75
    # Throttling by its code on any hop, whatever the HTTP status (botocore's standard retry mode).
    assert status("lambda", 400, "ThrottlingException") == 75
    assert status("iot", 400, None, "Rate exceeded") == 75
    assert status("sts", 400, "Throttling") == 75
    # RequestExpired is clock skew by itself (the Java v2 and JS v3 SDKs' clock-skew codes).
    assert decided(tmp_path, "lambda", 403, "RequestExpired").reason == "clock-skew"
    assert status("lambda", 408, "RequestTimeoutException") == 75


@pytest.mark.in_process
def test_every_modelled_throttle_reason_has_a_slug() -> None:
    model = Loader().load_service_model("lambda", "service-2")
    reasons = model["shapes"]["ThrottleReason"]["enum"]
    assert set(reasons) <= set(iotinvoke.THROTTLE_REASONS), set(reasons) - set(iotinvoke.THROTTLE_REASONS)
    assert all(SLUG.fullmatch(slug) for slug in iotinvoke.THROTTLE_REASONS.values())


@pytest.mark.in_process
@pytest.mark.parametrize("status, message, exit_code", IOT_ANSWERS, ids=[m[:24] for _, m, _ in IOT_ANSWERS])
def test_iot_documented_answers_map_to_rows(tmp_path: Path, status: int, message: str, exit_code: int) -> None:
    error = decided(tmp_path, "iot", status, None, message)
    code = error.code
    assert ("iot", code) in TABLE, f"{status} {message!r} gives code {code!r}, which has no row"
    assert TABLE[("iot", code)][0] == exit_code == error.exit_code and not TABLE[("iot", code)][2]


# --- through the CLI: one run per modelled Lambda Invoke error ----------------------------------------


def _add_idempotent_environment(stand_in: StandIn) -> None:
    text = stand_in.config_path.read_text()
    dev = text.split("[dev]\n", 1)[1].split("\n\n", 1)[0]
    stand_in.config_path.write_text(text + f"\n[dev-idempotent]\n{dev}\nidempotent = true\n")


pytestmark = pytest.mark.own_standin(defaults=f"max_attempts = {ATTEMPTS}\n", setup=_add_idempotent_environment)


@pytest.fixture(scope="module")
def warm_cache(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    for env in ("dev", "dev-idempotent"):
        first = run(env, "{}", config=standin.config_path, cache=cache)
        assert (first.code, first.stdout) == (0, SEED_ANSWER), first.stderr
    return cache


@pytest.fixture
def cache(aws: StandIn, warm_cache: Path) -> Path:
    aws.reset_counts()   # the warm-up's requests
    return warm_cache


def bracket(result: Run) -> list[str]:
    """The tags of the stderr line's last [...]: [reason] or [reason, "retry after N s"]."""
    match = re.search(r"\[([^\[\]]*)\]\s*$", result.stderr)
    assert match is not None, f"no [reason] at the end of {result.stderr!r}"
    return match.group(1).split("; ")


def expected_reason(code: str, params: dict[str, Any]) -> str:
    reason = TABLE[("lambda", code)][1]
    return iotinvoke.THROTTLE_REASONS.get(params.get("reason") or "", reason)


@pytest.mark.parametrize("code", sorted(LAMBDA), ids=sorted(LAMBDA))
def test_cli_answers_each_modelled_lambda_error(aws: StandIn, cache: Path, code: str) -> None:
    exit_code, _, resend = TABLE[("lambda", code)]
    # A 74 row is an error that may come after the run: the stand-in runs the function first.
    after_run = exit_code == 74
    params: dict[str, Any] = {"retry_after": 0, "reason": "CallerRateLimitExceeded"} if LAMBDA[code] == 429 else {}
    aws.fault("lambda", "error", count=PERSISTENT, code=code, after_run=after_run, **params)
    before = len(aws.invocations)
    result = run("dev", '{"n": 1}', config=aws.config_path, cache=cache)
    assert result.code == exit_code, result.stderr
    assert result.stdout == b"" and len(result.lines) == 1, result.stderr
    assert result.stderr.startswith("iotinvoke: lambda: ") and f"HTTP {LAMBDA[code]}" in result.stderr
    assert bracket(result)[0] == expected_reason(code, params)
    assert aws.count("lambda") == (ATTEMPTS if resend else 1), "re-sent only when the row says so"
    assert len(aws.invocations) - before == (1 if after_run else 0)
    assert (aws.count("iot"), aws.count("sts")) == (0, 0), "warm cache: credentials not fetched again"


def test_may_have_run_error_once_then_success_is_still_74(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=1, code="ServiceException", after_run=True)
    before = len(aws.invocations)
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 74 and bracket(result) == ["lambda-service-error"], result.stderr
    assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1)


def test_unknown_5xx_after_the_run_is_74_with_one_execution(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=PERSISTENT, code="SomeFutureException", status=503, after_run=True)
    before = len(aws.invocations)
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 74, result.stderr
    assert (aws.count("lambda"), len(aws.invocations) - before) == (1, 1)


def test_transient_error_once_is_retried_to_success(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=1, code="ResourceConflictException")
    before = len(aws.invocations)
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert (result.code, result.stdout, result.stderr) == (0, SEED_ANSWER, "")
    assert (aws.count("lambda"), len(aws.invocations) - before) == (2, 1)


@pytest.mark.parametrize("code", sorted(MAY_HAVE_RUN & set(LAMBDA)))
def test_idempotent_environment_resends_what_may_have_run(aws: StandIn, cache: Path, code: str) -> None:
    aws.fault("lambda", "error", count=PERSISTENT, code=code, after_run=True)
    before = len(aws.invocations)
    result = run("dev-idempotent", "{}", config=aws.config_path, cache=cache)
    # It may have run, once per attempt: the status says so, as its row in the table does.
    assert result.code == 74 and "may have run, once per attempt" in result.stderr, result.stderr
    assert (aws.count("lambda"), len(aws.invocations) - before) == (ATTEMPTS, ATTEMPTS)


def test_idempotent_environment_once_then_success(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=1, code="ServiceException", after_run=True)
    result = run("dev-idempotent", "{}", config=aws.config_path, cache=cache)
    assert (result.code, result.stdout) == (0, SEED_ANSWER), result.stderr
    assert aws.count("lambda") == 2


def test_dry_run_resends_a_server_error(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=PERSISTENT, code="ServiceException")
    result = run("--dry-run", "dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 75, result.stderr
    assert aws.count("lambda") == ATTEMPTS


def test_reserved_concurrency_zero_says_wait_longer(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=PERSISTENT, code="TooManyRequestsException",
              reason="ReservedFunctionConcurrentInvocationLimitExceeded", retry_after=None)
    started = time.monotonic()
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 75, result.stderr
    assert bracket(result) == ["reserved-concurrency-limit", f"retry after {iotinvoke.RESERVED_THROTTLE_WAIT_S:.0f} s"]
    assert 1 <= aws.count("lambda") <= ATTEMPTS
    assert time.monotonic() - started < iotinvoke.RESERVED_THROTTLE_WAIT_S, "not waited out in the call"


def test_throttle_retry_after_is_on_the_line(aws: StandIn, cache: Path) -> None:
    aws.fault("lambda", "error", count=PERSISTENT, code="TooManyRequestsException",
              reason="ConcurrentInvocationLimitExceeded", retry_after=0)
    result = run("dev", "{}", config=aws.config_path, cache=cache)
    assert result.code == 75 and bracket(result)[0] == "account-concurrency-limit", result.stderr


@pytest.mark.parametrize("status, message, exit_code", IOT_ANSWERS, ids=[m[:24] for _, m, _ in IOT_ANSWERS])
def test_cli_answers_each_documented_iot_error(aws: StandIn, tmp_path: Path, status: int, message: str,
                                               exit_code: int) -> None:
    aws.fault("iot", "error", count=PERSISTENT, status=status, message=message)
    result = run("dev", "{}", config=aws.config_path, cache=tmp_path)
    assert result.code == exit_code, result.stderr
    assert result.stderr.startswith("iotinvoke: iot: ") and len(result.lines) == 1
    assert aws.count("iot") == 1, "a refusal is not retried"
    assert (aws.count("sts"), aws.count("lambda")) == (0, 0)


@pytest.mark.parametrize("code", sorted(STS), ids=sorted(STS))
def test_cli_answers_each_modelled_sts_error(aws: StandIn, tmp_path: Path, code: str) -> None:
    exit_code, reason, resend = TABLE[("sts", code)]
    aws.fault("sts", "error", count=PERSISTENT, code=code, status=STS[code])
    result = run("dev", "{}", config=aws.config_path, cache=tmp_path)
    assert result.code == exit_code, result.stderr
    assert result.stderr.startswith("iotinvoke: sts: ") and len(result.lines) == 1, result.stderr
    assert bracket(result)[0] == reason
    # A refused token is fetched afresh once (hop 1 again), then the refusal stands.
    assert aws.count("sts") == (ATTEMPTS if resend and exit_code == 75 else 2 if resend else 1)
    assert aws.count("lambda") == 0
