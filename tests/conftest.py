"""iotinvoke's tests share the stand-in's fixtures (``aws``, ``standin``, ``aws_client``, the
``own_standin`` marker and the session-wide secret scan) with the tooling's tests in
scripts/tests/: they live in scripts/lib/standin/pytest_plugin.py. Here, the output of every
iotinvoke run (tests/cli.py) is put under that scan.
"""
from __future__ import annotations

import pytest

import cli

pytest_plugins = ["standin.pytest_plugin"]


def pytest_configure(config: pytest.Config) -> None:
    # Imported here, after pytest_plugins loaded it: an earlier import would keep pytest from
    # rewriting the plugin's asserts.
    from standin.pytest_plugin import scan_outputs

    scan_outputs(cli.OUTPUTS)
