"""Repository-wide pytest hooks (every suite: tests/, plugins/*/tests, integration_tests/).

Under ``CI=true`` a skipped test is a failed test: CI must run every suite it lists, so a
missing database, engine or tool is an error there, not a silent skip (a green `integration`
env once hid that 2 of its 3 tests never ran). Outside CI a skip stays a skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid} was skipped under CI=true, where every suite must run: {reason}\n"
        "(provide what it needs in .ci/run, or run it outside CI)"
    )
