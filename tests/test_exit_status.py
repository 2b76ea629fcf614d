"""The contract's tables: README's exit-status table, its table of reasons and its table of
configuration keys are made from iotinvoke's own EXIT_CODES, REASONS, AWS_ERRORS and CONFIG_KEYS (`PYTHONPATH=. python tests/test_exit_status.py`
rewrites them; test_readme_matches fails when README is stale), --help lists every exit status, and
every reason the module names is a row of REASONS."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import iotinvoke as ii

pytestmark = pytest.mark.in_process  # never starts the CLI: not run again with the CLI on Python 3.9

README = Path(__file__).resolve().parents[1] / "README.md"
HOPS = {"iot": "1", "sts": "2", "lambda": "3"}
FIELDS = dict.fromkeys(("alias", "thing", "role", "role_name", "function", "region", "cert_id", "caller",
                        "caller_name", "condition", "ca"), "")
FIELDS.update({key: "<%s>" % key for key in FIELDS if key != "condition"})


def exit_table() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    rows += ["| %d | %s |" % (code, text) for code, (_, text) in sorted(ii.EXIT_CODES.items())]
    return "\n".join(rows) + "\n"


def reason_table() -> str:
    codes: dict[str, list[str]] = {}
    for (hop, code), reason in sorted(ii.AWS_ERRORS.items()):
        codes.setdefault(reason, []).append("%s %s" % (HOPS[hop], code))
    lines = ["| reason | exit | sent | what happened | AWS error code (hop) |", "|---|---|---|---|---|"]
    for reason, (exit_code, sent, text, _, _) in sorted(ii.REASONS.items()):
        status = "%d (75 at hops 1-2, DryRun)" % exit_code if sent == ii.MAY_HAVE_RUN and exit_code == 74 else str(
            exit_code)
        lines.append("| `%s` | %s | %s | %s | %s |" % (reason, status, sent, text.format(**FIELDS).replace("|", "/"),
                                                      ", ".join(codes.get(reason, []))))
    return "\n".join(lines) + "\n"


WHERE = {"iot": "`[iot]`", "global": "`[DEFAULT]` or `[iot]`", "env": "environment", "per-env": "`[DEFAULT]` or environment"}


def config_table() -> str:
    lines = ["| key | where | default | environment variable | meaning |", "|---|---|---|---|---|"]
    for key, (scope, _, default, variables, text) in ii.CONFIG_KEYS.items():
        shown = {True: "true", False: "false", None: ""}.get(default, default) if not isinstance(default, (int, float)) \
            or isinstance(default, bool) else "%g" % default
        lines.append("| `%s` | %s | %s | %s | %s |" % (key, WHERE[scope], shown, ", ".join(
            "`%s`" % v for v in variables.split()), text.replace("|", "/")))
    return "\n".join(lines) + "\n"


GENERATED = ("exit-status", "reasons", "config")


def sections(text: str) -> dict[str, str]:
    return {name: match.group(1) for name in GENERATED
            for match in [re.search(r"<!-- %s:start[^\n]*-->\n(.*?)<!-- %s:end -->" % (name, name), text, re.S)]
            if match}


def rewrite(text: str) -> str:
    for name, body in (("exit-status", exit_table()), ("reasons", reason_table()), ("config", config_table())):
        text = re.sub(r"(<!-- %s:start[^\n]*-->\n).*?(<!-- %s:end -->)" % (name, name),
                      lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
    return text


def test_readme_matches() -> None:
    text = README.read_text()
    assert set(sections(text)) == set(GENERATED), "README lacks the generated sections"
    assert rewrite(text) == text, "README's tables are stale: run PYTHONPATH=. python tests/test_exit_status.py"


def test_every_reason_the_module_names_is_a_row() -> None:
    source = Path(ii.__file__).read_text()
    named = set(re.findall(r'IotInvokeError\([^;]*?"([a-z0-9]+(?:-[a-z0-9]+)+|usage|config|throttled|denied|refused)"',
                           source, re.S))
    named |= set(re.findall(r'reason="([a-z0-9-]+)"', source)) | set(re.findall(r'_key_error\(\s*"([a-z0-9-]+)"',
                                                                                   source))
    named |= set(ii.AWS_ERRORS.values()) | set(ii.THROTTLE_REASONS.values())
    assert named - set(ii.REASONS) == set(), "reasons without a row in REASONS"
    assert len(named) > 60  # the scan found the module's reasons at all


@pytest.mark.parametrize("reason", sorted(ii.REASONS))
def test_each_row_is_well_formed(reason: str) -> None:
    exit_code, sent, text, cause, fix = ii.REASONS[reason]
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", reason)
    assert exit_code in ii.EXIT_CODES and sent in (ii.NOTHING_SENT, ii.NOT_RUN, ii.MAY_HAVE_RUN)
    assert text and text.format(**FIELDS) and cause.format(**FIELDS) is not None and fix.format(**FIELDS) is not None
    # A transient status promises that nothing ran; a "may have run" status must not be 75 by itself.
    assert not (exit_code == ii.EX_TEMPFAIL and sent == ii.MAY_HAVE_RUN)
    assert not (exit_code == ii.EX_IOERR and sent != ii.MAY_HAVE_RUN)


def test_an_error_takes_its_status_from_the_table() -> None:
    for reason, (exit_code, *_) in ii.REASONS.items():
        error = ii.IotInvokeError("message", reason, "lambda")
        assert error.exit_code == exit_code and str(error).endswith("[%s]" % reason)


def test_help_lists_every_exit_status(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert ii.main(["--help"]) == 0
    help_text = " ".join(capfdbinary.readouterr().out.decode().split())
    for code, (words, _) in ii.EXIT_CODES.items():
        assert re.search(r"\b%d %s" % (code, re.escape(words)), help_text.split("exit status:")[1]), code


if __name__ == "__main__":
    README.write_text(rewrite(README.read_text()))
    sys.exit(0)
