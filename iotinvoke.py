"""Invoke an AWS Lambda function in another account with only an AWS IoT device certificate.

    python3 -m iotinvoke [options] ENV [PAYLOAD]

Three HTTPS calls, no AWS keys on the device:

1. the AWS IoT credentials provider, over mutual TLS with the device certificate, returns
   temporary credentials of the IoT account's role (the role alias);
2. STS AssumeRole, signed with those, returns credentials of the environment's role in the
   Lambda account (skipped in one-hop mode: an environment without ``role_arn``);
3. Lambda Invoke, signed with the last credentials; the response payload goes to stdout.

Credentials are cached on disk between calls (one process per call is the normal use), so a
warm call makes only the third request. Runtime dependencies: urllib3 and botocore (its SigV4
signer only); Amazon Trust Services' roots are built in. Python 3.9+.

The module reads top to bottom, one section per concept, each using only those above it:

- contract: exit statuses, limits, REASONS (every failure's slug, status, send class, message
  and advice) and AWS_ERRORS (what each AWS error code means), IotInvokeError;
- configuration: one key table drives parsing, validation, defaults and the README's table;
- refresh and retry policy (pure functions), the clock, credentials and the on-disk cache;
- transport: one HTTPS exchange that reports what happened and never sends anything twice;
- device keys in hardware; the AWS protocol (signing, payloads, parsing answers);
- Client: the one loop that decides re-sends, renewals and clock corrections;
- the command line, explaining failures (--doctor), and the built-in trust anchors (data).
"""
from __future__ import annotations

import os
import sys
import time

__version__ = "0.2.0"
__all__ = [
    "__version__",
    "EXIT_CODES",
    "REASONS",
    "AWS_ERRORS",
    "THROTTLE_REASONS",
    "CONFIG_KEYS",
    "PARTITIONS",
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
    "find_config",
    "load_config",
    "main",
]

# typing is imported for mypy only: it costs start-up time that every C caller pays.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import configparser
    import http.server
    import re
    import socket
    import ssl
    import threading
    from typing import IO, Any, Callable, Mapping, MutableMapping, Protocol, TypeVar
    from xml.etree.ElementTree import Element

    import urllib3
    from urllib3.connection import HTTPSConnection

    _T = TypeVar("_T")

    class _Answer(Protocol):
        """What a transport returns: an HTTP answer, read whole."""

        status: int
        headers: Mapping[str, str]  # case-insensitive
        body: bytes

    class _Sender(Protocol):
        """What Client needs of a transport (tests give their own): _Transport's two methods."""

        def send(self, hop: str, method: str, url: str, headers: Mapping[str, str], body: bytes | None, *,
                 read_timeout: float, max_bytes: int, ca: str | None = None, ca_source: str = "",
                 client_cert: tuple[str, str] | None = None) -> _Answer: ...

        def probe_time(self, url: str, ca: str | None,
                       client_cert: tuple[str, str] | None) -> tuple[float | None, str]: ...

    _Json = dict[str, object]
    _Certificate = dict[str, object]  # ssl.SSLSocket.getpeercert()

# === Contract =====================================================================================

# --- Exit statuses (sysexits.h): what a C caller branches on --------------------------------------

EX_OK = 0
EX_FUNCTION_ERROR = 1  # the function ran and reported an error; its payload is on stdout
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78
EX_HANGUP, EX_INTERRUPTED, EX_TERMINATED = 129, 130, 143  # 128 + the signal's number, as shells report

# status -> (the few words --help gives it, the README's meaning)
EXIT_CODES: dict[int, tuple[str, str]] = {
    EX_OK: ("ok", "invoked; the function reported no error (`--event`: accepted; `--dry-run`: allowed)"),
    EX_FUNCTION_ERROR: ("function error (payload on stdout)",
                        "the function ran and reported an error (`X-Amz-Function-Error`); its payload is on stdout"),
    EX_USAGE: ("usage", "bad command line or unknown environment; standard output closed before a synchronous "
               "invoke (nothing sent)"),
    EX_DATAERR: ("bad payload", "payload empty, not JSON in UTF-8 (RFC 8259), or over Lambda's size limit; or "
                 "Lambda refused it"),
    EX_NOINPUT: ("file missing", "certificate, key, CA, PIN or payload file missing or unreadable; standard input "
                 "closed"),
    EX_UNAVAILABLE: ("refused (retrying won't help)",
                     "permanent refusal that retrying won't fix: role alias or function not found, invalid "
                     "parameter, a set-up failure of the function only its owner can fix, an untrusted or misnamed "
                     "server certificate, a missing dependency"),
    EX_SOFTWARE: ("internal", "internal error"),
    EX_IOERR: ("invoke sent and its answer lost (the function may have run: never re-sent)",
               "the invoke was sent and the function may have run, but its answer was lost, cut short, or Lambda "
               "failed after accepting it; never re-sent unless the environment is `idempotent` (then after every "
               "attempt); also standard output failing after the function ran"),
    EX_TEMPFAIL: ("transient (nothing ran: retry later)",
                  "transient, and nothing ran: network before sending, throttling, function not ready, AWS server "
                  "errors of hops 1-2, a wrong clock at boot; safe to retry later (the line may say how long to "
                  "wait)"),
    EX_PROTOCOL: ("bad answer", "an answer that could not be understood (garbled, compressed, oversized, not "
                  "UTF-8); on hop 3 the function may have run"),
    EX_NOPERM: ("permission denied", "permission denied at some hop (certificate refused, AccessDenied, expired or "
                "invalid token, time stamp refused); a refused caller of the agent; the token refused the PIN"),
    EX_CONFIG: ("bad configuration", "configuration missing, invalid or unsafe (a file another user can write); "
                "HTTPS_PROXY malformed or refused; the device key's provider, module or PIN missing"),
    EX_HANGUP: ("hangup", "SIGHUP; the line says whether the invoke had been sent"),
    EX_INTERRUPTED: ("interrupted", "SIGINT; the line says whether the invoke had been sent"),
    EX_TERMINATED: ("terminated", "SIGTERM; the line says whether the invoke had been sent"),
}

# --- Limits and defaults --------------------------------------------------------------------------

CONNECT_TIMEOUT_S = 5.0  # bounds connecting: DNS, TCP, proxy tunnel, TLS handshake
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 3600.0
CREDENTIALS_READ_TIMEOUT_S = 10.0  # the whole answer of hops 1 and 2 (healthy: milliseconds)
INVOKE_READ_TIMEOUT_S = 905.0  # the whole answer of a synchronous invoke: Lambda runs up to 900 s
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
MAX_RETRY_AFTER_S = 600.0  # the longest wait a server's Retry-After may ask a board for
MAX_CREDENTIALS_RESPONSE_BYTES = 64 * 1024  # real answers are ~1-3 KB; bound what a bad server sends
MAX_INVOKE_RESPONSE_BYTES = 6 * 1024 * 1024 + 64 * 1024  # Lambda's 6 MB response limit, plus slack
MAX_SYNC_PAYLOAD_BYTES = 6291456  # Lambda: "Request must be smaller than 6291456 bytes"
MAX_ASYNC_PAYLOAD_BYTES = 1048576  # Lambda Event invokes: 1 MB
MAX_CLIENT_CONTEXT_BYTES = 3583  # base64 text, Lambda's documented limit
MAX_CACHE_ENTRY_BYTES = 65536
REFRESH_MARGIN_S = 300.0  # refresh 5 min before expiry (aws-c-auth, Greengrass), ...
REFRESH_JITTER_S = 600.0  # ... plus a random part of up to 10 min, so a fleet de-synchronises, ...
REFRESH_MARGIN_FRACTION = 0.5  # ... but never more than half the lifetime (short role aliases)
MIN_FALLBACK_VALIDITY_S = 30.0  # a failed refresh may fall back to credentials valid this long
CHAINED_ROLE_MAX_DURATION_S = 3600  # AssumeRole with role credentials is role chaining: <= 1 h
LOCK_WAIT_S = 20.0  # a process holding a cache lock longer than this is presumed stuck
LOCK_POLL_S = 0.02
CLOCK_SKEW_THRESHOLD_S = 240.0  # below SigV4's 5-minute window, as the JS and Kotlin SDKs use
MAX_CLOCK_OFFSET_S = 100 * 365 * 86400.0  # a board at 1970 is 56 years behind; more is garbage
CLOCK_FLOOR = 1793491200.0  # 2026-11-01T00:00:00Z, before this release: no earlier time is AWS's
CLOCK_WAIT_S = 30.0  # a board without an RTC: NTP usually answers within this after boot
RESERVED_THROTTLE_WAIT_S = 60.0  # a function's reserved concurrency used up, or set to 0 by its owner
TCP_KEEPALIVE_IDLE_S = 60  # well below NAT idle timeouts (AWS NAT gateway: 350 s)
TCP_KEEPALIVE_INTERVAL_S = 15
TCP_KEEPALIVE_PROBES = 4  # a dead peer is noticed about 2 minutes after it went silent
MAX_LOG_TAIL_BYTES = 8192  # Lambda sends the last 4 KB of the log, base64-encoded
WATCHDOG_LINGER_S = 60.0  # the deadline thread ends after this long with no request in flight
AGENT_IDLE_EXIT_S = 300.0  # the agent, socket-activated: exit after this long without a caller
USER_AGENT = "iotinvoke/" + __version__

# --- Reasons: the one table of every failure ------------------------------------------------------
#
# slug -> (exit status, send class, what happened, the doctor's likely cause, the fix). Every
# IotInvokeError names a slug of this table, which alone gives its exit status; README's reasons
# table and --doctor's advice are made from it. Fields in braces come from the configuration:
# {alias} {thing} {role} {role_name} {function} {region} {cert_id} {caller} {caller_name}
# {condition} {ca}.
#
# Send classes, what the caller may conclude:
NOTHING_SENT = "nothing sent"  # nothing reached AWS (or nothing that could act): safe to send again
NOT_RUN = "answered"  # AWS answered, and its answer shows the function did not run
MAY_HAVE_RUN = "may have run"  # the invoke went out and the function may have run: never sent twice
# A MAY_HAVE_RUN reason exits 74 only where a function could have run: for a credentials request
# (hops 1-2) or a DryRun, which change nothing, it is transient (75) and re-sent (see _status).
_N, _A, _M = NOTHING_SENT, NOT_RUN, MAY_HAVE_RUN
_NTP_FIX = "wait for NTP (timedatectl status: System clock synchronized: yes), or start iotinvoke after time-sync.target"
REASONS: dict[str, tuple[int, str, str, str, str]] = {
    # The command line, the payload and the standard streams.
    "usage": (EX_USAGE, _N, "bad command line", "", "see iotinvoke --help"),
    "unknown-environment": (EX_USAGE, _N, "no such environment (a section of the configuration)", "", ""),
    "cross-account-log": (EX_USAGE, _N, "a log tail asked for across accounts: Lambda returns no log tail to "
                          "another account", "", "set role_arn to a role in the function's account"),
    "stdout-closed": (EX_USAGE, _N, "standard output closed before a synchronous invoke", "", ""),
    "stream-closed": (EX_USAGE, _N, "--stream with standard input or output closed", "", ""),
    "payload-empty": (EX_DATAERR, _N, "an empty payload: pass null or {{}}", "", ""),
    "payload-not-json": (EX_DATAERR, _N, "not JSON in UTF-8 (NaN, Infinity, a BOM, UTF-16 are not)", "", ""),
    "payload-too-large": (EX_DATAERR, _N, "the payload is over Lambda's size limit", "", ""),
    "client-context-invalid": (EX_DATAERR, _N, "--client-context is not a JSON object within Lambda's limit", "", ""),
    "payload-rejected": (EX_DATAERR, _A, "Lambda refused the payload", "", ""),
    "stdin-closed": (EX_NOINPUT, _N, "standard input closed and no payload argument", "", ""),
    "stdin-unreadable": (EX_NOINPUT, _N, "standard input failed while the payload was read", "", ""),
    "payload-file-unreadable": (EX_NOINPUT, _N, "the @file payload is missing or unreadable", "", ""),
    "stdout-failed": (EX_IOERR, _M, "standard output failed after the function ran: its answer is lost", "", ""),
    "interrupted": (EX_INTERRUPTED, _M, "interrupted by SIGINT (the line says whether the invoke had been sent)",
                    "", ""),
    "terminated": (EX_TERMINATED, _M, "terminated by SIGTERM (the line says whether the invoke had been sent)",
                   "", ""),
    "hangup": (EX_HANGUP, _M, "hung up (SIGHUP) (the line says whether the invoke had been sent)", "", ""),
    "internal-error": (EX_SOFTWARE, _M, "a bug in iotinvoke: please report the line", "", ""),
    "dependency-missing": (EX_UNAVAILABLE, _N, "urllib3 or botocore is not installed for this Python", "",
                           "apt-get install python3-urllib3 python3-botocore (Debian, Raspberry Pi OS), or pip "
                           "install urllib3 botocore"),
    # Configuration and the files it names.
    "config": (EX_CONFIG, _N, "the configuration is missing or invalid: the line names the file, section and key",
               "", ""),
    "config-unsafe": (EX_CONFIG, _N, "a configuration file that another user could have written",
                      "the file is not owned by you or root, or group or others may write it",
                      "chown root and chmod 644 it (or 600 for your own), or name it with --config"),
    "file-unsafe": (EX_CONFIG, _N, "a file the configuration names is not a regular file of yours or root's, "
                    "or a secret in it may be read by others",
                    "another user could have planted or read it", "chown it to you or root; chmod 600 the key "
                    "and PIN files (640 with the group of the user that runs iotinvoke)"),
    "proxy-invalid": (EX_CONFIG, _N, "HTTPS_PROXY is not a proxy URL", "", "correct HTTPS_PROXY"),
    "proxy-auth": (EX_CONFIG, _A, "the proxy refused HTTPS_PROXY's user and password (407)",
                   "the proxy refused the user and password in HTTPS_PROXY", "correct HTTPS_PROXY"),
    "ca-file-unreadable": (EX_NOINPUT, _N, "the CA file is missing or not PEM", "", "check ca / ca_bundle"),
    "device-file-unreadable": (EX_NOINPUT, _N, "the device certificate or key file is missing or unreadable",
                               "", "check cert and key in [iot], and that this user may read them"),
    "openssl-conf-unreadable": (EX_CONFIG, _N, "the OpenSSL configuration named by openssl_conf is missing or "
                                "unreadable", "", "check openssl_conf in [iot]"),
    "openssl-conf-too-late": (EX_CONFIG, _N, "openssl_conf cannot take effect: OpenSSL is already initialised in "
                              "this process", "", "set OPENSSL_CONF in the environment of the process instead"),
    # The device key (README: Keys in hardware).
    "key-provider-missing": (
        EX_CONFIG, _N, "the key file holds a PKCS#11 URI, but no OpenSSL provider that reads it is loaded",
        "the key file holds a PKCS#11 URI, but no OpenSSL provider that reads it is loaded",
        "set openssl_conf in [iot] (or OPENSSL_CONF) to an OpenSSL configuration that activates pkcs11-provider "
        "(Debian 12: apt-get install -t bookworm-backports pkcs11-provider)"),
    "pkcs11-module-missing": (
        EX_CONFIG, _N, "the PKCS#11 module named by pkcs11-module-path (or PKCS11_PROVIDER_MODULE) is not there or "
        "does not load", "the PKCS#11 module is not there or does not load",
        "install the token's PKCS#11 module, or correct pkcs11-module-path in the OpenSSL configuration"),
    "pkcs11-token-absent": (
        EX_UNAVAILABLE, _N, "no token that the key's URI names is present",
        "no token that the key's URI names is present: unplugged, a wrong token= label, or the module cannot reach "
        "it (SOFTHSM2_CONF, TPM2_PKCS11_STORE / TPM2_PKCS11_TCTI, the TPM resource manager)",
        "plug in or start the token; compare the URI's token= with the labels the module lists (p11tool "
        "--list-tokens)"),
    "pkcs11-pin-locked": (
        EX_NOPERM, _N, "the token's user PIN is locked after too many wrong tries",
        "the token's user PIN is locked after too many wrong tries",
        "unlock it with the security officer PIN (softhsm2-util / tpm2_ptool initpin, or the vendor's tool), then "
        "correct pin_file"),
    "pkcs11-wrong-pin": (
        EX_NOPERM, _N, "the token refused the PIN (or holds no private key with the URI's object= / id=)",
        "the token refused the PIN (or holds no private key with the URI's object= / id=); PIN retries are limited "
        "and the token locks after a few",
        "correct the PIN in pin_file (or the URI's pin-value) before the next try; check the key with p11tool "
        "--list-privkeys --login"),
    "pkcs11-pin-missing": (EX_CONFIG, _N, "the token needs a PIN and none is configured",
                           "the token needs a PIN and none is configured",
                           "set pin_file in [iot] to a file (mode 0600) holding the PIN"),
    "pin-file-missing": (EX_NOINPUT, _N, "the PIN file named by pin_file is missing or unreadable",
                         "the PIN file named by pin_file is missing or unreadable", "check pin_file in [iot]"),
    "key-cert-mismatch": (EX_CONFIG, _N, "the private key is not the certificate's key",
                          "the private key is not the certificate's key",
                          "point cert and key at a matching pair; for a token, issue the certificate for the key in "
                          "the token"),
    "device-key-unusable": (EX_NOINPUT, _N, "the device certificate and key cannot be loaded as a pair",
                            "the device certificate or key is missing, unreadable, or not PEM",
                            "check cert and key in [iot]; they must be the files AWS IoT issued together (or a "
                            "PKCS#11 URI key file)"),
    # Connecting: nothing was sent.
    "dns-failed": (EX_TEMPFAIL, _N, "the endpoint's name does not resolve",
                   "the endpoint's host name does not resolve: mistyped, or no DNS on this network",
                   "check the endpoint key against aws iot describe-endpoint / the region; then DNS (resolvectl "
                   "status)"),
    "connect-failed": (EX_TEMPFAIL, _N, "no connection", "the network, a proxy, or AWS itself failed",
                       "check connectivity and HTTPS_PROXY / NO_PROXY, then retry"),
    "connect-timeout": (EX_TEMPFAIL, _N, "no connection within connect_timeout",
                        "the network, a proxy, or AWS itself failed",
                        "check connectivity and HTTPS_PROXY / NO_PROXY, then retry"),
    "proxy-failed": (EX_TEMPFAIL, _N, "the proxy could not open a tunnel to the endpoint",
                     "the proxy could not reach the endpoint",
                     "check the proxy, and NO_PROXY for endpoints it must not carry"),
    "tls-interrupted": (EX_TEMPFAIL, _N, "the connection closed during the TLS handshake",
                        "the network, a proxy, or the server cut the handshake", "retry; if it persists, check "
                        "the endpoint and any proxy"),
    "tls-untrusted": (EX_UNAVAILABLE, _N, "the server certificate does not chain to the CA the line names",
                      "the server's certificate does not chain to the trusted CA file {ca}, or a TLS-inspecting proxy "
                      "is in the way",
                      "leave ca / ca_bundle unset for the default trust, or point them at AmazonRootCA1.pem; unset a "
                      "machine-wide AWS_CA_BUNDLE that is meant for something else"),
    "tls-name-mismatch": (EX_UNAVAILABLE, _N, "the server certificate is for another name or address",
                          "the endpoint's certificate is for another host name: the endpoint is mistyped or belongs to "
                          "another service",
                          "check the endpoint key; hop 1 needs the output of aws iot describe-endpoint "
                          "--endpoint-type iot:CredentialProvider"),
    "tls-protocol": (EX_UNAVAILABLE, _N, "no TLS 1.2 or later on that port", "", "check the endpoint's port"),
    "tls-certificate-expired": (EX_UNAVAILABLE, _N, "the server certificate is expired by AWS's time learned at "
                                "boot", "", ""),
    "clock-wrong": (EX_TEMPFAIL, _N, "the server certificate is not valid at the board's time, and AWS's time "
                    "could not be learned (the board is ahead, or learn_clock = false): NTP has not set the clock",
                    "the board's clock is outside the server certificate's validity: it booted without a real-time "
                    "clock and NTP has not answered yet", _NTP_FIX),
    "certificate-refused": (EX_NOPERM, _A, "the credentials provider refused the device certificate in the TLS "
                            "handshake",
                            "the certificate is not registered with AWS IoT in this endpoint's account and region, "
                            "is not active, or its CA is unknown to AWS IoT",
                            "aws iot describe-certificate --certificate-id {cert_id} (in the IoT account and region); "
                            "register or activate it"),
    # The request went out; the answer did not come back whole. On hop 3 the function may have run.
    "answer-lost": (EX_IOERR, _M, "the connection failed after the request was sent", "", ""),
    "answer-truncated": (EX_IOERR, _M, "fewer bytes than Content-Length, or broken chunked framing", "", ""),
    "answer-timeout": (EX_IOERR, _M, "no complete answer within the read timeout (credentials_timeout for hops "
                       "1-2, read_timeout for hop 3)", "", ""),
    # Answers that cannot be understood.
    "answer-encoded": (EX_PROTOCOL, _M, "a compressed answer, though identity was asked for", "", ""),
    "answer-too-large": (EX_PROTOCOL, _M, "an answer over the hop's size limit", "", ""),
    "answer-garbled": (EX_PROTOCOL, _M, "an answer that is not the JSON or XML document the hop sends", "", ""),
    "answer-not-utf8": (EX_PROTOCOL, _M, "an XML answer in another encoding than UTF-8, which AWS never sends", "",
                        ""),
    "answer-dtd": (EX_PROTOCOL, _M, "an XML answer with a DTD or entity, which AWS never sends", "", ""),
    "credentials-malformed": (EX_PROTOCOL, _A, "credentials in the answer that are not printable ASCII", "", ""),
    "unexpected-answer": (EX_PROTOCOL, _M, "an HTTP error without an AWS error code: not AWS's answer (a proxy or "
                          "captive portal?)", "", ""),
    # AWS refused: hop 1, the IoT credentials provider.
    "thing-not-attached": (EX_NOPERM, _A, "thing_name {thing!r} is not attached to this certificate",
                           "the thing named by thing_name is not attached to this certificate",
                           "aws iot attach-thing-principal --thing-name {thing} --principal <certificate ARN>, or "
                           "correct thing_name in [iot]"),
    "certificate-inactive": (EX_NOPERM, _A, "the certificate is not valid on this endpoint (inactive, revoked, "
                             "unknown, or registered in another account or region)",
                             "the certificate is inactive, revoked, or not registered with AWS IoT where this "
                             "endpoint points",
                             "aws iot describe-certificate --certificate-id {cert_id}; aws iot update-certificate "
                             "--certificate-id {cert_id} --new-status ACTIVE"),
    "iot-policy-denied": (EX_NOPERM, _A, "the certificate may not assume role alias {alias!r} (is role_alias spelt "
                          "right, and does the certificate's IoT policy allow iot:AssumeRoleWithCertificate on it?)",
                          "role_alias is misspelt (AWS then refuses it as not allowed, not as missing), or the "
                          "certificate's IoT policy does not allow iot:AssumeRoleWithCertificate on the role alias",
                          "attach an IoT policy allowing iot:AssumeRoleWithCertificate on "
                          "arn:aws:iot:REGION:ACCOUNT:rolealias/{alias}"),
    "role-alias-not-found": (EX_UNAVAILABLE, _A, "role alias {alias!r} does not exist (check role_alias, and that "
                             "endpoint is the iot:CredentialProvider endpoint of the right account and region)",
                             "no role alias {alias!r} where this endpoint points",
                             "aws iot describe-role-alias --role-alias {alias}; endpoint must be the output of aws iot "
                             "describe-endpoint --endpoint-type iot:CredentialProvider in the same account and region"),
    "role-not-assumable": (EX_UNAVAILABLE, _A, "the role behind role alias {alias!r} cannot be assumed (it does not "
                           "exist, or its trust policy does not name credentials.iot.amazonaws.com)",
                           "the role behind the alias does not exist or does not trust credentials.iot.amazonaws.com",
                           'its trust policy needs {{"Principal": {{"Service": "credentials.iot.amazonaws.com"}}, '
                           '"Action": "sts:AssumeRole"}}'),
    "duration-exceeds-role-max": (EX_UNAVAILABLE, _A, "role alias {alias!r} asks for longer credentials than its "
                                  "role's MaxSessionDuration",
                                  "the role alias asks for longer credentials than the role's MaxSessionDuration",
                                  "aws iot update-role-alias --credential-duration-seconds 3600, or raise the role's "
                                  "MaxSessionDuration"),
    # Hop 2, STS.
    "assume-role-denied": (EX_NOPERM, _A, "AssumeRole into {role} was denied: the role's trust policy must name the "
                           "IoT role (with the external_id, if it has a condition) and the IoT role must be allowed "
                           "sts:AssumeRole on it",
                           "AWS's answer does not say which of two policies refused: (a) the trust policy of {role} "
                           "does not allow {caller}{condition}, or (b) {caller} is not allowed sts:AssumeRole on "
                           "{role}",
                           "(a) in the Lambda account: aws iam get-role --role-name {role_name} --query "
                           "Role.AssumeRolePolicyDocument; (b) in the IoT account: aws iam list-role-policies / "
                           "get-role-policy --role-name {caller_name}"),
    "sts-region-disabled": (EX_UNAVAILABLE, _A, "STS is not activated in {region} for the account: an administrator "
                            "activates it in the IAM account settings",
                            "STS is not activated in this region for the Lambda account",
                            "activate the region in the IAM console (Account settings), or set region"),
    "malformed-policy": (EX_UNAVAILABLE, _A, "STS refused a policy document", "", ""),
    "packed-policy-too-large": (EX_UNAVAILABLE, _A, "the session policies and tags are too large for STS", "", ""),
    "opt-in-required": (EX_UNAVAILABLE, _A, "the account is not subscribed to the service", "", ""),
    "invalid-parameter": (EX_UNAVAILABLE, _A, "AWS refused a parameter",
                          "AWS refused a parameter (for AssumeRole with role credentials, role chaining limits "
                          "DurationSeconds to one hour)", "set duration_seconds to 3600 or less, or leave it out"),
    "invalid-action": (EX_SOFTWARE, _A, "STS does not know the action iotinvoke sent: a bug", "", ""),
    "signature-incomplete": (EX_SOFTWARE, _A, "AWS found the signature incomplete: a bug", "", ""),
    "signature-missing": (EX_SOFTWARE, _A, "AWS found no signature: a bug, or a proxy strips headers", "", ""),
    # Any hop.
    "token-expired": (EX_NOPERM, _A, "the credentials were refused as expired", "", ""),
    "token-invalid": (EX_NOPERM, _A, "the credentials were refused as invalid", "", ""),
    "signature-mismatch": (EX_NOPERM, _A, "AWS refused the request signature", "", ""),
    "clock-skew": (EX_NOPERM, _A, "AWS refused the request time even after taking its clock (is the clock right?)",
                   "the local clock is too far from AWS's", "start NTP before iotinvoke runs"),
    "throttled": (EX_TEMPFAIL, _A, "throttled", "", ""),
    "server-error": (EX_TEMPFAIL, _A, "AWS server error", "", ""),
    "denied": (EX_NOPERM, _A, "refused (an unknown code with HTTP 401 or 403)", "", ""),
    "not-found": (EX_UNAVAILABLE, _A, "not found (an unknown code with HTTP 404)", "", ""),
    "refused": (EX_UNAVAILABLE, _A, "refused (an unknown code with another HTTP 4xx)", "", ""),
    # Hop 3, Lambda: the caller's request ...
    "function-not-found": (EX_UNAVAILABLE, _A, "function not found",
                           "no such function (or version/alias) in that account and region",
                           "aws lambda get-function --function-name {function} in the Lambda account; check function, "
                           "region and qualifier"),
    "invoke-denied": (EX_NOPERM, _A, "invoke of {function} was denied",
                      "the role {role} is not allowed lambda:InvokeFunction on {function}",
                      "give the role an identity policy allowing lambda:InvokeFunction on the function's ARN (and "
                      "ARN:*)"),
    "no-published-version": (EX_UNAVAILABLE, _A, "the function has no published version", "", ""),
    "recursive-invocation": (EX_UNAVAILABLE, _A, "Lambda stopped a recursive loop of invocations", "", ""),
    "durable-execution-exists": (EX_UNAVAILABLE, _A, "a durable execution with this name already exists", "", ""),
    "request-timeout": (EX_TEMPFAIL, _A, "Lambda timed out reading the request: nothing ran", "", ""),
    # ... the function's state (https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html) ...
    "function-not-ready": (EX_TEMPFAIL, _A, "the function is not ready (Pending, or Inactive and being restored); "
                           "it becomes Active by itself",
                           "the function is Pending or Inactive; Lambda makes it Active by itself",
                           "retry in a minute; aws lambda get-function --function-name {function} --query "
                           "Configuration.State"),
    "snapstart-not-ready": (EX_TEMPFAIL, _A, "the function's SnapStart snapshot is still being created", "", ""),
    "vpc-not-ready": (EX_TEMPFAIL, _A, "the function's VPC connection is not available yet", "", ""),
    # ... set-up failures before the handler runs that clear by themselves ...
    "ec2-throttled": (EX_TEMPFAIL, _A, "Lambda could not start the function (EC2 throttled it): it clears by itself",
                      "", ""),
    "ec2-unexpected": (EX_TEMPFAIL, _A, "Lambda could not start the function (an EC2 error): it clears by itself",
                       "", ""),
    "efs-mount-unreachable": (EX_TEMPFAIL, _A, "Lambda could not reach the function's file system", "", ""),
    "efs-mount-timeout": (EX_TEMPFAIL, _A, "mounting the function's file system timed out", "", ""),
    "s3files-mount-unreachable": (EX_TEMPFAIL, _A, "Lambda could not reach the function's S3 Files mount", "", ""),
    "s3files-mount-timeout": (EX_TEMPFAIL, _A, "mounting the function's S3 Files timed out", "", ""),
    "snapstart-timeout": (EX_TEMPFAIL, _A, "restoring the function's SnapStart snapshot timed out", "", ""),
    # ... set-up failures before the handler runs that only the function's owner can fix ...
    "ec2-access-denied": (EX_UNAVAILABLE, _A, "the function's role may not manage its VPC interfaces", "", ""),
    "eni-limit": (EX_UNAVAILABLE, _A, "the function's VPC has no network interface left for it", "", ""),
    "subnet-ips-exhausted": (EX_UNAVAILABLE, _A, "the function's subnets have no IP address left", "", ""),
    "invalid-subnet": (EX_UNAVAILABLE, _A, "the function names a subnet that does not exist", "", ""),
    "invalid-security-group": (EX_UNAVAILABLE, _A, "the function names a security group that does not exist", "", ""),
    "kms-denied": (EX_UNAVAILABLE, _A, "Lambda may not decrypt the function's environment (KMS access denied)", "",
                   ""),
    "kms-disabled": (EX_UNAVAILABLE, _A, "the function's KMS key is disabled", "", ""),
    "kms-invalid-state": (EX_UNAVAILABLE, _A, "the function's KMS key is in an invalid state", "", ""),
    "kms-not-found": (EX_UNAVAILABLE, _A, "the function's KMS key does not exist", "", ""),
    "invalid-runtime": (EX_UNAVAILABLE, _A, "the function's runtime is not supported", "", ""),
    "invalid-zip": (EX_UNAVAILABLE, _A, "the function's deployment package cannot be unpacked", "", ""),
    "efs-mount-failed": (EX_UNAVAILABLE, _A, "the function's file system refused the mount", "", ""),
    "s3files-mount-failed": (EX_UNAVAILABLE, _A, "the function's S3 Files mount failed", "", ""),
    "snapstart-restore-failed": (EX_UNAVAILABLE, _A, "the function's SnapStart snapshot could not be restored", "",
                                 ""),
    # ... failures during or after the function's run: it may have run.
    "lambda-service-error": (EX_IOERR, _M, "Lambda failed after accepting the invoke", "", ""),
    "lambda-server-error": (EX_IOERR, _M, "Lambda answered with a server error", "", ""),
    "efs-io": (EX_IOERR, _M, "the function's file system failed while it ran", "", ""),
    # Throttles, by TooManyRequestsException's Reason (ThrottleReason in botocore's model). Reserved
    # concurrency of 0 is its owner stopping the function; indistinguishable from a reserved limit
    # reached under load, so it stays transient and the caller is told to wait longer.
    "account-concurrency-limit": (EX_TEMPFAIL, _A, "throttled: the account's concurrency is used up", "", ""),
    "function-rate-limit": (EX_TEMPFAIL, _A, "throttled: the function's invocation rate limit", "", ""),
    "reserved-concurrency-limit": (EX_TEMPFAIL, _A, "throttled: the function's reserved concurrency is used up "
                                   "(or set to 0 by its owner)", "", ""),
    "reserved-rate-limit": (EX_TEMPFAIL, _A, "throttled: the function's reserved invocation rate", "", ""),
    "caller-rate-limit": (EX_TEMPFAIL, _A, "throttled: the caller's invocation rate", "", ""),
    "snapshot-create-limit": (EX_TEMPFAIL, _A, "throttled: too many SnapStart snapshots being created", "", ""),
    # The agent (--serve) and its callers: a refused request ran nothing.
    "agent-peer-refused": (EX_NOPERM, _N, "a caller of the agent whose user is not allowed (agent_users, "
                           "agent_groups): nothing ran", "", "add the user to agent_users, or its group to agent_groups"),
    "agent-busy": (EX_TEMPFAIL, _N, "the agent has as many callers, or request bytes, as it takes: "
                   "nothing ran", "", ""),
    "agent-stopping": (EX_TEMPFAIL, _N, "the agent is stopping: nothing ran", "", ""),
    "agent-request-timeout": (EX_TEMPFAIL, _N, "the request to the agent did not arrive whole within "
                              "10 s: nothing ran", "", ""),
    "agent-bad-request": (EX_USAGE, _N, "not the agent's protocol, or a field over its bound (65: standard "
                          "input over Lambda's limit): nothing ran", "", ""),
    "agent-option-refused": (EX_USAGE, _N, "an option that makes no sense through the agent (77: "
                             "--credential-process from another user than the agent's)", "",
                             "see README: The agent"),
    "agent-running": (EX_UNAVAILABLE, _N, "--serve: another agent already listens on that socket", "", ""),
}


class IotInvokeError(Exception):
    """Any failure iotinvoke reports: one line for stderr, a reason of REASONS and its exit status.

    ``hop`` is "config", "payload", "iot", "sts", "lambda", "output" or ""; ``status``, ``code`` and
    ``request_id`` are AWS's HTTP status, error code and request id when AWS answered. ``reason``
    is a stable slug that programs may branch on; ``exit_code`` is REASONS' status for it (a
    MAY_HAVE_RUN reason is 75 where no function could have run); ``retry_after`` is how many
    seconds a caller should wait before trying again, when known. Both end the line as
    ``[reason; retry after N s]``.
    """

    def __init__(
        self,
        message: str,
        reason: str,
        hop: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.reason, self.hop = message, reason, hop
        self.exit_code = REASONS[reason][0] if exit_code is None else exit_code
        self.status, self.code, self.request_id = status, code, request_id
        self.retry_after = retry_after
        self.server_time: float | None = None  # AWS's clock (its Date header) when it refused our time stamp

    @property
    def sent(self) -> str:
        """The send class: NOTHING_SENT, NOT_RUN or MAY_HAVE_RUN."""
        return REASONS[self.reason][1]

    def __str__(self) -> str:
        detail = [self.code] if self.code else []
        if self.status is not None:
            detail.append("HTTP %d" % self.status)
        if self.request_id:
            detail.append("request id " + self.request_id)
        tags = [self.reason]
        if self.retry_after is not None and self.exit_code == EX_TEMPFAIL:
            tags.append("retry after %d s" % max(1, round(self.retry_after)))
        return "%s%s%s [%s]" % (self.hop + ": " if self.hop else "", self.message,
                                " (%s)" % ", ".join(detail) if detail else "", "; ".join(tags))


class ConfigError(IotInvokeError):
    """The configuration is missing, invalid or unsafe; the message names the file, section and key."""

    def __init__(self, message: str, path: str = "", section: str = "", key: str = "", reason: str = "config") -> None:
        where = path + (" [%s]" % section if section else "") + (" " + key if key else "")
        super().__init__((where + ": " if where else "") + message, reason, "config")
        self.path, self.section, self.key = path, section, key


def _status(reason: str, harmless: bool) -> int:
    """The exit status of ``reason`` for a request that ``harmless``ly may be repeated (a
    credentials request, a DryRun, an idempotent function): there "may have run" runs nothing
    that matters, so the failure is transient."""
    exit_code, sent = REASONS[reason][:2]
    return EX_TEMPFAIL if harmless and sent == MAY_HAVE_RUN and exit_code == EX_IOERR else exit_code

# --- What each AWS error code means ---------------------------------------------------------------
#
# (hop, error code) -> reason. Lambda rows: every error of Invoke in botocore's model
# (botocore/data/lambda/2015-03-31/service-2.json: status and text from each shape's documentation)
# and the common errors of the Lambda API reference (ThrottlingException, RequestTimeoutException:
# https://docs.aws.amazon.com/lambda/latest/api/CommonErrors.html), plus what AWS sends that the
# model does not list. STS rows: AssumeRole's modelled errors (botocore/data/sts/2011-06-15/
# service-2.json) and STS's common errors (https://docs.aws.amazon.com/STS/latest/APIReference/
# CommonErrors.html). IoT rows: the credentials provider has no model; its documented answers
# (https://docs.aws.amazon.com/iot/latest/developerguide/authorizing-direct-aws.html) carry only a
# message, from which _aws_error_fields derives the code (_IOT_MESSAGES). A code without a row is
# decided by its HTTP status (_aws_reason). tests/test_error_table.py fails when an installed
# model lists an error without a row.
AWS_ERRORS: dict[tuple[str, str], str] = {
    ("iot", "InvalidThingName"): "thing-not-attached",
    ("iot", "CertificateInvalid"): "certificate-inactive",
    ("iot", "AccessDenied"): "iot-policy-denied",
    ("iot", "RoleAliasNotFound"): "role-alias-not-found",
    ("iot", "RoleNotAssumable"): "role-not-assumable",
    ("iot", "DurationExceedsMax"): "duration-exceeds-role-max",
    ("iot", "Throttling"): "throttled",
    ("sts", "MalformedPolicyDocument"): "malformed-policy",
    ("sts", "PackedPolicyTooLarge"): "packed-policy-too-large",
    ("sts", "RegionDisabledException"): "sts-region-disabled",
    ("sts", "ExpiredTokenException"): "token-expired",
    ("sts", "ExpiredToken"): "token-expired",
    ("sts", "AccessDenied"): "assume-role-denied",
    ("sts", "InvalidClientTokenId"): "token-invalid",
    ("sts", "SignatureDoesNotMatch"): "signature-mismatch",
    ("sts", "RequestExpired"): "clock-skew",
    ("sts", "IncompleteSignature"): "signature-incomplete",
    ("sts", "MissingAuthenticationToken"): "signature-missing",
    ("sts", "OptInRequired"): "opt-in-required",
    ("sts", "ValidationError"): "invalid-parameter",
    ("sts", "InvalidParameterValue"): "invalid-parameter",
    ("sts", "InvalidParameterCombination"): "invalid-parameter",
    ("sts", "MissingParameter"): "invalid-parameter",
    ("sts", "InvalidAction"): "invalid-action",
    ("sts", "InvalidQueryParameter"): "invalid-parameter",
    ("sts", "MalformedQueryString"): "invalid-parameter",
    ("sts", "Throttling"): "throttled",
    ("sts", "InternalFailure"): "server-error",
    ("sts", "ServiceUnavailable"): "server-error",
    ("lambda", "ResourceNotFoundException"): "function-not-found",
    ("lambda", "InvalidParameterValueException"): "invalid-parameter",
    ("lambda", "InvalidRequestContentException"): "payload-rejected",
    ("lambda", "UnsupportedMediaTypeException"): "payload-rejected",
    ("lambda", "RequestTooLargeException"): "payload-too-large",
    ("lambda", "SerializedRequestEntityTooLargeException"): "payload-too-large",
    ("lambda", "RequestEntityTooLargeException"): "payload-too-large",  # seen on the wire
    ("lambda", "NoPublishedVersionException"): "no-published-version",
    ("lambda", "RecursiveInvocationException"): "recursive-invocation",
    ("lambda", "DurableExecutionAlreadyStartedException"): "durable-execution-exists",
    ("lambda", "TooManyRequestsException"): "throttled",
    ("lambda", "RequestTimeoutException"): "request-timeout",
    ("lambda", "ResourceConflictException"): "function-not-ready",
    ("lambda", "SnapStartNotReadyException"): "snapstart-not-ready",
    ("lambda", "ResourceNotReadyException"): "vpc-not-ready",
    ("lambda", "EC2ThrottledException"): "ec2-throttled",
    ("lambda", "EC2UnexpectedException"): "ec2-unexpected",
    ("lambda", "EFSMountConnectivityException"): "efs-mount-unreachable",
    ("lambda", "EFSMountTimeoutException"): "efs-mount-timeout",
    ("lambda", "S3FilesMountConnectivityException"): "s3files-mount-unreachable",
    ("lambda", "S3FilesMountTimeoutException"): "s3files-mount-timeout",
    ("lambda", "SnapStartTimeoutException"): "snapstart-timeout",
    ("lambda", "EC2AccessDeniedException"): "ec2-access-denied",
    ("lambda", "ENILimitReachedException"): "eni-limit",
    ("lambda", "SubnetIPAddressLimitReachedException"): "subnet-ips-exhausted",
    ("lambda", "InvalidSubnetIDException"): "invalid-subnet",
    ("lambda", "InvalidSecurityGroupIDException"): "invalid-security-group",
    ("lambda", "KMSAccessDeniedException"): "kms-denied",
    ("lambda", "KMSDisabledException"): "kms-disabled",
    ("lambda", "KMSInvalidStateException"): "kms-invalid-state",
    ("lambda", "KMSNotFoundException"): "kms-not-found",
    ("lambda", "InvalidRuntimeException"): "invalid-runtime",
    ("lambda", "InvalidZipFileException"): "invalid-zip",
    ("lambda", "EFSMountFailureException"): "efs-mount-failed",  # 403, but not IAM's
    ("lambda", "S3FilesMountFailureException"): "s3files-mount-failed",
    ("lambda", "SnapStartException"): "snapstart-restore-failed",
    ("lambda", "ServiceException"): "lambda-service-error",
    ("lambda", "EFSIOException"): "efs-io",
    ("lambda", "AccessDeniedException"): "invoke-denied",
    ("lambda", "UnrecognizedClientException"): "token-invalid",
    ("lambda", "ExpiredTokenException"): "token-expired",
    ("lambda", "InvalidSignatureException"): "signature-mismatch",
}
# Codes that mean throttling on any hop: botocore's standard retry mode, the Java v2 and JS v3
# SDKs classify these so (botocore/retries/standard.py: _THROTTLED_ERROR_CODES).
_THROTTLE_CODES = ("Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                   "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                   "BandwidthLimitExceeded", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException")
# Codes that are clock skew when their message says so, and codes that always are (the Java v2 and
# JS v3 SDKs list RequestExpired and RequestTimeTooSkewed among their clock-skew codes).
_SKEW_CODES = ("InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure")
_ALWAYS_SKEW_CODES = ("RequestTimeTooSkewed", "RequestExpired")
_SKEW_MARKERS = ("Signature expired", "Signature not yet current", "too skewed", "RequestExpired")
THROTTLE_REASONS = {  # TooManyRequestsException's Reason -> reason
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
    ("rate exceeded", "Throttling"),
)


def _aws_reason(hop: str, status: int, code: str | None, message: str = "") -> str:
    """The reason of an AWS error answer: its code's row, else what its HTTP status says."""
    row = AWS_ERRORS.get((hop, code or ""))
    if code in _ALWAYS_SKEW_CODES or (code in _SKEW_CODES and any(m in message for m in _SKEW_MARKERS)):
        return "clock-skew"
    if row is not None:
        return row
    if status == 429 or code in _THROTTLE_CODES or message.strip().lower().startswith("rate exceeded"):
        return "throttled"
    if status >= 500:
        # A server error from Lambda may come after the function ran; credentials can be fetched again.
        return "lambda-server-error" if hop == "lambda" else "server-error"
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "not-found"
    if 400 <= status < 500 and code:
        return "refused"
    return "unexpected-answer"  # no error code: not an AWS error answer

# === Configuration ================================================================================
#
# One table drives parsing, validation, defaults and README's configuration table. Scopes: "iot"
# only in [iot]; "global" in [DEFAULT] or [iot] (the process's settings); "env" only in an
# environment section; "per-env" in [DEFAULT] or an environment section. Kinds are the parsers of
# _parse_value. Environment variables, where a row names them, win over the file (as boto3's do).
_REQUIRED = "required"
# key -> (scope, kind, default, environment variables, what it is)
CONFIG_KEYS: dict[str, tuple[str, str, object, str, str]] = {
    "endpoint": ("iot", "iot-endpoint", _REQUIRED, "", "the credentials provider endpoint: aws iot describe-endpoint "
                 "--endpoint-type iot:CredentialProvider (a host, or https://host[:port])"),
    "role_alias": ("iot", "role-alias", _REQUIRED, "", "the role alias whose role hop 1 gives credentials of"),
    "cert": ("iot", "file", _REQUIRED, "", "the device certificate (PEM)"),
    "key": ("iot", "secret-file", _REQUIRED, "", "its private key (PEM), or a PKCS#11 provider URI file"),
    "ca": ("iot", "file", None, "", "CA file for hop 1 (default: Amazon's roots, built in)"),
    "thing_name": ("iot", "thing-name", None, "", "sent as x-amzn-iot-thingname (IoT policy variables)"),
    "openssl_conf": ("iot", "file", None, "", "an OpenSSL configuration that loads the key's provider"),
    "pin_file": ("iot", "secret-file", None, "", "a file holding the token's PIN (or the key's passphrase)"),
    "learn_clock": ("global", "bool", True, "", "learn AWS's time at boot when the board's clock is behind (README: "
                    "Clock at boot)"),
    "cache_dir": ("global", "folder", None, "IOTINVOKE_CACHE_DIR", "the credential cache (default: a run-time "
                  "folder; README: Cache location)"),
    "connect_timeout": ("global", "seconds", CONNECT_TIMEOUT_S, "", "bounds connecting: DNS, TCP, proxy, TLS"),
    "credentials_timeout": ("global", "seconds", CREDENTIALS_READ_TIMEOUT_S, "", "bounds the whole answer of hops 1 "
                            "and 2, after connecting"),
    "read_timeout": ("global", "seconds", None, "", "bounds the whole answer of the invoke, after connecting "
                     "(default %g s; Event and DryRun %g s)" % (INVOKE_READ_TIMEOUT_S, ASYNC_READ_TIMEOUT_S)),
    "max_attempts": ("global", "attempts", MAX_ATTEMPTS, "", "tries per hop, the first included (1-10)"),
    "function": ("env", "function", _REQUIRED, "", "a function name, partial ARN or ARN"),
    "role_arn": ("env", "role-arn", None, "", "the role in the function's account (absent: one-hop mode)"),
    "external_id": ("env", "external-id", None, "", "sent with AssumeRole"),
    "region": ("env", "region", None, "", "default: the function ARN's, else the IoT endpoint's"),
    "qualifier": ("env", "qualifier", None, "", "a version or alias"),
    "duration_seconds": ("env", "duration", None, "", "of the role's credentials, 900-3600"),
    "idempotent": ("env", "bool", False, "", "running the function twice is harmless: re-send an invoke whose "
                   "answer was lost"),
    "sts_endpoint": ("per-env", "endpoint", None, "AWS_ENDPOINT_URL_STS AWS_ENDPOINT_URL", "STS (default: the "
                     "region's)"),
    "lambda_endpoint": ("per-env", "endpoint", None, "AWS_ENDPOINT_URL_LAMBDA AWS_ENDPOINT_URL", "Lambda (default: "
                        "the region's)"),
    "ca_bundle": ("per-env", "file", None, "AWS_CA_BUNDLE", "CA file for hops 2 and 3 (default: Amazon's roots)"),
    "agent_users": ("global", "names", None, "", "users (names or uids) the agent (--serve) serves besides its "
                    "own user"),
    "agent_groups": ("global", "names", None, "", "groups (names or gids) whose members the agent serves"),
    "agent_idle_exit": ("global", "idle-seconds", None, "", "socket-activated, the agent exits after this long "
                        "without a caller (default %g s; 0: never)" % AGENT_IDLE_EXIT_S),
}
_SCOPES = {"iot": ("iot", "global"), "DEFAULT": ("global", "per-env"), "env": ("env", "per-env")}

# The partitions iotinvoke knows: (name, DNS suffix, region pattern), as botocore's partition data
# has them (botocore/data/partitions.json; tests/test_config.py checks them against the installed
# botocore). The isolated partitions (aws-iso*) have no IoT credentials provider: unsupported.
PARTITIONS = (
    ("aws", "amazonaws.com", r"(us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+"),
    ("aws-cn", "amazonaws.com.cn", r"cn-\w+-\d+"),
    ("aws-us-gov", "amazonaws.com", r"us-gov-\w+-\d+"),
    ("aws-eusc", "amazonaws.eu", r"eusc-(de)-\w+-\d+"),
)


class Environment:
    """One environment section: which function to invoke and how (two hops or one)."""

    __slots__ = ("name", "function", "role_arn", "external_id", "region", "qualifier", "duration_seconds",
                 "sts_endpoint", "lambda_endpoint", "ca_bundle", "ca_bundle_source", "idempotent", "_invoke_url")

    def __init__(self, **fields: object) -> None:
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
    _invoke_url: str | None

    @property
    def direct(self) -> bool:
        return self.role_arn is None

    @property
    def invoke_url(self) -> str:
        """Lambda's Invoke URL for the function, without a qualifier. Quoted once, not at every call
        of a long-lived Client (the agent, --stream): quote() walks the ARN character by character."""
        if self._invoke_url is None:
            from urllib.parse import quote

            self._invoke_url = "%s/2015-03-31/functions/%s/invocations" % (self.lambda_endpoint,
                                                                         quote(self.function, safe=""))
        return self._invoke_url

    @property
    def cross_account(self) -> bool | None:
        """Whether the invoke crosses accounts: known in two-hop mode (the role's account against the
        function's), unknown (None) in one-hop mode, where the IoT role's account is not configured."""
        if self.role_arn is None:
            return None
        account = self.function.split(":")[4] if self.function.startswith("arn:") else (
            self.function.split(":")[0] if ":function:" in self.function else None)
        return account is not None and account != self.role_arn.split(":")[4]


class Config:
    """The parsed configuration: the [iot] section's and the process's settings (CONFIG_KEYS of
    scope iot and global, as attributes of the same names) and the environments."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.iot_endpoint = ""  # https://host[:port], the endpoint key
        self.role_alias = self.cert = self.key = ""
        self.ca: str | None = None
        self.thing_name: str | None = None
        self.openssl_conf: str | None = None
        self.pin_file: str | None = None
        self.learn_clock = True
        self.cache_dir: str | None = None
        self.connect_timeout = CONNECT_TIMEOUT_S
        self.credentials_timeout = CREDENTIALS_READ_TIMEOUT_S
        self.read_timeout: float | None = None  # of the invoke; None: by invocation type
        self.max_attempts = MAX_ATTEMPTS
        self.environments: dict[str, Environment] = {}

    @property
    def region(self) -> str | None:
        """The IoT endpoint's region: the label before the partition's DNS suffix."""
        return _endpoint_region(_host_port(self.iot_endpoint)[0])


def find_config(path: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The configuration file: --config, $IOTINVOKE_CONFIG, then the search path of _config_search_path().

    The working directory is not searched: a C program inherits its caller's, which may be /tmp,
    where any user can leave an iotinvoke.ini (CWE-426)."""
    if path:
        return path
    if environ.get("IOTINVOKE_CONFIG"):
        return environ["IOTINVOKE_CONFIG"]
    search = _config_search_path(environ)
    for candidate in search:
        if os.path.exists(candidate):
            return candidate
    raise ConfigError("no configuration file: pass --config PATH, set IOTINVOKE_CONFIG, or create " + " or ".join(search))


def _config_search_path(environ: Mapping[str, str]) -> list[str]:
    """The user's own file (XDG Base Directory), then the board's; root, whose environment a sudo
    may have carried over from another user, takes the board's only."""
    if os.geteuid() == 0:
        return ["/etc/iotinvoke/iotinvoke.ini"]
    home = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return [os.path.join(home, "iotinvoke", "iotinvoke.ini"), "/etc/iotinvoke/iotinvoke.ini"]


def load_config(path: str | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read and validate the INI configuration; every problem is a ConfigError naming its place.
    Pure: it reads files and ``environ``, and changes nothing."""
    path = find_config(path, environ)
    lines = _read_config_file(path)
    parser: _PlainIni | configparser.ConfigParser | None = _read_plain_ini(lines)
    if parser is None:
        import configparser

        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
        try:
            parser.read_file(lines, source=path)
        except configparser.Error as e:
            raise ConfigError("not a valid INI file: %s" % " ".join(str(e).split()), path) from None
    config = Config(path)
    folder = os.path.dirname(os.path.abspath(path))
    defaults = dict(parser.defaults())
    _check_keys(defaults, "DEFAULT", {}, path)
    if not parser.has_section("iot"):
        raise ConfigError("missing section [iot] (endpoint, role_alias, cert, key)", path)
    iot = dict(parser["iot"])
    _check_keys(iot, "iot", defaults, path)
    for key, (scope, _, _, _, _) in CONFIG_KEYS.items():
        if scope in ("iot", "global"):
            value = _setting(key, iot, "iot", folder, environ, path)
            setattr(config, "iot_endpoint" if key == "endpoint" else key, value)
    host = _host_port(config.iot_endpoint)[0].lower()
    if _endpoint_region(host) is not None and ".credentials.iot." not in host:
        what = "the IoT data endpoint" if ".iot." in host else "the endpoint of another AWS service"
        raise ConfigError("this is %s; use the credentials endpoint (aws iot describe-endpoint --endpoint-type "
                          "iot:CredentialProvider)" % what, path, "iot", "endpoint")
    for name in parser.sections():
        if name != "iot":
            section = dict(parser[name])
            _check_keys(section, name, defaults, path)
            config.environments[name] = _environment(name, section, config, folder, environ, path)
    return config


def _read_config_file(path: str) -> list[str]:
    """The file's lines, once it is known to be safe: a regular file, owned by this user or root and
    not writable by group or others (as OpenSSH's StrictModes), so that no other local user steers
    the call (its endpoints and CA decide where the payload and a signed request go)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError("configuration file not found", path) from None
    except OSError as e:
        raise ConfigError("cannot read the configuration file: %s" % _os_reason(e), path) from None
    with os.fdopen(fd, "rb") as f:
        problem = _unsafe(os.fstat(fd), secret=False)
        if problem:
            raise ConfigError("refused: it %s (it must be owned by you or root and not writable by group or "
                              "others)" % problem, path, reason="config-unsafe")
        data = f.read(1 << 20)
    try:
        return data.decode("utf-8").splitlines(keepends=True)  # decoded line by line, as configparser reads
    except UnicodeDecodeError as e:
        raise ConfigError("cannot read the configuration file: not UTF-8 (byte %d)" % e.start, path) from None


def _unsafe(st: os.stat_result, secret: bool) -> str:
    """Why a file of this stat may not be trusted ('' when it may): not a regular file, owned by
    another user than this one or root, writable by group or others, or (``secret``) readable by others."""
    import stat

    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, device, socket or folder)"
    if st.st_uid not in (0, os.geteuid()):
        return "belongs to uid %d, neither you (uid %d) nor root" % (st.st_uid, os.geteuid())
    if st.st_mode & 0o022:
        return "is writable by %s (mode %04o)" % ("others" if st.st_mode & 0o002 else "its group",
                                                  stat.S_IMODE(st.st_mode))
    if secret and st.st_mode & 0o004:
        return "is readable by others (mode %04o)" % stat.S_IMODE(st.st_mode)
    return ""


def _check_file(path: str, secret: bool, config_path: str, section: str, key: str) -> str:
    """A file the configuration names, refused at once when unsafe (_unsafe). A missing file is left
    to its use, which says which one is missing (exit 66). A key file holding a PKCS#11 URI without
    its PIN is no secret."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    problem = _unsafe(st, secret)
    uri = _provider_key_uri(path) if problem.startswith("is readable by others") and key == "key" else None
    if uri is not None and "pin-value" not in _uri_attributes(uri)[1]:
        problem = ""
    if problem:
        raise ConfigError("%s %s: refused (another user could plant or read it)" % (path, problem), config_path,
                          section, key, reason="file-unsafe")
    return path


def _setting(key: str, section: Mapping[str, str], name: str, folder: str, environ: Mapping[str, str],
             path: str) -> object:
    """One key of CONFIG_KEYS from a section (or its environment variable), parsed and checked."""
    scope, kind, default, variables, _ = CONFIG_KEYS[key]
    source = next((v for v in variables.split() if environ.get(v)), "")
    text = environ[source] if source else section.get(key)
    if text is None or text == "":
        if default is _REQUIRED:
            raise ConfigError("missing required key", path, name, key)
        return default
    if kind in ("file", "secret-file", "folder"):
        resolved = os.path.join(folder, os.path.expanduser(text))
        return resolved if kind == "folder" else _check_file(resolved, kind == "secret-file", path, name, key)
    value = _parse_value(kind, text)
    if value is None:
        raise ConfigError("invalid value %r: expected %s" % (text[:80], _KINDS[kind][1]), source or path,
                          "" if source else name, "" if source else key)
    return value


def _parse_value(kind: str, text: str) -> object:
    """text parsed as ``kind`` (a key of _KINDS), or None when it is not one."""
    pattern = _KINDS[kind][0]
    if kind in ("seconds", "attempts", "duration"):
        low, high = {"seconds": (MIN_TIMEOUT_S, MAX_TIMEOUT_S), "attempts": (1, 10),
                     "duration": (900, CHAINED_ROLE_MAX_DURATION_S)}[kind]
        return _bounded(text, float if kind == "seconds" else int, low, high)
    if kind == "bool":
        return {"true": True, "false": False}.get(text.lower())
    if kind in ("endpoint", "iot-endpoint"):
        return _endpoint_url(text)
    return text if _compile(pattern).fullmatch(text) else None


# kind -> (pattern, what is expected, for the error line)
_KINDS = {
    "role-alias": (r"[\w=,@-]{1,128}", "1-128 characters of [A-Za-z0-9_=,@-]"),
    "thing-name": (r"[a-zA-Z0-9:_-]{1,128}", "1-128 characters of [A-Za-z0-9:_-]"),
    "role-arn": (r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME"),
    "external-id": (r"[\w+=,.@:/-]{2,1224}", "2-1224 characters of [A-Za-z0-9+=,.@:/_-]"),
    "region": (r"[a-z]{2,4}(-[a-z]+)+-\d{1,2}", "a region name such as ap-northeast-1"),
    "qualifier": (r"\$LATEST|[a-zA-Z0-9_-]{1,128}", "a version number, alias or $LATEST"),
    "function": (r"(arn:aws[\w-]*:lambda:(?P<region>[a-z0-9-]+):\d{12}:function:|\d{12}:function:)?"
                 r"[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?",
                 "a function name, partial ARN (ACCOUNT:function:NAME) or function ARN"),
    "endpoint": ("", "a host name or https://host[:port] (port 1-65535)"),
    "iot-endpoint": ("", "a host name or https://host[:port] (port 1-65535)"),
    "seconds": ("", "seconds from %g to %g" % (MIN_TIMEOUT_S, MAX_TIMEOUT_S)),
    "attempts": ("", "a whole number from 1 to 10"),
    "duration": ("", "a whole number from 900 to %d (role chaining: at most one hour)" % CHAINED_ROLE_MAX_DURATION_S),
    "bool": ("", "true or false"),
    "names": (r"[\w.-]+([ ,]+[\w.-]+)*", "user or group names or numbers, separated by commas or spaces"),
    "idle-seconds": (r"\d{1,5}(\.\d*)?", "seconds from 0 (never) to 86400"),
}


def _environment(name: str, section: dict[str, str], config: Config, folder: str, environ: Mapping[str, str],
                 path: str) -> Environment:
    fields = {key: _setting(key, section, name, folder, environ, path)
              for key, (scope, _, _, _, _) in CONFIG_KEYS.items() if scope in ("env", "per-env")}
    env = Environment(name=name, **fields)
    if env.role_arn is None:
        for key in ("external_id", "duration_seconds"):
            if fields[key] is not None:
                raise ConfigError("%s needs role_arn (it is sent with AssumeRole)" % key, path, name, key)
    partition = _env_partition(env, config, path)
    if env.duration_seconds is not None:
        env.duration_seconds = int(env.duration_seconds)
    for key, service in (("sts_endpoint", "sts"), ("lambda_endpoint", "lambda")):
        if not fields[key]:
            setattr(env, key, "https://%s.%s.%s" % (service, env.region, partition[1]))
    env.ca_bundle_source = ("AWS_CA_BUNDLE" if environ.get("AWS_CA_BUNDLE") else
                            "[%s] ca_bundle" % name if env.ca_bundle else "")
    return env


def _env_partition(env: Environment, config: Config, path: str) -> tuple[str, str]:
    """The environment's region (given, else the function ARN's, else the IoT endpoint's) and its
    partition's (name, DNS suffix); the ARNs must be of that partition."""
    match = _compile(_KINDS["function"][0]).fullmatch(env.function)
    env.region = env.region or (match.group("region") if match else None) or config.region or ""
    partition = _partition(env.region)
    if partition is None:
        raise ConfigError("cannot tell the region: give region, or the function as a full ARN" if not env.region else
                          "%r is not a region of the partitions iotinvoke supports (%s)" % (
                              env.region, ", ".join(p[0] for p in PARTITIONS)), path, env.name, "region")
    for key in ("function", "role_arn"):
        value = str(getattr(env, key) or "")
        if value.startswith("arn:") and value.split(":")[1] != partition[0]:
            raise ConfigError("the ARN's partition %r is not %s's (%s)" % (value.split(":")[1], env.region, partition[0]),
                              path, env.name, key)
    return partition


def _check_keys(section: Mapping[str, str], name: str, defaults: Mapping[str, str], path: str) -> None:
    # A mistyped role_arn must not silently turn an environment into one-hop mode.
    scopes = _SCOPES.get(name, _SCOPES["env"])
    allowed = sorted(k for k, row in CONFIG_KEYS.items() if row[0] in scopes)
    for key in section:
        inherited = name != "DEFAULT" and key in defaults and section[key] == defaults[key]
        if key not in allowed and not inherited:
            raise ConfigError("unknown key (allowed %s: %s)" % ("here" if name == "DEFAULT" else "in [%s]" % name,
                                                                ", ".join(allowed)), path, name, key)


def _partition(region: str) -> tuple[str, str] | None:
    """(partition, DNS suffix) of a region, or None."""
    for name, suffix, pattern in PARTITIONS:
        if _compile(pattern).fullmatch(region):
            return name, suffix
    return None


def _endpoint_region(host: str) -> str | None:
    """The region of an AWS host name (the label before its partition's DNS suffix), or None."""
    for _, suffix, pattern in sorted(PARTITIONS, key=lambda p: -len(p[1])):
        if host.endswith("." + suffix):
            region = host[: -len(suffix) - 1].rsplit(".", 1)[-1]
            return region if _compile(pattern).fullmatch(region) else None
    return None


def _bounded(text: str, parse: Callable[[str], float], low: float, high: float) -> float | None:
    """text as a number from low to high (NaN and infinities never are), else None. ASCII only:
    int() and float() would take Arabic-Indic and other digits."""
    try:
        value = parse(text) if text.isascii() else None
    except ValueError:
        return None
    return value if value is not None and low <= value <= high else None


def _endpoint_url(value: str) -> str | None:
    """A host name or an https:// URL with optional port (1-65535), as https://host[:port]; None if neither."""
    url = value if "://" in value else "https://" + value
    match = _compile(r"https://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?)(:([0-9]{1,5}))?/?").fullmatch(url)
    if not match or (match.group(4) and not 1 <= int(match.group(4)) <= 65535):
        return None
    if match.group(1).startswith("[") and not _is_ip_address(match.group(1)[1:-1]):
        return None
    return url.rstrip("/")


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    if hostport.startswith("["):  # IPv6 literal
        host, _, port = hostport[1:].partition("]")
        return host, int(port[1:]) if port else 443
    host, _, port = hostport.partition(":")
    return host, int(port) if port else 443


def _compile(pattern: str) -> re.Pattern[str]:
    import re

    return re.compile(pattern, re.ASCII)  # \d and \w: ASCII, as AWS's own patterns mean them



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

# === The clock ====================================================================================
#
# Boards without a real-time clock boot with a wrong date. SigV4 allows AWS's clock +-5 minutes and
# TLS checks certificate dates, so every time iotinvoke uses is the board's clock plus an offset
# learned from AWS: from the Date of its answers (kept when over CLOCK_SKEW_THRESHOLD_S, as the
# other AWS SDKs do; botocore does not: boto3 issue 1252), from a refused time stamp, or at boot
# from a probe when the server certificate is not yet valid by the board's clock (README: Clock at
# boot). The offset is kept in the cache (clock.json), so the next process starts right.


class _Clock:
    """The board's own clock (``local``), and AWS's as best known: local() + offset."""

    def __init__(self, local: Callable[[], float], offset: float = 0.0, save: Callable[[float], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.local = local
        self.offset = offset  # from _clock_offset, which refuses an implausible one
        self._save = save
        self._log = log
        self.board_drift: float | None = None  # AWS's time minus the board's own, at the last answer with a Date

    def now(self) -> float:
        return self.local() + self.offset

    def behind(self) -> bool:
        """The board's clock is well behind AWS's: certificate dates must be checked against now(),
        not by OpenSSL against the board's clock (see _ssl_context)."""
        return self.offset > CLOCK_SKEW_THRESHOLD_S

    def note(self, server_time: float | None) -> None:
        """An answer's Date: move to AWS's time when far from ours."""
        if server_time is None:
            return
        self.board_drift = server_time - self.local()
        if abs(server_time - self.now()) > CLOCK_SKEW_THRESHOLD_S:
            self.set(server_time, "local clock is %+.0f s off AWS's; correcting" % -self.board_drift)

    def learn(self, server_time: float | None) -> bool:
        """At boot, from a probe: forward only, and never to a time before this release (CLOCK_FLOOR):
        a Date no later than the board's own clock teaches nothing."""
        local = self.local()
        if server_time is None or server_time < max(local, CLOCK_FLOOR) + CLOCK_SKEW_THRESHOLD_S:
            return False
        self.board_drift = server_time - local
        self.set(server_time, "the board's clock is %.0f s behind AWS's (learned at boot); TLS dates now checked "
                 "against AWS's time" % (server_time - local))
        return True

    def set(self, server_time: float, why: str) -> None:
        offset = server_time - self.local()
        if abs(offset) > MAX_CLOCK_OFFSET_S:
            return
        self.offset = offset
        if self._log is not None:
            self._log("clock: " + why)
        if self._save is not None:
            self._save(offset)


def _clock_offset(entry: _Json | None) -> float:
    """The stored offset to AWS's clock; anything but a plausible number (NaN, 1e300) counts as none."""
    import math

    value = (entry or {}).get("offset")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if abs(value) <= MAX_CLOCK_OFFSET_S:
            return float(value)
    return 0.0

# === Credentials and the on-disk cache ============================================================


class Credentials:
    """Temporary AWS credentials. Attribute names are botocore's, so its signer takes them as they are.

    ``expiration`` is seconds since the epoch on AWS's clock; repr() never shows the secrets.
    """

    __slots__ = ("access_key", "secret_key", "token", "expiration", "issued", "refresh")

    def __init__(self, access_key: str, secret_key: str, token: str, expiration: float, issued: float,
                 refresh: float | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token
        self.expiration = expiration
        self.issued = issued  # when we received them (corrected clock): gives the lifetime
        # The refresh point (AWS's clock), drawn once per board (_Cache.refresh_fraction) and stored
        # with the cache entry, so that every process using the entry agrees on it.
        self.refresh = refresh

    def __repr__(self) -> str:
        return "Credentials(access_key=%r, expiration=%s)" % (self.access_key, _iso8601(self.expiration))

    def refresh_at(self) -> float:
        """The refresh point: as drawn, else the latest of refresh_window()."""
        return refresh_window(self.issued, self.expiration)[1] if self.refresh is None else self.refresh

    def fresh(self, now: float) -> bool:
        """Usable without a refresh: the refresh point not reached."""
        return now < self.refresh_at()

    def valid(self, now: float, margin: float = MIN_FALLBACK_VALIDITY_S) -> bool:
        return now < self.expiration - margin

    def to_json(self) -> _Json:
        """The AWS credential_process format (Version 1)."""
        return {"Version": 1, "AccessKeyId": self.access_key, "SecretAccessKey": self.secret_key,
                "SessionToken": self.token, "Expiration": _iso8601(self.expiration)}


def _cache_key(*parts: str) -> str:
    import hashlib

    return parts[0] + "-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32] + ".json"


class _Cache:
    """Credentials on disk between processes: one JSON file per entry, 0600 in a 0700 folder.

    Anything unexpected (a symlink, another owner, loose modes, a torn, foreign or hostile file) is
    a miss, never a crash; a folder that cannot be used, or a full disk, makes calls uncached, said
    once per boot through ``warn``. Time and randomness come from the Client (``monotonic``,
    ``sleep``, ``rand``).
    """

    def __init__(self, folder: str | None, log: Callable[[str], None], warn: Callable[[str], None] | None = None,
                 *, monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] | None = None, environ: Mapping[str, str] = os.environ) -> None:
        self._log = log
        self._warn = warn
        self._monotonic, self._sleep, self._rand = monotonic, sleep, rand
        self._environ = environ
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
                _forget_said("cache:" + folder, self._environ)  # usable again: a new breakage is said again
            return folder
        self._unusable(reason, folder)
        return None

    def _unusable(self, reason: str, folder: str) -> None:
        """Calls then run cold (a request per hop): say so the first time since boot (_say_once),
        under -v every time; never fail the call for it."""
        self._log("cache: %s: running uncached" % reason)
        if self._warn is not None and _say_once("cache:" + folder, self._environ):
            self._warn("cache: %s: calls run uncached; said once until reboot (README: Cache location)" % reason)

    def _path(self, key: str) -> str:
        return os.path.join(self.folder or "", key)

    def read_json(self, key: str) -> _Json | None:
        import json
        import stat

        if not self.folder:
            return None
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None  # absent, or a symlink (ELOOP)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                self._log("cache: ignoring %s: not a 0600 file of ours" % key)
                return None
            data = os.read(fd, MAX_CACHE_ENTRY_BYTES)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: a hostile file nested 100,000 deep
            self._log("cache: ignoring %s: not valid JSON" % key)
            return None
        return value if isinstance(value, dict) else None

    def write_json(self, key: str, value: _Json) -> None:
        import json

        if not self.folder:
            return
        data = json.dumps(value, separators=(",", ":")).encode()
        temp = self._path(".%s.%d.%s.tmp" % (key, os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(28, "No space left on device")
                os.fsync(fd)  # power loss on a board must not leave an empty entry behind os.replace
            finally:
                os.close(fd)
            os.replace(temp, self._path(key))
        except OSError as e:
            try:
                os.unlink(temp)
            except OSError:
                pass
            self._unusable("cannot write %s in %s (%s)" % (key, self.folder, _os_reason(e)), self.folder + ":write")

    def get(self, key: str) -> Credentials | None:
        entry = self.read_json(key)
        if entry is None:
            return None
        texts = [entry.get(name) for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")]
        times = [entry.get(name) for name in ("Expiration", "Issued")]
        if not all(isinstance(v, str) and v for v in texts) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in times):
            self._log("cache: ignoring %s: not a credentials entry" % key)
            return None
        creds = Credentials(str(texts[0]), str(texts[1]), str(texts[2]), float(times[0]),  # type: ignore[arg-type]
                            float(times[1]))  # type: ignore[arg-type]
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
        self.write_json(key, {"AccessKeyId": creds.access_key, "SecretAccessKey": creds.secret_key,
                              "SessionToken": creds.token, "Expiration": creds.expiration, "Issued": creds.issued,
                              "Refresh": creds.refresh_at()})

    def refresh_fraction(self) -> float:
        """This board's place in the refresh window, in [0, 1): drawn once (until the cache is
        cleared, or a reboot empties its tmpfs) and shared by all its entries. Boards differ, so a
        fleet spreads; the two hops of one board stay in step, so a hop 2 refresh never finds its
        hop 1 credentials expired when a failed hop 1 refresh needs them (scripts/fleet found
        independent draws failing calls in a credentials-provider outage)."""
        value = (self.read_json("jitter.json") or {}).get("fraction")
        if isinstance(value, float) and 0.0 <= value < 1.0:
            return value
        value = self._rand() if self._rand is not None else 0.0
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
        return _Lock(self._path(key + ".lock") if self.folder else None, self._log, deadline, self._monotonic,
                     self._sleep)


class _Lock:
    """An exclusive flock on a per-entry lock file, so that concurrent cold starts fetch once.

    The kernel drops a flock when its holder dies, so a killed process leaves no stale lock; a
    holder that hangs is waited for until ``deadline`` (monotonic), after which we go on without
    the lock. Nested locks of one call share one deadline, so the wait is LOCK_WAIT_S in all.
    """

    def __init__(self, path: str | None, log: Callable[[str], None], deadline: float,
                 monotonic: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._path, self._log, self._deadline = path, log, deadline
        self._monotonic, self._sleep = monotonic, sleep
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
                if self._monotonic() > self._deadline:
                    self._log("cache: lock %s held for over %.0f s: going on unlocked" % (self._path, LOCK_WAIT_S))
                    return self
                self._sleep(LOCK_POLL_S)

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



# === Transport ====================================================================================
#
# One HTTPS exchange at a time. The transport reports facts and never sends anything twice: an
# answer; or an IotInvokeError whose reason says whether anything was sent. Its pools' connections
# note when they are ready to carry a request (connected, tunnelled, TLS handshake done, or reused):
# a failure before that proves nothing was sent, whatever exception the urllib3 version raises for
# it; any failure after that may come after the server acted. Client decides what follows.


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # urllib3's HTTPHeaderDict: case-insensitive
        self.body = body


class _Watchdog:
    """One thread that runs each armed callback once its deadline passes, unless disarmed first
    (a threading.Timer per request started a thread per request). The thread starts at the first
    arm and ends after WATCHDOG_LINGER_S unarmed."""

    def __init__(self) -> None:
        import _thread

        self._guard = _thread.allocate_lock()  # builtin: no threading import for a call that sends nothing
        self._cond: threading.Condition | None = None
        self._armed: dict[object, tuple[float, Callable[[], None]]] = {}
        self._running = False
        self._wake_at = float("inf")

    def arm(self, seconds: float, callback: Callable[[], None]) -> object:
        import threading

        with self._guard:
            if self._cond is None:
                self._cond = threading.Condition()
        token = object()
        deadline = time.monotonic() + seconds
        with self._cond:
            self._armed[token] = (deadline, callback)
            if not self._running:
                self._running = True
                threading.Thread(target=self._watch, name="iotinvoke-watchdog", daemon=True).start()
            elif deadline < self._wake_at:
                self._cond.notify()
        return token

    def disarm(self, token: object) -> None:
        """After this returns the callback has run or never will (callbacks run under the lock)."""
        assert self._cond is not None
        with self._cond:
            self._armed.pop(token, None)

    def _watch(self) -> None:
        assert self._cond is not None
        with self._cond:
            idle_since = time.monotonic()
            while True:
                now = time.monotonic()
                for token, (deadline, callback) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        callback()
                if self._armed:
                    idle_since = now
                elif now - idle_since >= WATCHDOG_LINGER_S:
                    self._running = False
                    return
                # A disarm does not wake the thread: it finds nothing due at the old deadline.
                self._wake_at = min([deadline for deadline, _ in self._armed.values()] + [idle_since + WATCHDOG_LINGER_S])
                self._cond.wait(max(0.0, self._wake_at - now))


_WATCHDOG = _Watchdog()


class _Transport:
    """urllib3 pools, one per TLS set-up (CA file, client certificate, proxy), reused across hops and calls."""

    def __init__(self, connect_timeout: float, log: Callable[[str], None], clock: _Clock, pin_file: str | None = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.connect_timeout = connect_timeout
        self._log = log
        self._clock = clock
        self._pin_file = pin_file
        self._environ = environ
        self._managers: dict[tuple[object, ...], urllib3.PoolManager] = {}
        self._pools: dict[tuple[object, ...], urllib3.HTTPConnectionPool] = {}  # send()'s, by URL origin
        self._ready: list[HTTPSConnection] = []  # connections that became ready during the current request
        self._pool_class: type[urllib3.HTTPSConnectionPool] | None = None

    def connected(self) -> bool:
        """Whether the current (or last) request's connection became ready: then it may have been sent."""
        return bool(self._ready)

    def send(self, hop: str, method: str, url: str, headers: Mapping[str, str], body: bytes | None, *,
             read_timeout: float, max_bytes: int, ca: str | None = None, ca_source: str = "",
             client_cert: tuple[str, str] | None = None) -> _Response:
        """One request, never re-sent, its whole answer read and checked within connect_timeout +
        read_timeout (a timer shuts the socket: a server that drips bytes is cut off too)."""
        import urllib3

        mutual = client_cert is not None
        leaf_check = self._check_leaf_dates if self._clock.behind() else None
        origin = url[:url.find("/", len("https://"))]
        environ = self._environ
        key = (ca, client_cert, origin, leaf_check is None, environ.get("HTTPS_PROXY"), environ.get("https_proxy"),
               environ.get("NO_PROXY"), environ.get("no_proxy"))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # pool None: closed, its manager had too many hosts
            host, port = _host_port(url)
            pool = self._pools[key] = self._manager(ca, client_cert, url, leaf_check).connection_from_host(
                host, port, "https")
        started = time.monotonic()
        self._ready.clear()
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            for connection in self._ready:
                _abort(connection)

        timer = _WATCHDOG.arm(self.connect_timeout + read_timeout, expire)
        response = None
        try:
            # The pool of this host, and the path: PoolManager.request would parse the URL once
            # more, a byte-by-byte loop over the path in urllib3 2 (the function's quoted ARN).
            response = pool.urlopen(
                method, "/" + url.split("://", 1)[1].partition("/")[2], body=body, assert_same_host=False,
                headers=dict(headers, **{"Accept-Encoding": "identity"}),
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=read_timeout), retries=False,
                redirect=False, preload_content=False, decode_content=False, enforce_content_length=True)
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity; a compressed answer could grow without bound when decoded.
                raise _Unreadable("the answer is %s-encoded, though identity was asked for: refused"
                                  % _short(encoding, 40), "answer-encoded")
            length = response.headers.get("Content-Length")
            data = _read_bounded(response, max_bytes, int(length) if length and length.isdigit() else None)
            if expired:
                # Shut by the timer: http.client may take the cut for the end of the headers and
                # hand over an empty "200"; whatever was read is not the answer.
                raise TimeoutError("deadline")
            if len(data) > max_bytes:
                raise _Unreadable("the answer is larger than %d bytes: refused" % max_bytes, "answer-too-large")
            if length is not None and method != "HEAD" and response.status not in (204, 304) and (
                    not length.strip().isdigit() or int(length) != len(data)):
                raise _Truncated("the answer ended after %d of %s bytes" % (len(data), _short(length, 20)))
        except _Unreadable as e:
            raise IotInvokeError(e.args[0], e.reason, hop, response.status if response else None) from None
        except Exception as e:
            if not self._ready:  # never connected: nothing was sent
                raise _connect_error(hop, url, e, mutual, ca, ca_source, self._clock.local()) from None
            raise _exchange_error(hop, e, mutual, bool(expired), self.connect_timeout + read_timeout) from None
        finally:
            _WATCHDOG.disarm(timer)
            if response is not None:
                response.release_conn()
        self._log("%s: %s %s -> %d (%.0f ms)" % (hop, method, url.split("?")[0], response.status,
                                                 (time.monotonic() - started) * 1000))
        return _Response(response.status, response.headers, data)

    def probe_time(self, url: str, ca: str | None, client_cert: tuple[str, str] | None) -> tuple[float | None, str]:
        """AWS's time, from the Date of a harmless HEAD to the endpoint's folder of ``url`` (for hop 1,
        /role-aliases/ALIAS/) on a connection whose chain and name are verified but not its dates.
        Returns (the time, if the server certificate is valid then; its validity window, for the
        error line). Used when the board's clock is before the certificate's validity (no RTC)."""
        import urllib3

        seen: list[_Certificate] = []
        manager = self._manager(ca, client_cert, url, seen.append)
        try:
            probe = manager.request("HEAD", url.split("?")[0].rsplit("/", 1)[0] + "/", retries=False, redirect=False,
                                    timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.connect_timeout),
                                    headers={"User-Agent": USER_AGENT})
            probe.release_conn()
        except Exception as e:
            self._log("clock: cannot learn AWS's time: %s" % _net_reason(e))
            return None, ""
        if not seen:
            return None, ""
        window = " (the certificate is valid from %s to %s)" % (seen[-1].get("notBefore"), seen[-1].get("notAfter"))
        server = _http_date(probe.headers.get("Date"))
        try:
            _check_validity(seen[-1], server if server is not None else 0.0)
        except _CertificateTime:
            return None, window
        return server, window

    def _check_leaf_dates(self, certificate: _Certificate) -> None:
        _check_validity(certificate, self._clock.now())

    def _manager(self, ca: str | None, client_cert: tuple[str, str] | None, url: str,
                 leaf_check: Callable[[_Certificate], None] | None) -> urllib3.PoolManager:
        proxy = _proxy_for(url, self._environ)
        host = _host_port(url)[0]
        # urllib3 1.26 wraps sockets without server_hostname for an IP address, so a context that
        # checks host names fails; a context bound to that address fills it in (see _ssl_context).
        ip_host = host if _is_ip_address(host) else None
        key = (ca, client_cert, proxy[0] if proxy else None, ip_host, leaf_check)
        manager = self._managers.get(key)
        if manager is None:
            import warnings

            import urllib3

            # urllib3 warns on stderr when the board's date is old; iotinvoke says it in its own line.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.SystemTimeWarning)
            context = _ssl_context(ca, client_cert, ip_host, leaf_check, self._pin_file)
            if proxy is None:
                manager = urllib3.PoolManager(maxsize=2, ssl_context=context, socket_options=_socket_options())
            else:
                # HTTPS through an HTTP proxy is a CONNECT tunnel: TLS, and so the device
                # certificate, goes end to end; the proxy sees only the host name.
                bare, auth = proxy
                headers = urllib3.make_headers(proxy_basic_auth=auth) if auth is not None else None
                self._log("proxy: %s through %s" % (host, bare))
                manager = urllib3.ProxyManager(bare, proxy_headers=headers, maxsize=2, ssl_context=context,
                                               socket_options=_socket_options())
            manager.pool_classes_by_scheme = dict(manager.pool_classes_by_scheme, https=self._pool())
            self._managers[key] = manager
        return manager

    def _pool(self) -> type[urllib3.HTTPSConnectionPool]:
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
                    if getattr(connection, "sock", None) is not None and isinstance(connection, _Connection):
                        ready.append(connection)  # a kept-alive connection: sending starts at once
                    return connection

            self._pool_class = _Pool
        return self._pool_class


class _CertificateTime(Exception):
    """A server certificate not valid at the corrected time."""

    def __init__(self, when: float, not_before: float, not_after: float) -> None:
        expired = when > not_after
        super().__init__("the server certificate is %s at %s (valid %s to %s)" % (
            "expired" if expired else "not yet valid", _iso8601(when), _iso8601(not_before), _iso8601(not_after)))
        self.expired = expired


def _check_validity(certificate: _Certificate, when: float) -> None:
    import ssl

    try:
        not_before = float(ssl.cert_time_to_seconds(str(certificate["notBefore"])))
        not_after = float(ssl.cert_time_to_seconds(str(certificate["notAfter"])))
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


def _read_bounded(response: urllib3.BaseHTTPResponse, max_bytes: int, declared: int | None) -> bytes:
    # In chunks: one read(max_bytes + 1) makes Python 3.9's http.client allocate the full 6 MB.
    # Up to the declared length, when there is one: no last read to learn that nothing follows.
    chunks = []
    size = 0
    while size <= max_bytes and (declared is None or size < declared):
        chunk = response.read(65536, decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _abort(connection: HTTPSConnection) -> None:
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



def _default_trust() -> tuple[str, str]:
    """The trust used when no CA file is configured: (PEM text for SSLContext's cadata, where it
    comes from, for messages such as "default trust: Amazon Root CA 1-4 ... (built in)")."""
    return _AMAZON_ROOTS, _AMAZON_ROOTS_SOURCE


def _ssl_context(ca: str | None, client_cert: tuple[str, str] | None, ip_host: str | None = None,
                 leaf_check: Callable[[_Certificate], None] | None = None,
                 pin_file: str | None = None) -> ssl.SSLContext:
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
        context: ssl.SSLContext = context_class(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        if ca is None:
            context.load_verify_locations(cadata=_default_trust()[0])
        else:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise IotInvokeError("cannot read the CA file %s: %s" % (ca, _os_reason(e)), "ca-file-unreadable",
                             "config") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if leaf_check is not None:
        context.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
        setattr(context, "iotinvoke_leaf_check", leaf_check)  # read by _Transport's connections
    if client_cert:
        cert, key = client_cert
        for what, path in (("certificate", cert), ("private key", key)):
            if not os.access(path, os.R_OK):
                reason = "missing" if not os.path.exists(path) else "not readable by this user"
                raise IotInvokeError("device %s %s: %s" % (what, path, reason), "device-file-unreadable", "iot")
        _load_device_key(context, cert, key, pin_file)
    return context

# --- What a failed connection means ---------------------------------------------------------------


# TLS alerts a server sends when it refuses the client's certificate (RFC 8446 section 6.2).
_CERTIFICATE_ALERTS = ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED",
                       "CERTIFICATE_REVOKED", "CERTIFICATE_EXPIRED", "ACCESS_DENIED", "UNSUPPORTED_CERTIFICATE")
_X509_TIME_ERRORS = (9, 10)  # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
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


def _connect_error(hop: str, url: str, error: BaseException, mutual: bool, ca: str | None, ca_source: str,
                   board_time: float) -> IotInvokeError:
    """A failure before anything was sent: DNS, TCP, the proxy tunnel, or the TLS handshake."""
    import socket

    host = _host_port(url)[0]
    text = _net_reason(error)
    tls = _tls_error(hop, host, error, mutual, ca, ca_source, board_time)
    if tls is not None:
        return tls
    if "Tunnel connection failed" in str(error) or type(error).__name__ == "ProxyError":
        if " 407" in str(error):
            return IotInvokeError("the proxy refused its credentials (HTTP 407): check HTTPS_PROXY's user and "
                                  "password", "proxy-auth", hop)
        return IotInvokeError("the proxy could not open a tunnel to %s: %s" % (host, text), "proxy-failed", hop)
    inner: BaseException | None = error
    while inner is not None and not isinstance(inner, socket.gaierror):
        inner = inner.__cause__ or inner.__context__
    if inner is not None or type(error).__name__ == "NameResolutionError":
        return IotInvokeError("cannot resolve %s: %s" % (host, text), "dns-failed", hop)
    if "timed out" in str(error).lower() or isinstance(error, socket.timeout):
        return IotInvokeError("connecting to %s timed out" % host, "connect-timeout", hop)
    if "SSL" in type(error).__name__ or "ssl" in type(error).__module__ or "_ssl.c" in str(error):
        return IotInvokeError("the TLS handshake with %s failed: %s" % (host, text), "tls-interrupted", hop)
    return IotInvokeError("cannot connect to %s: %s" % (host, text), "connect-failed", hop)


def _tls_error(hop: str, host: str, error: BaseException, mutual: bool, ca: str | None, ca_source: str,
               board_time: float) -> IotInvokeError | None:
    """What a TLS handshake's refusal means, when error is one: the server certificate's dates, chain
    or name, the device certificate refused, or no TLS 1.2 on that port."""
    if isinstance(error, _CertificateTime):
        if error.expired:
            return IotInvokeError("%s: %s, by AWS's time as learned at boot; the device certificate was not sent"
                                  % (host, error), "tls-certificate-expired", hop)
        return IotInvokeError("%s: %s: the board's clock is wrong (check NTP: timedatectl status)" % (host, error),
                              "clock-wrong", hop, retry_after=CLOCK_WAIT_S)
    verify = _verify_failure(error)
    if verify is not None:
        code, detail = verify
        if code in _X509_NAME_ERRORS:
            return IotInvokeError("the server at %s presented a certificate for another name (%s): check the endpoint; "
                                  "the device certificate was not sent" % (host, _short(detail, 120)),
                                  "tls-name-mismatch", hop)
        if code in _X509_TIME_ERRORS:
            return IotInvokeError("the server certificate of %s is %s at this board's time %s: the clock is wrong "
                                  "(check NTP: timedatectl status); retry once the clock is set" % (
                                      host, "not yet valid" if code == 9 else "expired", _iso8601(board_time)),
                                  "clock-wrong", hop, retry_after=CLOCK_WAIT_S)
        source = "%s (%s)" % (ca, ca_source) if ca else "the default trust, " + _default_trust()[1]
        return IotInvokeError("the server certificate of %s is not trusted by %s: %s"
                              % (host, source, _short(detail, 120)), "tls-untrusted", hop)
    upper = str(error).upper()
    if mutual and any("ALERT_" + alert in upper for alert in _CERTIFICATE_ALERTS):
        return _certificate_refused(hop, str(error))
    if "WRONG_VERSION_NUMBER" in upper or "UNSUPPORTED_PROTOCOL" in upper or "ALERT_PROTOCOL_VERSION" in upper:
        return IotInvokeError("%s does not speak TLS 1.2 or later on that port: %s" % (host, _net_reason(error)),
                              "tls-protocol", hop)
    return None


def _certificate_refused(hop: str, text: str) -> IotInvokeError:
    return IotInvokeError("the credentials provider refused the device certificate during the TLS handshake (not "
                          "registered with AWS IoT, inactive, expired, or signed by an unknown CA): %s" % _short(text),
                          "certificate-refused", hop)


def _exchange_error(hop: str, error: BaseException, mutual: bool, expired: bool, bound: float) -> IotInvokeError:
    """A failure after the request may have gone out (urllib3 raises the same errors, ProxyError and
    SSLError included, for a connection torn before or after the server acted on it)."""
    if mutual and any("ALERT_" + alert in str(error).upper() for alert in _CERTIFICATE_ALERTS):
        return _certificate_refused(hop, str(error))  # TLS 1.3: the refusal arrives with the first read
    if expired:
        return IotInvokeError("no complete answer within %.0f s" % bound, "answer-timeout", hop)
    if isinstance(error, _Truncated) or "IncompleteRead" in repr(error) or "ProtocolError" in type(error).__name__:
        return IotInvokeError("the answer was cut short (%s)" % _net_reason(error), "answer-truncated", hop)
    if "timed out" in str(error).lower() or type(error).__name__ == "ReadTimeoutError":
        return IotInvokeError("no answer in time (%s)" % _net_reason(error), "answer-timeout", hop)
    return IotInvokeError("the connection failed (%s)" % _net_reason(error), "answer-lost", hop)


# === Device keys in hardware (OpenSSL providers: PKCS#11 tokens, TPM 2.0 via tpm2-pkcs11) ---------
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
def _key_error(reason: str, message: str) -> IotInvokeError:
    return IotInvokeError(message, reason, "iot")


def _apply_openssl_conf(conf: str, path: str) -> None:
    """Point OPENSSL_CONF at conf for this process: OpenSSL reads it once, when it initialises, so
    this must happen before hashlib or ssl is first imported (Client does it first of all)."""
    if not os.access(conf, os.R_OK):
        raise ConfigError("OpenSSL configuration %s: %s" % (conf, "missing" if not os.path.exists(conf) else
                                                             "not readable by this user"),
                          path, "iot", "openssl_conf", reason="openssl-conf-unreadable")
    if os.environ.get("OPENSSL_CONF") != conf:
        if "_ssl" in sys.modules or "_hashlib" in sys.modules:
            raise ConfigError("cannot take effect: OpenSSL is already initialised in this process; set "
                              "OPENSSL_CONF=%s in its environment before it starts" % conf, path, "iot",
                              "openssl_conf", reason="openssl-conf-too-late")
        os.environ["OPENSSL_CONF"] = conf


def _load_device_key(context: ssl.SSLContext, cert: str, key: str, pin_file: str | None) -> None:
    """load_cert_chain with the PIN from pin_file; each failure becomes one IotInvokeError with its reason."""
    import ssl

    uri = _provider_key_uri(key)
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
        with os.fdopen(os.open(key, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb") as f:
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
    """The PIN: the file's first line. load_config refused a file another user could read or plant;
    it is opened without blocking and checked again, so a FIFO swapped in since cannot hang the call."""
    try:
        fd = os.open(pin_file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            problem = _unsafe(os.fstat(fd), secret=True)
            if problem:
                raise IotInvokeError("PIN file %s %s: refused" % (pin_file, problem), "file-unsafe", "config")
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
    """Which reason (REASONS: the device key's rows) made load_cert_chain fail, asked of OpenSSL and the PKCS#11 module."""
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

# === The AWS protocol: signing, payloads, answers =================================================


def _signed_headers(method: str, url: str, headers: dict[str, str], body: bytes, creds: Credentials, service: str,
                    region: str, now: float) -> dict[str, str]:
    """Sign with botocore's SigV4Auth at time ``now`` (the corrected clock, which add_auth cannot take).
    The Host header is set here, as http.client would send it: botocore would otherwise parse the URL
    for it twice per signature, and what is signed is then what is sent."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    host, port = _host_port(url)
    host = "[%s]" % host.lower() if ":" in host else host.lower()
    headers = dict(headers, Host=host if port == 443 else "%s:%d" % (host, port))
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    signer = SigV4Auth(creds, service, region)
    request.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    signer._modify_request_before_signing(request)  # sets X-Amz-Date and X-Amz-Security-Token
    canonical_request = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical_request)
    signer._inject_signature_to_request(request, signer.signature(string_to_sign, request))
    return dict(request.headers.items())


def _check_payload(payload: bytes, invocation_type: str) -> None:
    """Refuse, before any network call, what Lambda would refuse or misread: Lambda parses the
    payload as JSON in UTF-8 (RFC 8259), so NaN, Infinity, a byte order mark or UTF-16 text are
    refused here (Python's json would accept them), and a long integer is accepted (Python's int()
    would not)."""
    import json

    limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
    if len(payload) > limit:
        raise IotInvokeError("payload is over %d bytes, Lambda's limit for %s invokes" % (limit, invocation_type),
                             "payload-too-large", "payload")
    if not payload.strip():
        # AWS would run the function with no event; an empty standard input is far more often a
        # caller's mistake, so say what to send instead.
        raise IotInvokeError("payload is empty: pass null or {} to invoke with no event", "payload-empty", "payload")
    try:
        text = payload.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("it starts with a byte order mark (RFC 8259 section 8.1 forbids it)")
        json.loads(text, parse_int=len, parse_float=len, parse_constant=_not_json)
    except UnicodeDecodeError as e:
        raise IotInvokeError("payload is not UTF-8 text (byte %d)" % e.start, "payload-not-json", "payload") from None
    except (ValueError, RecursionError) as e:
        raise IotInvokeError("payload is not valid JSON: %s" % _short(str(e)), "payload-not-json", "payload") from None


def _not_json(constant: str) -> None:
    raise ValueError("%s is not JSON (RFC 8259 has no such number)" % constant)


def _parse_iot_credentials(body: bytes, now: float) -> Credentials:
    import json

    try:
        c = json.loads(body)["credentials"]
        creds = Credentials(c["accessKeyId"], c["secretAccessKey"], c["sessionToken"], _parse_time(c["expiration"]), now)
    except (ValueError, KeyError, TypeError, RecursionError):
        raise IotInvokeError("the credentials provider's answer is not the expected JSON credentials document",
                             "answer-garbled", "iot", 200) from None
    return _check_credentials(creds, "iot")


def _check_credentials(creds: Credentials, hop: str) -> Credentials:
    for value in (creds.access_key, creds.secret_key, creds.token):
        # They go into HTTP headers and the cache: printable ASCII only (a signer fed anything else fails).
        if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() or len(value) > 8192:
            raise IotInvokeError("the credentials in the answer are malformed", "credentials-malformed", hop, 200)
    return creds


def _xml_root(body: bytes, hop: str, status: int) -> Element:
    """Parse an XML answer of AWS's, which is UTF-8 without a DTD: anything else is refused before
    parsing (a UTF-16 body hides "<!DOCTYPE" from a byte search, and its entities would expand)."""
    try:
        text = body.decode("utf-8")
        declared = _compile(r"<\?xml[^>]*encoding\s*=\s*[\"']([^\"']*)").match(text)
        if "\x00" in text or text.startswith("\ufeff") or (declared and declared.group(1).lower() not in ("utf-8", "utf8")):
            raise UnicodeError
    except UnicodeError:
        raise IotInvokeError("the XML answer is not in UTF-8: refused", "answer-not-utf8", hop, status) from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise IotInvokeError("the answer contains an XML DTD: refused", "answer-dtd", hop, status)
    from xml.etree import ElementTree

    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise IotInvokeError("the answer is not well-formed XML", "answer-garbled", hop, status) from None


def _xml_text(root: Element, *path: str) -> str | None:
    """Text of the first element at path of local names, ignoring namespaces."""
    node = root
    for name in path:
        found = next((child for child in node if child.tag.rsplit("}", 1)[-1] == name), None)
        if found is None:
            return None
        node = found
    return node.text or ""


def _parse_assume_role(body: bytes, now: float) -> Credentials:
    root = _xml_root(body, "sts", 200)
    fields = [_xml_text(root, "AssumeRoleResult", "Credentials", name) for name in
              ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")]
    if root.tag.rsplit("}", 1)[-1] != "AssumeRoleResponse" or any(f is None for f in fields):
        raise IotInvokeError("the AssumeRole answer has no credentials", "answer-garbled", "sts", 200)
    access_key, secret_key, token, expiration = ("".join(str(f).split()) for f in fields)
    try:
        creds = Credentials(access_key, secret_key, token, _parse_time(expiration), now)
    except ValueError:
        raise IotInvokeError("the AssumeRole answer has an invalid Expiration", "answer-garbled", "sts", 200) from None
    return _check_credentials(creds, "sts")


def _log_tail(value: str | None) -> str | None:
    """X-Amz-Log-Result decoded, its control characters escaped (the function writes it, and it goes
    to a terminal); the function has run, so a garbled value must not lose its answer."""
    if not value:
        return None
    import base64
    import binascii

    try:
        text = base64.b64decode(value[: MAX_LOG_TAIL_BYTES * 2], validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "(the log tail sent by Lambda is not valid base64)\n"
    return _escape(text, keep="\n\t")


def _aws_error_fields(response: _Answer, hop: str) -> tuple[str | None, str, str | None, str | None]:
    """(code, message, request id, throttle reason) from a JSON (IoT, Lambda) or XML (STS) error answer."""
    code, message, request_id, throttle = _error_document(response.body[:65536], hop, response.status)
    code = response.headers.get("x-amzn-ErrorType") or code
    request_id = response.headers.get("x-amzn-RequestId") or request_id
    if code:
        # botocore's rule: "Code:http://internal..." and "namespace#Code" both mean Code.
        code = _short(str(code).split(":", 1)[0].rsplit("#", 1)[-1], 100)
    if hop == "iot":
        lowered = message.lower()
        code = next((c for marker, c in _IOT_MESSAGES if marker in lowered), None) or (
            "Throttling" if response.status == 429 else code)
    return code or None, _short(message), request_id and _short(request_id, 100), throttle


def _error_document(body: bytes, hop: str, status: int) -> tuple[str | None, str, str | None, str | None]:
    """(code, message, request id, throttle reason) as the error document itself says them."""
    if body.lstrip().startswith(b"<"):
        try:
            root = _xml_root(body, hop, status)
        except IotInvokeError:
            return None, "", None, None
        return _xml_text(root, "Error", "Code"), _xml_text(root, "Error", "Message") or "", _xml_text(
            root, "RequestId"), None
    import json

    try:
        document = json.loads(body) if body else None
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        return None, "", None, None
    code = document.get("code") or document.get("Code") or document.get("__type")
    throttle = document.get("Reason")
    return (str(code) if code else None, str(document.get("message") or document.get("Message") or ""), None,
            throttle if isinstance(throttle, str) else None)


def _retry_after(response: _Answer, now: float) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3), measured
    against the answer's own Date when it has one (the board's clock may be wrong), capped at
    MAX_RETRY_AFTER_S: a server cannot park a board for a day."""
    import math

    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isascii() and value.replace(".", "", 1).isdigit():
        seconds = float(value)
    else:
        when = _http_date(value)
        if when is None:
            return None
        seconds = when - (_http_date(response.headers.get("Date")) or now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


_HOP_NAMES = {"iot": "the credentials provider", "sts": "STS", "lambda": "Lambda"}


def _aws_error(response: _Answer, hop: str, env: Environment | None, config: Config, now: float) -> IotInvokeError:
    """The error for an AWS error answer of any hop: its reason decided by AWS_ERRORS (see there)."""
    code, message, request_id, throttle = _aws_error_fields(response, hop)
    reason = _aws_reason(hop, response.status, code, message)
    if reason == "throttled" and throttle in THROTTLE_REASONS:
        reason = THROTTLE_REASONS[throttle]
    if reason == "invoke-denied" and "cross-account log" in message.lower():
        reason = "cross-account-log"
    retry_after = _retry_after(response, now)
    if reason == "reserved-concurrency-limit" and retry_after is None:
        retry_after = RESERVED_THROTTLE_WAIT_S
    text = REASONS[reason][2]
    if reason in ("denied", "not-found", "refused"):
        text = _HOP_NAMES[hop] + " refused" + (" AssumeRole" if hop == "sts" else " the invoke" if hop == "lambda" else "")
    elif reason == "unexpected-answer":
        text = "unexpected answer from " + _HOP_NAMES[hop]
    elif reason == "invoke-denied" and env is not None:
        text += (" (the function's resource policy must allow the IoT role, and the IoT role lambda:InvokeFunction)"
                 if env.direct else " (the role {role} must be allowed lambda:InvokeFunction on it)")
    text = _fill(text, config, env)
    if message.lower().startswith(text.lower()):
        text += message[len(text):]  # AWS said the same, with detail: "Function not found: arn:..."
    elif message and message not in text:
        text += ": " + message
    error = IotInvokeError(text, reason, hop, response.status, code, request_id, retry_after=retry_after)
    error.server_time = _http_date(response.headers.get("Date"))
    return error


def _fill(text: str, config: Config, env: Environment | None, **more: str) -> str:
    """A REASONS text with its fields from the configuration (and ``more``)."""
    role = env.role_arn if env else None
    fields = {"alias": config.role_alias, "thing": config.thing_name, "role": role,
              "role_name": str(role).rsplit("/", 1)[-1], "function": env.function if env else None,
              "region": env.region if env else config.region, "cert_id": "<id>", "caller": "the IoT role",
              "caller_name": "<IoT role>", "condition": "", "ca": "the CA file"}
    fields.update(more)
    return text.format(**fields)

# --- Small helpers --------------------------------------------------------------------------------


def _parse_time(text: object) -> float:
    """ISO-8601 UTC as AWS writes it (2018-01-18T09:18:06Z, optional fraction): seconds since the epoch."""
    import calendar

    match = _compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|\+00:00)").fullmatch(
        text) if isinstance(text, str) else None
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
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _escape(text: str, keep: str = "") -> str:
    """Control and other unprintable characters as \\xNN / \\uNNNN: text from the network must not
    steer a terminal (retitle it, clear it, or forge a line with a carriage return)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
                   for c in text)


def _short(text: str, limit: int = 300) -> str:
    """One line, bounded and escaped: AWS messages and exception texts go to stderr this way."""
    line = _escape(" ".join(str(text).split()))
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

# === Client: the one loop that decides ============================================================


class InvokeResult:
    """What Lambda answered: status 200/202/204, the payload bytes, and the function error if any."""

    __slots__ = ("status", "payload", "function_error", "log_result", "executed_version", "request_id")

    def __init__(self, status: int, payload: bytes, function_error: str | None, log_result: str | None,
                 executed_version: str | None, request_id: str | None) -> None:
        self.status = status
        self.payload = payload
        self.function_error = function_error  # "Unhandled" / "Handled", or None
        self.log_result = log_result  # the decoded log tail (control characters escaped), when asked for
        self.executed_version = executed_version
        self.request_id = request_id


class Client:
    """Gets credentials (cached) and invokes functions for the environments of a Config.

    It reports through callables and never writes to a terminal: ``log`` gets one line per step
    (never a secret), ``warn`` the notes a caller should see without -v (a cache that cannot be
    used). ``clock`` is the board's clock (seconds since the epoch), ``monotonic``, ``sleep`` and
    ``random`` the time and randomness of retries, the cache's lock and refresh points; ``transport``
    sends one request (see _Transport.send). A Client serves one thread at a time and keeps its
    connections alive between calls; processes share the on-disk cache.
    """

    def __init__(self, config: Config, *, use_cache: bool = True, log: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] | None = None, transport: _Sender | None = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        if config.openssl_conf:
            _apply_openssl_conf(config.openssl_conf, config.path)  # before anything imports hashlib or ssl
        self.config = config
        self.log = log
        self.warn = warn
        self._monotonic = monotonic
        self._sleep = sleep
        if random is None:
            import random as random_module

            random = random_module.random
        self._random = random
        folder = _cache_location(config, environ)[0] if use_cache else None
        self._cache = _Cache(folder, self._log, self._warn, monotonic=monotonic, sleep=sleep, rand=random,
                             environ=environ)
        self.clock = _Clock(clock, _clock_offset(self._cache.read_json("clock.json")),
                            lambda offset: self._cache.write_json("clock.json", {"offset": offset}), self._log)
        self._transport = transport or _Transport(config.connect_timeout, self._log, self.clock, config.pin_file,
                                                  environ)
        self._cert_digest: str | None = None
        self._memory: dict[str, Credentials] = {}  # for long-lived clients (--stream, the agent), and --no-cache
        self._lock_deadline: float | None = None  # one bound for all the cache locks of one call
        self.invoke_state = ""  # "sending" while an invoke is on the way, "answered" once Lambda answered

    def _log(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def _warn(self, message: str) -> None:
        if self.warn is not None and self.log is None:  # with a log, _log has said it already
            self.warn(message)

    def now(self) -> float:
        """The corrected clock: the board's clock plus the offset AWS taught us."""
        return self.clock.now()

    def environment(self, name: str) -> Environment:
        env = self.config.environments.get(name)
        if env is None:
            known = ", ".join(sorted(self.config.environments)) or "none"
            raise IotInvokeError("unknown environment %r in %s (known: %s)" % (name, self.config.path, known),
                                 "unknown-environment", "config")
        return env

    # -- the decision loop

    def _exchange(self, hop: str, send: Callable[[Any], _T], *, creds: Credentials | None = None,
                  renew: Callable[[Credentials], Credentials] | None = None,
                  probe: Callable[[], tuple[float | None, str]] | None = None,
                  runs: bool = False, resend_may_run: bool = False) -> _T:
        """send(creds) until it answers, deciding every failure by its reason's row in REASONS:
        - refused credentials (token-expired, token-invalid): renewed once, then sent again;
        - a refused time stamp (clock-skew), or a server certificate not yet valid by the board's
          clock (clock-wrong): AWS's clock taken once (learn_clock permitting), then sent again;
        - transient (75, so nothing ran), or "may have run" where that is harmless (hops 1-2, a
          DryRun: ``runs`` False) or declared so (``resend_may_run``: idempotent): sent again after
          retry_delay() while retry_allowed() (max_attempts, RETRY_BUDGET_S);
        - anything else, or when retries are spent: raised, with the exit status for ``runs``.
        Giving up at hop 1 or 2 with 75, the error's retry_after becomes caller_wait()."""
        started = self._monotonic()
        attempt = 1
        renewed = renew is None
        corrected = False
        while True:
            try:
                return send(creds)
            except IotInvokeError as e:
                if e.reason in ("token-expired", "token-invalid") and not renewed and creds is not None:
                    self._log("%s: the credentials were refused; fetching new ones" % hop)
                    creds = renew(creds)  # type: ignore[misc]
                    renewed = True
                    continue
                if not corrected and self._correct_clock(e, probe):
                    corrected = True
                    continue
                exit_code = _status(e.reason, not runs)
                again = e.reason != "clock-wrong" and (exit_code == EX_TEMPFAIL or (
                    resend_may_run and e.sent == MAY_HAVE_RUN and exit_code == EX_IOERR))
                delay = retry_delay(attempt, self._random, e.retry_after)
                if again and retry_allowed(attempt, self.config.max_attempts, self._monotonic() - started, delay):
                    self._log("%s: %s; retrying in %.2f s" % (hop, e, delay))
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise self._final(e, hop, exit_code, attempt, runs) from None

    def _correct_clock(self, e: IotInvokeError, probe: Callable[[], tuple[float | None, str]] | None) -> bool:
        """Take AWS's clock after a refused time stamp, or learn it at boot; whether to send again."""
        if e.reason == "clock-skew" and e.server_time is not None:
            self.clock.set(e.server_time, "AWS refused our time stamp; local clock is %+.0f s off, re-signing"
                           % (self.clock.local() - e.server_time))
            return True
        if e.reason != "clock-wrong" or probe is None:
            return False
        if not self.config.learn_clock:
            e.message += " (learn_clock = false: AWS's time is not learned)"
            return False
        server, window = probe()
        if self.clock.learn(server):
            return True
        e.message += window
        return False

    def _final(self, e: IotInvokeError, hop: str, exit_code: int, attempt: int, runs: bool) -> IotInvokeError:
        e.exit_code = exit_code
        if attempt > 1:
            e.message += " (after %d attempts)" % attempt
        if runs and e.sent == MAY_HAVE_RUN and exit_code in (EX_IOERR, EX_PROTOCOL):
            if e.reason.startswith("answer-"):
                e.message = "the invoke was sent but " + e.message
            e.message += ("; the function may have run%s" % (
                ", once per attempt" if attempt > 1 else ": not retried automatically"))
        if hop in ("iot", "sts") and exit_code == EX_TEMPFAIL and e.reason != "clock-wrong":
            e.retry_after = caller_wait(self._random, e.retry_after)
        return e

    # -- hop 1: the IoT credentials provider

    def _certificate_digest(self) -> str:
        import hashlib

        if self._cert_digest is None:
            try:
                with open(self.config.cert, "rb") as f:
                    self._cert_digest = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                raise IotInvokeError("device certificate %s: %s" % (self.config.cert, _os_reason(e)),
                                     "device-file-unreadable", "iot") from None
        return self._cert_digest

    def _iot_key(self) -> str:
        # The thing name is part of it: IAM policies may use it (credentials-iot:ThingName).
        config = self.config
        return _cache_key("iot", config.iot_endpoint, config.role_alias, self._certificate_digest(),
                          config.thing_name or "")

    def iot_credentials(self, refused: str | None = None) -> Credentials:
        """Credentials of the role alias's role, from the cache or the credentials provider."""
        return self._cached(self._iot_key(), self.fetch_iot_credentials, refused)

    def fetch_iot_credentials(self) -> Credentials:
        """Hop 1 afresh (with the decision loop), neither reading nor writing the cache."""
        config = self.config
        url = "%s/role-aliases/%s/credentials" % (config.iot_endpoint, config.role_alias)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if config.thing_name:
            headers["x-amzn-iot-thingname"] = config.thing_name
        client_cert = (config.cert, config.key)

        def send(_: object) -> Credentials:
            response = self._transport.send("iot", "GET", url, headers, None, read_timeout=config.credentials_timeout,
                                            max_bytes=MAX_CREDENTIALS_RESPONSE_BYTES, ca=config.ca,
                                            ca_source="[iot] ca" if config.ca else "", client_cert=client_cert)
            self.clock.note(_http_date(response.headers.get("Date")))
            if response.status == 200:
                return _parse_iot_credentials(response.body, self.now())
            raise _aws_error(response, "iot", None, config, self.now())

        return self._exchange("iot", send, probe=lambda: self._transport.probe_time(url, config.ca, client_cert))

    # -- hop 2: STS AssumeRole

    def _sts_call(self, env: Environment, body: bytes, creds: Credentials) -> _Answer:
        """One signed STS Query API request; an error answer raises its decided error."""
        url = env.sts_endpoint + "/"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "User-Agent": USER_AGENT}
        signed = _signed_headers("POST", url, headers, body, creds, "sts", env.region, self.now())
        response = self._transport.send("sts", "POST", url, signed, body, read_timeout=self.config.credentials_timeout,
                                        max_bytes=MAX_CREDENTIALS_RESPONSE_BYTES, ca=env.ca_bundle,
                                        ca_source=env.ca_bundle_source)
        self.clock.note(_http_date(response.headers.get("Date")))
        if response.status != 200:
            raise _aws_error(response, "sts", env, self.config, self.now())
        return response

    def _assume_role_body(self, env: Environment) -> bytes:
        from urllib.parse import urlencode

        params = [("Action", "AssumeRole"), ("Version", "2011-06-15"), ("RoleArn", str(env.role_arn)),
                  ("RoleSessionName", self.session_name())]
        if env.duration_seconds:
            params.append(("DurationSeconds", str(env.duration_seconds)))
        if env.external_id:
            params.append(("ExternalId", env.external_id))
        return urlencode(params).encode()

    def _assume_role(self, env: Environment) -> Credentials:
        body = self._assume_role_body(env)
        return self._exchange(
            "sts", lambda source: _parse_assume_role(self._sts_call(env, body, source).body, self.now()),
            creds=self.iot_credentials(), renew=lambda refused: self.iot_credentials(refused=refused.token),
            probe=lambda: self._transport.probe_time(env.sts_endpoint + "/x", env.ca_bundle, None))

    def assume_role(self, name: str, source: Credentials) -> Credentials:
        """Hop 2 afresh for environment ``name``, signed with ``source``: one request, no cache."""
        env = self.environment(name)
        if env.direct:
            raise IotInvokeError("environment %r has no role_arn (one-hop mode)" % name, "usage", "config")
        return _parse_assume_role(self._sts_call(env, self._assume_role_body(env), source).body, self.now())

    def caller_identity(self, env: Environment, creds: Credentials) -> str:
        """The ARN STS sees for creds (GetCallerIdentity needs no permission): for the doctor."""
        response = self._sts_call(env, b"Action=GetCallerIdentity&Version=2011-06-15", creds)
        arn = _xml_text(_xml_root(response.body, "sts", 200), "GetCallerIdentityResult", "Arn")
        if not arn:
            raise IotInvokeError("the GetCallerIdentity answer has no Arn", "answer-garbled", "sts", 200)
        return arn

    def session_name(self) -> str:
        """RoleSessionName: the thing name when set (it then shows in CloudTrail), else the certificate."""
        import re

        if self.config.thing_name:
            name = re.sub(r"[^\w+=,.@-]", "-", self.config.thing_name)[:64]
            if len(name) >= 2:
                return name
        return "iotinvoke-" + self._certificate_digest()[:16]

    # -- credentials for an environment, and the cache

    def credentials(self, name: str, refused: str | None = None) -> Credentials:
        """The credentials hop 3 is signed with: the environment role's, or in one-hop mode the IoT
        role's. ``refused``: a session token AWS just refused, to be replaced."""
        env = self.environment(name)
        if env.direct:
            return self.iot_credentials(refused)
        key = _cache_key("sts", self._iot_key(), env.role_arn or "", env.external_id or "",
                         str(env.duration_seconds or ""))
        return self._cached(key, lambda: self._assume_role(env), refused)

    def clear_cache(self) -> int:
        """Remove every cached credential and lock file; returns how many files went."""
        self._memory.clear()
        return self._cache.clear()

    def _cached(self, key: str, fetch: Callable[[], Credentials], refused: str | None) -> Credentials:
        """The credentials at key if fresh (in memory, else on disk), else fetch() under the entry's
        lock. ``refused``: a session token AWS just refused, never to be returned again."""
        now = self.now()
        cached = self._memory.get(key)
        if cached is None or not cached.fresh(now):
            cached = self._cache.get(key)
        if cached is not None and cached.fresh(now) and cached.token != refused:
            if self.log is not None:
                self._log("cache: %s fresh until %s, then refreshed (expires %s)" % (
                    key[:3], _iso8601(cached.refresh_at()), _iso8601(cached.expiration)))
            self._memory[key] = cached
            return cached
        self._log("cache: %s %s" % (key[:3], "refused by AWS" if refused else "absent" if cached is None else
                                    "due for refresh"))
        outermost = self._lock_deadline is None
        if outermost:
            self._lock_deadline = self._monotonic() + LOCK_WAIT_S
        try:
            with self._cache.lock(key, self._lock_deadline):  # type: ignore[arg-type]
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
                        self._log("cache: refresh failed; using credentials valid until %s"
                                  % _iso8601(current.expiration))
                    else:
                        self._cache.put(key, fresh)
                        current = fresh
                self._memory[key] = current
                return current
        finally:
            if outermost:
                self._lock_deadline = None

    # -- hop 3: Lambda Invoke

    def invoke(self, name: str, payload: bytes, invocation_type: str = "RequestResponse", log_tail: bool = False,
               qualifier: str | None = None, client_context: str | None = None, read_timeout: float | None = None,
               *, validate: bool = True, credentials: Credentials | None = None) -> InvokeResult:
        """Invoke the environment's function with a JSON payload (bytes, sent as they are).
        ``validate=False``: the caller already checked the payload (the CLI does, before reading
        the configuration), so a payload of up to 6 MB is not parsed twice. ``credentials``: sign
        with these instead of the environment's (cached) ones, and never renew them."""
        env = self.environment(name)
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise IotInvokeError("invocation type must be RequestResponse, Event or DryRun", "usage")
        if validate:
            _check_payload(payload, invocation_type)
        if log_tail and invocation_type != "RequestResponse":
            raise IotInvokeError("the log tail comes with synchronous invokes only", "usage", "lambda")
        if log_tail and env.cross_account:
            raise IotInvokeError("the log tail needs the role in the function's account: Lambda returns no log tail "
                                 "across accounts", "cross-account-log", "lambda")
        qualifier = qualifier or env.qualifier
        url = env.invoke_url
        if qualifier:
            from urllib.parse import quote

            url += "?Qualifier=" + quote(qualifier, safe="")
        headers = {"X-Amz-Invocation-Type": invocation_type, "User-Agent": USER_AGENT}
        if log_tail:
            headers["X-Amz-Log-Type"] = "Tail"
        if client_context is not None:
            headers["X-Amz-Client-Context"] = client_context
        if read_timeout is None:
            read_timeout = self.config.read_timeout or (
                INVOKE_READ_TIMEOUT_S if invocation_type == "RequestResponse" else ASYNC_READ_TIMEOUT_S)

        def send(creds: Credentials) -> InvokeResult:
            signed = _signed_headers("POST", url, headers, payload, creds, "lambda", env.region, self.now())
            self.invoke_state = "sending"
            response = self._transport.send("lambda", "POST", url, signed, payload, read_timeout=read_timeout,
                                            max_bytes=MAX_INVOKE_RESPONSE_BYTES, ca=env.ca_bundle,
                                            ca_source=env.ca_bundle_source)
            self.invoke_state = "answered"
            if response.status in (200, 202, 204):
                return InvokeResult(response.status, response.body, response.headers.get("X-Amz-Function-Error"),
                                    _log_tail(response.headers.get("X-Amz-Log-Result")),
                                    response.headers.get("X-Amz-Executed-Version"),
                                    response.headers.get("x-amzn-RequestId"))
            self.clock.note(_http_date(response.headers.get("Date")))
            raise _aws_error(response, "lambda", env, self.config, self.now())

        self.invoke_state = ""
        return self._exchange(
            "lambda", send, creds=credentials or self.credentials(name),
            renew=None if credentials else (lambda refused: self.credentials(name, refused=refused.token)),
            probe=lambda: self._transport.probe_time(url, env.ca_bundle, None),
            runs=invocation_type != "DryRun", resend_may_run=env.idempotent)

    def interrupted_at(self) -> str:
        """Where an interrupted call stood, for its line: whether the invoke may have run."""
        if self.invoke_state == "answered":
            return "after Lambda answered"
        if self.invoke_state == "sending" and getattr(self._transport, "connected", lambda: True)():
            return "after the invoke was sent: the function may have run"
        return "before the invoke was sent"

# === Command line =================================================================================

_USAGE = """\
usage: iotinvoke [options] ENV [PAYLOAD]
       iotinvoke [options] --credential-process ENV
       iotinvoke [options] --stream ENV
       iotinvoke [options] --doctor ENV
       iotinvoke [options] --clear-cache
       iotinvoke [options] --serve [--socket PATH] [--container-credentials PORT]

Invoke ENV's Lambda function with PAYLOAD (JSON text; '-' or absent: standard input;
'@path': that file) and write its response payload to standard output.

options:
  -c, --config PATH       configuration file (default: $IOTINVOKE_CONFIG, else
                          ~/.config/iotinvoke/iotinvoke.ini, /etc/iotinvoke/iotinvoke.ini)
  --event                 invoke asynchronously (InvocationType Event); prints nothing
  --dry-run               check the permission only (InvocationType DryRun); runs nothing
  --log-tail              write the function's log tail to standard error
  -q, --qualifier NAME    function version or alias
  --client-context JSON   client context passed to the function (synchronous invokes)
  --connect-timeout S     seconds to connect to each endpoint (default 5)
  --read-timeout S        seconds for the function's whole answer (default 905; Event/DryRun 30)
  --no-cache              neither read nor write cached credentials
  --stream                read one JSON payload per line from standard input and write one
                          JSON line per input line: {"exit", "status", "function_error",
                          "payload" (the answer's exact text), "error", "reason"}
  --doctor                check each hop for ENV afresh (the invoke as DryRun) and explain
                          what is wrong and how to fix it
  --credential-process    print ENV's credentials in the AWS credential_process format
  --clear-cache           remove all cached credentials
  --serve                 run the agent: serve C callers over a Unix socket from one warm
                          process, in the foreground until SIGTERM (README: The agent)
  --socket PATH           the agent's socket (default: agent.sock in the cache folder)
  --container-credentials PORT
                          the agent also serves ENV's credentials to AWS SDKs on
                          http://127.0.0.1:PORT/ENV (AWS_CONTAINER_CREDENTIALS_FULL_URI)
  -v, --verbose           say what happens, on standard error (never secrets)
  --version               print the version
  -h, --help              show this help

environment: IOTINVOKE_CONFIG, IOTINVOKE_CACHE_DIR, AWS_ENDPOINT_URL[_STS|_LAMBDA],
AWS_CA_BUNDLE, HTTPS_PROXY, NO_PROXY.
"""

_FLAGS = {"--event": "event", "--dry-run": "dry_run", "--log-tail": "log_tail", "--no-cache": "no_cache",
          "--credential-process": "credential_process", "--stream": "stream", "--doctor": "doctor",
          "--clear-cache": "clear_cache", "-v": "verbose", "--verbose": "verbose", "-h": "help", "--help": "help",
          "--version": "version", "--serve": "serve"}
_VALUED = {"-c": "config", "--config": "config", "-q": "qualifier", "--qualifier": "qualifier",
           "--client-context": "client_context", "--connect-timeout": "connect_timeout",
           "--read-timeout": "read_timeout", "--socket": "socket", "--container-credentials": "container_credentials"}


def _usage() -> str:
    """--help: the options, then every exit status of EXIT_CODES."""
    import textwrap

    statuses = ", ".join("%d %s" % (code, words) for code, (words, _) in sorted(EXIT_CODES.items()))
    return _USAGE + "\n" + textwrap.fill("exit status: " + statuses + ".", 96) + (
        "\nAn error line ends with [REASON] or [REASON; retry after N s] (README: Reasons).\n")


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
                        raise IotInvokeError("option %s needs a value" % name, "usage")
                    value = following
                options[_VALUED[name]] = value
            else:
                raise IotInvokeError("unknown option %s (see --help)" % _short(name, 40), "usage")
        else:
            positional.append(arg)
    return options, positional


def _read_payload(argument: str | None, stdin: IO[bytes] | None) -> bytes:
    """The payload from the argument, '@file' or standard input, read no further than Lambda's limit."""
    if argument is None or argument == "-":
        if stdin is None:
            raise IotInvokeError("standard input is closed: pass the payload as an argument", "stdin-closed", "payload")
        try:
            return stdin.read(MAX_SYNC_PAYLOAD_BYTES + 1)
        except OSError as e:
            raise IotInvokeError("cannot read the payload from standard input: " + _os_reason(e), "stdin-unreadable",
                                 "payload") from None
    if argument.startswith("@"):
        try:
            with os.fdopen(os.open(argument[1:], os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb") as f:
                return f.read(MAX_SYNC_PAYLOAD_BYTES + 1)
        except OSError as e:
            raise IotInvokeError("payload file %s: %s" % (argument[1:], _os_reason(e)), "payload-file-unreadable",
                                 "payload") from None
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
                             "usage")
    return value


def _client_context(text: str | None) -> str | None:
    if text is None:
        return None
    import base64
    import json

    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise IotInvokeError("--client-context must be a JSON object", "client-context-invalid", "payload")
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_CLIENT_CONTEXT_BYTES:
        raise IotInvokeError("--client-context is %d bytes in base64; Lambda takes at most %d"
                             % (len(encoded), MAX_CLIENT_CONTEXT_BYTES), "client-context-invalid", "payload")
    return encoded


def _run(argv: list[str], stdin: IO[bytes] | None, stdout: IO[bytes] | None, stderr: IO[str], *,
         make_client: Callable[[Config, bool, Callable[[str], None] | None], Client] | None = None,
         load: Callable[[str | None], Config] = load_config) -> int:
    """The command without its process: returns the exit status, raises IotInvokeError (main() makes
    the line). ``make_client(config, use_cache, log)``: a Client to use (the agent's warm ones);
    ``load``: how the configuration is read (the agent's keeps it while its files are unchanged)."""
    options, positional = _parse_args(argv)
    # Help and version go to stdout, as users expect of any command (`--help | less`); an invoke
    # never writes anything there but the payload.
    if options.get("help") or options.get("version"):
        text = _usage() if options.get("help") else "iotinvoke %s\n" % __version__
        _write_out(stdout, text.encode(), ran=False)
        return EX_OK
    if options.get("serve") or "socket" in options or "container_credentials" in options:
        return _serve(options, positional, stderr)  # the agent: see "The agent (--serve)"
    action = _check_command(options, positional)
    invocation_type = "Event" if options.get("event") else "DryRun" if options.get("dry_run") else "RequestResponse"
    timeouts = [_timeout_option(options, name) for name in ("connect_timeout", "read_timeout")]
    client_context = _client_context(options.get("client_context"))
    payload = b""
    if action == "invoke":
        # The payload is checked before the configuration or any network call.
        payload = _read_payload(positional[1] if len(positional) > 1 else None, stdin)
        _check_payload(payload, invocation_type)
        if stdout is None and invocation_type == "RequestResponse":
            raise IotInvokeError("standard output is closed: the function's answer could not be delivered; "
                                 "nothing was sent", "stdout-closed", "output")
    config, log = _configured(load(options.get("config")), timeouts[0], bool(options.get("verbose")), stderr)
    if make_client is None:
        def make_client(config: Config, use_cache: bool, log: Callable[[str], None] | None) -> Client:
            return Client(config, use_cache=use_cache, log=log,
                          warn=lambda message: _say(stderr, "iotinvoke: " + message + "\n"))
    # The doctor asks AWS afresh.
    client = make_client(config, not options.get("no_cache") and action != "doctor", log)
    if action == "clear_cache":
        removed = client.clear_cache()
        if log is not None:
            log("cache: removed %d files" % removed)
        return EX_OK
    client.environment(positional[0])  # unknown environment: exit 64 before any network call
    return _act(action, client, positional[0], payload, invocation_type, options, client_context, timeouts[1], stdin,
                stdout, stderr, log)


def _act(action: str, client: Client, name: str, payload: bytes, invocation_type: str, options: dict[str, Any],
         client_context: str | None, read_timeout: float | None, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
         stderr: IO[str], log: Callable[[str], None] | None) -> int:
    """What the command line asked of environment ``name``, once everything was checked."""
    if action == "doctor":
        import io

        report = io.StringIO()
        try:
            return _doctor(client, name, report)
        finally:
            _write_out(stdout, report.getvalue().encode("utf-8"), ran=False)
    if action == "credential_process":
        import json

        _write_out(stdout, json.dumps(client.credentials(name).to_json()).encode() + b"\n", ran=False)
        return EX_OK
    if action == "stream":
        if stdin is None or stdout is None:
            raise IotInvokeError("--stream needs standard input and output open", "stream-closed", "output")
        return _stream(client, name, stdin, stdout, log, bool(options.get("log_tail")), options.get("qualifier"),
                       client_context, read_timeout)
    result = client.invoke(name, payload, invocation_type, log_tail=bool(options.get("log_tail")),
                           qualifier=options.get("qualifier"), client_context=client_context,
                           read_timeout=read_timeout, validate=False)
    return _answer(result, stdout, stderr)


def _configured(config: Config, connect_timeout: float | None, verbose: bool,
                stderr: IO[str]) -> tuple[Config, Callable[[str], None] | None]:
    """The configuration with --connect-timeout applied (to a copy: a loaded configuration may be
    shared, as the agent's is), and the -v log."""
    if connect_timeout is not None:
        import copy

        config = copy.copy(config)
        config.connect_timeout = connect_timeout
    if not verbose:
        return config, None

    def log(message: str) -> None:
        _say(stderr, "iotinvoke: " + message + "\n")

    log("config: %s" % config.path)
    return config, log


def _check_command(options: dict[str, Any], positional: list[str]) -> str:
    """The action the command line asks for ("invoke", "doctor", ...), once it is a valid one."""
    actions = [a for a in ("credential_process", "clear_cache", "stream", "doctor") if options.get(a)]
    if options.get("clear_cache"):
        if positional:
            raise IotInvokeError("--clear-cache takes no ENV or PAYLOAD", "usage")
    elif not positional:
        raise IotInvokeError("missing ENV (see --help)", "usage")
    if len(actions) > 1 or (actions and (options.get("event") or options.get("dry_run"))):
        raise IotInvokeError("choose one of --doctor, --credential-process, --clear-cache, --stream or an invoke",
                             "usage")
    if options.get("event") and options.get("dry_run"):
        raise IotInvokeError("--event and --dry-run exclude each other", "usage")
    if len(positional) > (1 if actions else 2):
        raise IotInvokeError("too many arguments (see --help): quote the JSON payload, one argument", "usage")
    return actions[0] if actions else "invoke"


def _answer(result: InvokeResult, stdout: IO[bytes] | None, stderr: IO[str]) -> int:
    """An invoke's answer to the standard streams: the payload byte for byte, the log tail, the status."""
    if result.payload:
        _write_out(stdout, result.payload, ran=True)
    if result.log_result:
        _say(stderr, result.log_result if result.log_result.endswith("\n") else result.log_result + "\n")
    if result.function_error:
        _say(stderr, "iotinvoke: lambda: the function reported an error (%s): %s\n"
             % (_short(result.function_error, 40), _function_error_summary(result.payload)))
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
            raise IotInvokeError("cannot write to standard output: %s" % _os_reason(e), "stdout-failed",
                                 "output") from None
        raise IotInvokeError("cannot write the answer to standard output (%s): the function ran and its answer "
                             "is lost" % _os_reason(e), "stdout-failed", "output") from None


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


def _stream(client: Client, name: str, stdin: IO[bytes], stdout: IO[bytes], log: Callable[[str], None] | None,
            log_tail: bool, qualifier: str | None, client_context: str | None, read_timeout: float | None) -> int:
    """--stream: one invoke per input line, one JSON result line for each line read (a blank one
    included, so a caller waiting for its answer never hangs), until end of input. "payload" is the
    function's answer as a string holding its exact text (re-serialising JSON would change it:
    1e400, 1.50, duplicate keys); "payload_base64" where it is not UTF-8. A line is read no further
    than Lambda's limit; the rest of a longer one is skipped, in bounded steps.

    For C programs that call often: start-up, the TLS handshake and the credential lookup are
    paid once (the Client keeps its connection alive). A failed invoke is reported on its line
    and the stream goes on."""
    import json

    while True:
        line = stdin.readline(MAX_SYNC_PAYLOAD_BYTES + 2)
        if not line:
            return EX_OK
        record: dict[str, object] = {"exit": EX_OK, "status": None, "function_error": None, "payload": None,
                                  "error": None, "reason": None}
        try:
            if not line.endswith(b"\n") and len(line) > MAX_SYNC_PAYLOAD_BYTES:
                while line and not line.endswith(b"\n"):
                    line = stdin.readline(1 << 16)
                raise IotInvokeError("the line is over %d bytes, Lambda's limit" % MAX_SYNC_PAYLOAD_BYTES,
                                     "payload-too-large", "payload")
            payload = line.strip()
            _check_payload(payload, "RequestResponse")
            result = client.invoke(name, payload, log_tail=log_tail, qualifier=qualifier,
                                   client_context=client_context, read_timeout=read_timeout, validate=False)
            record.update(status=result.status, function_error=result.function_error,
                          exit=EX_FUNCTION_ERROR if result.function_error else EX_OK)
            try:
                record["payload"] = result.payload.decode("utf-8")
            except UnicodeDecodeError:
                import base64

                del record["payload"]
                record["payload_base64"] = base64.b64encode(result.payload).decode("ascii")
            if result.log_result and log is not None:
                log("lambda: log tail: " + json.dumps(result.log_result))
        except IotInvokeError as e:
            record.update(exit=e.exit_code, status=e.status, error=str(e), reason=e.reason)
        _write_out(stdout, json.dumps(record, separators=(",", ":")).encode() + b"\n", ran=True)

# === Explaining failures: --doctor ================================================================


def _doctor(client: Client, name: str, out: IO[str]) -> int:
    """--doctor: run each hop afresh for one environment (the invoke as DryRun) and, where one
    fails, say the likely cause and the fix (REASONS). Returns the exit status of the first failure."""
    env = client.environment(name)
    config = client.config
    failed: list[int] = []

    def line(status: str, check: str, detail: str, cause: str = "", fix: str = "") -> None:
        out.write("%-5s %-9s %s\n" % (status, check, detail))
        for label, text in (("cause", cause), ("fix", fix)):
            if text:
                out.write("      %-6s %s\n" % (label + ":", text))

    def fail(check: str, error: IotInvokeError, caller: str = "the IoT role") -> int:
        line("FAIL", check, str(error), *_diagnosis(error, client, env, caller))
        failed.append(error.exit_code)
        return error.exit_code

    mode = "one hop (the function's resource policy trusts the IoT role)" if env.direct else "two hops via " + str(
        env.role_arn)
    line("ok", "config", "%s [%s]: %s, %s" % (config.path, name, env.function, mode))
    line(*_cache_report(config))

    cert_id = _certificate_id(config.cert)
    try:
        _ssl_context(config.ca, (config.cert, config.key), pin_file=config.pin_file)
    except IotInvokeError as e:
        return fail("files", e)
    not_after = _certificate_not_after(config.cert)
    detail = "certificate id %s" % (cert_id or "?") + (", valid until " + _iso8601(not_after) if not_after else "")
    uri = _provider_key_uri(config.key)
    if uri is not None:
        token = _uri_attributes(uri)[0].get("token")
        detail += "; key in PKCS#11 token %s" % (repr(token) if token else "(any)")
    if not_after is not None and not_after < client.now():
        # By the board's clock, which may be the wrong one: hop 1 tells (AWS refuses an expired certificate).
        line("warn", "files", detail + "; expired by this board's clock (%s)" % _iso8601(client.now()),
             "the device certificate has expired, or the board's clock is ahead (see the clock line)",
             "issue a new certificate for this thing if hop 1 fails; else set the clock")
    else:
        line("ok", "files", detail)

    try:
        iot_creds = client.fetch_iot_credentials()
    except IotInvokeError as e:
        return fail("hop 1", e)
    line("ok", "hop 1", "credentials from role alias %s, valid until %s" % (config.role_alias,
                                                                           _iso8601(iot_creds.expiration)))
    drift = client.clock.board_drift
    if drift is not None and abs(drift) > CLOCK_SKEW_THRESHOLD_S:
        line("warn", "clock", "the board's clock is %.0f s %s AWS's: corrected for signing and TLS dates, but logs "
             "and other programs suffer" % (abs(drift), "behind" if drift > 0 else "ahead of"),
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

    creds = iot_creds
    if env.direct:
        line("skip", "hop 2", "one-hop mode: no AssumeRole")
    else:
        try:
            creds = client.assume_role(name, iot_creds)
        except IotInvokeError as e:
            return fail("hop 2", e, caller_role)
        line("ok", "hop 2", "AssumeRole into %s, valid until %s" % (env.role_arn, _iso8601(creds.expiration)))

    try:  # hop 3 as DryRun: checks the permission, runs nothing
        client.invoke(name, b"{}", "DryRun", credentials=creds)
    except IotInvokeError as e:
        return fail("hop 3", e, caller_role)
    line("ok", "hop 3", "DryRun invoke of %s allowed" % env.function)
    if env.direct:
        line("note", "log tail", "in one-hop mode Lambda returns the log tail only when the function is in the IoT "
             "role's account", fix="set role_arn for this environment if you need the log tail across accounts")
    return failed[0] if failed else EX_OK


def _cache_report(config: Config, environ: Mapping[str, str] = os.environ) -> tuple[str, str, str, str, str]:
    """The doctor's cache line: where calls keep credentials, and whether they can."""
    folder, source = _cache_location(config, environ)
    if folder is None:
        return ("warn", "cache", "none: " + source + "; every call runs uncached", "",
                "set cache_dir, or run as a systemd service with RuntimeDirectory=iotinvoke")
    notes: list[str] = []
    if os.path.lexists(folder) and _Cache(folder, notes.append, environ=environ).folder is None:
        return ("warn", "cache", "%s, from %s: %s" % (folder, source, notes[-1].split(": ", 1)[-1]),
                "every call runs uncached (a request per hop)",
                "chmod 700 the folder, owned by the user that runs iotinvoke")
    if not os.path.lexists(folder) and not os.access(os.path.dirname(folder) or ".", os.W_OK | os.X_OK):
        return ("warn", "cache", "%s, from %s: cannot be made by this user (uid %d)" % (folder, source, os.geteuid()),
                "every call runs uncached (a request per hop)",
                "install the package's tmpfiles.d line for this user, or set cache_dir")
    detail = "%s, from %s%s" % (folder, source, "" if os.path.lexists(folder) else "; made at first use")
    if source.startswith("~"):
        return ("warn", "cache", detail, "session tokens are kept on persistent storage (the SD card) across reboots",
                "run as a systemd service with RuntimeDirectory=iotinvoke (README: Cache location)")
    return ("ok", "cache", detail, "", "")


def _diagnosis(e: IotInvokeError, client: Client, env: Environment, caller_role: str) -> tuple[str, str]:
    """(cause, fix) for a failure of the doctor's checks, from its reason's row of REASONS."""
    cause, fix = REASONS[e.reason][3:]
    if e.reason == "invoke-denied" and env.direct:
        # Lambda says which policy type refused ("because no identity-based policy allows ...").
        if "no identity-based policy" in e.message:
            cause = ("the function's resource policy allows {caller}, but that role's own permissions do not allow "
                     "lambda:InvokeFunction on the function")
            fix = "in the IoT account, allow lambda:InvokeFunction on {function} (and :*) for {caller}"
        else:
            cause = ("one-hop mode needs both: the function's resource policy naming {caller}, and that role's own "
                     "permission lambda:InvokeFunction on the function")
            fix = ("aws lambda add-permission --function-name {function} --statement-id iotinvoke --action "
                   "lambda:InvokeFunction --principal {caller}")
    if not cause:
        cause = ("see the error above" if e.exit_code != EX_TEMPFAIL else "the network, a proxy, or AWS itself failed")
        fix = fix or (EXIT_CODES.get(e.exit_code, ("", ""))[1] if e.exit_code != EX_TEMPFAIL else
                      "check connectivity and HTTPS_PROXY / NO_PROXY, then retry")
    config = client.config
    ca = (env.ca_bundle if e.hop != "iot" else config.ca) or "the default trust, " + _default_trust()[1]
    more = {"cert_id": _certificate_id(config.cert) or "<id>", "caller": caller_role,
            "caller_name": caller_role.rsplit("/", 1)[-1], "ca": ca,
            "condition": " with the ExternalId condition %r" % env.external_id if env.external_id else ""}
    return _fill(cause, config, env, **more), _fill(fix, config, env, **more)


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

# === main =========================================================================================


class _Signal(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so the call ends with its line (as SIGINT does)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --- The agent (--serve) --------------------------------------------------------------------------
# One warm process serves every C caller on the board over a Unix socket: the interpreter start-up,
# the imports, the TLS handshakes and the credential look-ups are paid once, not at every call.
#
# Wire protocol, version 1: every integer is an unsigned 32-bit big-endian number; one request and
# one response per connection.
#
#   request  = "IIA1" argc (length bytes){argc} stdin_length stdin_bytes
#   response = "IIA1" exit_status stdout_length stdout_bytes stderr_length stderr_bytes
#
# argv is the command line without the program name, exactly as the CLI takes it (bytes, decoded
# as Python decodes its own argv); stdin is what the CLI would read as the payload. The response is
# what the CLI would have printed, and its exit status. Bounds: at most AGENT_MAX_ARGS arguments,
# each at most AGENT_MAX_ARG_BYTES (Linux's own limit on one argument, MAX_ARG_STRLEN, is 128 KiB,
# so a payload that fits in a command line fits here), standard input at most Lambda's 6 MB plus
# slack. A request must arrive whole within AGENT_REQUEST_TIMEOUT_S. A request that breaks a rule
# gets a response with exit status 64 (75 for a timeout) and one error line, and nothing runs.
#
# At most once: the agent executes a request once, after it has arrived whole, and never again; a
# caller that loses the response after that must take it as exit status 74 (the function may have
# run). The caller may send again only what provably did not run: a refused connection, a response
# that says 75, or a connection cut before its request was complete.

AGENT_MAGIC = b"IIA1"
AGENT_SOCKET_NAME = "agent.sock"  # in the cache folder, unless --socket (see _agent_socket_path)
AGENT_TOKEN_NAME = "container-token"  # next to the socket: the container endpoint's token
AGENT_MAX_ARGS = 64
AGENT_MAX_ARG_BYTES = 128 * 1024  # Linux MAX_ARG_STRLEN
AGENT_MAX_ARGV_BYTES = 256 * 1024  # all arguments together: one payload-sized argument and options
AGENT_MAX_STDIN_BYTES = MAX_SYNC_PAYLOAD_BYTES + 64 * 1024  # the CLI reads one byte past the limit
AGENT_MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # request bytes held at once (ten 6 MB payloads): a board's RAM is small
AGENT_REQUEST_TIMEOUT_S = 10.0  # a whole request, 6 MB included, takes milliseconds on a local socket
AGENT_REPLY_TIMEOUT_S = 30.0  # a caller that does not read its response is given up on
AGENT_MAX_CALLERS = 32  # requests executing at once, each with its own warm Client
AGENT_MAX_CONNECTIONS = 128  # connections being read, waiting or executing; beyond: agent-busy
AGENT_QUEUE_WAIT_S = 5.0  # a complete request waits this long for one of the AGENT_MAX_CALLERS
AGENT_BUSY_RETRY_S = 1.0  # the wait an agent-busy answer asks for
AGENT_WORKER_IDLE_S = 60.0  # a worker without a connection for this long ends, if another one waits
AGENT_STOP_WAIT_S = 60.0  # SIGTERM: invokes in flight may finish this long (systemd waits 90 s)
# Refusals of hops 1-2 that retrying won't fix are kept briefly, as AWS IoT Greengrass' token
# exchange service does (credentialRetryInSec: clientError 120 s for 4xx, serverError 60 s for 5xx;
# https://docs.aws.amazon.com/greengrass/v2/developerguide/token-exchange-service-component.html),
# so that a board of callers looping on a revoked certificate does not hammer AWS.
AGENT_REFUSAL_4XX_S = 120.0
AGENT_REFUSAL_5XX_S = 60.0
_SO_PEERGROUPS = 59  # Linux 4.13+, socket(7): the peer's supplementary groups (Python's socket module lacks it)
_AGENT_REFUSED_OPTIONS = ("serve", "socket", "container_credentials", "stream")


class _AgentRequestError(Exception):
    """A request that breaks the protocol: answered with ``status`` and one line, nothing run."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def _agent_encode(status: int, out: bytes, err: bytes) -> bytes:
    import struct

    return AGENT_MAGIC + struct.pack(">II", status, len(out)) + out + struct.pack(">I", len(err)) + err


def _agent_line(message: str, reason: str, retry_after: float | None = None, exit_code: int | None = None) -> str:
    return "iotinvoke: %s\n" % IotInvokeError(message, reason, "agent", retry_after=retry_after, exit_code=exit_code)


class _AgentPeer:
    __slots__ = ("pid", "uid", "gid", "groups")

    def __init__(self, pid: int, uid: int, gid: int, groups: frozenset[int]) -> None:
        self.pid, self.uid, self.gid, self.groups = pid, uid, gid, groups


def _agent_peer(sock: socket.socket, with_groups: bool) -> _AgentPeer:
    """The caller's credentials as the kernel saw them at connect(): SO_PEERCRED, unix(7); its
    supplementary groups too when ``with_groups``."""
    import socket
    import struct

    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    groups = {gid}
    if not with_groups:
        return _AgentPeer(pid, uid, gid, frozenset(groups))
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PEERGROUPS", _SO_PEERGROUPS), 4 * 1024)
        groups.update(struct.unpack("%dI" % (len(raw) // 4), raw[: len(raw) // 4 * 4]))
    except OSError:  # older kernels: the primary group only
        pass
    return _AgentPeer(pid, uid, gid, frozenset(groups))


class _AgentSettings:
    """The agent's keys of the configuration (in [iot] or [DEFAULT]): who may call, when to exit idle."""

    def __init__(self, config: Config) -> None:
        import grp
        import pwd

        self.users: set[int] = {os.geteuid()}  # the agent's own user: it can read the device key anyway
        self.groups: set[int] = set()
        for word in (getattr(config, "agent_users", None) or "").replace(",", " ").split():
            try:
                self.users.add(int(word) if word.isdigit() else pwd.getpwnam(word).pw_uid)
            except KeyError:
                raise ConfigError("no such user %r" % word, config.path, "iot", "agent_users") from None
        for word in (getattr(config, "agent_groups", None) or "").replace(",", " ").split():
            try:
                self.groups.add(int(word) if word.isdigit() else grp.getgrnam(word).gr_gid)
            except KeyError:
                raise ConfigError("no such group %r" % word, config.path, "iot", "agent_groups") from None
        idle = getattr(config, "agent_idle_exit", None)
        self.idle_exit_s = AGENT_IDLE_EXIT_S
        if idle is not None:
            value = _bounded(idle, float, 0.0, 86400.0)
            if value is None:
                raise ConfigError("takes seconds from 0 (never) to 86400", config.path, "iot", "agent_idle_exit")
            self.idle_exit_s = value

    def allowed(self, peer: _AgentPeer) -> bool:
        return peer.uid in self.users or bool(peer.groups & self.groups)


class _AgentRefusals:
    """Recent permanent refusals of hops 1-2 per configuration and environment (see AGENT_REFUSAL_4XX_S)."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[IotInvokeError, float, float]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def guard(self, key: tuple[str, str], fetch: Callable[[], Credentials]) -> Credentials:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and now < entry[2]:
            error = Exception.__new__(type(entry[0]))  # the same error, its own message
            error.__dict__.update(entry[0].__dict__)
            error.args = entry[0].args
            error.message += " (a cached refusal, %d s old: the agent asks AWS again in %d s)" % (
                now - entry[1], max(1, round(entry[2] - now)))
            raise error
        try:
            return fetch()
        except IotInvokeError as e:
            if e.hop in ("iot", "sts") and e.exit_code in (EX_NOPERM, EX_UNAVAILABLE):
                keep = AGENT_REFUSAL_5XX_S if e.status is not None and e.status >= 500 else AGENT_REFUSAL_4XX_S
                with self._lock:
                    self._entries[key] = (e, now, now + keep)
            raise


class _AgentClient(Client):
    """A pooled Client: its hops 1-2 go through the agent's refusal cache."""

    pool_key: tuple[object, ...] = ()
    refusals: _AgentRefusals

    def credentials(self, name: str, refused: str | None = None) -> Credentials:
        return self.refusals.guard((self.config.path, name), lambda: Client.credentials(self, name, refused))


class _AgentPool:
    """Warm Clients, one per request executing; each keeps its HTTPS connections and credentials
    in memory between requests. They share the on-disk cache (and its flock) with every process."""

    def __init__(self, refusals: _AgentRefusals, warn: Callable[[str], None]) -> None:
        import threading

        self.warn = warn  # a Client's notes (a cache that cannot be used): to the caller it serves
        self._lock = threading.Lock()
        self._idle: list[_AgentClient] = []
        self._generation = 0
        self.refusals = refusals
        self.created = 0

    def lend(self, config: Config, stamp: tuple[object, ...], use_cache: bool, log: Callable[[str], None] | None,
             lent: list[tuple[Client, int | None]]) -> Client:
        """A warm Client for this configuration. ``stamp``: its files as _AgentConfigs last saw them;
        a changed file (a rotated certificate) makes a new Client."""
        if not use_cache or log is not None:
            # --no-cache, --doctor, -v: a Client of its own, as the CLI would make.
            fresh = Client(config, use_cache=use_cache, log=log, warn=self.warn)
            lent.append((fresh, None))
            return fresh
        key = (config.path, config.connect_timeout, stamp)
        client = None
        with self._lock:
            while self._idle:
                candidate = self._idle.pop()
                if candidate.pool_key == key:
                    client = candidate
                    break
            generation = self._generation
        if client is None:
            client = _AgentClient(config, use_cache=True, log=None, warn=self.warn)
            client.pool_key, client.refusals = key, self.refusals
            self.created += 1
        lent.append((client, generation))
        return client

    def give_back(self, lent: list[tuple[Client, int | None]]) -> None:
        with self._lock:
            for client, generation in lent:
                if generation == self._generation and len(self._idle) < AGENT_MAX_CALLERS:  # None: unpooled
                    self._idle.append(client)  # type: ignore[arg-type]  # a pooled one is an _AgentClient

    def clear(self) -> None:
        """After --clear-cache: no warm Client keeps credentials in memory."""
        with self._lock:
            self._idle.clear()
            self._generation += 1
        self.refusals.clear()


class _AgentConfigs:
    """load_config's result, kept while the configuration file and every file it names are the same
    files, unchanged (inode, size, modification time): read and checked again when one changes."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._kept: dict[str, tuple[tuple[object, ...], Config]] = {}

    def load(self, path: str | None) -> Config:
        path = find_config(path)
        kept = self._kept.get(path)
        if kept is not None and kept[0] == self._stamp(kept[1]):
            return kept[1]
        config = load_config(path)
        with self._lock:
            self._kept[path] = (self._stamp(config), config)
        return config

    def stamp(self, path: str) -> tuple[object, ...]:
        """The files of the configuration at ``path`` as its last load() saw them."""
        return self._kept[path][0]

    @staticmethod
    def _stamp(config: Config) -> tuple[object, ...]:
        paths = [config.path, config.cert, config.key, config.ca, config.pin_file, config.openssl_conf]
        paths += [env.ca_bundle for env in config.environments.values()]
        stamp: list[object] = []
        for path in dict.fromkeys(paths):  # once each: every environment may name the same CA file
            try:
                st = os.stat(path) if path else None
                stamp.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid) if st else None)
            except OSError:
                stamp.append(None)
        return tuple(stamp)


class _AgentReader:
    """Exactly-sized reads off a socket, all before one deadline; a small request takes one recv()."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        import socket

        self._sock, self._deadline, self._buffer = sock, deadline, b""
        try:  # without a timeout set: one recv() system call, not ioctl + poll + recv
            self._buffer = sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            if not self._buffer:
                raise EOFError

    def exact(self, size: int) -> bytes:
        import socket

        chunks = [self._buffer[:size]]
        self._buffer = self._buffer[size:]
        left = size - len(chunks[0])
        while left > 0:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout()
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(min(max(left, 65536), 1 << 20))
            if not chunk:
                raise EOFError
            if len(chunk) > left:  # read ahead: the rest belongs to the next field
                chunk, self._buffer = chunk[:left], chunk[left:]
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def _agent_read_request(sock: socket.socket, deadline: float, reserve: Callable[[int], bool]) -> tuple[list[str], bytes]:
    """One request off the socket, every field bounded before it is read; reserve(n) claims n bytes
    of the agent's budget for standard input (AGENT_MAX_BYTES_IN_FLIGHT), False when it is spent."""
    import struct

    reader = _AgentReader(sock, deadline)

    def number() -> int:
        return int(struct.unpack(">I", reader.exact(4))[0])

    magic = reader.exact(len(AGENT_MAGIC))
    if magic != AGENT_MAGIC:
        raise _AgentRequestError("not an iotinvoke agent request (protocol %s expected)" % AGENT_MAGIC.decode(),
                                 EX_USAGE, "agent-bad-request")
    argc = number()
    if argc > AGENT_MAX_ARGS:
        raise _AgentRequestError("%d arguments; the agent takes at most %d" % (argc, AGENT_MAX_ARGS), EX_USAGE,
                                 "agent-bad-request")
    argv = []
    total = 0
    for _ in range(argc):
        length = number()
        total += length
        if length > AGENT_MAX_ARG_BYTES or total > AGENT_MAX_ARGV_BYTES:
            raise _AgentRequestError("arguments over %d bytes, or one over %d: pass the payload on standard input"
                                     % (AGENT_MAX_ARGV_BYTES, AGENT_MAX_ARG_BYTES), EX_USAGE, "agent-bad-request")
        argv.append(os.fsdecode(reader.exact(length)))
    length = number()
    if length > AGENT_MAX_STDIN_BYTES:
        raise _AgentRequestError("standard input of %d bytes; Lambda takes at most %d" % (length, MAX_SYNC_PAYLOAD_BYTES),
                                 EX_DATAERR, "agent-bad-request")
    if not reserve(length):
        raise _AgentRequestError("%d MiB of requests are being handled already; nothing was invoked"
                                 % (AGENT_MAX_BYTES_IN_FLIGHT >> 20), EX_TEMPFAIL, "agent-busy")
    return argv, reader.exact(length)


def _agent_scan(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Which options and arguments argv holds, read by the CLI's own _parse_args; a command line it
    refuses holds none (_run then refuses it with its own line, before anything is done)."""
    try:
        options, positional = _parse_args(argv)
    except IotInvokeError:
        return {}, []
    return {name: "" if value is True else str(value) for name, value in options.items()}, positional


class _Agent:
    """The server: workers that each accept a connection and serve it (bounded), a pool of warm Clients."""

    def __init__(
        self,
        config: Config,
        settings: _AgentSettings,
        listener: socket.socket,
        *,
        activated: bool,
        log: Callable[[str], None],
        verbose: bool = False,
        max_callers: int = AGENT_MAX_CALLERS,
        max_connections: int = AGENT_MAX_CONNECTIONS,
        stop_wait_s: float = AGENT_STOP_WAIT_S,
    ) -> None:
        import threading

        self.config, self.settings, self.listener = config, settings, listener
        self.activated, self.log, self.verbose = activated, log, verbose
        self.max_connections, self.stop_wait_s = max_connections, stop_wait_s
        self._local = threading.local()
        self.pool = _AgentPool(_AgentRefusals(), self._warn)
        self.configs = _AgentConfigs()
        self.slots = threading.BoundedSemaphore(max_callers)
        self._lock = threading.Lock()
        self._idle_since = time.monotonic()
        self.connections = 0  # open connections, each with its thread
        self._in_flight = 0  # bytes of standard input reserved by the requests being handled
        self._workers = 0  # worker threads
        self._waiting = 0  # ... of which waiting for a connection
        self.executing = 0
        self.stopping = threading.Event()
        self.served = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stop_r, self._stop_w = os.pipe()  # written once when stopping, never read: every worker sees it
        self._stop_told = False
        self.wake_poll_s: float | None = None  # a signal wakes select() through the pipe (see _serve)

    def _warn(self, message: str) -> None:
        """A Client's note, to the standard error of the request being served (as the CLI says it)."""
        err = getattr(self._local, "err", None)
        if err is not None:
            _say(err, "iotinvoke: " + message + "\n")
        else:
            self.log(message)

    # -- life cycle

    @property
    def wake_fd(self) -> int:
        return self._wake_w

    def stop(self) -> None:
        """From a signal handler or another thread: stop accepting, let invokes in flight finish."""
        self.stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def serve(self) -> int:
        """Serve until stopped; then let requests in flight finish, within stop_wait_s, and return 0.
        The workers accept; this thread waits for a signal, the idle exit, and the stop."""
        import select

        deadline = None
        if not self.stopping.is_set():
            self._spawn_worker()
        while True:
            now = time.monotonic()
            with self._lock:
                busy = self.connections > 0
                idle_for = now - self._idle_since
                if (not self.stopping.is_set() and self.activated and self.settings.idle_exit_s > 0 and not busy
                        and idle_for >= self.settings.idle_exit_s):
                    # Under the lock: a worker counts a connection before it accepts one, or
                    # sees the stop and leaves it in systemd's backlog for the next start.
                    self.log("agent: no caller for %d s: exiting (systemd starts it again at the next one)" % idle_for)
                    self.stopping.set()
                    deadline = now
            if self.stopping.is_set():
                if deadline is None:
                    deadline = now + self.stop_wait_s
                    self.log("agent: stopping: %s" % ("finishing the requests in flight" if busy else "idle"))
                if not self._stop_told:  # every waiting worker wakes, sees the stop and ends
                    os.write(self._stop_w, b"x")
                    self._stop_told = True
                if not busy or now >= deadline:
                    break
            watched, timeout = self._watch(busy, idle_for)
            try:
                ready = select.select(watched, [], [], timeout)[0]
            except InterruptedError:
                continue
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if self.listener in ready:
                self._refuse_stopping()
        with self._lock:
            left = self.executing
        if left:
            self.log("agent: stopping with %d requests still executing: their callers see exit status 74" % left)
        self.log("agent: stopped after %d connections" % self.served)
        return EX_OK

    def _watch(self, busy: bool, idle_for: float) -> tuple[list[object], float | None]:
        """What this thread waits on, and for how long."""
        # Stopping, the workers accept no more. Socket-activated, new callers stay in systemd's
        # backlog for the next start; otherwise this thread answers them "agent-stopping" (75,
        # nothing ran) until the agent is gone.
        watched: list[object] = [self._wake_r]
        if self.stopping.is_set() and not self.activated:
            watched.insert(0, self.listener)
        # A board sleeps between callers: no periodic wake-up unless an idle exit is due.
        timeout: float | None = self.wake_poll_s
        if self.stopping.is_set():
            timeout = 0.05
        elif self.activated and self.settings.idle_exit_s > 0:
            timeout = 1.0 if busy else max(0.05, self.settings.idle_exit_s - idle_for)
        return watched, timeout

    def _refuse_stopping(self) -> bool:
        """Answer one caller waiting in the backlog "agent-stopping"; False when none waits."""
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return False
        self._answer_now(sock, EX_TEMPFAIL, _agent_line("the agent is stopping; nothing was invoked",
                                                        "agent-stopping", AGENT_BUSY_RETRY_S))
        return True

    def sweep(self) -> None:
        """After the socket file is gone: answer whoever is still in the backlog, then close."""
        self.stopping.set()
        while self._refuse_stopping():
            pass

    # -- the workers: each accepts a connection and serves it

    def _spawn_worker(self) -> bool:
        """Start one more worker, counted as waiting for a connection; False when no thread can start."""
        import threading

        with self._lock:
            self._workers += 1
            self._waiting += 1
        try:
            threading.Thread(target=self._worker, daemon=True).start()
            return True
        except RuntimeError:  # no more threads
            with self._lock:
                self._workers -= 1
                self._waiting -= 1
            return False

    def _worker(self) -> None:
        """Wait for a connection, accept it, serve it, again; end when stopping, or after
        AGENT_WORKER_IDLE_S without one while another worker waits. The waiting workers share the
        listening socket with EPOLLEXCLUSIVE: the kernel wakes one of them per connection, so a
        request costs one thread wake-up (a hand-over from an accepting thread cost two)."""
        import select

        poller = select.epoll()
        try:
            poller.register(self.listener.fileno(), select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0))
            poller.register(self._stop_r, select.EPOLLIN)
            while True:
                events = poller.poll(AGENT_WORKER_IDLE_S)
                with self._lock:
                    if self.stopping.is_set() or (not events and self._waiting > 1):
                        self._waiting -= 1
                        self._workers -= 1
                        return
                    if not events:
                        continue
                    # Counted before accepting: the idle exit waits for it (see serve).
                    self.connections += 1
                    self._waiting -= 1
                try:
                    sock, _ = self.listener.accept()
                except OSError as e:
                    with self._lock:
                        self.connections -= 1
                        self._waiting += 1
                    if not isinstance(e, (BlockingIOError, InterruptedError)):  # EMFILE: it waits in the backlog
                        self.log("agent: accept: %s" % _os_reason(e))
                        time.sleep(0.1)
                    continue
                self._admit(sock)
                with self._lock:
                    self._waiting += 1
        finally:
            poller.close()

    def _admit(self, sock: socket.socket) -> None:
        """Check the peer and the bound, keep a worker waiting for the next caller, then serve."""
        try:
            peer = _agent_peer(sock, bool(self.settings.groups))
        except OSError as e:
            self.log("agent: cannot tell who connected (%s): refused" % _os_reason(e))
            self._uncount(sock)
            return
        if not self.settings.allowed(peer):
            self.log("agent: uid %d (pid %d) is not allowed: refused" % (peer.uid, peer.pid))
            self._uncount(sock, EX_NOPERM, _agent_line(
                "uid %d may not use this agent (agent_users, agent_groups in %s); nothing was invoked"
                % (peer.uid, self.config.path), "agent-peer-refused"))
            return
        with self._lock:
            full = self.connections > self.max_connections
            spare = not full and self._waiting == 0 and self._workers <= self.max_connections
        if full:
            self._uncount(sock, EX_TEMPFAIL, _agent_line(
                "%d callers at once already; nothing was invoked" % self.max_connections,
                "agent-busy", AGENT_BUSY_RETRY_S))
            return
        # No other worker waits: start one, so that the next caller is accepted while this one is
        # served. At most max_connections + 1 workers: the last one answers "agent-busy".
        if spare and not self._spawn_worker():
            self._uncount(sock, EX_TEMPFAIL, _agent_line(
                "cannot start a thread; nothing was invoked", "agent-busy", AGENT_BUSY_RETRY_S))
            return
        self._connection(sock, peer)

    def _uncount(self, sock: socket.socket, status: int | None = None, line: str = "") -> None:
        """A connection refused before its request was read: answered (or just closed), uncounted."""
        if status is None:
            sock.close()
        else:
            self._answer_now(sock, status, line)
        with self._lock:
            self.connections -= 1

    @staticmethod
    def _answer_now(sock: socket.socket, status: int, line: str) -> None:
        """A short answer without waiting on the caller: it fits in the socket's buffer."""
        try:
            sock.setblocking(False)
            sock.send(_agent_encode(status, b"", line.encode()))
        except OSError:
            pass
        finally:
            sock.close()

    # -- one connection

    def _connection(self, sock: socket.socket, peer: _AgentPeer) -> None:
        import socket

        started = time.monotonic()
        status, answer, reason = EX_SOFTWARE, b"", ""
        reserved = [0]

        def reserve(size: int) -> bool:
            with self._lock:
                if self._in_flight + size > AGENT_MAX_BYTES_IN_FLIGHT:
                    return False
                self._in_flight += size
                reserved[0] = size
                return True

        try:
            try:
                argv, stdin = _agent_read_request(sock, started + AGENT_REQUEST_TIMEOUT_S, reserve)
            except _AgentRequestError as e:
                status, reason = e.status, e.reason
                retry = AGENT_BUSY_RETRY_S if e.status == EX_TEMPFAIL else None
                answer = _agent_encode(e.status, b"", _agent_line(str(e), e.reason, retry, e.status).encode())
            except (socket.timeout, TimeoutError):
                status, reason = EX_TEMPFAIL, "agent-request-timeout"
                answer = _agent_encode(EX_TEMPFAIL, b"", _agent_line(
                    "the request did not arrive whole within %g s; nothing was invoked" % AGENT_REQUEST_TIMEOUT_S,
                    reason).encode())
            except (EOFError, OSError):
                reason = "hung up before its request was whole: nothing ran"
                return  # nobody to tell
            else:
                status, out, err = self._execute(argv, stdin, peer)
                answer = _agent_encode(status, out, err.encode("utf-8", "surrogateescape"))
            self._reply(sock, answer)
        finally:
            sock.close()
            with self._lock:
                self._in_flight -= reserved[0]
                self.connections -= 1
                self.served += 1
                self._idle_since = time.monotonic()
            if self.verbose:
                outcome = reason if not answer else "exit %d%s" % (status, " " + reason if reason else "")
                self.log("agent: uid %d pid %d: %s (%.1f ms)" % (peer.uid, peer.pid, outcome,
                                                                 (time.monotonic() - started) * 1000))

    @staticmethod
    def _reply(sock: socket.socket, answer: bytes) -> None:
        import socket

        try:
            sock.settimeout(AGENT_REPLY_TIMEOUT_S)
            sock.sendall(answer)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the caller hung up: what ran, ran; it is never run again

    def _execute(self, argv: list[str], stdin: bytes, peer: _AgentPeer | None = None) -> tuple[int, bytes, str]:
        """Run one command line as the CLI would, on a warm Client; the same stdout, stderr and status."""
        import io

        err = io.StringIO()
        self._local.err = err  # where the Clients' notes go while this thread serves this request
        try:
            argv, options = self._agent_argv(argv, peer)
        except IotInvokeError as e:
            return e.exit_code, b"", "iotinvoke: %s\n" % e
        if not self.slots.acquire(timeout=AGENT_QUEUE_WAIT_S):
            return EX_TEMPFAIL, b"", _agent_line("every worker was busy for %g s; nothing was invoked"
                                                 % AGENT_QUEUE_WAIT_S, "agent-busy", AGENT_BUSY_RETRY_S)
        out = io.BytesIO()
        lent: list[tuple[Client, int | None]] = []
        try:
            if self.stopping.is_set():
                return EX_TEMPFAIL, b"", _agent_line("the agent is stopping; nothing was invoked",
                                                     "agent-stopping", AGENT_BUSY_RETRY_S)
            with self._lock:
                self.executing += 1
            try:
                status = _run(argv, io.BytesIO(stdin), out, err, load=self.configs.load,
                              make_client=lambda config, use_cache, log: self.pool.lend(
                                  config, self.configs.stamp(config.path), use_cache, log, lent))
            # The same line and status as main() gives (a signal reaches the agent, not a request).
            except IotInvokeError as e:
                _say(err, "iotinvoke: %s\n" % e)
                status = e.exit_code
            except KeyboardInterrupt:
                where = lent[-1][0].interrupted_at() if lent else "before the invoke was sent"
                _say(err, "iotinvoke: interrupted %s [interrupted]\n" % where)
                status = REASONS["interrupted"][0]
            except Exception as e:  # a bug: one line, never a traceback with local values
                _say(err, "iotinvoke: internal error: %s: %s [internal-error]\n" % (type(e).__name__, _short(str(e))))
                status = EX_SOFTWARE
            finally:
                with self._lock:
                    self.executing -= 1
            if "clear_cache" in options and status == EX_OK:
                self.pool.clear()
            else:
                self.pool.give_back(lent)
            return status, out.getvalue(), err.getvalue()
        finally:
            self.slots.release()

    def _agent_argv(self, argv: list[str], peer: _AgentPeer | None) -> tuple[list[str], dict[str, str]]:
        """Refuse what makes no sense through the agent; the agent's configuration file, always.
        Returns the command line to run, and its options."""
        options, positional = _agent_scan(argv)
        if "credential_process" in options and peer is not None and peer.uid not in (os.geteuid(), 0):
            # Another user may invoke through the agent without reading the device key; handing it
            # the role's credentials would let it act as the device elsewhere, for up to an hour.
            raise IotInvokeError("--credential-process is refused through the agent to uid %d: the role's credentials "
                                 "go to the agent's own user only" % peer.uid, "agent-option-refused", "agent",
                                 exit_code=EX_NOPERM)
        for name in _AGENT_REFUSED_OPTIONS:
            if name in options:
                flag = "--" + name.replace("_", "-")
                why = ("send each payload as a request of its own" if name == "stream"
                       else "it is an option of the agent itself")
                raise IotInvokeError("%s is refused through the agent: %s" % (flag, why), "agent-option-refused",
                                     "agent")
        if "config" in options:
            asked = options["config"]
            try:
                same = os.path.isabs(asked) and os.path.samefile(asked, self.config.path)
            except OSError:
                same = False
            if not same:
                raise IotInvokeError("--config %s is refused through the agent: it serves %s only (give that absolute "
                                     "path, or none)" % (asked, self.config.path), "agent-option-refused", "agent")
        if len(positional) > 1 and positional[1].startswith("@"):
            raise IotInvokeError("a payload file (@path) is refused through the agent: it would be read with the "
                                 "agent's rights; send its content on standard input", "agent-option-refused", "agent")
        return (argv if "config" in options else ["--config", self.config.path] + argv), options


def _agent_socket_path(config: Config, asked: str | None) -> str:
    """--socket PATH, else agent.sock in the cache folder: a run-time folder (tmpfs) made 0700 for
    the agent's user, which the cache already checks; the folder is the first fence around the socket."""
    if asked:
        return os.path.abspath(asked)
    folder = _cache_location(config)[0]
    if not folder:
        raise IotInvokeError("no run-time folder for the agent's socket: pass --socket PATH", "usage", "agent")
    return os.path.join(folder, AGENT_SOCKET_NAME)


def _agent_listen_fd(environ: MutableMapping[str, str] = os.environ) -> socket.socket | None:
    """The listening socket systemd passed (sd_listen_fds(3): LISTEN_PID is us, LISTEN_FDS >= 1, the
    first at descriptor 3), or None. The variables are removed, so that no child takes them."""
    import socket

    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not (pid.isdigit() and int(pid) == os.getpid() and count.isdigit() and int(count) >= 1):
        return None
    try:
        listener = socket.socket(fileno=3)
    except OSError as e:
        raise IotInvokeError("systemd passed descriptor 3, but it is not a socket (%s)" % _os_reason(e), "config",
                             "agent") from None
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        listener.detach()
        raise IotInvokeError("systemd passed a socket that is not a Unix stream socket: use ListenStream=/PATH "
                             "(the caller check, SO_PEERCRED, needs one)", "config", "agent")
    os.set_inheritable(3, False)
    return listener


def _agent_bind(path: str, settings: _AgentSettings) -> socket.socket:
    """Bind path: its folder made 0700 (0710 with agent_groups) and refused when others may write
    in it; the socket 0600, or 0660 with the first of agent_groups; a stale socket file replaced,
    a live agent left alone."""
    import socket
    import stat

    folder = os.path.dirname(path)
    try:
        os.mkdir(folder, 0o710 if settings.groups else 0o700)
        if settings.groups:
            os.chown(folder, -1, min(settings.groups))
    except FileExistsError:
        pass
    except OSError as e:
        raise IotInvokeError("cannot make %s: %s" % (folder, _os_reason(e)), "config", "agent") from None
    st = os.stat(folder)
    if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022:
        raise IotInvokeError("%s is writable by others (mode %o): another user could put a socket in the agent's "
                             "place; use a folder of mode 0700" % (folder, st.st_mode & 0o777), "config", "agent")
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode) or existing.st_uid != os.geteuid():
            raise IotInvokeError("%s exists and is not a socket of ours: not replaced" % path, "config", "agent")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nothing listens: a stale socket of an agent that did not stop cleanly
        else:
            raise IotInvokeError("an agent already listens on %s" % path, "agent-running", "agent")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: no moment when others could connect
    try:
        listener.bind(path)
    except OSError as e:
        listener.close()
        raise IotInvokeError("cannot listen on %s: %s" % (path, _os_reason(e)), "config", "agent") from None
    finally:
        os.umask(old)
    if settings.groups:
        os.chown(path, -1, min(settings.groups))
        os.chmod(path, 0o660)
    listener.listen(min(socket.SOMAXCONN, 1024))
    return listener


def _agent_token_file(folder: str, settings: _AgentSettings) -> tuple[str, str]:
    """A new random token at every start, in a file only the allowed users can read (0600, 0640 with
    agent_groups): unmodified SDKs send it from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE."""
    import secrets

    token = secrets.token_urlsafe(32)
    path = os.path.join(folder, AGENT_TOKEN_NAME)
    temp = path + ".%d.new" % os.getpid()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, token.encode())
        if settings.groups:
            os.fchown(fd, -1, min(settings.groups))
            os.fchmod(fd, 0o640)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return path, token


def _agent_container_endpoint(agent: _Agent, port: int, token: str) -> http.server.ThreadingHTTPServer:
    """127.0.0.1:PORT serving GET /ENV: the environment's credentials in the ECS container
    credentials format botocore's ContainerProvider reads (AccessKeyId, SecretAccessKey, Token,
    Expiration), to a request whose Authorization header is the token: missing 401, wrong 403."""
    import hmac
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = AGENT_REQUEST_TIMEOUT_S

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request line is harmless, but -v says what matters below

        def _json(self, status: int, document: dict[str, object]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            given = self.headers.get("Authorization")
            if given is None:
                self._json(401, {"code": "Unauthorized", "message": "the Authorization header is missing"})
                return
            if not hmac.compare_digest(given.strip().encode(), token.encode()):
                self._json(403, {"code": "Forbidden", "message": "wrong authorization token"})
                return
            name = self.path.split("?", 1)[0].strip("/")
            if name not in agent.config.environments:
                self._json(404, {"code": "NotFound", "message": "no environment %r" % name[:64]})
                return
            lent: list[tuple[Client, int | None]] = []
            if not agent.slots.acquire(timeout=AGENT_QUEUE_WAIT_S):
                self._json(503, {"code": "agent-busy", "message": "every worker of the agent is busy"})
                return
            try:
                config = agent.configs.load(agent.config.path)
                client = agent.pool.lend(config, agent.configs.stamp(config.path), True, None, lent)
                document = client.credentials(name).to_json()
            except IotInvokeError as e:
                status = 503 if e.exit_code == EX_TEMPFAIL else 502
                self._json(status, {"code": e.reason or "Error", "message": str(e)})
                return
            finally:
                agent.pool.give_back(lent)
                agent.slots.release()
            self._json(200, {"AccessKeyId": document["AccessKeyId"], "SecretAccessKey": document["SecretAccessKey"],
                             "Token": document["SessionToken"], "Expiration": document["Expiration"]})

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


def _serve(options: dict[str, Any], positional: list[str], stderr: IO[str]) -> int:
    """--serve: the agent, in the foreground until SIGTERM (or, socket-activated, an idle period)."""
    import signal

    if not options.get("serve"):
        raise IotInvokeError("--socket and --container-credentials go with --serve", "usage")
    if positional or any(options.get(a) for a in ("stream", "doctor", "credential_process", "clear_cache", "event",
                                                   "dry_run")):
        raise IotInvokeError("--serve takes no ENV, PAYLOAD or action: each caller names its own", "usage")

    def log(message: str) -> None:
        _say(stderr, "iotinvoke: " + message + "\n")

    config = load_config(options.get("config"))
    config.path = os.path.abspath(config.path)
    settings = _AgentSettings(config)
    port = None
    if options.get("container_credentials") is not None:
        number = _bounded(options["container_credentials"], int, 1, 65535)
        port = int(number) if number is not None else None
        if port is None:
            raise IotInvokeError("--container-credentials takes a TCP port from 1 to 65535", "usage")
    # SIGTERM from here on stops the agent cleanly, even one that arrives before it serves.
    serving: list[_Agent] = []
    stop_early: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if serving:
            serving[0].stop()
        else:
            stop_early.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    listener = _agent_listen_fd()
    activated = listener is not None
    if listener is None:
        path = _agent_socket_path(config, options.get("socket"))
        listener = _agent_bind(path, settings)
        if settings.groups and not os.stat(os.path.dirname(path)).st_mode & 0o010:
            log("agent: %s is closed to the agent_groups (mode %o): their members cannot reach the socket; "
                "use --socket in a folder of mode 0710" % (os.path.dirname(path), os.stat(os.path.dirname(path)).st_mode & 0o777))
    else:
        path = listener.getsockname()
    listener.setblocking(False)
    agent = _Agent(config, settings, listener, activated=activated, log=log, verbose=bool(options.get("verbose")))
    serving.append(agent)
    # The kernel may hand SIGTERM to any thread; Python runs its handler in the main thread only
    # when that thread runs bytecode, which a select() without timeout never does: the C-level
    # handler's byte in the wake-up pipe ends the select() (signal.set_wakeup_fd).
    try:
        signal.set_wakeup_fd(agent.wake_fd)
    except ValueError:  # not the main thread (_run called by a program): look every second instead
        agent.wake_poll_s = 1.0
    if stop_early:
        agent.stop()
    endpoint = None
    token_path = None
    try:
        if port is not None:
            token_path, token = _agent_token_file(os.path.dirname(path), settings)
            try:
                endpoint = _agent_container_endpoint(agent, port, token)
            except OSError as e:
                raise IotInvokeError("cannot listen on 127.0.0.1:%d: %s" % (port, _os_reason(e)), "config",
                                     "agent") from None
            log("agent: container credentials on http://127.0.0.1:%d/ENV; token in %s" % (port, token_path))
        log("agent: serving %s on %s%s" % (config.path, path, " (socket-activated)" if activated else ""))
        return agent.serve()
    finally:
        if agent.wake_poll_s is None:
            signal.set_wakeup_fd(-1)
        if endpoint is not None:
            endpoint.shutdown()
            endpoint.server_close()
        if token_path is not None:
            try:
                os.unlink(token_path)
            except OSError:
                pass
        if not activated:  # systemd owns its socket file; ours goes with us, then the backlog is answered
            try:
                os.unlink(path)
            except OSError:
                pass
            agent.sweep()
        listener.close()



def main(argv: list[str] | None = None) -> int:
    """The command: returns the exit status; every failure is one line on standard error."""
    import signal

    _open_standard_fds()
    stderr = sys.stderr
    clients: list[Client] = []

    def make_client(config: Config, use_cache: bool, log: Callable[[str], None] | None) -> Client:
        clients.append(Client(config, use_cache=use_cache, log=log,
                              warn=lambda message: _say(stderr, "iotinvoke: " + message + "\n")))
        return clients[-1]

    def raise_signal(signum: int, _frame: object) -> None:
        raise _Signal(signum)

    installed: list[int] = []
    for number in (int(signal.SIGTERM), int(signal.SIGHUP)):
        try:
            if signal.getsignal(number) == signal.SIG_DFL:
                signal.signal(number, raise_signal)
                installed.append(number)
        except ValueError:  # not the main thread: main() called by a program that handles signals itself
            pass
    try:
        return _run(sys.argv[1:] if argv is None else argv, sys.stdin.buffer if sys.stdin is not None else None,
                    sys.stdout.buffer if sys.stdout is not None else None, stderr, make_client=make_client)
    except IotInvokeError as e:
        _say(stderr, "iotinvoke: %s\n" % e)
        return e.exit_code
    except (KeyboardInterrupt, _Signal) as e:
        signum = e.signum if isinstance(e, _Signal) else int(signal.SIGINT)
        reason = {int(signal.SIGTERM): "terminated", int(signal.SIGHUP): "hangup"}.get(signum, "interrupted")
        where = clients[-1].interrupted_at() if clients else "before the invoke was sent"
        _say(stderr, "iotinvoke: %s %s [%s]\n" % (reason, where, reason))
        return REASONS[reason][0]
    except ImportError as e:
        if getattr(e, "name", "") in ("urllib3", "botocore"):
            package = "python3-" + str(e.name)
            _say(stderr, "iotinvoke: %s is not installed for %s: apt-get install %s (Debian, Raspberry Pi OS), or "
                 "pip install %s [dependency-missing]\n" % (e.name, sys.executable, package, e.name))
            return REASONS["dependency-missing"][0]
        _say(stderr, "iotinvoke: internal error: ImportError: %s [internal-error]\n" % _short(str(e)))
        return EX_SOFTWARE
    except Exception as e:  # a bug: still one line, never a traceback with local values
        _say(stderr, "iotinvoke: internal error: %s: %s [internal-error]\n" % (type(e).__name__, _short(str(e))))
        return EX_SOFTWARE
    finally:
        for number in installed:
            signal.signal(number, signal.SIG_DFL)


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

# === Data: the built-in trust anchors ============================================================

# The default trust anchors, used when none of ca, ca_bundle and AWS_CA_BUNDLE is set: the five
# roots of Amazon Trust Services, which AWS recommends a custom trust store to hold
# (https://www.amazontrust.com/repository/). The credentials provider: the IoT guide's page on it
# (https://docs.aws.amazon.com/iot/latest/developerguide/authorizing-direct-aws.html) verifies it
# in its example with `curl --cacert AmazonRootCA1.pem`; the server-authentication page states ATS
# chains for the data endpoint only, so for the credentials endpoint that example is the source.
# STS and Lambda present chains to Amazon Root CA 1-4, cross-signed by the Starfield Services root,
# as AWS's service endpoints do since their move to Amazon Trust Services (not checked here per
# endpoint and region: no machine here reaches AWS; a ca_bundle setting overrides it). Parsing these five costs about 9 M instructions per call; certifi's
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



if __name__ == "__main__":
    sys.exit(main())
