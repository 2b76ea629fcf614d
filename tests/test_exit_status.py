"""README's exit-status table and its table of reasons are generated from iotinvoke's own tables
(EXIT_CODES and _ERROR_TABLE): `PYTHONPATH=. python tests/test_exit_status.py` rewrites them, and
test_readme_matches fails when README is stale. --help says the same in short."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

README = Path(__file__).resolve().parents[1] / "README.md"
HOPS = {"iot": "1", "sts": "2", "lambda": "3"}
# Reasons that come from the transport and the CLI rather than from an AWS error code.
OTHER_REASONS = {
    "answer-lost": (ii.EX_IOERR, "hop 3: the connection failed after the invoke was sent (hops 1-2: 75, re-sent)"),
    "answer-truncated": (ii.EX_IOERR, "hop 3: fewer bytes than Content-Length, or broken chunked framing (hops 1-2: 75)"),
    "answer-timeout": (ii.EX_IOERR, "hop 3: no answer within the read timeout (hops 1-2: 75)"),
    "answer-deadline": (ii.EX_TEMPFAIL, "hops 1-2: no complete answer within credentials_timeout"),
    "answer-encoded": (ii.EX_PROTOCOL, "a compressed answer, though identity was asked for"),
    "answer-too-large": (ii.EX_PROTOCOL, "an answer over the hop's size limit"),
    "connect-failed": (ii.EX_TEMPFAIL, "no connection: nothing was sent"),
    "connect-timeout": (ii.EX_TEMPFAIL, "no connection in connect_timeout: nothing was sent"),
    "dns-failed": (ii.EX_TEMPFAIL, "the endpoint's name does not resolve: nothing was sent"),
    "proxy-failed": (ii.EX_TEMPFAIL, "the proxy could not open the tunnel: nothing was sent"),
    "proxy-auth": (ii.EX_CONFIG, "the proxy refused HTTPS_PROXY's user and password (407)"),
    "proxy-invalid": (ii.EX_CONFIG, "HTTPS_PROXY is not a proxy URL"),
    "tls-interrupted": (ii.EX_TEMPFAIL, "the connection closed during the TLS handshake: nothing was sent"),
    "tls-untrusted": (ii.EX_UNAVAILABLE, "the server certificate does not chain to the CA file the line names"),
    "tls-name-mismatch": (ii.EX_UNAVAILABLE, "the server certificate is for another name or address"),
    "tls-protocol": (ii.EX_UNAVAILABLE, "no TLS 1.2 or later on that port"),
    "clock-wrong": (ii.EX_TEMPFAIL, "the server certificate is not valid at the board's time, and AWS's time could not "
                    "be learned (the board is ahead): NTP has not set the clock"),
    "tls-certificate-expired": (ii.EX_UNAVAILABLE, "the server certificate is expired by AWS's time learned at boot"),
    "certificate-refused": (ii.EX_NOPERM, "the credentials provider refused the device certificate in the handshake"),
    "clock-skew": (ii.EX_NOPERM, "AWS refused the time stamp even after taking its clock"),
    "payload-empty": (ii.EX_DATAERR, "an empty payload: pass null or {}"),
    "payload-not-json": (ii.EX_DATAERR, "not JSON in UTF-8 (NaN, Infinity, a BOM, UTF-16 are not)"),
    "stdout-closed": (ii.EX_USAGE, "standard output closed before a synchronous invoke: nothing sent"),
    "stdout-failed": (ii.EX_IOERR, "standard output failed after the function ran: its answer is lost"),
    "stdin-closed": (ii.EX_NOINPUT, "standard input closed and no payload argument"),
    "stdin-unreadable": (ii.EX_NOINPUT, "standard input failed while the payload was read"),
    "payload-file-unreadable": (ii.EX_NOINPUT, "the @file payload is missing or unreadable"),
    "device-file-unreadable": (ii.EX_NOINPUT, "the device certificate or key file is missing or unreadable"),
    "device-key-unusable": (ii.EX_NOINPUT, "the device certificate and key cannot be loaded as a pair"),
    "ca-file-unreadable": (ii.EX_NOINPUT, "the CA file is missing or not PEM"),
    "config": (ii.EX_CONFIG, "the configuration is invalid: the line names the file, section and key"),
    "cross-account-log": (ii.EX_USAGE, "a log tail asked for in one-hop mode (Lambda answers 77 when asked anyway)"),
    "stream-closed": (ii.EX_USAGE, "--stream with standard input or output closed"),
    "openssl-conf-unreadable": (ii.EX_CONFIG, "the OpenSSL configuration named by openssl_conf is missing or unreadable"),
    "openssl-conf-too-late": (ii.EX_CONFIG, "openssl_conf cannot take effect: OpenSSL is already initialised in the process"),
}
# A device key in a PKCS#11 token or TPM that cannot be used (README: Keys in hardware).
OTHER_REASONS.update({reason: (code, cause) for reason, (code, cause, _) in ii._KEY_REASONS.items()
                      if reason not in OTHER_REASONS})


def exit_table() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    rows += ["| %d | %s |" % (code, text) for code, text in sorted(ii.EXIT_CODES.items())]
    return "\n".join(rows) + "\n"


def reason_table() -> str:
    by_reason: dict[str, dict[str, object]] = {}
    for (hop, code), (exit_code, reason, resend) in ii._ERROR_TABLE.items():
        row = by_reason.setdefault(reason, {"exit": set(), "resend": set(), "hops": set(), "codes": []})
        row["exit"].add(exit_code)  # type: ignore[attr-defined]
        row["resend"].add(resend)  # type: ignore[attr-defined]
        row["hops"].add(HOPS[hop])  # type: ignore[attr-defined]
        # The credentials provider sends only a message: show the words the code is derived from.
        markers = {c: m for m, c in ii._IOT_MESSAGES}
        row["codes"].append('message "%s..."' % markers[code] if hop == "iot" and code in markers else code)  # type: ignore[attr-defined]
    for throttle, reason in ii._THROTTLE_REASONS.items():
        by_reason[reason] = {"exit": {ii.EX_TEMPFAIL}, "resend": {True}, "hops": {"3"},
                             "codes": ["TooManyRequestsException Reason " + throttle]}
    lines = ["| reason | exit | re-sent in the call | hop | AWS error code |", "|---|---|---|---|---|"]
    for reason in sorted(by_reason):
        row = by_reason[reason]
        lines.append("| `%s` | %s | %s | %s | %s |" % (
            reason, "/".join(str(e) for e in sorted(row["exit"])),  # type: ignore[call-overload]
            "yes" if row["resend"] == {True} else "no" if row["resend"] == {False} else "some",
            ", ".join(sorted(row["hops"])),  # type: ignore[call-overload]
            ", ".join(sorted(set(row["codes"])))))  # type: ignore[call-overload]
    lines += ["", "| reason | exit | what happened |", "|---|---|---|"]
    lines += ["| `%s` | %d | %s |" % (reason, code, text) for reason, (code, text) in sorted(OTHER_REASONS.items())]
    return "\n".join(lines) + "\n"


def sections(text: str) -> dict[str, str]:
    return {name: match.group(1) for name in ("exit-status", "reasons")
            for match in [re.search(r"<!-- %s:start[^\n]*-->\n(.*?)<!-- %s:end -->" % (name, name), text, re.S)]
            if match}


def rewrite(text: str) -> str:
    for name, body in (("exit-status", exit_table()), ("reasons", reason_table())):
        text = re.sub(r"(<!-- %s:start[^\n]*-->\n).*?(<!-- %s:end -->)" % (name, name),
                      lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
    return text


def test_readme_matches() -> None:
    text = README.read_text()
    assert set(sections(text)) == {"exit-status", "reasons"}, "README lacks the generated sections"
    assert rewrite(text) == text, "README's tables are stale: run PYTHONPATH=. python tests/test_exit_status.py"


def test_every_reason_in_the_code_is_documented() -> None:
    source = Path(ii.__file__).read_text()
    used = set(re.findall(r'reason="([a-z0-9-]+)"', source)) | {r for _, r, _ in ii._ERROR_TABLE.values()}
    used |= set(ii._KEY_REASONS)
    documented = set(OTHER_REASONS) | {r for _, r, _ in ii._ERROR_TABLE.values()} | set(ii._THROTTLE_REASONS.values())
    undocumented = used - documented
    assert not undocumented, f"reasons without a README row: {sorted(undocumented)}"


def test_help_lists_every_exit_status() -> None:
    help_text = " ".join(ii.USAGE.split())
    for code in ii.EXIT_CODES:
        assert re.search(r"\b%d\b" % code, help_text.split("exit status:")[1]), code


if __name__ == "__main__":
    README.write_text(rewrite(README.read_text()))
    sys.exit(0)
