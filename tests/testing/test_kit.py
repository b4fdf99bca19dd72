"""The conformance kit itself: a cheap pytest plugin, and checks that catch broken backends."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import TaskCall, TaskType, hookimpl
from taskfabric.plugins import Plugins
from taskfabric.testing import _tasks
from taskfabric.testing._harness import config_text, launch, python_outputs, with_task_type

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_with_pytest() -> None:
    found = [ep.value for ep in md.entry_points(group="pytest11", name="taskfabric")]
    assert found == ["taskfabric.testing"]


def test_importing_the_plugin_loads_no_engine_plugins_or_pytest() -> None:
    # pytest imports the plugin in every session, and a task process imports the kit's
    # tasks (so the package) where pytest may be missing. pytest and pluggy getattr() every
    # name of a plugin module when they look for hooks and fixtures: so does this.
    code = (
        "import sys, json, taskfabric.testing as m\n"
        "[getattr(m, name, None) for name in dir(m)]\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pytest', '_pytest', 'pluggy', 'stevedore', 'sqlalchemy', 'alembic') or "
        "m.startswith(('taskfabric.engine', 'taskfabric.plugins', 'taskfabric.metadata', "
        "'taskfabric.config', 'taskfabric.testing._')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_config_text_is_toml_of_the_backend_table(tmp_path: Path) -> None:
    backend = {
        "driver": "foo",
        "quote": 'say "hi"\n\\ é',
        "n": 3,
        "ratio": 0.5,
        "on": True,
        "hosts": ["a", "b"],
        "env": {"A B": "1", "nested": {"x": [1, 2]}},
    }
    text = config_text(data_root=tmp_path, backend=backend, task_type="python", parallelism=2)
    data = tomllib.loads(text)
    assert data["backends"]["conformance"] == backend
    assert data["task_types"] == {"python": "conformance"}
    assert data["engine"] == {"parallelism": 2}
    assert data["storage"]["data_root"] == str(tmp_path)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"some_setting": 1}, "needs a 'driver' key"),
        ({"driver": "foo", "x": None}, "backends.conformance.x is None"),
        ({"driver": "foo", "x": object()}, "is a object"),
    ],
)
def test_config_text_refuses_what_toml_cannot_hold(
    tmp_path: Path, backend: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        config_text(data_root=tmp_path, backend=backend, task_type="python", parallelism=1)


def test_another_task_type_leaves_the_kit_workflows_alone() -> None:
    fresh = with_task_type(_tasks.plus_one, "spark")
    assert {t.type for t in fresh.compile().tasks} == {"spark"}
    assert {t.type for t in _tasks.plus_one.compile().tasks} == {"python"}
    assert with_task_type(_tasks.plus_one, "python") is _tasks.plus_one


BROKEN_BACKENDS = """
from taskfabric.backends import LocalBackend
from taskfabric.plugin_api import BACKENDS_GROUP, AttemptError, AttemptPhase, AttemptStatus
from taskfabric.testing import BackendConformance


class RunsTwice(LocalBackend):
    driver = "runs-twice"

    def submit(self, attempt):
        self._submitted.discard(attempt.attempt_id)
        super().submit(attempt)


class IgnoresCancel(LocalBackend):
    driver = "ignores-cancel"

    def cancel(self, attempt_id):
        pass


class NeverNotifies(LocalBackend):
    driver = "never-notifies"

    def submit(self, attempt):
        attempt.notify = lambda attempt_id: None
        super().submit(attempt)


class AllSystemErrors(LocalBackend):
    driver = "all-system-errors"

    def poll(self, attempt_id):
        status = super().poll(attempt_id)
        if status.error is not None:
            e = status.error
            status = AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(e.code, e.message, "system", e.retryable, e.traceback),
            )
        return status


class Quick(BackendConformance):
    deadline = 1.5
    slow_task_seconds = 0.5
    settle_seconds = 0.3

    def setup_plugins(self, plugins):
        for cls in (RunsTwice, IgnoresCancel, NeverNotifies, AllSystemErrors):
            plugins.add_driver(BACKENDS_GROUP, cls.driver, cls)
        super().setup_plugins(plugins)


class TestRunsTwice(Quick):
    backend = {"driver": "runs-twice"}


class TestIgnoresCancel(Quick):
    backend = {"driver": "ignores-cancel"}


class TestClaimsToStopWork(Quick):
    backend = {"driver": "local"}
    can_stop_running_work = True


class TestOneWorker(Quick):
    backend = {"driver": "local", "workers": 1}


class TestNeverNotifies(Quick):
    backend = {"driver": "never-notifies"}


class TestAllSystemErrors(Quick):
    backend = {"driver": "all-system-errors"}


class TestNotInstalled(Quick):
    backend = {"driver": "no-such-driver"}


class TestFromEntryPoint(Quick):
    backend = {"driver": "fake-ep"}


class TestForAnotherCore(Quick):
    backend = {"driver": "too-new"}
"""

# Two installed distributions (dist-info folders on sys.path) providing backends by entry point.
FAKE_DISTRIBUTIONS = {
    "fake_backend-1.0": ("fake-ep = fakebackend:FakeBackend", "taskfabric>=0.1"),
    "too_new_backend-1.0": ("too-new = fakebackend:FakeBackend", "taskfabric>=99"),
}
FAKE_MODULE = """
from taskfabric.backends import LocalBackend


class FakeBackend(LocalBackend):
    driver = "fake-ep"
"""

EXPECTED_FAILURES = {
    "TestRunsTwice::test_resubmitting_an_attempt_runs_it_once": "times for one attempt_id",
    "TestIgnoresCancel::test_cancelled_attempt_never_succeeds": "yet the backend reports it",
    "TestClaimsToStopWork::test_cancelled_attempt_never_succeeds": "ran to its end after cancel",
    "TestOneWorker::test_attempts_run_in_parallel": "did not run at the same time",
    "TestNeverNotifies::test_submit_reports_success_with_outputs": "never called",
    "TestNeverNotifies::test_workflow_succeeds_with_outputs": "did not end within 1.5s",
    "TestAllSystemErrors::test_user_exception_is_a_typed_failure": "is a user error",
    "TestNotInstalled::test_check_returns_a_check_result": "unknown backend driver",
    "TestForAnotherCore::test_check_returns_a_check_result": "supports taskfabric >=99",
}


@pytest.mark.slow
def test_the_suite_fails_broken_backends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken=BROKEN_BACKENDS, fakebackend=FAKE_MODULE)
    for folder, (entry_point, requirement) in FAKE_DISTRIBUTIONS.items():
        name, version = folder.split("-")
        info = pytester.mkdir(f"{folder}.dist-info")
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Requires-Dist: {requirement}\n"
        )
        (info / "entry_points.txt").write_text(f"[taskfabric.backends]\n{entry_point}\n")
    checks = [*EXPECTED_FAILURES, "TestFromEntryPoint::test_check_returns_a_check_result"]
    selected = " or ".join(f"({cls} and {name})" for cls, name in (k.split("::") for k in checks))
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "-k", selected, "-p", "no:cacheprovider", f"--junitxml={report}"
    )
    # A driver that does not load fails in set-up (an error); every other one in its check.
    result.assert_outcomes(failed=len(EXPECTED_FAILURES) - 2, errors=2, passed=1)
    messages: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            messages[test] = f"{problem.get('message', '')}\n{problem.text or ''}"
    assert set(messages) == set(EXPECTED_FAILURES)
    for test, text in EXPECTED_FAILURES.items():
        assert text in messages[test], f"{test}: {messages[test]}"


DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "conformance.md"


def test_the_doc_quotes_a_test_that_runs_and_lists_every_check() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    header, _, body = block.partition("\n")
    assert header.startswith("# tests/testing/")
    quoted = Path(__file__).resolve().parents[2] / header.removeprefix("# ")
    assert body == quoted.read_text(encoding="utf-8")

    from taskfabric.testing import BackendConformance

    checks = {name for name in dir(BackendConformance) if name.startswith("test_")}
    listed = set(re.findall(r"^- `(test_\w+)`", text, re.MULTILINE))
    assert listed == checks


class _AliasTaskType(TaskType):
    """A second name for the python task type, as a plugin's own task type would be."""

    name = "python-alias"

    def run(self, call: TaskCall) -> Any:
        return call.task.function(**call.inputs)


class _AliasHooks:
    @hookimpl
    def taskfabric_task_types(self) -> list[TaskType]:
        return [_AliasTaskType()]


def test_the_suite_can_run_its_tasks_under_another_task_type(
    tmp_path: Path, no_installed_plugins: Plugins
) -> None:
    no_installed_plugins.register(_AliasHooks(), name="alias")
    text = config_text(
        data_root=tmp_path, backend={"driver": "local"}, task_type="python-alias", parallelism=2
    )
    (tmp_path / "taskfabric.toml").write_text(text, encoding="utf-8")
    with Engine(load_config(tmp_path / "taskfabric.toml")) as engine:
        result = launch(engine, _tasks.plus_one, {"x": 2}, task_type="python-alias", deadline=20)
        assert python_outputs(engine, _tasks.plus_one, result) == 3
        (attempt,) = engine.metadata.attempts(result.execution_id)
        assert attempt.backend == "conformance"
