"""Invoke an AWS Lambda function in another account with only an AWS IoT device certificate.

    python3 iotinvoke.py [options] ENV [PAYLOAD]

Three HTTPS calls, no AWS keys on the device:

1. the AWS IoT credentials provider, over mutual TLS with the device certificate, returns
   temporary credentials of the IoT account's role (the role alias);
2. STS AssumeRole, signed with those, returns credentials of the environment's role in the
   Lambda account (skipped in one-hop mode: an environment without ``role_arn``);
3. Lambda Invoke, signed with the last credentials; the response payload goes to stdout.

Credentials are cached on disk between calls (one process per call is the normal use), so a
warm call makes only the third request. The exit status follows sysexits.h; see EXIT_CODES.

Runtime dependencies: urllib3 and botocore (its SigV4 signer only); the default trust anchors,
Amazon Trust Services' roots, are built in (certifi's full bundle is one `ca` setting away). Python 3.9+.

The module reads top to bottom:

- exit statuses and limits: the contract with C callers, and every number with its unit;
- the public API: IotInvokeError and ConfigError, Config and load_config, the refresh and retry
  policy, Credentials, InvokeResult and Client;
- internals: the errors that steer retries, the table that decides what each AWS answer means,
  reading the configuration, the on-disk cache, the HTTP transport and what a failed connection
  means, device keys in hardware, SigV4 signing, payloads, parsing AWS's answers, small helpers;
- the command line: options, standard streams, --stream, --doctor, main().
"""
from __future__ import annotations

import os
import sys
import time

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "IotInvokeError",
    "ConfigError",
    "Config",
    "Environment",
    "Credentials",
    "InvokeResult",
    "Client",
    "refresh_window",
    "refresh_point",
    "retry_delay",
    "retry_allowed",
    "caller_wait",
    "load_config",
    "main",
]

# typing is imported for mypy only: it costs start-up time that every C caller pays.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Mapping, TypeVar

    import urllib3

    _T = TypeVar("_T")

# --- Exit statuses (sysexits.h), the contract with C callers --------------------------------------

EX_OK = 0
EX_FUNCTION_ERROR = 1  # the function ran and reported an error; its payload is on stdout
EX_USAGE = 64  # bad command line, unknown environment
EX_DATAERR = 65  # payload not JSON, or over Lambda's size limit
EX_NOINPUT = 66  # certificate, key, CA or payload file missing or unreadable
EX_UNAVAILABLE = 69  # permanent refusal: retrying will not help
EX_SOFTWARE = 70  # internal error
EX_IOERR = 74  # the invoke was sent but its answer was lost: the function may have run
EX_TEMPFAIL = 75  # transient: network, throttling, 5xx after retries
EX_PROTOCOL = 76  # a response that could not be understood
EX_NOPERM = 77  # permission denied at some hop
EX_CONFIG = 78  # configuration file missing or invalid

EXIT_CODES = {  # README's exit-status table is generated from this (tests/test_exit_status.py)
    EX_OK: "invoked; the function reported no error (`--event`: accepted; `--dry-run`: allowed)",
    EX_FUNCTION_ERROR: "the function ran and reported an error (`X-Amz-Function-Error`); its payload is on stdout",
    EX_USAGE: "bad command line or unknown environment; standard output closed before a synchronous invoke "
    "(nothing sent)",
    EX_DATAERR: "payload empty, not JSON in UTF-8 (RFC 8259), or over Lambda's size limit; or Lambda refused it",
    EX_NOINPUT: "certificate, key, CA, PIN or payload file missing or unreadable; standard input closed",
    EX_UNAVAILABLE: "permanent refusal that retrying won't fix: role alias or function not found, invalid parameter, "
    "a set-up failure of the function only its owner can fix (KMS, VPC, runtime), an untrusted or misnamed "
    "server certificate; no token that the device key's PKCS#11 URI names is present",
    EX_SOFTWARE: "internal error",
    EX_IOERR: "the invoke was sent and the function may have run, but its answer was lost, cut short, or Lambda "
    "failed after accepting it; never re-sent (unless the environment is `idempotent`); also standard output "
    "failing after the function ran",
    EX_TEMPFAIL: "transient, and nothing ran: network before sending, throttling, function not ready, AWS server "
    "errors of hops 1-2, a wrong clock at boot; safe to retry later (the line may say how long to wait)",
    EX_PROTOCOL: "an answer that could not be understood (garbled, compressed, oversized); on hop 3 the function "
    "may have run",
    EX_NOPERM: "permission denied at some hop (certificate refused, AccessDenied, expired or invalid token, "
    "clock refused by AWS); the device key's token refused the PIN or has it locked",
    EX_CONFIG: "configuration file missing or invalid; HTTPS_PROXY malformed or its credentials refused; the device "
    "key is not the certificate's, or its OpenSSL provider, PKCS#11 module or PIN is missing (or the PIN file unsafe)",
    130: "interrupted (SIGINT)",
}

# --- Limits and defaults --------------------------------------------------------------------------

CONFIG_SEARCH_PATH = ("iotinvoke.ini", "/etc/iotinvoke/iotinvoke.ini")
CONNECT_TIMEOUT_S = 5.0
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 3600.0
CREDENTIALS_READ_TIMEOUT_S = 10.0  # hops 1 and 2 answer in milliseconds when healthy
INVOKE_READ_TIMEOUT_S = 905.0  # a synchronous invoke may run Lambda's maximum of 900 s
ASYNC_READ_TIMEOUT_S = 30.0  # Event and DryRun return before the function runs
MAX_ATTEMPTS = 3  # per hop, first try included
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0
RETRY_BUDGET_S = 20.0  # all retries of one hop end by then, whatever Retry-After says
# After exit 75 at hop 1 or 2 the caller is told to wait a whole number of seconds drawn from
# [CALLER_WAIT_MIN_S, CALLER_WAIT_MAX_S]: 10,000 boards spread over 120 s ask ~83 times a second,
# under the credentials provider's ~100 requests/s per account (see README "At fleet scale").
CALLER_WAIT_MIN_S = 1
CALLER_WAIT_MAX_S = 120
MAX_CREDENTIALS_RESPONSE_BYTES = 64 * 1024  # real answers are ~1-3 KB; bound what a bad server sends
MAX_INVOKE_RESPONSE_BYTES = 6 * 1024 * 1024 + 64 * 1024  # Lambda's 6 MB response limit, plus slack
MAX_SYNC_PAYLOAD_BYTES = 6291456  # Lambda: "Request must be smaller than 6291456 bytes"
MAX_ASYNC_PAYLOAD_BYTES = 1048576  # Lambda Event invokes: 1 MB
MAX_CLIENT_CONTEXT_BYTES = 3583  # base64 text, Lambda's documented limit
REFRESH_MARGIN_S = 300.0  # refresh 5 min before expiry (aws-c-auth, Greengrass), ...
REFRESH_JITTER_S = 600.0  # ... plus a random part of up to 10 min, so a fleet de-synchronises, ...
REFRESH_MARGIN_FRACTION = 0.5  # ... but never more than half the lifetime (short role aliases)
MAX_CLOCK_OFFSET_S = 100 * 365 * 86400.0  # a board at 1970 is 56 years behind; more is garbage
MIN_FALLBACK_VALIDITY_S = 30.0  # a failed refresh may fall back to credentials valid this long
CHAINED_ROLE_MAX_DURATION_S = 3600  # AssumeRole with role credentials is role chaining: <= 1 h
LOCK_WAIT_S = 20.0  # a process holding a cache lock longer than this is presumed stuck
LOCK_POLL_S = 0.02
CLOCK_SKEW_THRESHOLD_S = 240.0  # below SigV4's 5-minute window, as the JS and Kotlin SDKs use
RESERVED_THROTTLE_WAIT_S = 60.0  # a function's reserved concurrency used up, or set to 0 by its owner
CLOCK_WAIT_S = 30.0  # a board without an RTC: NTP usually answers within this after boot
CLOCK_FLOOR = 1793491200.0  # 2026-11-01T00:00:00Z, before this release: no earlier time is AWS's
TCP_KEEPALIVE_IDLE_S = 60  # well below NAT idle timeouts (AWS NAT gateway: 350 s)
TCP_KEEPALIVE_INTERVAL_S = 15
TCP_KEEPALIVE_PROBES = 4  # a dead peer is noticed about 2 minutes after it went silent
MAX_LOG_TAIL_BYTES = 8192  # Lambda sends the last 4 KB of the log, base64-encoded
USER_AGENT = "iotinvoke/" + __version__

_IOT_THING_HEADER = "x-amzn-iot-thingname"
_SKEW_CODES = ("InvalidSignatureException", "SignatureDoesNotMatch", "RequestTimeTooSkewed", "RequestExpired")
_SKEW_MARKERS = ("Signature expired", "Signature not yet current", "too skewed", "RequestExpired")

# === Public API ===================================================================================

# --- Errors ---------------------------------------------------------------------------------------


class IotInvokeError(Exception):
    """Any failure iotinvoke reports: one line for stderr and a sysexits.h exit status.

    ``hop`` is "config", "payload", "iot", "sts", "lambda", "cache" or "output"; ``status``, ``code``
    and ``request_id`` are AWS's HTTP status, error code and request id when AWS answered.
    ``reason`` is a short stable slug (``function-not-ready``, ``kms-denied``...) that programs may
    branch on; ``retry_after`` is how many seconds a caller should wait before trying again, when
    known. Both end the stderr line as ``[reason; retry after N s]``.
    """

    def __init__(
        self,
        message: str,
        exit_code: int,
        hop: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        *,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.exit_code, self.hop = message, exit_code, hop
        self.status, self.code, self.request_id = status, code, request_id
        self.reason, self.retry_after = reason, retry_after

    def __str__(self) -> str:
        where = self.hop + ": " if self.hop else ""
        detail = []
        if self.code:
            detail.append(self.code)
        if self.status is not None:
            detail.append("HTTP %d" % self.status)
        if self.request_id:
            detail.append("request id " + self.request_id)
        tail = " (%s)" % ", ".join(detail) if detail else ""
        tags = [self.reason] if self.reason else []
        if self.retry_after is not None and self.exit_code == EX_TEMPFAIL:
            tags.append("retry after %d s" % max(1, round(self.retry_after)))
        return where + self.message + tail + (" [%s]" % "; ".join(tags) if tags else "")


class ConfigError(IotInvokeError):
    """The configuration file is missing or invalid; the message names the file, section and key."""

    def __init__(self, message: str, path: str = "", section: str = "", key: str = "", reason: str = "config") -> None:
        where = path
        if section:
            where += " [%s]" % section
        if key:
            where += " " + key
        super().__init__((where + ": " if where else "") + message, EX_CONFIG, "config", reason=reason)
        self.path = path
        self.section = section
        self.key = key

# --- Configuration --------------------------------------------------------------------------------

_IOT_KEYS = frozenset({"endpoint", "role_alias", "cert", "key", "ca", "thing_name", "openssl_conf", "pin_file"})
_ENV_KEYS = frozenset({"function", "role_arn", "external_id", "region", "qualifier", "duration_seconds", "idempotent"})
# Per-environment endpoint settings: in [DEFAULT] or an environment section.
_ENDPOINT_KEYS = frozenset({"sts_endpoint", "lambda_endpoint", "ca_bundle"})
# Process-wide settings: in [DEFAULT] or [iot].
_GLOBAL_KEYS = frozenset(
    {"cache_dir", "connect_timeout", "credentials_timeout", "read_timeout", "max_attempts"}
)
_SHARED_KEYS = _ENDPOINT_KEYS | _GLOBAL_KEYS


class Environment:
    """One environment section: which function to invoke and how (two hops or one)."""

    __slots__ = (
        "name",
        "function",
        "role_arn",
        "external_id",
        "region",
        "qualifier",
        "duration_seconds",
        "sts_endpoint",
        "lambda_endpoint",
        "ca_bundle",
        "ca_bundle_source",
        "idempotent",
    )

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    name: str
    function: str
    role_arn: str | None  # None: one-hop mode, the function's resource policy trusts the IoT role
    external_id: str | None
    region: str
    qualifier: str | None
    duration_seconds: int | None
    sts_endpoint: str
    lambda_endpoint: str
    ca_bundle: str | None  # CA file for hops 2 and 3; None: the default trust (_default_trust)
    ca_bundle_source: str  # where ca_bundle came from, for error messages
    idempotent: bool  # the owner says running the function twice is harmless: re-send what may have run

    @property
    def direct(self) -> bool:
        return self.role_arn is None


class Config:
    """The parsed configuration: the [iot] section, the environments and the shared settings."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.iot_endpoint = ""  # https://host[:port]
        self.role_alias = ""
        self.cert = ""
        self.key = ""
        self.ca: str | None = None
        self.thing_name: str | None = None
        self.openssl_conf: str | None = None  # OpenSSL configuration that loads the key's provider
        self.pin_file: str | None = None  # the token's PIN (or an encrypted key's passphrase)
        self.cache_dir: str | None = None
        self.connect_timeout = CONNECT_TIMEOUT_S
        self.credentials_timeout = CREDENTIALS_READ_TIMEOUT_S  # read timeout of hops 1 and 2
        self.read_timeout: float | None = None  # of the invoke; None: by invocation type
        self.max_attempts = MAX_ATTEMPTS
        self.environments: dict[str, Environment] = {}

    @property
    def region(self) -> str | None:
        """The IoT endpoint's region: third label from the end of the AWS host name."""
        labels = _host_port(self.iot_endpoint)[0].split(".")
        return labels[-3] if len(labels) >= 5 and labels[-2] == "amazonaws" else None


def find_config(path: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The configuration file to use: --config, $IOTINVOKE_CONFIG, ./iotinvoke.ini, /etc/iotinvoke."""
    if path:
        return path
    if environ.get("IOTINVOKE_CONFIG"):
        return environ["IOTINVOKE_CONFIG"]
    for candidate in CONFIG_SEARCH_PATH:
        if os.path.exists(candidate):
            return candidate
    raise ConfigError(
        "no configuration file: pass --config PATH, set IOTINVOKE_CONFIG, or create "
        + " or ".join(CONFIG_SEARCH_PATH)
    )


def load_config(path: str | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read and validate the INI configuration; every problem is a ConfigError naming its place."""
    path = find_config(path, environ)
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)  # decoded line by line, as configparser reads a file
    except FileNotFoundError:
        raise ConfigError("configuration file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read the configuration file: %s" % _os_reason(e), path) from None
    parser: Any = _read_plain_ini(lines)
    if parser is None:
        import configparser

        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
        try:
            parser.read_file(lines, source=path)
        except configparser.Error as e:
            raise ConfigError("not a valid INI file: %s" % " ".join(str(e).split()), path) from None

    folder = os.path.dirname(os.path.abspath(path))
    config = Config(path)
    defaults = parser.defaults()
    for key in defaults:
        if key not in _SHARED_KEYS:
            raise ConfigError("unknown key (allowed here: %s)" % ", ".join(sorted(_SHARED_KEYS)), path, "DEFAULT", key)

    def relative(value: str) -> str:
        return os.path.join(folder, os.path.expanduser(value))

    if not parser.has_section("iot"):
        raise ConfigError("missing section [iot] (endpoint, role_alias, cert, key)", path)
    iot = parser["iot"]
    _check_keys(iot, _IOT_KEYS | _GLOBAL_KEYS, defaults, path, "iot")
    config.iot_endpoint = _endpoint_url(_required(iot, "endpoint", path), path, "iot", "endpoint")
    iot_host = _host_port(config.iot_endpoint)[0].lower()
    if iot_host.endswith((".amazonaws.com", ".amazonaws.com.cn")) and ".credentials.iot." not in iot_host:
        what = "the IoT data endpoint" if ".iot." in iot_host else "the endpoint of another AWS service"
        raise ConfigError(
            "this is %s; use the credentials endpoint "
            "(aws iot describe-endpoint --endpoint-type iot:CredentialProvider)" % what,
            path,
            "iot",
            "endpoint",
        )
    config.role_alias = _matching(
        _required(iot, "role_alias", path), _ROLE_ALIAS_RE, "1-128 characters of [A-Za-z0-9_=,@-]", path, "iot", "role_alias"
    )
    config.cert = relative(_required(iot, "cert", path))
    config.key = relative(_required(iot, "key", path))
    config.ca = relative(iot["ca"]) if iot.get("ca") else None
    if iot.get("openssl_conf"):
        config.openssl_conf = _apply_openssl_conf(relative(iot["openssl_conf"]), path)
    if iot.get("pin_file"):
        config.pin_file = _PIN_FILES[config.key] = relative(iot["pin_file"])
    else:
        _PIN_FILES.pop(config.key, None)
    thing = iot.get("thing_name")
    if thing is not None:
        config.thing_name = _matching(thing, _THING_NAME_RE, "1-128 characters of [A-Za-z0-9:_-]", path, "iot", "thing_name")
    shared = dict(defaults)
    shared.update({k: v for k, v in iot.items() if k in _SHARED_KEYS})
    cache_dir = environ.get("IOTINVOKE_CACHE_DIR") or shared.get("cache_dir")
    config.cache_dir = relative(cache_dir) if cache_dir else None
    config.connect_timeout = _seconds(shared, "connect_timeout", CONNECT_TIMEOUT_S, path, "DEFAULT")
    config.credentials_timeout = _seconds(shared, "credentials_timeout", CREDENTIALS_READ_TIMEOUT_S, path, "DEFAULT")
    if shared.get("read_timeout"):
        config.read_timeout = _seconds(shared, "read_timeout", INVOKE_READ_TIMEOUT_S, path, "DEFAULT")
    config.max_attempts = _integer(shared, "max_attempts", MAX_ATTEMPTS, 1, 10, path, "DEFAULT")

    for name in parser.sections():
        if name == "iot":
            continue
        section = parser[name]
        _check_keys(section, _ENV_KEYS | _ENDPOINT_KEYS, defaults, path, name)
        config.environments[name] = _environment(name, section, config, environ, relative, path)
    return config

# --- Refresh and retry policy ---------------------------------------------------------------------
# Small pure functions: Client uses them, and scripts/fleet imports them to simulate a fleet of
# boards against AWS's quotas. Randomness comes in as ``rand`` (uniform in [0, 1), such as
# random.random), so that tests and the simulation can be deterministic.


def refresh_window(issued: float, expiration: float) -> tuple[float, float]:
    """The earliest and latest refresh point of credentials issued at ``issued`` that expire at
    ``expiration``: REFRESH_MARGIN_S before expiry, up to REFRESH_JITTER_S earlier, and never
    earlier than half the lifetime (a 15-minute role alias still gets half its credentials' use)."""
    lifetime = max(0.0, expiration - issued)
    half = lifetime * REFRESH_MARGIN_FRACTION
    latest = expiration - min(REFRESH_MARGIN_S, half)
    earliest = expiration - min(REFRESH_MARGIN_S + REFRESH_JITTER_S, half)
    return earliest, latest


def refresh_point(issued: float, expiration: float, rand: Callable[[], float]) -> float:
    """A refresh point drawn uniformly from refresh_window(): boards that fetched together (a
    fleet after a power cut) refresh apart, so they do not come back together every hour.
    rand() == 0 gives the latest point, the fixed margin of earlier versions."""
    earliest, latest = refresh_window(issued, expiration)
    return latest - rand() * (latest - earliest)


def retry_delay(attempt: int, rand: Callable[[], float], retry_after: float | None = None) -> float:
    """Seconds to sleep after failed attempt ``attempt`` (1, 2, ...) before the next one in this
    process: "full jitter", uniform in [0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)]
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), added to the
    server's Retry-After when it sent one, so that the wait is never shorter than AWS asked and
    boards told the same Retry-After still do not come back in the same instant."""
    delay = rand() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(attempt, 32))
    return delay + max(0.0, retry_after or 0.0)


def retry_allowed(attempt: int, max_attempts: int, elapsed: float, delay: float,
                  budget: float = RETRY_BUDGET_S) -> bool:
    """Whether to sleep ``delay`` and try again after attempt ``attempt``, ``elapsed`` seconds
    after the first began: at most max_attempts tries, all done within ``budget`` seconds, so a C
    call never hangs for minutes (the caller waits instead, caller_wait() seconds)."""
    return attempt < max_attempts and elapsed + delay <= budget


def caller_wait(rand: Callable[[], float], retry_after: float | None = None) -> int:
    """Whole seconds the caller should wait before running iotinvoke again after exit 75 at hop
    1 or 2 (credentials): uniform in [CALLER_WAIT_MIN_S, CALLER_WAIT_MAX_S], after the server's
    Retry-After when it sent one. A fleet restarting together is spread over two minutes instead
    of retrying in step (scripts/fleet; README "At fleet scale")."""
    import math

    span = CALLER_WAIT_MAX_S - CALLER_WAIT_MIN_S + 1
    wait = CALLER_WAIT_MIN_S + min(int(rand() * span), span - 1)
    return wait + (math.ceil(retry_after) if retry_after and retry_after > 0 else 0)

# --- Credentials ----------------------------------------------------------------------------------



class Credentials:
    """Temporary AWS credentials. Attribute names are botocore's, so its signer takes them as they are.

    ``expiration`` is seconds since the epoch on AWS's clock; repr() never shows the secrets.
    """

    __slots__ = ("access_key", "secret_key", "token", "expiration", "issued", "refresh")

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        token: str,
        expiration: float,
        issued: float,
        refresh: float | None = None,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token
        self.expiration = expiration
        self.issued = issued  # when we received them (corrected clock): gives the lifetime
        # The refresh point (AWS's clock), drawn once by refresh_at() and stored with the cache
        # entry, so that every process using the entry agrees on it.
        self.refresh = refresh

    def __repr__(self) -> str:
        return "Credentials(access_key=%r, expiration=%s)" % (self.access_key, _iso8601(self.expiration))

    def refresh_at(self) -> float:
        """The refresh point: drawn by refresh_point() on first use, the same afterwards."""
        if self.refresh is None:
            import random

            self.refresh = refresh_point(self.issued, self.expiration, random.random)
        return self.refresh

    def fresh(self, now: float) -> bool:
        """Usable without a refresh: the refresh point (5 to 15 min before expiry, at most half
        the lifetime; see refresh_window) not reached."""
        return now < self.refresh_at()

    def valid(self, now: float, margin: float = MIN_FALLBACK_VALIDITY_S) -> bool:
        return now < self.expiration - margin

    def to_json(self) -> dict[str, Any]:
        """The AWS credential_process format (Version 1)."""
        return {
            "Version": 1,
            "AccessKeyId": self.access_key,
            "SecretAccessKey": self.secret_key,
            "SessionToken": self.token,
            "Expiration": _iso8601(self.expiration),
        }

# --- Invoking: InvokeResult and Client ------------------------------------------------------------


class InvokeResult:
    """What Lambda answered: status 200/202/204, the payload bytes, and the function error if any."""

    __slots__ = ("status", "payload", "function_error", "log_result", "executed_version", "request_id")

    def __init__(
        self,
        status: int,
        payload: bytes,
        function_error: str | None,
        log_result: str | None,
        executed_version: str | None,
        request_id: str | None,
    ) -> None:
        self.status = status
        self.payload = payload
        self.function_error = function_error  # "Unhandled" / "Handled", or None
        self.log_result = log_result  # the decoded log tail, when asked for
        self.executed_version = executed_version
        self.request_id = request_id


class Client:
    """Gets credentials (cached) and invokes functions for the environments of a Config.

    ``log`` receives one line per step (never a secret); ``clock`` returns seconds since the epoch,
    and the corrected clock is clock() plus the stored skew offset, so a board that booted with a
    wrong date still signs right. ``monotonic``, ``sleep``, ``random`` and ``transport`` are the
    real ones unless a test passes its own. A Client serves one thread at a time (its transport
    notes which connection carries the current request); processes share the on-disk cache.
    """

    def __init__(
        self,
        config: Config,
        *,
        use_cache: bool = True,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] | None = None,
        transport: Any = None,
    ) -> None:
        self.config = config
        self._log_line = log
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        if random is None:
            import random as random_module

            random = random_module.random
        self._random = random
        self._transport = transport or _Transport(
            config.connect_timeout, self._log, _BoardClock(self.now, self._clock, self._learn_clock))
        folder = _cache_location(config)[0] if use_cache else None
        self._cache = _Cache(folder, self._log, self._warn)
        self._cert_digest: str | None = None
        self._memory: dict[str, Credentials] = {}  # for long-lived clients (--stream), and --no-cache
        self.last_drift: float | None = None  # AWS's clock minus ours, at the last answer with a Date
        self.clock_offset = _clock_offset(self._cache.read_json("clock.json"))
        self._lock_deadline: float | None = None  # one bound for all the cache locks of one call

    # -- helpers

    def _log(self, message: str) -> None:
        if self._log_line is not None:
            self._log_line(message)

    def _warn(self, message: str) -> None:
        """A note on standard error even without a log (with one, -v, _log has said it already)."""
        if self._log_line is None:
            _say(sys.stderr, "iotinvoke: " + message + "\n")

    def now(self) -> float:
        """The corrected clock: the local clock plus the skew AWS told us about."""
        return self._clock() + self.clock_offset

    def environment(self, name: str) -> Environment:
        env = self.config.environments.get(name)
        if env is None:
            known = ", ".join(sorted(self.config.environments)) or "none"
            raise IotInvokeError(
                "unknown environment %r in %s (known: %s)" % (name, self.config.path, known), EX_USAGE, "config"
            )
        return env

    def _note_server_time(self, response: _Response) -> None:
        """Keep the offset to AWS's clock when it is far from ours, so the next process starts right."""
        server = _http_date(response.headers.get("Date"))
        if server is None:
            return
        drift = self.last_drift = server - self.now()
        if abs(drift) > CLOCK_SKEW_THRESHOLD_S:
            self.clock_offset = server - self._clock()
            self._log("clock: local clock is %+.0f s off AWS's; correcting" % -self.clock_offset)
            self._cache.write_json("clock.json", {"offset": self.clock_offset})

    def _certificate_digest(self) -> str:
        import hashlib

        if self._cert_digest is None:
            try:
                with open(self.config.cert, "rb") as f:
                    self._cert_digest = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                raise IotInvokeError(
                    "device certificate %s: %s" % (self.config.cert, _os_reason(e)), EX_NOINPUT, "iot"
                ) from None
        return self._cert_digest

    def _retrying(self, hop: str, attempt_once: Callable[[], _T]) -> _T:
        """Run attempt_once again after _Retryable failures as the refresh and retry policy says:
        retry_delay() (full jitter, after any Retry-After) while retry_allowed() (max_attempts,
        RETRY_BUDGET_S). Giving up at hop 1 or 2, the error's retry_after becomes caller_wait():
        the jittered wait the caller should honour before running iotinvoke again."""
        started = self._monotonic()
        attempt = 1
        while True:
            try:
                return attempt_once()
            except _Retryable as e:
                delay = retry_delay(attempt, self._random, e.retry_after)
                if not retry_allowed(attempt, self.config.max_attempts, self._monotonic() - started, delay):
                    if attempt > 1:
                        e.message += " (after %d attempts)" % attempt
                    if hop in ("iot", "sts"):
                        e.retry_after = caller_wait(self._random, e.retry_after)
                    raise
                self._log("%s: %s; retrying in %.2f s" % (hop, e, delay))
                self._sleep(delay)
                attempt += 1

    # -- hop 1: the IoT credentials provider

    def _iot_key(self) -> str:
        # The thing name is part of it: IAM policies may use it (credentials-iot:ThingName).
        config = self.config
        return _cache_key("iot", config.iot_endpoint, config.role_alias, self._certificate_digest(), config.thing_name or "")

    def iot_credentials(self, refused: str | None = None) -> Credentials:
        """Credentials of the role alias's role, from the cache or the credentials provider."""
        return self._cached(self._iot_key(), self.fetch_iot_credentials, refused)

    def fetch_iot_credentials(self) -> Credentials:
        """Hop 1 afresh (with retries), neither reading nor writing the cache."""
        config = self.config
        url = "%s/role-aliases/%s/credentials" % (config.iot_endpoint, config.role_alias)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if config.thing_name:
            headers[_IOT_THING_HEADER] = config.thing_name

        def attempt() -> Credentials:
            response = self._transport.send(
                "iot",
                "GET",
                url,
                headers,
                None,
                read_timeout=config.credentials_timeout,
                deadline_s=config.credentials_timeout,
                max_bytes=MAX_CREDENTIALS_RESPONSE_BYTES,
                ca=config.ca,
                ca_source="[iot] ca" if config.ca else "",
                client_cert=(config.cert, config.key),
            )
            self._note_server_time(response)
            if response.status == 200:
                return _parse_iot_credentials(response.body, self.now())
            raise _aws_error(response, "iot", None, config)

        return self._retrying("iot", attempt)

    # -- hop 2: STS AssumeRole

    def _sts_key(self, env: Environment) -> str:
        return _cache_key("sts", self._iot_key(), env.role_arn or "", env.external_id or "", str(env.duration_seconds or ""))

    def _assume_role(self, env: Environment) -> Credentials:
        url, body = self._assume_role_request(env)
        return self._signed_call(
            "sts",
            self.iot_credentials(),
            lambda source: self._assume_role_once(env, url, body, source),
            lambda refused: self.iot_credentials(refused=refused.token),
        )

    def _signed_call(
        self,
        hop: str,
        creds: Credentials,
        send: Callable[[Credentials], _T],
        renew: Callable[[Credentials], Credentials] | None,
    ) -> _T:
        """send(creds) with retries; when AWS refuses the credentials, renew them once; when it
        refuses the time stamp, take its clock and sign again, once."""
        renewed = renew is None
        corrected = False
        while True:
            try:
                return self._retrying(hop, lambda: send(creds))
            except _BadCredentials:
                if renewed or renew is None:
                    raise
                self._log("%s: the credentials were refused; fetching new ones" % hop)
                creds = renew(creds)
                renewed = True
            except _ClockSkew as e:
                if corrected or e.server_time is None:
                    raise
                self._correct_clock(e.server_time)
                corrected = True

    def _assume_role_request(self, env: Environment) -> tuple[str, bytes]:
        from urllib.parse import urlencode

        assert env.role_arn is not None
        params = [
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", env.role_arn),
            ("RoleSessionName", self.session_name()),
        ]
        if env.duration_seconds:
            params.append(("DurationSeconds", str(env.duration_seconds)))
        if env.external_id:
            params.append(("ExternalId", env.external_id))
        return env.sts_endpoint + "/", urlencode(params).encode()

    def _post_signed(
        self, hop: str, env: Environment, url: str, headers: dict[str, str], body: bytes, creds: Credentials, **send: Any
    ) -> _Response:
        """POST body to url, SigV4-signed with creds for the hop's service ("sts" or "lambda") in the
        environment's region, over the environment's CA file; ``send``: _Transport.send's options."""
        signed = _signed_headers("POST", url, headers, body, creds, hop, env.region, self.now())
        return self._transport.send(hop, "POST", url, signed, body, ca=env.ca_bundle, ca_source=env.ca_bundle_source,
                                    **send)

    def _sts_call(self, env: Environment, url: str, body: bytes, creds: Credentials) -> _Response:
        """One signed STS Query API request; an error answer raises its decided error."""
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "User-Agent": USER_AGENT}
        timeout = self.config.credentials_timeout
        response = self._post_signed("sts", env, url, headers, body, creds, read_timeout=timeout, deadline_s=timeout,
                                     max_bytes=MAX_CREDENTIALS_RESPONSE_BYTES)
        self._note_server_time(response)
        if response.status != 200:
            raise _aws_error(response, "sts", env, self.config)
        return response

    def _assume_role_once(self, env: Environment, url: str, body: bytes, source: Credentials) -> Credentials:
        return _parse_assume_role(self._sts_call(env, url, body, source).body, self.now())

    def assume_role(self, name: str, source: Credentials) -> Credentials:
        """Hop 2 afresh for environment ``name``, signed with ``source``: one request, no cache."""
        env = self.environment(name)
        if env.direct:
            raise IotInvokeError("environment %r has no role_arn (one-hop mode)" % name, EX_USAGE, "config")
        url, body = self._assume_role_request(env)
        return self._assume_role_once(env, url, body, source)

    def clear_cache(self) -> int:
        """Remove every cached credential and lock file; returns how many files went."""
        self._memory.clear()
        return self._cache.clear()

    def caller_identity(self, env: Environment, creds: Credentials) -> str:
        """The ARN STS sees for creds (GetCallerIdentity needs no permission): for the doctor."""
        response = self._sts_call(env, env.sts_endpoint + "/", b"Action=GetCallerIdentity&Version=2011-06-15", creds)
        arn = _xml_text(_xml_root(response.body, "sts", 200), "GetCallerIdentityResult", "Arn")
        if not arn:
            raise IotInvokeError("the GetCallerIdentity answer has no Arn", EX_PROTOCOL, "sts", 200)
        return arn

    def session_name(self) -> str:
        """RoleSessionName: the thing name when set (it then shows in CloudTrail), else the certificate."""
        import re

        if self.config.thing_name:
            name = re.sub(r"[^\w+=,.@-]", "-", self.config.thing_name)[:64]
            if len(name) >= 2:
                return name
        return "iotinvoke-" + self._certificate_digest()[:16]

    # -- credentials for an environment

    def credentials(self, name: str, refused: str | None = None) -> Credentials:
        """The credentials hop 3 is signed with: the environment role's, or in one-hop mode the IoT
        role's. ``refused``: a session token AWS just refused, to be replaced."""
        env = self.environment(name)
        if env.direct:
            return self.iot_credentials(refused)
        return self._cached(self._sts_key(env), lambda: self._assume_role(env), refused)

    def _cached(self, key: str, fetch: Callable[[], Credentials], refused: str | None) -> Credentials:
        """The credentials at key if fresh (in memory, else on disk), else fetch() under the entry's
        lock. ``refused``: a session token AWS just refused, never to be returned again."""
        cached = self._memory.get(key)
        if cached is None or not cached.fresh(self.now()):
            cached = self._cache.get(key)
        if cached is not None and cached.fresh(self.now()) and cached.token != refused:
            self._log("cache: %s fresh until %s, then refreshed (expires %s)" % (
                key[:3], _iso8601(cached.refresh_at()), _iso8601(cached.expiration)))
            self._memory[key] = cached
            return cached
        self._log("cache: %s %s" % (key[:3], "refused by AWS" if refused else "absent" if cached is None else "due for refresh"))
        outermost = self._lock_deadline is None
        if outermost:
            self._lock_deadline = time.monotonic() + LOCK_WAIT_S
        try:
            return self._fetch_locked(key, fetch, refused)
        finally:
            if outermost:
                self._lock_deadline = None

    def _fetch_locked(self, key: str, fetch: Callable[[], Credentials], refused: str | None) -> Credentials:
        assert self._lock_deadline is not None
        with self._cache.lock(key, self._lock_deadline):
            # Another process may have refreshed the entry while we waited for the lock.
            current = self._cache.get(key)
            if current is not None and current.token == refused:
                current = None
            if current is None or not current.fresh(self.now()):
                try:
                    fresh = fetch()
                except IotInvokeError as e:
                    if e.exit_code != EX_TEMPFAIL or current is None or not current.valid(self.now()):
                        raise
                    self._log("cache: refresh failed; using credentials valid until %s" % _iso8601(current.expiration))
                else:
                    self._cache.put(key, fresh)
                    current = fresh
            self._memory[key] = current
            return current

    def _learn_clock(self, server_time: float) -> None:
        self.clock_offset = server_time - self._clock()
        self._cache.write_json("clock.json", {"offset": self.clock_offset})

    def _correct_clock(self, server_time: float) -> None:
        self.clock_offset = server_time - self._clock()
        self._log("clock: AWS refused our time stamp; local clock is %+.0f s off, re-signing" % -self.clock_offset)
        self._cache.write_json("clock.json", {"offset": self.clock_offset})

    # -- hop 3: Lambda Invoke

    def invoke(
        self,
        name: str,
        payload: bytes,
        invocation_type: str = "RequestResponse",
        log_tail: bool = False,
        qualifier: str | None = None,
        client_context: str | None = None,
        read_timeout: float | None = None,
        *,
        validate: bool = True,
        credentials: Credentials | None = None,
    ) -> InvokeResult:
        """Invoke the environment's function with a JSON payload (bytes, sent as they are).
        ``validate=False``: the caller already checked the payload (the CLI does, before reading
        the configuration), so a payload of up to 6 MB is not parsed twice. ``credentials``: sign
        with these instead of the environment's (cached) ones, and never renew them."""
        from urllib.parse import quote

        env = self.environment(name)
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise IotInvokeError("invocation type must be RequestResponse, Event or DryRun", EX_USAGE)
        if validate:
            _check_payload(payload, invocation_type)
        if log_tail and env.direct:
            raise IotInvokeError(
                "the log tail needs role_arn: in one-hop mode the call is cross-account and Lambda refuses "
                "cross-account log access",
                EX_USAGE,
                "lambda",
                reason="cross-account-log",
            )
        if log_tail and invocation_type != "RequestResponse":
            raise IotInvokeError("the log tail comes with synchronous invokes only", EX_USAGE, "lambda")
        qualifier = qualifier or env.qualifier
        url = "%s/2015-03-31/functions/%s/invocations" % (env.lambda_endpoint, quote(env.function, safe=""))
        if qualifier:
            url += "?Qualifier=" + quote(qualifier, safe="")
        headers = {"X-Amz-Invocation-Type": invocation_type, "User-Agent": USER_AGENT}
        if log_tail:
            headers["X-Amz-Log-Type"] = "Tail"
        if client_context is not None:
            headers["X-Amz-Client-Context"] = client_context
        if read_timeout is None:
            read_timeout = self.config.read_timeout or (
                INVOKE_READ_TIMEOUT_S if invocation_type == "RequestResponse" else ASYNC_READ_TIMEOUT_S
            )
        # Nothing runs on a DryRun, so losing its answer is harmless and it may be retried; so may an
        # invoke of a function its owner declared idempotent.
        may_run = invocation_type != "DryRun" and not env.idempotent
        return self._signed_call(
            "lambda",
            credentials or self.credentials(name),
            lambda creds: self._invoke_once(env, url, headers, payload, creds, read_timeout, may_run),
            None if credentials else (lambda refused: self.credentials(name, refused=refused.token)),
        )

    def _invoke_once(
        self,
        env: Environment,
        url: str,
        headers: dict[str, str],
        payload: bytes,
        creds: Credentials,
        read_timeout: float,
        may_run: bool,
    ) -> InvokeResult:
        response = self._post_signed("lambda", env, url, headers, payload, creds, read_timeout=read_timeout,
                                     max_bytes=MAX_INVOKE_RESPONSE_BYTES, may_run=may_run)
        if response.status in (200, 202, 204):
            log_result = _log_tail(response.headers.get("X-Amz-Log-Result"))
            return InvokeResult(
                response.status,
                response.body,
                response.headers.get("X-Amz-Function-Error"),
                log_result,
                response.headers.get("X-Amz-Executed-Version"),
                response.headers.get("x-amzn-RequestId"),
            )
        self._note_server_time(response)
        raise _aws_error(response, "lambda", env, self.config, headers["X-Amz-Invocation-Type"])

# === Internals ====================================================================================

# --- Errors that steer retries and renewals -------------------------------------------------------


class _Retryable(IotInvokeError):
    """A failure that proves the request did nothing, so it may be sent again (throttling, a
    connection that never carried the request, a set-up failure before the function ran)."""


class _BadCredentials(IotInvokeError):
    """AWS refused the credentials themselves (expired or invalid token)."""


class _ClockSkew(IotInvokeError):
    """AWS refused the request's time stamp; server_time is from its Date header, if any."""

    def __init__(self, *args: Any, server_time: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_time = server_time

# --- What each AWS answer means: one table decides status, reason and whether to send again -------
#
# (hop, error code) -> (exit status, reason, resend). ``resend`` is True only where the answer proves
# the request did nothing: a throttle, a refused signature or token, or a set-up failure that Lambda
# reports before the function's code runs. Anything else from Lambda Invoke may come after the function
# ran ("your function's code might have run completely, partially, or not at all",
# https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html), so it is never sent twice
# unless the caller declares the function idempotent. Hops 1 and 2 only fetch credentials: every
# transient failure there may be retried.
#
# Lambda rows: every error of Invoke in botocore's model (botocore/data/lambda/2015-03-31/service-2.json,
# status and text from each shape's documentation), plus errors AWS sends that the model does not list.
# STS rows: AssumeRole's modelled errors (botocore/data/sts/2011-06-15/service-2.json) and STS's common
# errors (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html). IoT rows: the
# credentials provider has no model; its documented answers carry only a message, from which
# _aws_error_fields derives the code in the first column (see _IOT_MESSAGES).
# tests/test_error_table.py fails when an installed model lists an error with no row here.
_T_, _P_, _N_, _D_, _X_, _I_ = EX_TEMPFAIL, EX_UNAVAILABLE, EX_NOPERM, EX_DATAERR, EX_IOERR, EX_SOFTWARE
_ERROR_TABLE: dict[tuple[str, str], tuple[int, str, bool]] = {
    # Hop 1, the IoT credentials provider (https://docs.aws.amazon.com/iot/latest/developerguide/authorizing-direct-aws.html)
    ("iot", "InvalidThingName"): (_N_, "thing-not-attached", False),
    ("iot", "CertificateInvalid"): (_N_, "certificate-inactive", False),
    ("iot", "AccessDenied"): (_N_, "iot-policy-denied", False),
    ("iot", "RoleAliasNotFound"): (_P_, "role-alias-not-found", False),
    ("iot", "RoleNotAssumable"): (_P_, "role-not-assumable", False),
    ("iot", "DurationExceedsMax"): (_P_, "duration-exceeds-role-max", False),
    ("iot", "Throttling"): (_T_, "throttled", True),
    # Hop 2, STS: AssumeRole's modelled errors ...
    ("sts", "MalformedPolicyDocument"): (_P_, "malformed-policy", False),
    ("sts", "PackedPolicyTooLarge"): (_P_, "packed-policy-too-large", False),
    ("sts", "RegionDisabledException"): (_P_, "sts-region-disabled", False),  # an account admin must activate it
    ("sts", "ExpiredTokenException"): (_N_, "token-expired", True),
    # ... and STS's common errors.
    ("sts", "ExpiredToken"): (_N_, "token-expired", True),
    ("sts", "AccessDenied"): (_N_, "assume-role-denied", False),
    ("sts", "InvalidClientTokenId"): (_N_, "token-invalid", True),
    ("sts", "SignatureDoesNotMatch"): (_N_, "signature-mismatch", False),
    ("sts", "RequestExpired"): (_N_, "clock-skew", True),
    ("sts", "IncompleteSignature"): (_I_, "signature-incomplete", False),
    ("sts", "MissingAuthenticationToken"): (_I_, "signature-missing", False),
    ("sts", "OptInRequired"): (_P_, "opt-in-required", False),
    ("sts", "ValidationError"): (_P_, "invalid-parameter", False),
    ("sts", "InvalidParameterValue"): (_P_, "invalid-parameter", False),
    ("sts", "InvalidParameterCombination"): (_P_, "invalid-parameter", False),
    ("sts", "MissingParameter"): (_P_, "invalid-parameter", False),
    ("sts", "InvalidAction"): (_I_, "invalid-action", False),
    ("sts", "InvalidQueryParameter"): (_I_, "invalid-parameter", False),
    ("sts", "MalformedQueryString"): (_I_, "invalid-parameter", False),
    ("sts", "Throttling"): (_T_, "throttled", True),
    ("sts", "InternalFailure"): (_T_, "server-error", True),
    ("sts", "ServiceUnavailable"): (_T_, "server-error", True),
    # Hop 3, Lambda Invoke: the caller's own request ...
    ("lambda", "ResourceNotFoundException"): (_P_, "function-not-found", False),
    ("lambda", "InvalidParameterValueException"): (_P_, "invalid-parameter", False),
    ("lambda", "InvalidRequestContentException"): (_D_, "payload-rejected", False),
    ("lambda", "UnsupportedMediaTypeException"): (_D_, "payload-rejected", False),
    ("lambda", "RequestTooLargeException"): (_D_, "payload-too-large", False),
    ("lambda", "SerializedRequestEntityTooLargeException"): (_D_, "payload-too-large", False),
    ("lambda", "RequestEntityTooLargeException"): (_D_, "payload-too-large", False),  # seen on the wire
    ("lambda", "NoPublishedVersionException"): (_P_, "no-published-version", False),
    ("lambda", "RecursiveInvocationException"): (_P_, "recursive-invocation", False),
    ("lambda", "DurableExecutionAlreadyStartedException"): (_P_, "durable-execution-exists", False),
    # ... throttles: nothing ran ...
    ("lambda", "TooManyRequestsException"): (_T_, "throttled", True),
    # ... the function's state: Pending / Inactive / updating, or SnapStart still initialising. They
    # clear by themselves (https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html) ...
    ("lambda", "ResourceConflictException"): (_T_, "function-not-ready", True),
    ("lambda", "SnapStartNotReadyException"): (_T_, "snapstart-not-ready", True),
    ("lambda", "ResourceNotReadyException"): (_T_, "vpc-not-ready", True),
    # ... set-up failures before the handler runs that clear by themselves ...
    ("lambda", "EC2ThrottledException"): (_T_, "ec2-throttled", True),
    ("lambda", "EC2UnexpectedException"): (_T_, "ec2-unexpected", True),
    ("lambda", "EFSMountConnectivityException"): (_T_, "efs-mount-unreachable", True),
    ("lambda", "EFSMountTimeoutException"): (_T_, "efs-mount-timeout", True),
    ("lambda", "S3FilesMountConnectivityException"): (_T_, "s3files-mount-unreachable", True),
    ("lambda", "S3FilesMountTimeoutException"): (_T_, "s3files-mount-timeout", True),
    ("lambda", "SnapStartTimeoutException"): (_T_, "snapstart-timeout", True),
    # ... set-up failures before the handler runs that only the function's owner can fix ...
    ("lambda", "EC2AccessDeniedException"): (_P_, "ec2-access-denied", False),
    ("lambda", "ENILimitReachedException"): (_P_, "eni-limit", False),
    ("lambda", "SubnetIPAddressLimitReachedException"): (_P_, "subnet-ips-exhausted", False),
    ("lambda", "InvalidSubnetIDException"): (_P_, "invalid-subnet", False),
    ("lambda", "InvalidSecurityGroupIDException"): (_P_, "invalid-security-group", False),
    ("lambda", "KMSAccessDeniedException"): (_P_, "kms-denied", False),
    ("lambda", "KMSDisabledException"): (_P_, "kms-disabled", False),
    ("lambda", "KMSInvalidStateException"): (_P_, "kms-invalid-state", False),
    ("lambda", "KMSNotFoundException"): (_P_, "kms-not-found", False),
    ("lambda", "InvalidRuntimeException"): (_P_, "invalid-runtime", False),
    ("lambda", "InvalidZipFileException"): (_P_, "invalid-zip", False),
    ("lambda", "EFSMountFailureException"): (_P_, "efs-mount-failed", False),  # 403, but not IAM's
    ("lambda", "S3FilesMountFailureException"): (_P_, "s3files-mount-failed", False),
    ("lambda", "SnapStartException"): (_P_, "snapstart-restore-failed", False),
    # ... failures during or after the function's run: it may have run ...
    ("lambda", "ServiceException"): (_X_, "lambda-service-error", False),
    ("lambda", "EFSIOException"): (_X_, "efs-io", False),
    # ... and what AWS sends that the model does not list.
    ("lambda", "AccessDeniedException"): (_N_, "invoke-denied", False),
    ("lambda", "UnrecognizedClientException"): (_N_, "token-invalid", True),
    ("lambda", "ExpiredTokenException"): (_N_, "token-expired", True),
    ("lambda", "InvalidSignatureException"): (_N_, "signature-mismatch", False),
}
# Lambda's TooManyRequestsException carries a Reason (ThrottleReason in the model). A function's
# reserved concurrency of 0 is its owner stopping it; that too clears only when the owner acts, but
# it is indistinguishable from a reserved limit reached under load, so it stays transient and the
# caller is told to wait longer (RESERVED_THROTTLE_WAIT_S).
_THROTTLE_REASONS: dict[str, str] = {
    "ConcurrentInvocationLimitExceeded": "account-concurrency-limit",
    "FunctionInvocationRateLimitExceeded": "function-rate-limit",
    "ReservedFunctionConcurrentInvocationLimitExceeded": "reserved-concurrency-limit",
    "ReservedFunctionInvocationRateLimitExceeded": "reserved-rate-limit",
    "CallerRateLimitExceeded": "caller-rate-limit",
    "ConcurrentSnapshotCreateLimitExceeded": "snapshot-create-limit",
}
# The credentials provider's documented messages, as codes for the table.
_IOT_MESSAGES = (
    ("invalid thing name", "InvalidThingName"),
    ("certificate is invalid", "CertificateInvalid"),
    ("role alias does not exist", "RoleAliasNotFound"),
    ("unable to assume the role", "RoleNotAssumable"),
    ("credentialdurationseconds", "DurationExceedsMax"),
    ("access denied", "AccessDenied"),
)
_BAD_TOKEN_REASONS = ("token-expired", "token-invalid")


def _decide(hop: str, status: int, code: str | None) -> tuple[int, str, bool]:
    """(exit status, reason, resend) for an AWS error answer: the table's row, else by HTTP status."""
    row = _ERROR_TABLE.get((hop, code or ""))
    if row is not None:
        return row
    if status == 429:
        return EX_TEMPFAIL, "throttled", True
    if status >= 500:
        # A server error from Lambda may come after the function ran; credentials can be fetched again.
        return (EX_IOERR, "lambda-server-error", False) if hop == "lambda" else (EX_TEMPFAIL, "server-error", True)
    if status in (401, 403):
        return EX_NOPERM, "denied", False
    if status == 404:
        return EX_UNAVAILABLE, "not-found", False
    if 400 <= status < 500 and code:
        return EX_UNAVAILABLE, "refused", False
    return EX_PROTOCOL, "unexpected-answer", False  # no error code: not an AWS error answer

def _aws_error_fields(response: _Response, hop: str) -> tuple[str | None, str, str | None, str | None]:
    """(code, message, request id, throttle reason) from a JSON (IoT, Lambda) or XML (STS) error answer."""
    request_id = response.headers.get("x-amzn-RequestId")
    code = response.headers.get("x-amzn-ErrorType")
    message = ""
    throttle = None
    body = response.body[:65536]
    if body.lstrip().startswith(b"<"):
        try:
            root = _xml_root(body, hop, response.status)
        except IotInvokeError:
            root = None
        if root is not None:
            code = code or _xml_text(root, "Error", "Code")
            message = _xml_text(root, "Error", "Message") or ""
            request_id = request_id or _xml_text(root, "RequestId")
    elif body:
        import json

        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict):
            message = str(document.get("message") or document.get("Message") or "")
            code = code or document.get("code") or document.get("Code") or document.get("__type")
            throttle = document.get("Reason")
    if code:
        # botocore's rule: "Code:http://internal..." and "namespace#Code" both mean Code.
        code = _short(str(code).split(":", 1)[0].rsplit("#", 1)[-1], 100)
    if hop == "iot":
        lowered = message.lower()
        code = next((c for marker, c in _IOT_MESSAGES if marker in lowered), None) or (
            "Throttling" if response.status == 429 else code)
    return code or None, _short(message), request_id and _short(request_id, 100), (
        throttle if isinstance(throttle, str) else None)


def _retry_after(response: _Response) -> float | None:
    import math

    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    # Kept as AWS said it (bounded to a day): _retrying never waits beyond its budget, the caller is told.
    return min(seconds, 86400.0) if seconds is not None and seconds >= 0 and math.isfinite(seconds) else None


# Where a reason needs more than AWS's own message: what it means and what to do. {alias}, {thing},
# {role}, {function} and {region} come from the configuration.
_EXPLANATIONS = {
    "thing-not-attached": "thing_name {thing!r} is not attached to this certificate",
    "certificate-inactive": "the certificate is not active with AWS IoT in this account and region (inactive, "
    "revoked, or registered elsewhere)",
    "iot-policy-denied": "the certificate may not assume role alias {alias!r} (is role_alias spelt right, and does "
    "the certificate's IoT policy allow iot:AssumeRoleWithCertificate on it?)",
    "role-alias-not-found": "role alias {alias!r} does not exist (check role_alias, and that endpoint is the "
    "iot:CredentialProvider endpoint of the right account and region)",
    "role-not-assumable": "the role behind role alias {alias!r} cannot be assumed (it does not exist, or its trust "
    "policy does not name credentials.iot.amazonaws.com)",
    "duration-exceeds-role-max": "role alias {alias!r} asks for longer credentials than its role's MaxSessionDuration",
    "assume-role-denied": "AssumeRole into {role} was denied: the role's trust policy must name the IoT role (with "
    "the external_id, if it has a condition) and the IoT role must be allowed sts:AssumeRole on it",
    "sts-region-disabled": "STS is not activated in {region} for the account: an administrator activates it in "
    "the IAM account settings",
    "function-not-found": "function not found",
    "function-not-ready": "the function is not ready (Pending, Inactive or being updated); it becomes Active by itself",
    "snapstart-not-ready": "the function's SnapStart snapshot is still being created",
    "vpc-not-ready": "the function's VPC connection is not available yet",
    "lambda-service-error": "Lambda failed after accepting the invoke: the function may have run",
    "lambda-server-error": "Lambda answered with a server error: the function may have run",
    "efs-io": "the function's file system failed while it ran: the function may have run",
    "payload-rejected": "Lambda refused the payload",
    "payload-too-large": "Lambda refused the payload as too large",
    "throttled": "throttled",
    "server-error": "AWS server error",
    "token-expired": "the credentials were refused as expired",
    "token-invalid": "the credentials were refused as invalid",
    "signature-mismatch": "AWS refused the request signature",
    "clock-skew": "AWS refused the request time (is the clock right?)",
}


def _aws_error(
    response: _Response, hop: str, env: Environment | None, config: Config, invocation_type: str = "RequestResponse"
) -> IotInvokeError:
    """The error for an AWS error answer of any hop, decided by _ERROR_TABLE (see there)."""
    code, message, request_id, throttle = _aws_error_fields(response, hop)
    status = response.status
    exit_code, reason, resend = _decide(hop, status, code)
    if reason == "throttled" and throttle in _THROTTLE_REASONS:
        reason = _THROTTLE_REASONS[throttle]
    retry_after = _retry_after(response)
    if reason == "reserved-concurrency-limit" and retry_after is None:
        retry_after = RESERVED_THROTTLE_WAIT_S
    kw: dict[str, Any] = {"hop": hop, "status": status, "code": code, "request_id": request_id, "reason": reason}
    if code in _SKEW_CODES and any(marker in message for marker in _SKEW_MARKERS):
        return _ClockSkew(
            _EXPLANATIONS["clock-skew"] + ": " + message,
            EX_NOPERM,
            server_time=_http_date(response.headers.get("Date")),
            **dict(kw, reason="clock-skew"),
        )
    if reason in _BAD_TOKEN_REASONS:
        return _BadCredentials(_EXPLANATIONS[reason] + ": " + (message or str(code)), EX_NOPERM, **kw)
    explanation = _EXPLANATIONS.get(reason)
    if reason == "invoke-denied" and env is not None:
        if "cross-account log" in message.lower():
            kw["reason"] = "cross-account-log"
            explanation = "Lambda returns no log tail across accounts"
        elif env.direct:
            explanation = ("invoke of {function} was denied (the function's resource policy must allow the IoT role, "
                           "and the IoT role lambda:InvokeFunction)")
        else:
            explanation = "invoke of {function} was denied (the role {role} must be allowed lambda:InvokeFunction on it)"
    elif explanation is None and hop == "lambda" and code is not None and (hop, code) in _ERROR_TABLE:
        # A set-up failure of the function before its code ran: say whose it is to fix.
        explanation = ("Lambda could not start the function (%s): %s" % (
            reason, "it clears by itself" if resend else "only the function's owner can fix this"))
    if explanation is None:
        explanation = {"iot": "the credentials provider refused", "sts": "STS refused AssumeRole",
                       "lambda": "Lambda refused the invoke"}[hop]
        if exit_code == EX_PROTOCOL:
            explanation = "unexpected answer from " + {"iot": "the credentials provider", "sts": "STS",
                                                       "lambda": "Lambda"}[hop]
    text = explanation.format(
        alias=config.role_alias,
        thing=config.thing_name,
        role=env.role_arn if env else None,
        function=env.function if env else None,
        region=env.region if env else config.region,
    )
    if message.lower().startswith(text.lower()):
        text += message[len(text):]  # AWS said the same, with detail: "Function not found: arn:..."
    elif message and message not in text:
        text += ": " + message
    if hop == "lambda" and exit_code == EX_IOERR:
        if invocation_type == "DryRun" or (env is not None and env.idempotent):
            # Nothing ran (DryRun), or the caller declared that running twice is harmless.
            return _Retryable(text, EX_TEMPFAIL, retry_after=retry_after, **kw)
        text += "; not retried automatically"
    if resend or exit_code == EX_TEMPFAIL:
        return _Retryable(text, exit_code, retry_after=retry_after, **kw)
    return IotInvokeError(text, exit_code, retry_after=retry_after, **kw)

# --- Configuration: reading and checking ----------------------------------------------------------


class _PlainIni:
    """The part of configparser.ConfigParser's interface that load_config uses."""

    def __init__(self, defaults: dict[str, str], sections: dict[str, dict[str, str]]) -> None:
        self._defaults = defaults
        self._sections = sections

    def defaults(self) -> dict[str, str]:
        return self._defaults

    def has_section(self, name: str) -> bool:
        return name in self._sections

    def sections(self) -> list[str]:
        return list(self._sections)

    def __getitem__(self, name: str) -> dict[str, str]:
        # Like configparser's section proxy: the section's own keys first, then [DEFAULT]'s.
        merged = dict(self._sections[name])
        for key, value in self._defaults.items():
            merged.setdefault(key, value)
        return merged


_INI_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _read_plain_ini(lines: list[str]) -> _PlainIni | None:
    """Read the plain INI that iotinvoke's files hold (sections, `key = value`, comments) exactly
    as configparser would, without importing it (9 M instructions of every call). None for
    anything else (indented or continued lines, unusual names, duplicates, a `;`/`#` not after
    a space): configparser then reads the file, with the same result or its own error message."""
    defaults: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    section: dict[str, str] | None = None
    section_name = ""
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if not line.strip() or line[0] in "#;":
            continue
        if line[0].isspace():
            return None
        # configparser's inline comments: ";" or "#" after whitespace; its search for a later
        # one after an earlier one that is not a comment is not reproduced here.
        semicolon, hash_ = line.find(";"), line.find("#")
        cut = min(i for i in (semicolon, hash_, len(line)) if i >= 0)
        if cut < len(line) and not line[cut - 1].isspace():
            return None
        value = line[:cut].strip()
        if value[0] == "[":
            name = value[1:-1]
            if value[-1] != "]" or not name or not _INI_NAME_CHARS.issuperset(name) or name in sections:
                return None
            section_name = name
            section = defaults if name == "DEFAULT" else sections.setdefault(name, {})
            continue
        equals, colon = value.find("="), value.find(":")
        delimiter = min(i for i in (equals, colon, len(value)) if i >= 0)
        key = value[:delimiter].rstrip().lower()
        if section is None or delimiter == len(value) or not key or not _INI_NAME_CHARS.issuperset(key):
            return None
        if (section_name, key) in seen:
            return None
        seen.add((section_name, key))
        section[key] = value[delimiter + 1 :].strip()
    return _PlainIni(defaults, sections)


def _environment(
    name: str,
    section: Any,
    config: Config,
    environ: Mapping[str, str],
    relative: Callable[[str], str],
    path: str,
) -> Environment:
    function = _required(section, "function", path, name)
    match = _FUNCTION_RE.fullmatch(function)
    if not match:
        raise ConfigError(
            "not a function name, partial ARN (ACCOUNT:function:NAME) or function ARN", path, name, "function"
        )
    role_arn = section.get("role_arn") or None
    if role_arn is not None:
        _matching(role_arn, _ROLE_ARN_RE, "an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME", path, name, "role_arn")
    external_id = section.get("external_id") or None
    if external_id is not None:
        if role_arn is None:
            raise ConfigError("external_id needs role_arn (it is sent with AssumeRole)", path, name, "external_id")
        _matching(external_id, _EXTERNAL_ID_RE, "2-1224 characters of [A-Za-z0-9+=,.@:/_-]", path, name, "external_id")
    region = section.get("region") or match.group("region") or config.region
    if not region:
        raise ConfigError("cannot tell the region: give region, or the function as a full ARN", path, name, "region")
    _matching(region, _REGION_RE, "a region name such as ap-northeast-1", path, name, "region")
    qualifier = section.get("qualifier") or None
    if qualifier is not None:
        _matching(qualifier, _QUALIFIER_RE, "a version number, alias or $LATEST", path, name, "qualifier")
    duration = None
    if section.get("duration_seconds"):
        if role_arn is None:
            raise ConfigError("duration_seconds needs role_arn", path, name, "duration_seconds")
        duration = _integer(section, "duration_seconds", 3600, 900, CHAINED_ROLE_MAX_DURATION_S, path, name)
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    sts = environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL") or section.get("sts_endpoint")
    lam = environ.get("AWS_ENDPOINT_URL_LAMBDA") or environ.get("AWS_ENDPOINT_URL") or section.get("lambda_endpoint")
    ca_bundle = environ.get("AWS_CA_BUNDLE") or section.get("ca_bundle")
    ca_source = "AWS_CA_BUNDLE" if environ.get("AWS_CA_BUNDLE") else "[%s] ca_bundle" % name if ca_bundle else ""
    idempotent = (section.get("idempotent") or "false").lower()
    if idempotent not in ("true", "false"):
        raise ConfigError("expected true or false, got %r" % idempotent[:20], path, name, "idempotent")
    return Environment(
        name=name,
        function=function,
        role_arn=role_arn,
        external_id=external_id,
        region=region,
        qualifier=qualifier,
        duration_seconds=duration,
        sts_endpoint=_endpoint_url(sts, path, name, "sts_endpoint") if sts else "https://sts." + region + suffix,
        lambda_endpoint=_endpoint_url(lam, path, name, "lambda_endpoint") if lam else "https://lambda." + region + suffix,
        ca_bundle=relative(ca_bundle) if ca_bundle else None,
        ca_bundle_source=ca_source,
        idempotent=idempotent == "true",
    )


def _check_keys(section: Any, allowed: frozenset[str], defaults: Any, path: str, name: str) -> None:
    # A mistyped role_arn must not silently turn an environment into one-hop mode.
    for key in section:
        inherited = key in defaults and section[key] == defaults[key]
        if key not in allowed and not inherited:
            raise ConfigError("unknown key (allowed: %s)" % ", ".join(sorted(allowed)), path, name, key)


def _required(section: Any, key: str, path: str, name: str = "iot") -> str:
    value = section.get(key)
    if not value:
        raise ConfigError("missing required key", path, name, key)
    return str(value)


def _matching(value: str, pattern: Any, expected: str, path: str, section: str, key: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError("invalid value %r: expected %s" % (value[:80], expected), path, section, key)
    return value


def _bounded(text: str, parse: Callable[[str], float], low: float, high: float) -> float | None:
    """text as a number from low to high (NaN and infinities never are), else None."""
    try:
        value = parse(text)
    except ValueError:
        return None
    return value if low <= value <= high else None


def _integer(section: Any, key: str, default: int, low: int, high: int, path: str, name: str) -> int:
    text = section.get(key)
    if not text:
        return default
    value = _bounded(text, int, low, high)
    if value is None:
        raise ConfigError("expected a whole number from %d to %d, got %r" % (low, high, text[:40]), path, name, key)
    return int(value)


def _seconds(section: Any, key: str, default: float, path: str, name: str) -> float:
    text = section.get(key)
    if not text:
        return default
    value = _bounded(text, float, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    if value is None:
        raise ConfigError("expected seconds from %g to %g, got %r" % (MIN_TIMEOUT_S, MAX_TIMEOUT_S, text[:40]),
                          path, name, key)
    return value


def _endpoint_url(value: str, path: str, section: str, key: str) -> str:
    """A host name or an https:// URL with optional port, as https://host[:port] without a path."""
    url = value if "://" in value else "https://" + value
    if not _ENDPOINT_RE.fullmatch(url):
        raise ConfigError("invalid value %r: expected a host name or https://host[:port]" % value[:80], path, section, key)
    return url.rstrip("/")


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    if hostport.startswith("["):  # IPv6 literal
        host, _, port = hostport[1:].partition("]")
        return host, int(port[1:]) if port else 443
    host, _, port = hostport.partition(":")
    return host, int(port) if port else 443

# --- The on-disk cache ----------------------------------------------------------------------------


class _Cache:
    """Credentials on disk between processes: one JSON file per entry, 0600 in a 0700 folder.

    Anything unexpected (a symlink, another owner, loose modes, a torn or foreign file) is a
    miss, never a crash; a folder that cannot be used makes every call uncached.
    """

    def __init__(self, folder: str | None, log: Callable[[str], None], warn: Callable[[str], None] | None = None) -> None:
        self._log = log
        self._warn = warn  # says on stderr, once per boot, that the cache cannot be used
        self.folder = self._usable(folder) if folder else None

    def _usable(self, folder: str) -> str | None:
        import stat

        try:
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                parent = os.path.dirname(folder)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                try:
                    os.mkdir(folder, 0o700)
                except FileExistsError:  # another process made it first
                    pass
                st = os.lstat(folder)
        except OSError as e:
            self._unusable("cannot use %s (%s)" % (folder, _os_reason(e)), folder)
            return None
        if not stat.S_ISDIR(st.st_mode):
            reason = "%s is not a folder (a symlink?)" % folder
        elif st.st_uid != os.geteuid():
            reason = "%s belongs to another user" % folder
        elif st.st_mode & 0o077:
            reason = "%s is open to others (mode %o, needs 0700)" % (folder, st.st_mode & 0o777)
        elif not os.access(folder, os.W_OK | os.X_OK):
            reason = "%s is not writable" % folder
        else:
            if self._warn is not None:
                _forget_said("cache:" + folder)  # usable again: a new breakage is said again
            return folder
        self._unusable(reason, folder)
        return None

    def _unusable(self, reason: str, folder: str) -> None:
        """Every call then runs cold (a request per hop): say so on stderr the first time since
        boot (_say_once), under -v every time; never fail the call for it."""
        self._log("cache: %s: running uncached" % reason)
        if self._warn is not None and _say_once("cache:" + folder):
            self._warn("cache: %s: every call runs uncached; said once until reboot (README: Cache location)" % reason)

    def _path(self, key: str) -> str:
        return os.path.join(self.folder or "", key)

    def read_json(self, key: str) -> dict[str, Any] | None:
        import json
        import stat

        if not self.folder:
            return None
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None  # absent, or a symlink (ELOOP)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                self._log("cache: ignoring %s: not a 0600 file of ours" % key)
                return None
            data = os.read(fd, 65536)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            value = json.loads(data)
        except ValueError:
            self._log("cache: ignoring %s: not valid JSON" % key)
            return None
        return value if isinstance(value, dict) else None

    def write_json(self, key: str, value: dict[str, Any]) -> None:
        import json

        if not self.folder:
            return
        data = json.dumps(value, separators=(",", ":")).encode()
        temp = self._path(".%s.%d.%s.tmp" % (key, os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)  # power loss on a board must not leave an empty entry behind os.replace
            finally:
                os.close(fd)
            os.replace(temp, self._path(key))
        except OSError as e:
            self._log("cache: cannot write %s (%s): continuing uncached" % (key, _os_reason(e)))
            try:
                os.unlink(temp)
            except OSError:
                pass

    def get(self, key: str) -> Credentials | None:
        entry = self.read_json(key)
        if entry is None:
            return None
        try:
            creds = Credentials(
                entry["AccessKeyId"], entry["SecretAccessKey"], entry["SessionToken"], entry["Expiration"], entry["Issued"]
            )
            if not all(isinstance(v, str) and v for v in (creds.access_key, creds.secret_key, creds.token)):
                raise TypeError
            creds.expiration = float(creds.expiration)
            creds.issued = float(creds.issued)
        except (KeyError, TypeError, ValueError):
            self._log("cache: ignoring %s: not a credentials entry" % key)
            return None
        # The refresh point its writer drew; an entry without one (written by an earlier
        # version) or with one outside the policy's window refreshes at the fixed margin.
        refresh = entry.get("Refresh")
        earliest, latest = refresh_window(creds.issued, creds.expiration)
        creds.refresh = latest
        if isinstance(refresh, (int, float)) and not isinstance(refresh, bool) and earliest <= refresh <= latest:
            creds.refresh = float(refresh)
        return creds

    def put(self, key: str, creds: Credentials) -> None:
        if creds.refresh is None:
            fraction = self.refresh_fraction()
            creds.refresh = refresh_point(creds.issued, creds.expiration, lambda: fraction)
        self.write_json(
            key,
            {
                "AccessKeyId": creds.access_key,
                "SecretAccessKey": creds.secret_key,
                "SessionToken": creds.token,
                "Expiration": creds.expiration,
                "Issued": creds.issued,
                "Refresh": creds.refresh_at(),
            },
        )

    def refresh_fraction(self) -> float:
        """This board's place in the refresh window, in [0, 1): drawn once (until the cache is
        cleared, or a reboot empties its tmpfs) and shared by all its entries. Boards differ, so a
        fleet spreads; the two hops of one board stay in step, so a hop 2 refresh never finds its
        hop 1 credentials expired when a failed hop 1 refresh needs them (scripts/fleet found
        independent draws failing calls in a credentials-provider outage)."""
        value = (self.read_json("jitter.json") or {}).get("fraction")
        if isinstance(value, float) and 0.0 <= value < 1.0:
            return value
        import random

        value = random.random()
        self.write_json("jitter.json", {"fraction": value})
        return value

    def clear(self) -> int:
        """Remove every entry and lock file; returns how many files went."""
        removed = 0
        if not self.folder:
            return removed
        for name in os.listdir(self.folder):
            if name.endswith((".json", ".lock", ".tmp")):
                try:
                    os.unlink(self._path(name))
                    removed += 1
                except OSError:
                    pass
        return removed

    def lock(self, key: str, deadline: float) -> _Lock:
        return _Lock(self._path(key + ".lock") if self.folder else None, self._log, deadline)


class _Lock:
    """An exclusive flock on a per-entry lock file, so that concurrent cold starts fetch once.

    The kernel drops a flock when its holder dies, so a killed process leaves no stale lock; a
    holder that hangs is waited for until ``deadline`` (monotonic), after which we go on without
    the lock. Nested locks of one call share one deadline, so the wait is LOCK_WAIT_S in all.
    """

    def __init__(self, path: str | None, log: Callable[[str], None], deadline: float) -> None:
        self._path = path
        self._log = log
        self._deadline = deadline
        self._fd: int | None = None

    def __enter__(self) -> _Lock:
        if self._path is None:
            return self
        import fcntl

        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as e:
            self._log("cache: cannot open lock %s (%s): going on unlocked" % (self._path, _os_reason(e)))
            return self
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() > self._deadline:
                    self._log("cache: lock %s held for over %.0f s: going on unlocked" % (self._path, LOCK_WAIT_S))
                    return self
                time.sleep(LOCK_POLL_S)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

_RUN_FOLDER = "/run/iotinvoke"  # made by root, or for a service user by tmpfiles.d (README "Cache location")


def _cache_location(config: Config, environ: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """The cache folder and where that choice came from. Session tokens belong on a tmpfs (no
    SD-card wear, gone at reboot), so every run-time folder comes before ~/.cache:

    1. cache_dir / $IOTINVOKE_CACHE_DIR: the operator said so;
    2. $RUNTIME_DIRECTORY: systemd's RuntimeDirectory= of the service that runs us, made for it
       with its user and mode; used as it is when named iotinvoke, else its iotinvoke subfolder
       (another service's folder is never filled, or cleared, with our files);
    3. $XDG_RUNTIME_DIR/iotinvoke: a login session's or user service's tmpfs;
    4. /run/iotinvoke, when it is ours (tmpfiles.d made it for this user) or we are root;
    5. ~/.cache/iotinvoke: persistent storage, the last resort (cron jobs, daemons of a user).
    """
    import stat

    if config.cache_dir:
        return config.cache_dir, "cache_dir or $IOTINVOKE_CACHE_DIR"
    runtime_directory = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime_directory:
        if os.path.basename(runtime_directory.rstrip("/")) != "iotinvoke":
            runtime_directory = os.path.join(runtime_directory, "iotinvoke")
        return runtime_directory, "$RUNTIME_DIRECTORY (systemd RuntimeDirectory=)"
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "iotinvoke"), "$XDG_RUNTIME_DIR"
    try:
        st = os.lstat(_RUN_FOLDER)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            return _RUN_FOLDER, "/run/iotinvoke (tmpfiles.d)"
    except FileNotFoundError:
        if os.geteuid() == 0 and os.path.isdir(os.path.dirname(_RUN_FOLDER)):
            return _RUN_FOLDER, "/run/iotinvoke (root)"
    except OSError:
        pass
    home = environ.get("HOME") or os.path.expanduser("~")
    if home == "~":
        return None, "no run-time folder and no home folder"
    return os.path.join(home, ".cache", "iotinvoke"), "~/.cache (persistent storage: no run-time folder)"


def _say_once(key: str, environ: Mapping[str, str] = os.environ) -> bool:
    """True the first time ``key`` is asked about since boot (or since _forget_said(key)).

    Every call is a new process, so "once" is kept in a marker file on a tmpfs that reboots
    empty: $XDG_RUNTIME_DIR, else /dev/shm. The marker is created with O_EXCL, so of two
    processes at once only one says it. Where no marker can be kept, every call says it:
    repeated is better than silent. A marker planted by another user does not silence us.
    """
    for path in _said_markers(key, environ):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            return True
        except FileExistsError:
            try:
                return os.lstat(path).st_uid != os.geteuid()
            except OSError:
                return True
        except OSError:
            continue  # that folder is not usable: try the next one
    return True


def _forget_said(key: str, environ: Mapping[str, str] = os.environ) -> None:
    for path in _said_markers(key, environ):
        try:
            os.unlink(path)
        except OSError:
            pass


def _said_markers(key: str, environ: Mapping[str, str]) -> list[str]:
    import hashlib

    name = "iotinvoke-said-%d-%s" % (os.geteuid(), hashlib.sha256(key.encode()).hexdigest()[:16])
    folders = [f for f in (environ.get("XDG_RUNTIME_DIR"), "/dev/shm") if f]
    return [os.path.join(folder, name) for folder in folders]


def _clock_offset(entry: dict[str, Any] | None) -> float:
    """The stored offset to AWS's clock; anything but a plausible number (NaN, 1e300) counts as none."""
    import math

    value = (entry or {}).get("offset")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if abs(value) <= MAX_CLOCK_OFFSET_S:
            return float(value)
    return 0.0


def _cache_key(*parts: str) -> str:
    import hashlib

    return parts[0] + "-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32] + ".json"

# --- HTTP transport -------------------------------------------------------------------------------


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # urllib3's HTTPHeaderDict: case-insensitive
        self.body = body


class _Transport:
    """urllib3 pools, one per TLS set-up (CA file, client certificate, proxy), reused across hops and calls.

    The pools' connections note when they are ready to carry a request (connected, tunnelled, TLS
    handshake done, or reused): a failure before that proves nothing was sent, whatever exception
    the urllib3 version raises for it; any failure after that may come after the server acted.
    """

    def __init__(
        self,
        connect_timeout: float,
        log: Callable[[str], None],
        clock: _BoardClock | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self._log = log
        self._clock = clock
        self._managers: dict[tuple[Any, ...], urllib3.PoolManager] = {}
        self._ready: list[Any] = []  # connections that became ready during the current request
        self._pool_class: Any = None

    def _board_behind(self) -> bool:
        """The corrected clock is well ahead of the board's: OpenSSL, which checks certificate dates
        against the board's clock, must leave that check to us (see _ssl_context)."""
        return self._clock is not None and self._clock.offset() > CLOCK_SKEW_THRESHOLD_S

    def _manager(
        self, ca: str | None, client_cert: tuple[str, str] | None, url: str, leaf_check: Callable[[Any], None] | None
    ) -> urllib3.PoolManager:
        proxy = _proxy_for(url)
        host = _host_port(url)[0]
        # urllib3 1.26 wraps sockets without server_hostname for an IP address, so a context that
        # checks host names fails; a context bound to that address fills it in (see _ssl_context).
        ip_host = host if _is_ip_address(host) else None
        key = (ca, client_cert[0] if client_cert else None, proxy[0] if proxy else None, ip_host, leaf_check)
        manager = self._managers.get(key)
        if manager is None:
            import urllib3
            import warnings

            # urllib3 warns on stderr when the board's date is old; iotinvoke says it in its own line.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.SystemTimeWarning)

            context = _ssl_context(ca, client_cert, ip_host, leaf_check)
            options = {"maxsize": 2, "ssl_context": context, "socket_options": _socket_options()}
            if proxy is None:
                manager = urllib3.PoolManager(**options)
            else:
                # HTTPS through an HTTP proxy is a CONNECT tunnel: TLS, and so the device
                # certificate, goes end to end; the proxy sees only the host name.
                bare, auth = proxy
                headers = urllib3.make_headers(proxy_basic_auth=auth) if auth is not None else None
                self._log("proxy: %s through %s" % (host, bare))
                manager = urllib3.ProxyManager(bare, proxy_headers=headers, **options)
            manager.pool_classes_by_scheme = dict(manager.pool_classes_by_scheme, https=self._pool())
            self._managers[key] = manager
        return manager

    def _pool(self) -> Any:
        """An HTTPSConnectionPool whose connections report to self._ready (urllib3 1.26 and 2.x alike)."""
        if self._pool_class is None:
            from urllib3.connection import HTTPSConnection
            from urllib3.connectionpool import HTTPSConnectionPool

            ready = self._ready

            class _Connection(HTTPSConnection):
                def connect(self) -> None:
                    super().connect()
                    leaf_check = getattr(self.ssl_context, "iotinvoke_leaf_check", None)
                    if leaf_check is not None:
                        try:
                            sock: Any = self.sock  # an SSLSocket once connected
                            leaf_check(sock.getpeercert())
                        except BaseException:
                            self.close()
                            raise
                    ready.append(self)

            class _Pool(HTTPSConnectionPool):
                ConnectionCls = _Connection

                def _get_conn(self, timeout: float | None = None) -> Any:
                    connection = super()._get_conn(timeout)
                    if getattr(connection, "sock", None) is not None:
                        ready.append(connection)  # a kept-alive connection: sending starts at once
                    return connection

            self._pool_class = _Pool
        return self._pool_class

    def send(
        self,
        hop: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        read_timeout: float,
        max_bytes: int,
        ca: str | None = None,
        ca_source: str = "",
        client_cert: tuple[str, str] | None = None,
        may_run: bool = False,
        deadline_s: float | None = None,
        learning: bool = False,
    ) -> _Response:
        """One request, no retries; the whole answer read and checked.

        Raises _Retryable where the request provably did nothing, or did something harmless to
        repeat (``may_run`` False); otherwise IotInvokeError EX_IOERR: the function may have run.
        ``deadline_s`` bounds the whole exchange after connecting, not only each socket read.
        """
        import urllib3

        leaf_check = self._check_leaf_dates if self._board_behind() else None
        manager = self._manager(ca, client_cert, url, leaf_check)
        started = time.monotonic()
        self._ready.clear()
        timer = None
        expired: list[bool] = []
        if deadline_s is not None:
            import threading

            def expire() -> None:
                expired.append(True)
                for connection in self._ready:
                    _abort(connection)

            timer = threading.Timer(self.connect_timeout + deadline_s, expire)
            timer.daemon = True
            timer.start()
        response = None
        learned = False
        try:
            response = manager.request(
                method,
                url,
                body=body,
                headers=dict(headers, **{"Accept-Encoding": "identity"}),
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=read_timeout),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                enforce_content_length=True,
            )
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity; a compressed answer could grow without bound when decoded.
                raise _Unreadable("the answer is %s-encoded, though identity was asked for" % _short(encoding, 40),
                                  "answer-encoded")
            data = _read_bounded(response, max_bytes)
            if expired:
                # Shut by the deadline: http.client may take the cut for the end of the headers
                # and hand over an empty "200"; whatever was read is not the answer.
                raise TimeoutError("deadline")
            if len(data) > max_bytes:
                raise _Unreadable("the answer is larger than %d bytes" % max_bytes, "answer-too-large")
            length = response.headers.get("Content-Length")
            if length is not None and method != "HEAD" and response.status not in (204, 304) and (
                not length.strip().isdigit() or int(length) != len(data)
            ):
                raise _Truncated("the answer ended after %d of %s bytes" % (len(data), _short(length, 20)))
        except _Unreadable as e:
            if response is not None:
                response.close()
            text = e.args[0] + ": refused"
            if may_run:
                text += "; the function may have run (not retried automatically)"
            raise IotInvokeError(text, EX_PROTOCOL, hop, response.status if response else None,
                                 reason=e.reason) from None
        except Exception as e:
            if response is not None:
                response.close()
            if not self._ready:  # never connected: nothing was sent
                error = _connect_error(hop, url, e, client_cert is not None, ca, ca_source)
                if error.reason != "clock-wrong" or learning:
                    raise error from None
                learned, window = self._learn_time(url, ca, client_cert)
                if not learned:
                    error.message += window
                    raise error from None
            else:
                raise _exchange_error(hop, url, e, client_cert is not None, may_run, bool(expired), deadline_s) from None
            raise _exchange_error(hop, url, e, client_cert is not None, may_run, bool(expired), deadline_s) from None
        finally:
            if timer is not None:
                timer.cancel()
            if response is not None:
                response.release_conn()
        if learned:  # the board's clock was behind; now the corrected clock checks the certificate
            return self.send(hop, method, url, headers, body, read_timeout=read_timeout, max_bytes=max_bytes, ca=ca,
                             ca_source=ca_source, client_cert=client_cert, may_run=may_run, deadline_s=deadline_s,
                             learning=True)
        self._log("%s: %s %s -> %d (%.0f ms)" % (hop, method, url.split("?")[0], response.status, (time.monotonic() - started) * 1000))
        return _Response(response.status, response.headers, data)

    def _check_leaf_dates(self, certificate: dict[str, Any]) -> None:
        assert self._clock is not None
        _check_validity(certificate, self._clock.now())

    def _learn_time(self, url: str, ca: str | None, client_cert: tuple[str, str] | None) -> tuple[bool, str]:
        """The board's clock is before the server certificate's validity (it booted without an RTC).
        Learn AWS's time from a harmless request on a connection whose chain and name are verified
        but not its dates, and move the corrected clock forward to it, never backward, and only to
        a time at which that certificate is valid; see README "Clock at boot". Returns whether it
        learned, and the certificate's validity window for the error line when not."""
        import urllib3

        if self._clock is None:
            return False, ""
        seen: list[dict[str, Any]] = []
        manager = self._manager(ca, client_cert, url, seen.append)
        try:
            probe = manager.request("HEAD", url.split("?")[0].rsplit("/", 1)[0] + "/", retries=False, redirect=False,
                                    timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.connect_timeout),
                                    headers={"User-Agent": USER_AGENT})
            probe.release_conn()
        except Exception as e:
            self._log("clock: cannot learn AWS's time: %s" % _net_reason(e))
            return False, ""
        window = ""
        if seen:
            window = " (the certificate is valid from %s to %s)" % (seen[-1].get("notBefore"), seen[-1].get("notAfter"))
        server = _http_date(probe.headers.get("Date"))
        local = self._clock.local()
        if server is None or not seen or server < max(local, CLOCK_FLOOR) + CLOCK_SKEW_THRESHOLD_S:
            return False, window  # forward only: a Date no later than the board's own clock teaches nothing
        try:
            _check_validity(seen[-1], server)
        except _CertificateTime:
            return False, window
        self._clock.learn(server)
        self._log("clock: the board's clock is %.0f s behind AWS's (learned at boot); TLS dates now checked "
                  "against AWS's time" % (server - local))
        return True, ""


class _BoardClock:
    """What the transport needs of the Client's clock: the corrected time, the board's own, their
    difference, and a way to move the corrected clock forward."""

    def __init__(self, now: Callable[[], float], local: Callable[[], float], learn: Callable[[float], None]) -> None:
        self.now = now
        self.local = local
        self.learn = learn

    def offset(self) -> float:
        return self.now() - self.local()


class _CertificateTime(Exception):
    """A server certificate not valid at the corrected time."""

    def __init__(self, when: float, not_before: float, not_after: float) -> None:
        expired = when > not_after
        super().__init__("the server certificate is %s at %s (valid %s to %s)" % (
            "expired" if expired else "not yet valid", _iso8601(when), _iso8601(not_before), _iso8601(not_after)))
        self.expired = expired


def _check_validity(certificate: dict[str, Any], when: float) -> None:
    import ssl

    try:
        not_before = float(ssl.cert_time_to_seconds(certificate["notBefore"]))
        not_after = float(ssl.cert_time_to_seconds(certificate["notAfter"]))
    except (KeyError, TypeError, ValueError):
        raise _CertificateTime(when, 0.0, 0.0) from None
    if not not_before <= when <= not_after:
        raise _CertificateTime(when, not_before, not_after)


class _Unreadable(Exception):
    """An answer iotinvoke refuses to read (compressed, oversized)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Truncated(Exception):
    """An answer shorter than its framing announced."""


def _read_bounded(response: Any, max_bytes: int) -> bytes:
    # In chunks: one read(max_bytes + 1) makes Python 3.9's http.client allocate the full 6 MB.
    chunks = []
    size = 0
    while size <= max_bytes:
        chunk = response.read(65536, decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _abort(connection: Any) -> None:
    """Shut a connection's socket from another thread: the blocked read returns at once."""
    import socket

    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def _socket_options() -> list[tuple[int, int, int]]:
    """TCP_NODELAY as urllib3 sets it, and TCP keepalive: a NAT drops a connection idle for longer
    than its timeout (350 s on AWS NAT gateways, often less on mobile carriers), which a
    synchronous invoke of up to 900 s is while the function runs. AWS's advice is keepalive below
    that timeout (https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html)."""
    import socket

    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", TCP_KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", TCP_KEEPALIVE_INTERVAL_S),
                        ("TCP_KEEPCNT", TCP_KEEPALIVE_PROBES)):
        if hasattr(socket, name):  # Linux; other systems keep their defaults
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def _is_ip_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _proxy_for(url: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str | None] | None:
    """(proxy URL without credentials, "user:password" or None) for an https URL, from HTTPS_PROXY /
    NO_PROXY (either case), as curl and boto3 read them; a malformed HTTPS_PROXY is a ConfigError."""
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    if not proxy:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    host = _host_port(url)[0].lower()
    for entry in no_proxy.replace(" ", "").split(","):
        entry = entry.lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    from urllib.parse import unquote, urlsplit

    text = proxy if "://" in proxy else "http://" + proxy
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        # Never echo the value: it may hold a password.
        raise ConfigError("HTTPS_PROXY is not a proxy URL such as http://proxy.example:3128", reason="proxy-invalid")
    auth = None
    if parts.username is not None:
        auth = unquote(parts.username) + ":" + unquote(parts.password or "")
    return "%s://%s" % (parts.scheme, parts.netloc.rpartition("@")[2]), auth


# The default trust anchors, used when none of ca, ca_bundle and AWS_CA_BUNDLE is set: the five
# roots of Amazon Trust Services, which AWS recommends a custom trust store to hold
# (https://www.amazontrust.com/repository/). The AWS IoT credentials provider (like every ATS
# endpoint of AWS IoT Core: https://docs.aws.amazon.com/iot/latest/developerguide/server-authentication.html)
# and the STS and Lambda endpoints present chains to Amazon Root CA 1-4, cross-signed by the
# Starfield Services root. Parsing these five costs about 9 M instructions per call; certifi's
# whole bundle (about 120 roots, plus importing certifi) costs about 270 M. The certificates are
# public; tests/test_trust.py checks that each is, byte for byte, the one in certifi's bundle.
_AMAZON_ROOTS = (
    # Amazon Root CA 1 (RSA 2048, valid until 2038-01-17), SHA-256 8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF\n"
    "ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6\n"
    "b24gUm9vdCBDQSAxMB4XDTE1MDUyNjAwMDAwMFoXDTM4MDExNzAwMDAwMFowOTEL\n"
    "MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv\n"
    "b3QgQ0EgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALJ4gHHKeNXj\n"
    "ca9HgFB0fW7Y14h29Jlo91ghYPl0hAEvrAIthtOgQ3pOsqTQNroBvo3bSMgHFzZM\n"
    "9O6II8c+6zf1tRn4SWiw3te5djgdYZ6k/oI2peVKVuRF4fn9tBb6dNqcmzU5L/qw\n"
    "IFAGbHrQgLKm+a/sRxmPUDgH3KKHOVj4utWp+UhnMJbulHheb4mjUcAwhmahRWa6\n"
    "VOujw5H5SNz/0egwLX0tdHA114gk957EWW67c4cX8jJGKLhD+rcdqsq08p8kDi1L\n"
    "93FcXmn/6pUCyziKrlA4b9v7LWIbxcceVOF34GfID5yHI9Y/QCB/IIDEgEw+OyQm\n"
    "jgSubJrIqg0CAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC\n"
    "AYYwHQYDVR0OBBYEFIQYzIU07LwMlJQuCFmcx7IQTgoIMA0GCSqGSIb3DQEBCwUA\n"
    "A4IBAQCY8jdaQZChGsV2USggNiMOruYou6r4lK5IpDB/G/wkjUu0yKGX9rbxenDI\n"
    "U5PMCCjjmCXPI6T53iHTfIUJrU6adTrCC2qJeHZERxhlbI1Bjjt/msv0tadQ1wUs\n"
    "N+gDS63pYaACbvXy8MWy7Vu33PqUXHeeE6V/Uq2V8viTO96LXFvKWlJbYK8U90vv\n"
    "o/ufQJVtMVT8QtPHRh8jrdkPSHCa2XV4cdFyQzR1bldZwgJcJmApzyMZFo6IQ6XU\n"
    "5MsI+yMRQ+hDKXJioaldXgjUkK642M4UwtBV8ob2xJNDd2ZhwLnoQdeXeGADbkpy\n"
    "rqXRfboQnoZsG4q5WTP468SQvvG5\n"
    "-----END CERTIFICATE-----\n"
    # Amazon Root CA 2 (RSA 4096, valid until 2040-05-26), SHA-256 1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4
    "-----BEGIN CERTIFICATE-----\n"
    "MIIFQTCCAymgAwIBAgITBmyf0pY1hp8KD+WGePhbJruKNzANBgkqhkiG9w0BAQwF\n"
    "ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6\n"
    "b24gUm9vdCBDQSAyMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTEL\n"
    "MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv\n"
    "b3QgQ0EgMjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK2Wny2cSkxK\n"
    "gXlRmeyKy2tgURO8TW0G/LAIjd0ZEGrHJgw12MBvIITplLGbhQPDW9tK6Mj4kHbZ\n"
    "W0/jTOgGNk3Mmqw9DJArktQGGWCsN0R5hYGCrVo34A3MnaZMUnbqQ523BNFQ9lXg\n"
    "1dKmSYXpN+nKfq5clU1Imj+uIFptiJXZNLhSGkOQsL9sBbm2eLfq0OQ6PBJTYv9K\n"
    "8nu+NQWpEjTj82R0Yiw9AElaKP4yRLuH3WUnAnE72kr3H9rN9yFVkE8P7K6C4Z9r\n"
    "2UXTu/Bfh+08LDmG2j/e7HJV63mjrdvdfLC6HM783k81ds8P+HgfajZRRidhW+me\n"
    "z/CiVX18JYpvL7TFz4QuK/0NURBs+18bvBt+xa47mAExkv8LV/SasrlX6avvDXbR\n"
    "8O70zoan4G7ptGmh32n2M8ZpLpcTnqWHsFcQgTfJU7O7f/aS0ZzQGPSSbtqDT6Zj\n"
    "mUyl+17vIWR6IF9sZIUVyzfpYgwLKhbcAS4y2j5L9Z469hdAlO+ekQiG+r5jqFoz\n"
    "7Mt0Q5X5bGlSNscpb/xVA1wf+5+9R+vnSUeVC06JIglJ4PVhHvG/LopyboBZ/1c6\n"
    "+XUyo05f7O0oYtlNc/LMgRdg7c3r3NunysV+Ar3yVAhU/bQtCSwXVEqY0VThUWcI\n"
    "0u1ufm8/0i2BWSlmy5A5lREedCf+3euvAgMBAAGjQjBAMA8GA1UdEwEB/wQFMAMB\n"
    "Af8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSwDPBMMPQFWAJI/TPlUq9LhONm\n"
    "UjANBgkqhkiG9w0BAQwFAAOCAgEAqqiAjw54o+Ci1M3m9Zh6O+oAA7CXDpO8Wqj2\n"
    "LIxyh6mx/H9z/WNxeKWHWc8w4Q0QshNabYL1auaAn6AFC2jkR2vHat+2/XcycuUY\n"
    "+gn0oJMsXdKMdYV2ZZAMA3m3MSNjrXiDCYZohMr/+c8mmpJ5581LxedhpxfL86kS\n"
    "k5Nrp+gvU5LEYFiwzAJRGFuFjWJZY7attN6a+yb3ACfAXVU3dJnJUH/jWS5E4ywl\n"
    "7uxMMne0nxrpS10gxdr9HIcWxkPo1LsmmkVwXqkLN1PiRnsn/eBG8om3zEK2yygm\n"
    "btmlyTrIQRNg91CMFa6ybRoVGld45pIq2WWQgj9sAq+uEjonljYE1x2igGOpm/Hl\n"
    "urR8FLBOybEfdF849lHqm/osohHUqS0nGkWxr7JOcQ3AWEbWaQbLU8uz/mtBzUF+\n"
    "fUwPfHJ5elnNXkoOrJupmHN5fLT0zLm4BwyydFy4x2+IoZCn9Kr5v2c69BoVYh63\n"
    "n749sSmvZ6ES8lgQGVMDMBu4Gon2nL2XA46jCfMdiyHxtN/kHNGfZQIG6lzWE7OE\n"
    "76KlXIx3KadowGuuQNKotOrN8I1LOJwZmhsoVLiJkO/KdYE+HvJkJMcYr07/R54H\n"
    "9jVlpNMKVv/1F2Rs76giJUmTtt8AF9pYfl3uxRuw0dFfIRDH+fO6AgonB8Xx1sfT\n"
    "4PsJYGw=\n"
    "-----END CERTIFICATE-----\n"
    # Amazon Root CA 3 (EC P-256, valid until 2040-05-26), SHA-256 18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBtjCCAVugAwIBAgITBmyf1XSXNmY/Owua2eiedgPySjAKBggqhkjOPQQDAjA5\n"
    "MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g\n"
    "Um9vdCBDQSAzMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG\n"
    "A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg\n"
    "Q0EgMzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCmXp8ZBf8ANm+gBG1bG8lKl\n"
    "ui2yEujSLtf6ycXYqm0fc4E7O5hrOXwzpcVOho6AF2hiRVd9RFgdszflZwjrZt6j\n"
    "QjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSr\n"
    "ttvXBp43rDCGB5Fwx5zEGbF4wDAKBggqhkjOPQQDAgNJADBGAiEA4IWSoxe3jfkr\n"
    "BqWTrBqYaGFy+uGh0PsceGCmQ5nFuMQCIQCcAu/xlJyzlvnrxir4tiz+OpAUFteM\n"
    "YyRIHN8wfdVoOw==\n"
    "-----END CERTIFICATE-----\n"
    # Amazon Root CA 4 (EC P-384, valid until 2040-05-26), SHA-256 e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092
    "-----BEGIN CERTIFICATE-----\n"
    "MIIB8jCCAXigAwIBAgITBmyf18G7EEwpQ+Vxe3ssyBrBDjAKBggqhkjOPQQDAzA5\n"
    "MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g\n"
    "Um9vdCBDQSA0MB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG\n"
    "A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg\n"
    "Q0EgNDB2MBAGByqGSM49AgEGBSuBBAAiA2IABNKrijdPo1MN/sGKe0uoe0ZLY7Bi\n"
    "9i0b2whxIdIA6GO9mif78DluXeo9pcmBqqNbIJhFXRbb/egQbeOc4OO9X4Ri83Bk\n"
    "M6DLJC9wuoihKqB1+IGuYgbEgds5bimwHvouXKNCMEAwDwYDVR0TAQH/BAUwAwEB\n"
    "/zAOBgNVHQ8BAf8EBAMCAYYwHQYDVR0OBBYEFNPsxzplbszh2naaVvuc84ZtV+WB\n"
    "MAoGCCqGSM49BAMDA2gAMGUCMDqLIfG9fhGt0O9Yli/W651+kI0rz2ZVwyzjKKlw\n"
    "CkcO8DdZEv8tmZQoTipPNU0zWgIxAOp1AE47xDqUEpHJWEadIRNyp4iciuRMStuW\n"
    "1KyLa2tJElMzrdfkviT8tQp21KW8EA==\n"
    "-----END CERTIFICATE-----\n"
    # Starfield Services Root Certificate Authority - G2 (RSA 2048, valid until 2037-12-31), SHA-256 568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5
    "-----BEGIN CERTIFICATE-----\n"
    "MIID7zCCAtegAwIBAgIBADANBgkqhkiG9w0BAQsFADCBmDELMAkGA1UEBhMCVVMx\n"
    "EDAOBgNVBAgTB0FyaXpvbmExEzARBgNVBAcTClNjb3R0c2RhbGUxJTAjBgNVBAoT\n"
    "HFN0YXJmaWVsZCBUZWNobm9sb2dpZXMsIEluYy4xOzA5BgNVBAMTMlN0YXJmaWVs\n"
    "ZCBTZXJ2aWNlcyBSb290IENlcnRpZmljYXRlIEF1dGhvcml0eSAtIEcyMB4XDTA5\n"
    "MDkwMTAwMDAwMFoXDTM3MTIzMTIzNTk1OVowgZgxCzAJBgNVBAYTAlVTMRAwDgYD\n"
    "VQQIEwdBcml6b25hMRMwEQYDVQQHEwpTY290dHNkYWxlMSUwIwYDVQQKExxTdGFy\n"
    "ZmllbGQgVGVjaG5vbG9naWVzLCBJbmMuMTswOQYDVQQDEzJTdGFyZmllbGQgU2Vy\n"
    "dmljZXMgUm9vdCBDZXJ0aWZpY2F0ZSBBdXRob3JpdHkgLSBHMjCCASIwDQYJKoZI\n"
    "hvcNAQEBBQADggEPADCCAQoCggEBANUMOsQq+U7i9b4Zl1+OiFOxHz/Lz58gE20p\n"
    "OsgPfTz3a3Y4Y9k2YKibXlwAgLIvWX/2h/klQ4bnaRtSmpDhcePYLQ1Ob/bISdm2\n"
    "8xpWriu2dBTrz/sm4xq6HZYuajtYlIlHVv8loJNwU4PahHQUw2eeBGg6345AWh1K\n"
    "Ts9DkTvnVtYAcMtS7nt9rjrnvDH5RfbCYM8TWQIrgMw0R9+53pBlbQLPLJGmpufe\n"
    "hRhJfGZOozptqbXuNC66DQO4M99H67FrjSXZm86B0UVGMpZwh94CDklDhbZsc7tk\n"
    "6mFBrMnUVN+HL8cisibMn1lUaJ/8viovxFUcdUBgF4UCVTmLfwUCAwEAAaNCMEAw\n"
    "DwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFJxfAN+q\n"
    "AdcwKziIorhtSpzyEZGDMA0GCSqGSIb3DQEBCwUAA4IBAQBLNqaEd2ndOxmfZyMI\n"
    "bw5hyf2E3F/YNoHN2BtBLZ9g3ccaaNnRbobhiCPPE95Dz+I0swSdHynVv/heyNXB\n"
    "ve6SbzJ08pGCL72CQnqtKrcgfU28elUSwhXqvfdqlS5sdJ/PHLTyxQGjhdByPq1z\n"
    "qwubdQxtRbeOlKyWN7Wg0I8VRw7j6IPdj/3vQQF3zCepYoUz8jcI73HPdwbeyBkd\n"
    "iEDPfUYd/x7H4c7/I9vG+o1VTqkC50cRRj70/b17KSa7qWFiNyi2LSr2EIZkyXCn\n"
    "0q23KXB56jzaYyWf/Wi3MOxw+3WKt21gZ7IeyLnp2KhvAotnDU0mV3HaIPzBSlCN\n"
    "sSi6\n"
    "-----END CERTIFICATE-----\n"
)
_AMAZON_ROOTS_SOURCE = "Amazon Root CA 1-4 and Starfield Services Root G2 (built in)"


def _default_trust() -> tuple[str, str]:
    """The trust used when no CA file is configured: (PEM text for SSLContext's cadata, where it
    comes from, for messages such as "default trust: Amazon Root CA 1-4 ... (built in)")."""
    return _AMAZON_ROOTS, _AMAZON_ROOTS_SOURCE


def _ssl_context(
    ca: str | None,
    client_cert: tuple[str, str] | None,
    ip_host: str | None = None,
    leaf_check: Callable[[Any], None] | None = None,
) -> Any:
    """A TLS context that verifies the server's chain and name, TLS 1.2 or later, with the device
    certificate when given. ``leaf_check``: OpenSSL skips certificate dates (it would check them
    against the board's clock, which is known to be behind); the transport calls leaf_check with
    the verified server certificate right after each handshake, before anything is sent."""
    import ssl

    context_class: Any = ssl.SSLContext
    if ip_host is not None:

        class _BoundContext(ssl.SSLContext):
            def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
                if not kwargs.get("server_hostname"):
                    kwargs["server_hostname"] = ip_host
                return super().wrap_socket(*args, **kwargs)

        context_class = _BoundContext
    try:
        context = context_class(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        if ca is None:
            context.load_verify_locations(cadata=_default_trust()[0])
        else:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise IotInvokeError("cannot read the CA file %s: %s" % (ca, _os_reason(e)), EX_NOINPUT, "config",
                             reason="ca-file-unreadable") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if leaf_check is not None:
        context.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
        context.iotinvoke_leaf_check = leaf_check
    if client_cert:
        cert, key = client_cert
        for what, path in (("certificate", cert), ("private key", key)):
            if not os.access(path, os.R_OK):
                reason = "missing" if not os.path.exists(path) else "not readable by this user"
                raise IotInvokeError("device %s %s: %s" % (what, path, reason), EX_NOINPUT, "iot",
                                     reason="device-file-unreadable")
        _load_device_key(context, cert, key)
    return context

# --- What a failed connection means ---------------------------------------------------------------


# TLS alerts a server sends when it refuses the client's certificate (RFC 8446 section 6.2).
_CERTIFICATE_ALERTS = ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED",
                       "CERTIFICATE_REVOKED", "CERTIFICATE_EXPIRED", "ACCESS_DENIED", "UNSUPPORTED_CERTIFICATE")
# OpenSSL's X509_V_ERR codes that mean "the certificate is not valid at this time".
_X509_TIME_ERRORS = (9, 10)  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
_X509_V_FLAG_NO_CHECK_TIME = 0x200000  # OpenSSL 1.1.0+: verify the chain and name, not the dates
_X509_NAME_ERRORS = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH


def _verify_failure(error: BaseException) -> tuple[int | None, str] | None:
    """(OpenSSL verify code, its message) when error is, or wraps, a certificate verification failure."""
    import ssl

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 6:
        chain.append(current)
        inner = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = inner or current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return link.verify_code, str(link.verify_message)
    for link in chain:  # wrapped as text only
        text = str(link)
        if type(link).__name__ == "CertificateError" or "CERTIFICATE_VERIFY_FAILED" in text:
            lowered = text.lower()
            code = 62 if "match" in lowered else 9 if "not yet valid" in lowered else 10 if "expired" in lowered else None
            return code, text
    return None


def _connect_error(hop: str, url: str, error: BaseException, mutual: bool, ca: str | None,
                   ca_source: str) -> IotInvokeError:
    """A failure before anything was sent: DNS, TCP, the proxy tunnel, or the TLS handshake."""
    import socket

    host = _host_port(url)[0]
    text = _net_reason(error)
    if isinstance(error, _CertificateTime):
        if error.expired:
            return IotInvokeError("%s: %s, by AWS's time as learned at boot; the device certificate was not sent"
                                  % (host, error), EX_UNAVAILABLE, hop, reason="tls-certificate-expired")
        return IotInvokeError("%s: %s: the board's clock is wrong (check NTP: timedatectl status)" % (host, error),
                              EX_TEMPFAIL, hop, reason="clock-wrong", retry_after=CLOCK_WAIT_S)
    verify = _verify_failure(error)
    if verify is not None:
        code, detail = verify
        if code in _X509_NAME_ERRORS:
            return IotInvokeError(
                "the server at %s presented a certificate for another name (%s): check the endpoint; the "
                "device certificate was not sent" % (host, _short(detail, 120)), EX_UNAVAILABLE, hop,
                reason="tls-name-mismatch")
        if code in _X509_TIME_ERRORS:
            return IotInvokeError(
                "the server certificate of %s is %s at this board's time %s: the clock is wrong (check "
                "NTP: timedatectl status); retry once the clock is set" % (
                    host, "not yet valid" if code == 9 else "expired", _iso8601(time.time())),
                EX_TEMPFAIL, hop, reason="clock-wrong", retry_after=CLOCK_WAIT_S)
        source = "%s (%s)" % (ca, ca_source) if ca else "the default trust, " + _default_trust()[1]
        return IotInvokeError(
            "the server certificate of %s is not trusted by %s: %s" % (host, source, _short(detail, 120)),
            EX_UNAVAILABLE, hop, reason="tls-untrusted")
    upper = str(error).upper()
    if mutual and any("ALERT_" + alert in upper for alert in _CERTIFICATE_ALERTS):
        return _certificate_refused(hop, str(error))
    if "WRONG_VERSION_NUMBER" in upper or "UNSUPPORTED_PROTOCOL" in upper or "ALERT_PROTOCOL_VERSION" in upper:
        return IotInvokeError("%s does not speak TLS 1.2 or later on that port: %s" % (host, text), EX_UNAVAILABLE, hop,
                              reason="tls-protocol")
    if "Tunnel connection failed" in str(error) or type(error).__name__ == "ProxyError":
        if " 407" in str(error):
            return IotInvokeError("the proxy refused its credentials (HTTP 407): check HTTPS_PROXY's user and password",
                                  EX_CONFIG, hop, reason="proxy-auth")
        return _Retryable("the proxy could not open a tunnel to %s: %s" % (host, text), EX_TEMPFAIL, hop,
                          reason="proxy-failed")
    inner: BaseException | None = error
    while inner is not None and not isinstance(inner, socket.gaierror):
        inner = inner.__cause__ or inner.__context__
    if inner is not None or type(error).__name__ == "NameResolutionError":
        return _Retryable("cannot resolve %s: %s" % (host, text), EX_TEMPFAIL, hop, reason="dns-failed")
    if "timed out" in str(error).lower() or isinstance(error, socket.timeout):
        return _Retryable("connecting to %s timed out" % host, EX_TEMPFAIL, hop, reason="connect-timeout")
    if "SSL" in type(error).__name__ or "ssl" in type(error).__module__ or "_ssl.c" in str(error):
        return _Retryable("the TLS handshake with %s failed: %s" % (host, text), EX_TEMPFAIL, hop,
                          reason="tls-interrupted")
    return _Retryable("cannot connect to %s: %s" % (host, text), EX_TEMPFAIL, hop, reason="connect-failed")


def _certificate_refused(hop: str, text: str) -> IotInvokeError:
    return IotInvokeError(
        "the credentials provider refused the device certificate during the TLS handshake (not registered "
        "with AWS IoT, inactive, expired, or signed by an unknown CA): %s" % _short(text),
        EX_NOPERM, hop, reason="certificate-refused")


def _exchange_error(hop: str, url: str, error: BaseException, mutual: bool, may_run: bool, expired: bool,
                    deadline_s: float | None) -> IotInvokeError:
    """A failure after the request may have gone out (urllib3 raises the same errors, ProxyError and
    SSLError included, for a connection torn before or after the server acted on it)."""
    if mutual and any("ALERT_" + alert in str(error).upper() for alert in _CERTIFICATE_ALERTS):
        return _certificate_refused(hop, str(error))  # TLS 1.3: the refusal arrives with the first read
    if expired:
        what, reason = "no complete answer within %.0f s" % (deadline_s or 0), "answer-deadline"
    elif isinstance(error, _Truncated) or "IncompleteRead" in repr(error) or "ProtocolError" in type(error).__name__:
        what, reason = "the answer was cut short (%s)" % _net_reason(error), "answer-truncated"
    elif "timed out" in str(error).lower() or type(error).__name__ == "ReadTimeoutError":
        what, reason = "no answer in time (%s)" % _net_reason(error), "answer-timeout"
    else:
        what, reason = "the connection failed (%s)" % _net_reason(error), "answer-lost"
    if not may_run:
        return _Retryable("%s from %s" % (what, url.split("?")[0]), EX_TEMPFAIL, hop, reason=reason)
    return IotInvokeError(
        "the invoke was sent but %s: the function may have run; not retried automatically" % what,
        EX_IOERR, hop, reason=reason)

# --- Device keys in hardware (OpenSSL providers: PKCS#11 tokens, TPM 2.0 via tpm2-pkcs11) ---------
#
# load_cert_chain ends in SSL_CTX_use_PrivateKey_file, which OpenSSL 3 decodes through its loaded
# providers: with pkcs11-provider loaded, [iot] key may name a "PKCS#11 provider URI" PEM file and
# the key never leaves the token. OpenSSL's own errors for it are vague (a wrong PIN and an absent
# token both end as "PEM lib" or a stray errno), so on failure the module is asked directly which
# it is, without logging in: a login with a wrong PIN would use up one more of the token's tries.

_PROVIDER_KEY_HEADER = b"-----BEGIN PKCS#11 PROVIDER URI-----"  # pkcs11-provider's key file form
_BUILTIN_PROVIDERS = frozenset({"default", "base", "fips", "legacy", "null"})
# CK_TOKEN_INFO's flag and C_Initialize's return value (PKCS#11 v2.40, pkcs11t.h)
_CKF_USER_PIN_LOCKED = 0x00040000
_CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
# Key files and the PIN file load_config found for them; _Transport keys its TLS set-ups by
# (ca, cert), so the PIN file travels here rather than through it.
_PIN_FILES: dict[str, str] = {}

# Why the device key cannot be used: reason -> (exit status, cause, fix), for the error and --doctor.
_KEY_REASONS: dict[str, tuple[int, str, str]] = {
    "key-provider-missing": (
        EX_CONFIG,
        "the key file holds a PKCS#11 URI, but no OpenSSL provider that reads it is loaded",
        "set openssl_conf in [iot] (or OPENSSL_CONF) to an OpenSSL configuration that activates pkcs11-provider "
        "(Debian 12: apt-get install -t bookworm-backports pkcs11-provider)",
    ),
    "pkcs11-module-missing": (
        EX_CONFIG,
        "the PKCS#11 module named by pkcs11-module-path (or PKCS11_PROVIDER_MODULE) is not there or does not load",
        "install the token's PKCS#11 module, or correct pkcs11-module-path in the OpenSSL configuration",
    ),
    "pkcs11-token-absent": (
        EX_UNAVAILABLE,
        "no token that the key's URI names is present: unplugged, a wrong token= label, or the module cannot "
        "reach it (SOFTHSM2_CONF, TPM2_PKCS11_STORE / TPM2_PKCS11_TCTI, the TPM resource manager)",
        "plug in or start the token; compare the URI's token= with the labels the module lists (p11tool --list-tokens)",
    ),
    "pkcs11-pin-locked": (
        EX_NOPERM,
        "the token's user PIN is locked after too many wrong tries",
        "unlock it with the security officer PIN (softhsm2-util / tpm2_ptool initpin, or the vendor's tool), "
        "then correct pin_file",
    ),
    "pkcs11-wrong-pin": (
        EX_NOPERM,
        "the token refused the PIN (or holds no private key with the URI's object= / id=); PIN retries are "
        "limited and the token locks after a few",
        "correct the PIN in pin_file (or the URI's pin-value) before the next try; check the key with "
        "p11tool --list-privkeys --login",
    ),
    "pkcs11-pin-missing": (
        EX_CONFIG,
        "the token needs a PIN and none is configured",
        "set pin_file in [iot] to a file (mode 0600) holding the PIN",
    ),
    "pin-file-insecure": (
        EX_CONFIG,
        "the PIN file may be read by other users, or belongs to another user",
        "chown it to the user that runs iotinvoke and chmod 600 it",
    ),
    "pin-file-missing": (EX_NOINPUT, "the PIN file named by pin_file is missing or unreadable", "check pin_file in [iot]"),
    "key-cert-mismatch": (
        EX_CONFIG,
        "the private key is not the certificate's key",
        "point cert and key at a matching pair; for a token, issue the certificate for the key in the token",
    ),
    "device-key-unusable": (
        EX_NOINPUT,
        "the device certificate or key is missing, unreadable, or not PEM",
        "check cert and key in [iot]; they must be the files AWS IoT issued together (or a PKCS#11 URI key file)",
    ),
}


def _key_error(reason: str, message: str) -> IotInvokeError:
    """The device key cannot be used, for ``reason`` (a key of _KEY_REASONS, which gives the status)."""
    return IotInvokeError(message, _KEY_REASONS[reason][0], "iot", reason=reason)


def _apply_openssl_conf(conf: str, path: str) -> str:
    """Point OPENSSL_CONF at conf for this process; OpenSSL reads it once, when it initialises."""
    if not os.access(conf, os.R_OK):
        reason = "missing" if not os.path.exists(conf) else "not readable by this user"
        raise ConfigError("OpenSSL configuration %s: %s" % (conf, reason), path, "iot", "openssl_conf",
                          reason="openssl-conf-unreadable")
    if os.environ.get("OPENSSL_CONF") != conf:
        # hashlib or ssl already imported: OpenSSL has read its configuration, a change is ignored.
        if "_ssl" in sys.modules or "_hashlib" in sys.modules:
            raise ConfigError(
                "cannot take effect: OpenSSL is already initialised in this process; set OPENSSL_CONF=%s in "
                "its environment before it starts" % conf,
                path,
                "iot",
                "openssl_conf",
                reason="openssl-conf-too-late",
            )
        os.environ["OPENSSL_CONF"] = conf
    return conf


def _load_device_key(context: Any, cert: str, key: str) -> None:
    """load_cert_chain with the PIN from pin_file; each failure becomes one IotInvokeError with its reason."""
    import ssl

    uri = _provider_key_uri(key)
    pin_file = _PIN_FILES.get(key)
    pin = _read_pin(pin_file) if pin_file else b""
    asked: list[bool] = []

    def password() -> bytes:
        asked.append(True)
        # CPython's load_cert_chain reports a stale errno in preference to OpenSSL's error, and
        # a module may leave one behind before the PIN is asked for (SoftHSM2's C_Initialize: a
        # failed dlopen of OpenSSL's rdrand engine): a successful write (CPython clears errno
        # first) lets a later failure say what it is (key values mismatch, PEM lib).
        try:
            os.write(2, b"")
        except OSError:
            pass
        return pin

    try:
        # The callback also answers an encrypted PEM key: without it OpenSSL would prompt on a
        # terminal that a C caller does not have. An empty PIN makes pkcs11-provider skip the
        # login instead of spending one of the token's tries.
        with _QuietStderr(uri is not None):
            context.load_cert_chain(cert, key, password=password if uri is not None else lambda: pin)
    except (OSError, ssl.SSLError) as e:
        raise _device_key_error(cert, key, e, uri, bool(pin), bool(asked)) from None


def _provider_key_uri(key: str) -> str | None:
    """The PKCS#11 URI in a provider key file (DER: SEQUENCE {VisibleString, UTF8String uri}), or None."""
    try:
        with open(key, "rb") as f:
            head = f.read(8192)
    except OSError:
        return None
    if not head.lstrip().startswith(_PROVIDER_KEY_HEADER):
        return None
    import base64
    import binascii

    body = head.lstrip()[len(_PROVIDER_KEY_HEADER) :].split(b"-----END", 1)[0]
    try:
        der = base64.b64decode(b"".join(body.split()))
        fields: list[bytes] = []
        at = _der_header(der, 0)[1]  # into the SEQUENCE
        while at < len(der) and len(fields) < 2:
            size, start = _der_header(der, at)
            fields.append(der[start : start + size])
            at = start + size
        return fields[1].decode("utf-8")
    except (binascii.Error, IndexError, ValueError):
        return ""  # a provider key file, but not one this code can read: the provider decides


def _der_header(der: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the contents) of the DER element at ``at``."""
    size = der[at + 1]
    start = at + 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(der[start : start + count], "big")
        start += count
    if start + size > len(der):
        raise ValueError("truncated")
    return size, start


def _uri_attributes(uri: str) -> tuple[dict[str, str], dict[str, str]]:
    """RFC 7512 path and query attributes, percent-decoded."""
    from urllib.parse import unquote

    path, _, query = uri.partition(":")[2].partition("?")
    split = [dict(part.partition("=")[::2] for part in text.split(sep) if part) for text, sep in ((path, ";"), (query, "&"))]
    return {k: unquote(v) for k, v in split[0].items()}, {k: unquote(v) for k, v in split[1].items()}


def _read_pin(pin_file: str) -> bytes:
    """The PIN: the file's first line. The file must be the caller's own and not readable by others."""
    import stat

    try:
        info = os.stat(pin_file)
        if info.st_mode & 0o077:
            raise _key_error(
                "pin-file-insecure",
                "PIN file %s has mode %s: it must be readable by its owner only (chmod 600)"
                % (pin_file, oct(stat.S_IMODE(info.st_mode))[2:].zfill(4)),
            )
        if info.st_uid != os.geteuid():
            raise _key_error(
                "pin-file-insecure", "PIN file %s belongs to uid %d, not to this user (uid %d)" % (pin_file, info.st_uid, os.geteuid())
            )
        with open(pin_file, "rb") as f:
            return f.readline(1024).rstrip(b"\r\n")
    except OSError as e:
        raise _key_error("pin-file-missing", "PIN file %s: %s" % (pin_file, _os_reason(e))) from None


class _QuietStderr:
    """Silence file descriptor 2 while a PKCS#11 module runs: modules (tpm2-pkcs11) print their own
    error lines there, and iotinvoke's contract is one line per failure."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.saved = -1

    def __enter__(self) -> None:
        if self.active:
            try:
                sys.stderr.flush()
                self.saved = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            except (OSError, ValueError):
                self.saved = -1

    def __exit__(self, *exc: object) -> None:
        if self.saved >= 0:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.saved = -1


def _device_key_error(
    cert: str, key: str, error: Exception, uri: str | None, pin_given: bool, pin_asked: bool = True
) -> IotInvokeError:
    """Which of _KEY_REASONS made load_cert_chain fail, asked of OpenSSL and the PKCS#11 module."""
    text = str(error)
    if "KEY_VALUES_MISMATCH" in text:
        return _key_error("key-cert-mismatch", "the device key %s does not match the certificate %s" % (key, cert))
    if uri is None:
        return _key_error(
            "device-key-unusable", "cannot load the device certificate %s with key %s: %s" % (cert, key, _os_reason(error))
        )
    conf = os.environ.get("OPENSSL_CONF")
    providers = _loaded_providers()
    if providers is not None and not set(providers) - _BUILTIN_PROVIDERS:
        return _key_error(
            "key-provider-missing",
            "the device key %s is a PKCS#11 URI, but no OpenSSL provider for it is loaded (%s): set openssl_conf "
            "in [iot] to a configuration that activates pkcs11-provider"
            % (key, "OPENSSL_CONF=" + conf if conf else "OPENSSL_CONF is not set"),
        )
    conf_text = _read_text(conf) if conf else ""
    module = os.environ.get("PKCS11_PROVIDER_MODULE") or _conf_value(conf_text, "pkcs11-module-path")
    attributes, query = _uri_attributes(uri or "")
    pin_given = pin_given or bool({"pin-value", "pin-source"} & set(query)) or "pkcs11-module-token-pin" in conf_text
    want = "token " + repr(attributes["token"]) if "token" in attributes else "a token"
    if module:
        tokens = None
        try:
            with _QuietStderr(True):
                tokens = _pkcs11_tokens(module)
        except OSError as e:
            return _key_error("pkcs11-module-missing", "PKCS#11 module %s: %s" % (module, _os_reason(e)))
        if tokens is not None:
            matching = [flags for fields, flags in tokens if all(
                attributes.get(name, value) == value for name, value in zip(("token", "manufacturer", "model", "serial"), fields)
            )]
            if not matching:
                labels = ", ".join(repr(fields[0]) for fields, _ in tokens) or "none"
                return _key_error(
                    "pkcs11-token-absent",
                    "no PKCS#11 token matching the device key's URI is present (%s wanted; module %s has: %s)" % (want, module, labels),
                )
            if matching[0] & _CKF_USER_PIN_LOCKED:
                return _key_error("pkcs11-pin-locked", "the user PIN of %s is locked after too many wrong tries" % want)
    if not pin_given:
        return _key_error(
            "pkcs11-pin-missing", "%s needs a PIN for the device key %s and none is configured: set pin_file in [iot]" % (want, key)
        )
    # Without the callback a stale errno replaced OpenSSL's reason (see _load_device_key): a wrong
    # PIN and a key that is not the certificate's then look the same.
    mismatch = "" if pin_asked or not isinstance(error, OSError) else ", or its key is not the certificate's"
    return _key_error(
        "pkcs11-wrong-pin",
        "%s refused the PIN (or holds no private key the URI in %s names%s): PIN retries are limited and the "
        "token locks after a few; correct the PIN before trying again" % (want, key, mismatch),
    )


def _loaded_providers() -> list[str] | None:
    """Names of the OpenSSL providers active in this process (None when libcrypto cannot be asked)."""
    import ctypes
    import ssl

    names: list[str] = []
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]  # dlsym also searches its libcrypto
        name_of = lib.OSSL_PROVIDER_get0_name
        name_of.restype = ctypes.c_char_p
        name_of.argtypes = [ctypes.c_void_p]

        def each(provider: int, _data: int) -> int:
            names.append((name_of(provider) or b"").decode("ascii", "replace"))
            return 1

        callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(each)
        lib.OSSL_PROVIDER_do_all(None, callback, None)
    except (OSError, AttributeError):
        return None
    return names


def _pkcs11_tokens(module: str) -> list[tuple[tuple[str, str, str, str], int]] | None:
    """The tokens present in a PKCS#11 module: ((label, manufacturer, model, serial), flags), asked
    without a login. None when the module does not answer; OSError when it cannot be loaded."""
    import ctypes

    if not os.path.exists(module):
        raise FileNotFoundError(2, "No such file or directory")
    lib = ctypes.CDLL(module)
    rv = lib.C_Initialize(None)
    if rv not in (0, _CKR_CRYPTOKI_ALREADY_INITIALIZED):
        return []  # e.g. a TPM that cannot be reached: no token present
    count = ctypes.c_ulong(0)
    if lib.C_GetSlotList(1, None, ctypes.byref(count)) != 0:  # tokenPresent = CK_TRUE
        return None
    slots = (ctypes.c_ulong * max(count.value, 1))()
    if count.value and lib.C_GetSlotList(1, slots, ctypes.byref(count)) != 0:
        return None
    tokens = []
    for slot in slots[: count.value]:
        info = ctypes.create_string_buffer(512)  # CK_TOKEN_INFO is 208 bytes on LP64
        if lib.C_GetTokenInfo(ctypes.c_ulong(slot), info) == 0:
            raw = info.raw
            label, maker, model, serial = (raw[a:b].decode("utf-8", "replace").rstrip(" \0") for a, b in ((0, 32), (32, 64), (64, 80), (80, 96)))
            tokens.append(((label, maker, model, serial), ctypes.c_ulong.from_buffer_copy(raw, 96).value))
    return tokens


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def _conf_value(conf_text: str, name: str) -> str | None:
    """A directive's value in OpenSSL configuration text (the first one; no .include)."""
    for line in conf_text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None

# --- SigV4 signing (botocore's signer) ------------------------------------------------------------


def _signed_headers(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: Credentials,
    service: str,
    region: str,
    now: float,
) -> dict[str, str]:
    """Sign with botocore's SigV4Auth at time ``now`` (the corrected clock, which add_auth cannot take)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    signer = SigV4Auth(creds, service, region)
    request.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    signer._modify_request_before_signing(request)  # sets X-Amz-Date and X-Amz-Security-Token
    canonical_request = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical_request)
    signer._inject_signature_to_request(request, signer.signature(string_to_sign, request))
    return dict(request.headers.items())

# --- Payloads -------------------------------------------------------------------------------------


def _check_payload(payload: bytes, invocation_type: str) -> None:
    """Refuse, before any network call, what Lambda would refuse or misread: Lambda parses the
    payload as JSON in UTF-8 (RFC 8259), so NaN, Infinity, a byte order mark or UTF-16 text are
    refused here (Python's json would accept them), and a long integer is accepted (Python's int()
    would not)."""
    import json

    limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
    if len(payload) > limit:
        raise IotInvokeError(
            "payload is over %d bytes, Lambda's limit for %s invokes" % (limit, invocation_type),
            EX_DATAERR,
            "payload",
            reason="payload-too-large",
        )
    if not payload.strip():
        # AWS would run the function with no event; an empty standard input is far more often a
        # caller's mistake, so say what to send instead.
        raise IotInvokeError("payload is empty: pass null or {} to invoke with no event", EX_DATAERR, "payload",
                             reason="payload-empty")
    try:
        text = payload.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("it starts with a byte order mark (RFC 8259 section 8.1 forbids it)")
        json.loads(text, parse_int=len, parse_float=len, parse_constant=_not_json)
    except UnicodeDecodeError as e:
        raise IotInvokeError("payload is not UTF-8 text (byte %d)" % e.start, EX_DATAERR, "payload",
                             reason="payload-not-json") from None
    except (ValueError, RecursionError) as e:
        raise IotInvokeError("payload is not valid JSON: %s" % _short(str(e)), EX_DATAERR, "payload",
                             reason="payload-not-json") from None


def _not_json(constant: str) -> None:
    raise ValueError("%s is not JSON (RFC 8259 has no such number)" % constant)

# --- Parsing AWS's answers ------------------------------------------------------------------------


def _parse_iot_credentials(body: bytes, now: float) -> Credentials:
    import json

    try:
        document = json.loads(body)
        c = document["credentials"]
        creds = Credentials(c["accessKeyId"], c["secretAccessKey"], c["sessionToken"], _parse_time(c["expiration"]), now)
    except (ValueError, KeyError, TypeError, RecursionError):
        raise IotInvokeError(
            "the credentials provider's answer is not the expected JSON credentials document", EX_PROTOCOL, "iot", 200
        ) from None
    _check_credentials(creds, "iot")
    return creds


def _check_credentials(creds: Credentials, hop: str) -> None:
    for value in (creds.access_key, creds.secret_key, creds.token):
        # They go into HTTP headers and the cache: printable ASCII only (a signer fed anything else fails).
        if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() or len(value) > 8192:
            raise IotInvokeError("the credentials in the answer are malformed", EX_PROTOCOL, hop, 200)


def _xml_root(body: bytes, hop: str, status: int) -> Any:
    """Parse an XML answer; DTDs are refused outright, so no entity expansion can happen."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise IotInvokeError("the answer contains an XML DTD: refused", EX_PROTOCOL, hop, status)
    from xml.etree import ElementTree

    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise IotInvokeError("the answer is not well-formed XML", EX_PROTOCOL, hop, status) from None


def _xml_text(root: Any, *path: str) -> str | None:
    """Text of the first element at path of local names, ignoring namespaces."""
    node = root
    for name in path:
        node = next((child for child in node if child.tag.rsplit("}", 1)[-1] == name), None)
        if node is None:
            return None
    return node.text or ""


def _parse_assume_role(body: bytes, now: float) -> Credentials:
    root = _xml_root(body, "sts", 200)
    fields = [_xml_text(root, "AssumeRoleResult", "Credentials", name) for name in
              ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")]
    if root.tag.rsplit("}", 1)[-1] != "AssumeRoleResponse" or any(f is None for f in fields):
        raise IotInvokeError("the AssumeRole answer has no credentials", EX_PROTOCOL, "sts", 200)
    access_key, secret_key, token, expiration = ("".join(str(f).split()) for f in fields)
    try:
        creds = Credentials(access_key, secret_key, token, _parse_time(expiration), now)
    except ValueError:
        raise IotInvokeError("the AssumeRole answer has an invalid Expiration", EX_PROTOCOL, "sts", 200) from None
    _check_credentials(creds, "sts")
    return creds

def _log_tail(value: str | None) -> str | None:
    """X-Amz-Log-Result decoded; the function has run, so a garbled value must not lose its answer."""
    if not value:
        return None
    import base64
    import binascii

    try:
        return base64.b64decode(value[: MAX_LOG_TAIL_BYTES * 2], validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "(the log tail sent by Lambda is not valid base64)\n"

# --- Small helpers --------------------------------------------------------------------------------

_ISO8601_RE: Any = None


def _parse_time(text: Any) -> float:
    """ISO-8601 UTC as AWS writes it (2018-01-18T09:18:06Z, optional fraction): seconds since the epoch."""
    import calendar
    import re

    global _ISO8601_RE
    if _ISO8601_RE is None:
        _ISO8601_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|\+00:00)")
    match = _ISO8601_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("not an ISO-8601 UTC time")
    fields = tuple(int(match.group(i)) for i in range(1, 7))
    return calendar.timegm(fields + (0, 0, 0)) + float(match.group(7) or 0)


def _iso8601(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _short(text: str, limit: int = 300) -> str:
    """One line, bounded: AWS messages and exception texts go to stderr this way."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _os_reason(error: BaseException) -> str:
    return _short(getattr(error, "strerror", None) or str(error))


def _net_reason(error: BaseException) -> str:
    # urllib3 wraps the socket error; its innermost reason is the readable part.
    reason = getattr(error, "reason", None) or (error.args[-1] if error.args else error)
    text = str(reason)
    if ">: " in text:  # "<urllib3.connection.HTTPSConnection object at 0x..>: Failed to establish ..."
        text = text.split(">: ", 1)[1]
    return _short(text, 160)


def _compile(pattern: str) -> Any:
    import re

    return re.compile(pattern)


_ROLE_ALIAS_RE = _compile(r"[\w=,@-]{1,128}")
_THING_NAME_RE = _compile(r"[a-zA-Z0-9:_-]{1,128}")
_ROLE_ARN_RE = _compile(r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID_RE = _compile(r"[\w+=,.@:/-]{2,1224}")
_REGION_RE = _compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_QUALIFIER_RE = _compile(r"\$LATEST|[a-zA-Z0-9_-]{1,128}")
_ENDPOINT_RE = _compile(r"https://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?")
_FUNCTION_RE = _compile(
    r"(arn:aws[\w-]*:lambda:(?P<region>[a-z]{2}(-[a-z]+)+-\d{1,2}):\d{12}:function:|\d{12}:function:)?"
    r"[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?"
)

# --- Command line ---------------------------------------------------------------------------------

USAGE = """\
usage: iotinvoke [options] ENV [PAYLOAD]
       iotinvoke [options] --credential-process ENV
       iotinvoke [options] --stream ENV
       iotinvoke [options] --doctor ENV
       iotinvoke [options] --clear-cache

Invoke ENV's Lambda function with PAYLOAD (JSON text; '-' or absent: standard input;
'@path': that file) and write its response payload to standard output.

options:
  -c, --config PATH       configuration file (default: $IOTINVOKE_CONFIG, ./iotinvoke.ini,
                          /etc/iotinvoke/iotinvoke.ini)
  --event                 invoke asynchronously (InvocationType Event); prints nothing
  --dry-run               check the permission only (InvocationType DryRun); runs nothing
  --log-tail              write the function's log tail to standard error (two-hop mode only)
  -q, --qualifier NAME    function version or alias
  --client-context JSON   client context passed to the function (synchronous invokes)
  --connect-timeout S     seconds to connect to each endpoint (default 5)
  --read-timeout S        seconds to wait for the function (default 905; Event/DryRun 30)
  --no-cache              neither read nor write cached credentials
  --stream                read one JSON payload per line from standard input and write one
                          JSON line per result: {"exit", "status", "function_error",
                          "payload", "error", "reason"}; connections and credentials are reused
  --doctor                check each hop for ENV afresh (the invoke as DryRun) and explain
                          what is wrong and how to fix it
  --credential-process    print ENV's credentials in the AWS credential_process format
  --clear-cache           remove all cached credentials
  -v, --verbose           say what happens, on standard error (never secrets)
  --version               print the version
  -h, --help              show this help

environment: IOTINVOKE_CONFIG, IOTINVOKE_CACHE_DIR, AWS_ENDPOINT_URL[_STS|_LAMBDA],
AWS_CA_BUNDLE, HTTPS_PROXY, NO_PROXY.

exit status: 0 ok, 1 function error (payload on stdout), 64 usage, 65 bad payload,
66 file missing, 69 refused (retrying won't help), 70 internal, 74 invoke sent and its
answer lost (the function may have run: never re-sent), 75 transient (nothing ran: retry
later), 76 bad answer, 77 permission denied, 78 bad configuration, 130 interrupted.
An error line ends with [REASON] or [REASON; retry after N s].
"""

_FLAGS = {
    "--event": "event",
    "--dry-run": "dry_run",
    "--log-tail": "log_tail",
    "--no-cache": "no_cache",
    "--credential-process": "credential_process",
    "--stream": "stream",
    "--doctor": "doctor",
    "--clear-cache": "clear_cache",
    "-v": "verbose",
    "--verbose": "verbose",
    "-h": "help",
    "--help": "help",
    "--version": "version",
}
_VALUED = {
    "-c": "config",
    "--config": "config",
    "-q": "qualifier",
    "--qualifier": "qualifier",
    "--client-context": "client_context",
    "--connect-timeout": "connect_timeout",
    "--read-timeout": "read_timeout",
}


def _parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """A small getopt: argparse costs start-up time that every C call would pay."""
    options: dict[str, Any] = {}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            positional.extend(args)
            break
        name, eq, value = arg.partition("=")
        # Options may follow ENV too; after ENV only known names count, so a payload such as -1 stays one.
        if arg.startswith("-") and arg != "-" and (not positional or name in _FLAGS or name in _VALUED):
            if name in _FLAGS and not eq:
                options[_FLAGS[name]] = True
            elif name in _VALUED:
                if not eq:
                    following = next(args, None)
                    if following is None:
                        raise IotInvokeError("option %s needs a value" % name, EX_USAGE)
                    value = following
                options[_VALUED[name]] = value
            else:
                raise IotInvokeError("unknown option %s (see --help)" % name, EX_USAGE)
        else:
            positional.append(arg)
    return options, positional


def _read_payload(argument: str | None, stdin: IO[bytes] | None) -> bytes:
    """The payload from the argument, '@file' or standard input, read no further than Lambda's limit."""
    if argument is None or argument == "-":
        if stdin is None:
            raise IotInvokeError("standard input is closed: pass the payload as an argument", EX_NOINPUT, "payload",
                                 reason="stdin-closed")
        try:
            return stdin.read(MAX_SYNC_PAYLOAD_BYTES + 1)
        except OSError as e:
            raise IotInvokeError("cannot read the payload from standard input: " + _os_reason(e), EX_NOINPUT, "payload",
                                 reason="stdin-unreadable") from None
    if argument.startswith("@"):
        try:
            with open(argument[1:], "rb") as f:
                return f.read(MAX_SYNC_PAYLOAD_BYTES + 1)
        except OSError as e:
            raise IotInvokeError("payload file %s: %s" % (argument[1:], _os_reason(e)), EX_NOINPUT, "payload",
                                 reason="payload-file-unreadable") from None
    try:
        return argument.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as surrogates
        return os.fsencode(argument)


def _timeout_option(options: dict[str, Any], name: str) -> float | None:
    text = options.get(name)
    if text is None:
        return None
    value = _bounded(text, float, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    if value is None:
        raise IotInvokeError("--%s takes seconds from %g to %g" % (name.replace("_", "-"), MIN_TIMEOUT_S, MAX_TIMEOUT_S),
                             EX_USAGE)
    return value


def _client_context(text: str | None) -> str | None:
    if text is None:
        return None
    import base64
    import json

    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise IotInvokeError("--client-context is not valid JSON", EX_DATAERR, "payload") from None
    if not isinstance(document, dict):
        raise IotInvokeError("--client-context must be a JSON object", EX_DATAERR, "payload")
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_CLIENT_CONTEXT_BYTES:
        raise IotInvokeError(
            "--client-context is %d bytes in base64; Lambda takes at most %d" % (len(encoded), MAX_CLIENT_CONTEXT_BYTES),
            EX_DATAERR,
            "payload",
        )
    return encoded


def _run(argv: list[str], stdin: IO[bytes] | None, stdout: IO[bytes] | None, stderr: IO[str]) -> int:
    options, positional = _parse_args(argv)
    # Help and version go to stdout, as users expect of any command (`--help | less`); an invoke
    # never writes anything there but the payload.
    if options.get("help"):
        _write_out(stdout, USAGE.encode(), ran=False)
        return EX_OK
    if options.get("version"):
        _write_out(stdout, b"iotinvoke " + __version__.encode() + b"\n", ran=False)
        return EX_OK
    actions = [a for a in ("credential_process", "clear_cache", "stream", "doctor") if options.get(a)]
    if options.get("clear_cache"):
        if positional:
            raise IotInvokeError("--clear-cache takes no ENV or PAYLOAD", EX_USAGE)
    elif not positional:
        raise IotInvokeError("missing ENV (see --help)", EX_USAGE)
    if len(actions) > 1 or (actions and (options.get("event") or options.get("dry_run"))):
        raise IotInvokeError("choose one of --doctor, --credential-process, --clear-cache, --stream or an invoke", EX_USAGE)
    if options.get("event") and options.get("dry_run"):
        raise IotInvokeError("--event and --dry-run exclude each other", EX_USAGE)
    if len(positional) > (1 if actions else 2):
        raise IotInvokeError("too many arguments (see --help): quote the JSON payload, one argument", EX_USAGE)
    connect_timeout = _timeout_option(options, "connect_timeout")
    read_timeout = _timeout_option(options, "read_timeout")
    invocation_type = "Event" if options.get("event") else "DryRun" if options.get("dry_run") else "RequestResponse"
    client_context = _client_context(options.get("client_context"))
    payload = b""
    if not actions:
        # The payload is checked before the configuration or any network call.
        payload = _read_payload(positional[1] if len(positional) > 1 else None, stdin)
        _check_payload(payload, invocation_type)
        if stdout is None and invocation_type == "RequestResponse":
            raise IotInvokeError("standard output is closed: the function's answer could not be delivered; "
                                 "nothing was sent", EX_USAGE, "output", reason="stdout-closed")

    config = load_config(options.get("config"))
    if connect_timeout is not None:
        config.connect_timeout = connect_timeout
    use_cache = not options.get("no_cache") and not options.get("doctor")  # the doctor asks AWS afresh
    log: Callable[[str], None] | None = None
    if options.get("verbose"):
        log = lambda message: _say(stderr, "iotinvoke: " + message + "\n")  # noqa: E731
        log("config: %s" % config.path)
    client = Client(config, use_cache=use_cache, log=log)
    if options.get("clear_cache"):
        removed = client.clear_cache()
        if log is not None:
            log("cache: removed %d files" % removed)
        return EX_OK
    name = positional[0]
    client.environment(name)  # unknown environment: exit 64 before any network call
    if options.get("doctor"):
        import io

        report = io.StringIO()
        try:
            return _doctor(client, name, report)
        finally:
            _write_out(stdout, report.getvalue().encode("utf-8"), ran=False)
    if options.get("credential_process"):
        import json

        creds = client.credentials(name)
        _write_out(stdout, json.dumps(creds.to_json()).encode() + b"\n", ran=False)
        return EX_OK
    if options.get("stream"):
        if stdin is None or stdout is None:
            raise IotInvokeError("--stream needs standard input and output open", EX_USAGE, "output",
                                 reason="stream-closed")
        return _stream(client, name, stdin, stdout, log, bool(options.get("log_tail")), options.get("qualifier"),
                       client_context, read_timeout)
    result = client.invoke(
        name,
        payload,
        invocation_type,
        log_tail=bool(options.get("log_tail")),
        qualifier=options.get("qualifier"),
        client_context=client_context,
        read_timeout=read_timeout,
        validate=False,
    )
    if result.payload:
        _write_out(stdout, result.payload, ran=True)
    if result.log_result:
        _say(stderr, result.log_result if result.log_result.endswith("\n") else result.log_result + "\n")
    if result.function_error:
        _say(stderr, "iotinvoke: lambda: the function reported an error (%s): %s\n"
             % (result.function_error, _function_error_summary(result.payload)))
        return EX_FUNCTION_ERROR
    return EX_OK


def _write_out(stdout: IO[bytes] | None, data: bytes, ran: bool) -> None:
    """Write to standard output; a failure is one error, and Python's own flush at exit stays quiet."""
    try:
        if stdout is None:
            raise OSError("it is closed")
        stdout.write(data)
        stdout.flush()
    except (OSError, ValueError) as e:
        _silence(1)
        if not ran:
            raise IotInvokeError("cannot write to standard output: %s" % _os_reason(e), EX_IOERR, "output",
                                 reason="stdout-failed") from None
        raise IotInvokeError("cannot write the answer to standard output (%s): the function ran and its answer "
                             "is lost" % _os_reason(e), EX_IOERR, "output", reason="stdout-failed") from None


def _say(stderr: IO[str] | None, text: str) -> None:
    """Write to standard error; when it is closed or full, the exit status must still tell."""
    try:
        if stderr is not None:
            stderr.write(text)
            stderr.flush()
    except (OSError, ValueError):
        _silence(2)


def _silence(fd: int) -> None:
    """Point a failing standard stream at /dev/null, so Python's flush at exit does not fail again
    (it would turn the exit status into 120)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def _stream(
    client: Client,
    name: str,
    stdin: IO[bytes],
    stdout: IO[bytes],
    log: Callable[[str], None] | None,
    log_tail: bool,
    qualifier: str | None,
    client_context: str | None,
    read_timeout: float | None,
) -> int:
    """--stream: one invoke per input line, one JSON result line each, until end of input.

    For C programs that call often: start-up, the TLS handshake and the credential lookup are
    paid once. A failed invoke is reported on its line and the stream goes on.
    """
    import json

    for line in stdin:
        payload = line.strip()
        if not payload:
            continue
        record: dict[str, Any] = {"exit": EX_OK, "status": None, "function_error": None, "payload": None, "error": None,
                                  "reason": None}
        try:
            _check_payload(payload, "RequestResponse")
            result = client.invoke(name, payload, log_tail=log_tail, qualifier=qualifier,
                                   client_context=client_context, read_timeout=read_timeout, validate=False)
            record["status"] = result.status
            record["function_error"] = result.function_error
            record["exit"] = EX_FUNCTION_ERROR if result.function_error else EX_OK
            try:
                record["payload"] = json.loads(result.payload) if result.payload else None
            except (ValueError, RecursionError):
                record["payload"] = result.payload.decode("utf-8", "replace")
            if result.log_result and log is not None:
                log("lambda: log tail: " + json.dumps(result.log_result))
        except IotInvokeError as e:
            record.update(exit=e.exit_code, status=e.status, error=str(e), reason=e.reason or None)
        _write_out(stdout, json.dumps(record, separators=(",", ":")).encode() + b"\n", ran=True)
    return EX_OK


def _doctor(client: Client, name: str, out: IO[str]) -> int:
    """--doctor: run each hop afresh for one environment (the invoke as DryRun) and, where one
    fails, say the likely cause and the fix. Returns the exit status of the first failure."""
    env = client.environment(name)
    config = client.config
    failed: list[int] = []

    def line(status: str, check: str, detail: str, cause: str = "", fix: str = "") -> None:
        out.write("%-5s %-9s %s\n" % (status, check, detail))
        for label, text in (("cause", cause), ("fix", fix)):
            if text:
                out.write("      %-6s %s\n" % (label + ":", text))

    def fail(check: str, error: IotInvokeError, cause: str, fix: str) -> int:
        line("FAIL", check, str(error), cause, fix)
        failed.append(error.exit_code)
        return error.exit_code

    mode = "one hop (the function's resource policy trusts the IoT role)" if env.direct else "two hops via " + str(env.role_arn)
    line("ok", "config", "%s [%s]: %s, %s" % (config.path, name, env.function, mode))
    line(*_cache_report(config))

    cert_id = _certificate_id(config.cert)
    try:
        _ssl_context(config.ca, (config.cert, config.key))
    except IotInvokeError as e:
        return fail("files", e, *_KEY_REASONS.get(e.reason, _KEY_REASONS["device-key-unusable"])[1:])
    not_after = _certificate_not_after(config.cert)
    detail = "certificate id %s" % (cert_id or "?") + (", valid until " + _iso8601(not_after) if not_after else "")
    uri = _provider_key_uri(config.key)
    if uri is not None:
        token = _uri_attributes(uri)[0].get("token")
        detail += "; key in PKCS#11 token %s" % (repr(token) if token else "(any)")
    # A provider key file is a secret only when its URI holds the PIN (pin-value).
    secret_key = uri is None or "pin-value" in _uri_attributes(uri)[1]
    if not_after is not None and not_after < client.now():
        line("FAIL", "files", detail, "the device certificate has expired", "issue a new certificate for this thing")
        failed.append(EX_NOPERM)
    elif secret_key and os.stat(config.key).st_mode & 0o077:
        line("warn", "files", detail + "; the private key is readable by other users", fix="chmod 600 " + config.key)
    else:
        line("ok", "files", detail)

    # Hop 1
    try:
        iot_creds = client.fetch_iot_credentials()
    except IotInvokeError as e:
        return fail("hop 1", e, *_diagnosis(e, client, env, "the IoT role"))
    line("ok", "hop 1", "credentials from role alias %s, valid until %s" % (config.role_alias, _iso8601(iot_creds.expiration)))
    drift = client.last_drift
    if drift is not None and abs(drift) > CLOCK_SKEW_THRESHOLD_S:
        line("warn", "clock", "the local clock is %+.0f s off AWS's: corrected for signing, but TLS and logs suffer" % -drift,
             fix="start NTP (or wait for it) before iotinvoke runs; boards without an RTC boot with a wrong date")
    elif drift is not None:
        line("ok", "clock", "within %.0f s of AWS's" % abs(drift))
    try:
        caller = client.caller_identity(env, iot_creds)
        line("ok", "identity", "hop 1 credentials act as " + caller)
    except IotInvokeError as e:
        caller = "the IoT role"
        line("warn", "identity", "GetCallerIdentity failed: %s" % e)
    caller_role = _role_of_session(caller)

    # Hop 2
    creds = iot_creds
    if env.direct:
        line("skip", "hop 2", "one-hop mode: no AssumeRole")
    else:
        try:
            creds = client.assume_role(name, iot_creds)
        except IotInvokeError as e:
            return fail("hop 2", e, *_diagnosis(e, client, env, caller_role))
        line("ok", "hop 2", "AssumeRole into %s, valid until %s" % (env.role_arn, _iso8601(creds.expiration)))

    # Hop 3, as DryRun: checks the permission, runs nothing.
    try:
        client.invoke(name, b"{}", "DryRun", credentials=creds)
    except IotInvokeError as e:
        return fail("hop 3", e, *_diagnosis(e, client, env, caller_role))
    line("ok", "hop 3", "DryRun invoke of %s allowed" % env.function)
    if env.direct:
        line("note", "log tail", "--log-tail is refused in one-hop mode: Lambda never returns logs across accounts",
             fix="set role_arn for this environment if you need the log tail")
    return failed[0] if failed else EX_OK


def _cache_report(config: Config) -> tuple[str, str, str, str, str]:
    """The doctor's cache line: where calls keep credentials, and whether they can."""
    folder, source = _cache_location(config)
    if folder is None:
        return ("warn", "cache", "none: " + source + "; every call runs uncached", "",
                "set cache_dir, or run as a systemd service with RuntimeDirectory=iotinvoke")
    notes: list[str] = []
    if os.path.lexists(folder) and _Cache(folder, notes.append).folder is None:
        return ("warn", "cache", "%s, from %s: %s" % (folder, source, notes[-1].split(": ", 1)[-1]),
                "every call runs uncached (a request per hop)", "chmod 700 the folder, owned by the user that runs iotinvoke")
    detail = "%s, from %s%s" % (folder, source, "" if os.path.lexists(folder) else "; made at first use")
    if source.startswith("~"):
        return ("warn", "cache", detail, "session tokens are kept on persistent storage (the SD card) across reboots",
                "run as a systemd service with RuntimeDirectory=iotinvoke (scripts/iotinvoke.service)")
    return ("ok", "cache", detail, "", "")


# --doctor's advice for each reason: (cause, fix). Fields: {cert_id} {alias} {thing} {role} {role_name}
# {caller} {caller_name} {function} {condition} {ca}. A reason without a row gets the generic advice.
_DIAGNOSES: dict[str, tuple[str, str]] = {
    "certificate-refused": (
        "the certificate is not registered with AWS IoT in this endpoint's account and region, is not active, "
        "or its CA is unknown to AWS IoT",
        "aws iot describe-certificate --certificate-id {cert_id} (in the IoT account and region); register or "
        "activate it"),
    "certificate-inactive": (
        "the certificate is inactive or revoked",
        "aws iot update-certificate --certificate-id {cert_id} --new-status ACTIVE"),
    "thing-not-attached": (
        "the thing named by thing_name is not attached to this certificate",
        "aws iot attach-thing-principal --thing-name {thing} --principal <certificate ARN>, or correct thing_name "
        "in [iot]"),
    "iot-policy-denied": (
        "role_alias is misspelt (AWS then refuses it as not allowed, not as missing), or the certificate's IoT "
        "policy does not allow iot:AssumeRoleWithCertificate on the role alias",
        "attach an IoT policy allowing iot:AssumeRoleWithCertificate on arn:aws:iot:REGION:ACCOUNT:rolealias/{alias}"),
    "role-alias-not-found": (
        "no role alias {alias!r} where this endpoint points",
        "aws iot describe-role-alias --role-alias {alias}; endpoint must be the output of aws iot describe-endpoint "
        "--endpoint-type iot:CredentialProvider in the same account and region"),
    "role-not-assumable": (
        "the role behind the alias does not exist or does not trust credentials.iot.amazonaws.com",
        'its trust policy needs {{"Principal": {{"Service": "credentials.iot.amazonaws.com"}}, "Action": "sts:AssumeRole"}}'),
    "duration-exceeds-role-max": (
        "the role alias asks for longer credentials than the role's MaxSessionDuration",
        "aws iot update-role-alias --credential-duration-seconds 3600, or raise the role's MaxSessionDuration"),
    "tls-untrusted": (
        "the server's certificate does not chain to the trusted CA file {ca}, or a TLS-inspecting proxy is in the way",
        "leave ca / ca_bundle unset for the default trust, or point them at AmazonRootCA1.pem; unset a machine-wide "
        "AWS_CA_BUNDLE that is meant for something else"),
    "tls-name-mismatch": (
        "the endpoint's certificate is for another host name: the endpoint is mistyped or belongs to another service",
        "check the endpoint key; hop 1 needs the output of aws iot describe-endpoint --endpoint-type "
        "iot:CredentialProvider"),
    "clock-wrong": (
        "the board's clock is outside the server certificate's validity: it booted without a real-time clock and "
        "NTP has not answered yet",
        "wait for NTP (timedatectl status: System clock synchronized: yes), or start iotinvoke after "
        "time-sync.target"),
    "clock-skew": ("the local clock is too far from AWS's", "start NTP before iotinvoke runs"),
    "dns-failed": ("the endpoint's host name does not resolve: mistyped, or no DNS on this network",
                   "check the endpoint key against aws iot describe-endpoint / the region; then DNS (resolvectl status)"),
    "assume-role-denied": (
        "AWS's answer does not say which of two policies refused: (a) the trust policy of {role} does not allow "
        "{caller}{condition}, or (b) {caller} is not allowed sts:AssumeRole on {role}",
        "(a) in the Lambda account: aws iam get-role --role-name {role_name} --query Role.AssumeRolePolicyDocument; "
        "(b) in the IoT account: aws iam list-role-policies / get-role-policy --role-name {caller_name}"),
    "invalid-parameter": ("AWS refused a parameter (for AssumeRole with role credentials, role chaining limits "
                          "DurationSeconds to one hour)", "set duration_seconds to 3600 or less, or leave it out"),
    "sts-region-disabled": ("STS is not activated in this region for the Lambda account",
                            "activate the region in the IAM console (Account settings), or set region"),
    "function-not-found": (
        "no such function (or version/alias) in that account and region",
        "aws lambda get-function --function-name {function} in the Lambda account; check function, region and "
        "qualifier"),
    "invoke-denied": (
        "the role {role} is not allowed lambda:InvokeFunction on {function}",
        "give the role an identity policy allowing lambda:InvokeFunction on the function's ARN (and ARN:*)"),
    "invoke-denied-direct": (
        "one-hop mode needs both: the function's resource policy naming {caller}, and that role's own permission "
        "lambda:InvokeFunction on the function",
        "aws lambda add-permission --function-name {function} --statement-id iotinvoke --action "
        "lambda:InvokeFunction --principal {caller}"),
    "invoke-denied-identity": (
        "the function's resource policy allows {caller}, but that role's own permissions do not allow "
        "lambda:InvokeFunction on the function",
        "in the IoT account, allow lambda:InvokeFunction on {function} (and :*) for {caller}"),
    "function-not-ready": ("the function is Pending or Inactive (or being updated); Lambda makes it Active by itself",
                           "retry in a minute; aws lambda get-function --function-name {function} --query "
                           "Configuration.State"),
    "proxy-auth": ("the proxy refused the user and password in HTTPS_PROXY", "correct HTTPS_PROXY"),
    "proxy-failed": ("the proxy could not reach the endpoint", "check the proxy, and NO_PROXY for endpoints it must not carry"),
}


def _diagnosis(e: IotInvokeError, client: Client, env: Environment, caller_role: str) -> tuple[str, str]:
    """(cause, fix) for a failure of the doctor's checks, from its reason."""
    reason = e.reason
    if reason == "invoke-denied" and env.direct:
        # Lambda says which policy type refused ("because no identity-based policy allows ...").
        reason = "invoke-denied-identity" if "no identity-based policy" in e.message else "invoke-denied-direct"
    row = _DIAGNOSES.get(reason)
    if row is None:
        if e.exit_code == EX_TEMPFAIL:
            return ("the network, a proxy, or AWS itself failed", "check connectivity and HTTPS_PROXY / NO_PROXY, then retry")
        if e.hop == "lambda" and e.exit_code == EX_UNAVAILABLE:
            return ("Lambda could not set up the function (%s): a problem of the function's configuration" % reason,
                    "the function's owner: aws lambda get-function --function-name %s" % env.function)
        return ("see the error above", EXIT_CODES.get(e.exit_code, ""))
    config = client.config
    ca = (env.ca_bundle if e.hop != "iot" else config.ca) or "the default trust, " + _default_trust()[1]
    fields = {
        "cert_id": _certificate_id(config.cert) or "<id>",
        "alias": config.role_alias,
        "thing": config.thing_name,
        "role": env.role_arn,
        "role_name": str(env.role_arn).rsplit("/", 1)[-1],
        "caller": caller_role,
        "caller_name": caller_role.rsplit("/", 1)[-1],
        "function": env.function,
        "condition": " with the ExternalId condition %r" % env.external_id if env.external_id else "",
        "ca": ca,
    }
    return row[0].format(**fields), row[1].format(**fields)


def _role_of_session(arn: str) -> str:
    """arn:aws:sts::A:assumed-role/R/S -> arn:aws:iam::A:role/R (what policies name)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[5].startswith("assumed-role/"):
        return "arn:%s:iam::%s:role/%s" % (parts[1], parts[4], parts[5].split("/")[1])
    return arn


def _certificate_id(path: str) -> str | None:
    """AWS IoT's certificate id: the SHA-256 of the certificate's DER form."""
    import hashlib
    import ssl

    try:
        with open(path, encoding="ascii") as f:
            return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _certificate_not_after(path: str) -> float | None:
    import ssl

    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)  # CPython's own decoder
    try:
        return float(ssl.cert_time_to_seconds(decode(path)["notAfter"])) if decode else None
    except (OSError, ValueError, KeyError, ssl.SSLError):
        return None


def _function_error_summary(payload: bytes) -> str:
    import json

    try:
        document = json.loads(payload)
        return _short("%s: %s" % (document.get("errorType", "Error"), document.get("errorMessage", "")))
    except (ValueError, AttributeError, RecursionError):
        return "see the payload on standard output"


def main(argv: list[str] | None = None) -> int:
    """The command: returns the exit status; every failure is one line on standard error."""
    _open_standard_fds()
    stderr = sys.stderr
    try:
        return _run(
            sys.argv[1:] if argv is None else argv,
            sys.stdin.buffer if sys.stdin is not None else None,
            sys.stdout.buffer if sys.stdout is not None else None,
            stderr,
        )
    except IotInvokeError as e:
        _say(stderr, "iotinvoke: %s\n" % e)
        return e.exit_code
    except KeyboardInterrupt:
        _say(stderr, "iotinvoke: interrupted\n")
        return 130
    except Exception as e:  # a bug: still one line, never a traceback with local values
        _say(stderr, "iotinvoke: internal error: %s: %s\n" % (type(e).__name__, _short(str(e))))
        return EX_SOFTWARE


def _open_standard_fds() -> None:
    """A caller may start us with descriptor 0, 1 or 2 closed; the next file or socket opened would
    then take its number, and a payload could end up written into it. /dev/null takes the place."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
