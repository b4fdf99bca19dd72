"""`BackendConformance`: the checks every backend plugin runs against itself."""

from __future__ import annotations

import importlib.metadata as md
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from taskfabric.config import CONFIG_ENV_VAR, DATA_ROOT_ENV_VAR, Config, load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import (
    BACKENDS_GROUP,
    HOOKS_GROUP,
    AttemptPhase,
    Backend,
    CheckResult,
    PoolRequest,
    TaskAttempt,
)
from taskfabric.plugins import BUILTIN_DRIVERS, PluginError, Plugins, use_plugins
from taskfabric.testing import _tasks
from taskfabric.testing._harness import (
    BACKEND_NAME,
    DirectAttempts,
    config_text,
    launch,
    python_outputs,
    template_of,
)


class BackendConformance:
    """Subclass it in a test module, named `Test...`, and set `backend`:

    ```python
    class TestFooConformance(BackendConformance):
        backend = {"driver": "foo", "some_setting": 1}  # the [backends.<name>] table
    ```

    Each test gets a fresh engine on a temporary data root whose config maps `task_type` to
    that table. Override the fixtures (same name) or `setup_plugins` to change the set-up.
    """

    #: The `[backends.<name>]` table of the backend under test; `driver` is required.
    backend: ClassVar[Mapping[str, Any]] = {}
    #: The task type the suite's tasks declare and the config maps to the backend.
    task_type: ClassVar[str] = "python"
    #: Whether the backend can stop work that has started (a process it can kill, a job it
    #: can delete); the cancel check then also asserts the work really stopped.
    can_stop_running_work: ClassVar[bool] = False
    #: `[engine] parallelism` of the suite's engine.
    parallelism: ClassVar[int] = 4
    #: The longest any check waits for the backend before failing (starts, ends).
    deadline: ClassVar[float] = 30.0
    #: How long a slow task sleeps in the cancel check.
    slow_task_seconds: ClassVar[float] = 1.5
    #: How long a check keeps watching for something that must not happen (a second run).
    settle_seconds: ClassVar[float] = 1.0

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.taskfabric_conformance]

    # -- set-up, overridable --------------------------------------------------------------

    def setup_plugins(self, plugins: Plugins) -> None:
        """Make the driver under test available to `plugins` (built without autoload).

        By default: a built-in driver needs nothing; otherwise the installed entry point of
        that name in `taskfabric.backends` is loaded, with the hook modules (task types,
        type transformers) of the distribution that provides it. Override to register a
        class directly: `plugins.add_driver(BACKENDS_GROUP, "foo", FooBackend)`.
        """
        driver = self.backend.get("driver")
        if not isinstance(driver, str) or any(
            g == BACKENDS_GROUP and n == driver for g, n, _ in BUILTIN_DRIVERS
        ):
            return
        if any(info.name == driver for info in plugins.drivers(BACKENDS_GROUP)):
            return  # registered by a subclass before calling us
        # The driver loads as the engine would load it (core-version check, one provider),
        # from a throwaway Plugins: no other installed plugin is loaded.
        try:
            plugins.add_driver(BACKENDS_GROUP, driver, Plugins().driver(BACKENDS_GROUP, driver))
        except PluginError as exc:
            pytest.fail(
                f"{exc}: install the plugin (`pip install -e plugins/<name>`), or register "
                f"its class in {type(self).__name__}.setup_plugins",
                pytrace=False,
            )
        ep = next(iter(md.entry_points(group=BACKENDS_GROUP, name=driver)), None)
        dist = ep.dist.name if ep is not None and ep.dist is not None else None
        for hook_ep in md.entry_points(group=HOOKS_GROUP) if dist else ():
            if hook_ep.dist is not None and hook_ep.dist.name == dist:
                plugins.register(hook_ep.load(), name=f"{dist}:{hook_ep.name}")

    # -- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def conformance_scratch(self, tmp_path: Path) -> Path:
        """The folder of the tasks' side channels (markers, counters); every attempt must see
        it. Override for backends that run tasks elsewhere (a volume they mount)."""
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        return scratch

    @pytest.fixture
    def conformance_plugins(self) -> Iterator[Plugins]:
        """The process-wide plugins during the test: built-ins plus `setup_plugins`."""
        plugins = Plugins(autoload=False)
        self.setup_plugins(plugins)
        with use_plugins(plugins):
            yield plugins

    @pytest.fixture
    def conformance_config(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
        """An isolated config file (tmp data root, `[backends.conformance]`, `[task_types]`),
        also named by $TASKFABRIC_CONFIG so that processes the backend starts read it."""
        root = tmp_path / "taskfabric"
        root.mkdir()
        path = root / "taskfabric.toml"
        try:
            text = config_text(
                data_root=root / "data",
                backend=self.backend,
                task_type=self.task_type,
                parallelism=self.parallelism,
            )
        except TypeError as exc:
            pytest.fail(f"{type(self).__name__}.backend: {exc}", pytrace=False)
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        monkeypatch.setenv(DATA_ROOT_ENV_VAR, str(root / "data"))
        return load_config(path)

    @pytest.fixture
    def conformance_engine(
        self, conformance_config: Config, conformance_plugins: Plugins, conformance_scratch: Path
    ) -> Iterator[Engine]:
        """An Engine on the isolated config; sleeping tasks are told to stop at teardown."""
        engine = Engine(conformance_config, plugins=conformance_plugins)
        try:
            yield engine
        finally:
            (conformance_scratch / _tasks.STOP_FILE).touch()
            engine.close()

    @pytest.fixture
    def conformance_attempts(self, conformance_engine: Engine) -> DirectAttempts:
        """Builds TaskAttempts as the engine does, for calling the backend directly."""
        return DirectAttempts(conformance_engine, task_type=self.task_type, deadline=self.deadline)

    @pytest.fixture
    def conformance_backend(self, conformance_attempts: DirectAttempts) -> Backend[Any]:
        """The backend instance under test, as the engine builds it."""
        return conformance_attempts.backend(_tasks.add_one)

    @pytest.fixture
    def conformance_next_backend(
        self, conformance_config: Config, conformance_plugins: Plugins
    ) -> Iterator[Backend[Any]]:
        """The backend under test as the next engine process builds it (another Engine on
        the same config and database): what re-attaches to the first one's attempts."""
        engine = Engine(conformance_config, plugins=conformance_plugins)
        try:
            yield engine.backends.for_task(template_of(_tasks.add_one, self.task_type))
        finally:
            engine.close()

    # -- helpers ---------------------------------------------------------------------------

    def _launch(self, engine: Engine, wf: Any, **inputs: Any) -> Any:
        return launch(engine, wf, inputs, task_type=self.task_type, deadline=self.deadline)

    def _claims_no_reattach(
        self,
        backend: Backend[Any],
        attempts: DirectAttempts,
        scratch: Path,
        name: str,
    ) -> bool:
        """For a backend with `reattaches = False`, check the other side of the contract
        and return True: its attempts record no handle, so after an engine restart the
        engine fails and retries them instead of handing the backend a handle it would
        ignore (two runs of one attempt). Under CI a skipped check is a failed one, so a
        backend that does not re-attach gets this check in place of the re-attach ones."""
        if type(backend).reattaches:
            return False
        (scratch / f"{name}.go").touch()
        attempt = attempts.make(_tasks.run_when_told, scratch=str(scratch), name=name)
        backend.submit(attempt)
        try:
            status = attempts.wait(backend, attempt)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            assert not any(attempts.handles(attempt)), (
                f"{type(backend).__qualname__} sets reattaches = False but recorded a handle "
                f"({attempts.handles(attempt)}): the engine would re-submit the attempt with "
                "it after a restart; set reattaches = True and re-attach, or record none"
            )
        finally:
            backend.release(attempt.attempt_id)
        return True

    @staticmethod
    def _runs(scratch: Path, name: str) -> int:
        path = scratch / f"{name}.runs"
        return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0

    def _wait_for(self, path: Path, what: str) -> None:
        end = time.monotonic() + self.deadline
        while not path.exists():
            if time.monotonic() > end:
                pytest.fail(f"{what}: {path} did not appear within {self.deadline:g}s")
            time.sleep(0.02)

    # -- the checks ------------------------------------------------------------------------

    def test_check_returns_a_check_result(self, conformance_backend: Backend[Any]) -> None:
        backend = conformance_backend
        driver = self.backend["driver"]
        assert backend.name == BACKEND_NAME
        assert type(backend).driver == driver, (
            f"{type(backend).__qualname__}.driver is {type(backend).driver!r}; it must equal "
            f"the name users write in `driver = ...` ({driver!r})"
        )
        result = backend.check()
        assert isinstance(result, CheckResult), f"check() returned {result!r}"
        assert result.ok, f"check() failed: {result.message}"
        assert isinstance(result.message, str)
        pools = backend.pool_requests(_tasks.add_one.template())
        assert all(isinstance(p, PoolRequest) for p in pools), f"pool_requests: {pools!r}"

    def test_submit_reports_success_with_outputs(
        self, conformance_attempts: DirectAttempts, conformance_backend: Backend[Any]
    ) -> None:
        backend = conformance_backend
        attempt = conformance_attempts.make(_tasks.add_one, x=41)
        backend.submit(attempt)
        try:
            status = conformance_attempts.wait(backend, attempt)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            assert conformance_attempts.outputs(attempt, status) == 42
            if backend.poll_interval is None:
                assert conformance_attempts.notified(attempt, timeout=self.deadline), (
                    "the backend sets poll_interval = None but never called "
                    "attempt.notify(attempt_id): the engine would wait for this attempt forever"
                )
            backend.cancel(attempt.attempt_id)  # cancelling an ended attempt is no error
        finally:
            backend.release(attempt.attempt_id)

    def test_task_is_imported_by_its_module_name(
        self, conformance_attempts: DirectAttempts, conformance_backend: Backend[Any]
    ) -> None:
        # TaskTemplate.function names the module; importing the file under another name
        # breaks relative imports and makes a second copy of every class in it.
        backend = conformance_backend
        attempt = conformance_attempts.make(_tasks.module_name)
        backend.submit(attempt)
        try:
            status = conformance_attempts.wait(backend, attempt)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            assert conformance_attempts.outputs(attempt, status) == _tasks.__name__
        finally:
            backend.release(attempt.attempt_id)

    def test_workflow_succeeds_with_outputs(self, conformance_engine: Engine) -> None:
        result = self._launch(conformance_engine, _tasks.plus_one, x=1)
        assert result.phase == "SUCCEEDED", result.error
        assert python_outputs(conformance_engine, _tasks.plus_one, result) == 2
        attempts = conformance_engine.metadata.attempts(result.execution_id)
        assert [(a.phase, a.backend) for a in attempts] == [("SUCCEEDED", BACKEND_NAME)]

    def test_rich_types_round_trip(self, conformance_engine: Engine) -> None:
        wf = _tasks.rich_types
        result = self._launch(
            conformance_engine, wf, name="r", scores=[1, 2, 3, 4], note="kept", limit=None
        )
        assert result.phase == "SUCCEEDED", result.error
        record, groups, note, none, some, text = python_outputs(conformance_engine, wf, result)
        assert record == _tasks.Record(
            name="r",
            scores=[1, 2, 3, 4],
            weights={"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.4},
            note="kept",
        )
        assert groups == {"even": [2, 4], "odd": [1, 3]}
        assert (note, none, some) == ("kept", None, 3)
        assert text == "r:10"  # a File written by one task, read by the next

    def test_user_exception_is_a_typed_failure(self, conformance_engine: Engine) -> None:
        result = self._launch(conformance_engine, _tasks.failing, message="no good: 7")
        assert result.phase == "FAILED"
        assert result.error is not None
        assert result.error["code"] == "ConformanceError", result.error
        assert "no good: 7" in result.error["message"]
        (node,) = conformance_engine.metadata.nodes(result.execution_id)
        assert node.phase == "FAILED"
        (attempt,) = conformance_engine.metadata.attempts(result.execution_id)
        error = attempt.error or {}
        assert attempt.phase == "FAILED"
        assert error.get("code") == "ConformanceError", error
        assert error.get("kind") == "user", (
            f"an exception of the task's code is a user error: {error}"
        )
        assert "no good: 7" in error.get("message", "")
        assert "ConformanceError" in error.get("traceback", ""), f"no traceback in {error}"

    def test_failed_attempt_is_retried(
        self, conformance_engine: Engine, conformance_scratch: Path
    ) -> None:
        result = self._launch(
            conformance_engine, _tasks.retried, scratch=str(conformance_scratch), x=4
        )
        assert result.phase == "SUCCEEDED", result.error
        assert python_outputs(conformance_engine, _tasks.retried, result) == 40
        attempts = conformance_engine.metadata.attempts(result.execution_id)
        assert [a.phase for a in attempts] == ["FAILED", "SUCCEEDED"]
        assert (attempts[0].error or {}).get("code") == "FlakyError", attempts[0].error
        (node,) = conformance_engine.metadata.nodes(result.execution_id)
        assert node.attempts == 2

    def test_timeout_ends_the_attempt_without_waiting(
        self, conformance_engine: Engine, conformance_scratch: Path
    ) -> None:
        sleep = _tasks.TIMEOUT_SECONDS + 7.0
        started = time.monotonic()
        result = self._launch(
            conformance_engine, _tasks.timing_out, scratch=str(conformance_scratch), seconds=sleep
        )
        elapsed = time.monotonic() - started
        assert elapsed < sleep - 2.0, (
            f"the execution took {elapsed:.1f}s: the engine waited for the timed-out task "
            "(does cancel() block until the work ends?)"
        )
        assert result.phase == "FAILED"
        (node,) = conformance_engine.metadata.nodes(result.execution_id)
        assert node.phase == "TIMED_OUT"
        (attempt,) = conformance_engine.metadata.attempts(result.execution_id)
        assert attempt.phase == "TIMED_OUT"
        assert (attempt.error or {}).get("code") == "Timeout", attempt.error

    def test_cancelled_attempt_never_succeeds(
        self,
        conformance_attempts: DirectAttempts,
        conformance_backend: Backend[Any],
        conformance_scratch: Path,
    ) -> None:
        backend, scratch = conformance_backend, str(conformance_scratch)
        seconds = self.slow_task_seconds
        running = conformance_attempts.make(
            _tasks.sleep_then_mark, scratch=scratch, name="running", seconds=seconds
        )
        early = conformance_attempts.make(
            _tasks.sleep_then_mark, scratch=scratch, name="early", seconds=seconds
        )
        attempts: Mapping[str, TaskAttempt] = {"running": running, "early": early}
        try:
            backend.submit(running)
            backend.submit(early)
            backend.cancel(early.attempt_id)  # before it (likely) started
            self._wait_for(conformance_scratch / "running.started", "the slow task never started")
            backend.cancel(running.attempt_id)  # while it runs
            # Watch past the moment the task would have ended had it gone on running.
            end = time.monotonic() + seconds + self.settle_seconds
            while time.monotonic() < end:
                for name, attempt in attempts.items():
                    status = backend.poll(attempt.attempt_id)
                    assert status.phase is not AttemptPhase.SUCCEEDED, (
                        f"the '{name}' attempt was cancelled, yet the backend reports it SUCCEEDED"
                    )
                time.sleep(conformance_attempts.poll_every(backend))
            if self.can_stop_running_work:
                for name in attempts:
                    assert not (conformance_scratch / f"{name}.finished").exists(), (
                        f"the '{name}' attempt ran to its end after cancel(), but this backend "
                        "declares can_stop_running_work = True"
                    )
        finally:
            for attempt in attempts.values():
                backend.release(attempt.attempt_id)

    def test_resubmitting_an_attempt_runs_it_once(
        self,
        conformance_attempts: DirectAttempts,
        conformance_backend: Backend[Any],
        conformance_scratch: Path,
    ) -> None:
        backend = conformance_backend
        attempt = conformance_attempts.make(_tasks.count_run, scratch=str(conformance_scratch))
        runs = conformance_scratch / "runs.txt"
        try:
            backend.submit(attempt)
            backend.submit(attempt)  # while it is queued or running
            status = conformance_attempts.wait(backend, attempt)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            backend.submit(attempt)  # after it ended, before release
            time.sleep(self.settle_seconds)
            count = len(runs.read_text().splitlines())
            assert count == 1, (
                f"the task body ran {count} times for one attempt_id submitted three times"
            )
            assert conformance_attempts.outputs(attempt, status) == 1
            assert backend.poll(attempt.attempt_id).phase is AttemptPhase.SUCCEEDED
        finally:
            backend.release(attempt.attempt_id)

    def test_attempts_run_in_parallel(
        self, conformance_engine: Engine, conformance_scratch: Path
    ) -> None:
        result = self._launch(
            conformance_engine,
            _tasks.side_by_side,
            scratch=str(conformance_scratch),
            wait_seconds=min(10.0, self.deadline / 2),
        )
        assert result.phase == "SUCCEEDED", result.error
        assert python_outputs(conformance_engine, _tasks.side_by_side, result) == ("left", "right")

    # -- re-attach: backends that set `reattaches = True` ----------------------------------

    def test_reattach_adopts_running_work(
        self,
        conformance_attempts: DirectAttempts,
        conformance_backend: Backend[Any],
        conformance_next_backend: Backend[Any],
        conformance_scratch: Path,
    ) -> None:
        first, scratch = conformance_backend, conformance_scratch
        if self._claims_no_reattach(first, conformance_attempts, scratch, "a0"):
            return
        attempt = conformance_attempts.make(_tasks.run_when_told, scratch=str(scratch), name="a")
        first.submit(attempt)
        self._wait_for(scratch / "a.started", "the task never started")
        handles = conformance_attempts.handles(attempt)
        assert handles and handles[-1], (
            f"{type(first).__qualname__} sets reattaches = True but its running attempt "
            "recorded no handle (attempt.record_handle)"
        )
        # The first engine process is never asked again, as if it had been killed; the next
        # one submits the same attempt with the recorded handle.
        nxt = conformance_next_backend
        again = conformance_attempts.again(attempt)
        nxt.submit(again)
        try:
            assert nxt.poll(again.attempt_id).phase is AttemptPhase.RUNNING, (
                "re-attached to work that is still running, yet the attempt is not RUNNING"
            )
            (scratch / "a.go").touch()
            status = conformance_attempts.wait(nxt, again)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            assert conformance_attempts.outputs(again, status) == 1
            time.sleep(self.settle_seconds)
            assert self._runs(scratch, "a") == 1, (
                "the task ran again for an attempt submitted with the handle of its running work"
            )
        finally:
            nxt.release(again.attempt_id)
            first.release(attempt.attempt_id)

    def test_reattach_reads_the_result_of_ended_work(
        self,
        conformance_attempts: DirectAttempts,
        conformance_backend: Backend[Any],
        conformance_next_backend: Backend[Any],
        conformance_scratch: Path,
    ) -> None:
        first, scratch = conformance_backend, conformance_scratch
        if self._claims_no_reattach(first, conformance_attempts, scratch, "b0"):
            return
        (scratch / "b.go").touch()  # the task ends at once
        attempt = conformance_attempts.make(_tasks.run_when_told, scratch=str(scratch), name="b")
        first.submit(attempt)
        try:
            ended = conformance_attempts.wait(first, attempt)
            assert ended.phase is AttemptPhase.SUCCEEDED, ended.error
            # Its end was never recorded (the engine process died first): the next one asks.
            nxt = conformance_next_backend
            again = conformance_attempts.again(attempt)
            assert again.handle, f"{type(first).__qualname__} recorded no handle"
            nxt.submit(again)
            status = conformance_attempts.wait(nxt, again)
            assert status.phase is AttemptPhase.SUCCEEDED, status.error
            assert conformance_attempts.outputs(again, status) == 1
            time.sleep(self.settle_seconds)
            assert self._runs(scratch, "b") == 1, (
                "the task ran again for an attempt submitted with the handle of its ended work"
            )
            nxt.release(again.attempt_id)
        finally:
            first.release(attempt.attempt_id)

    def test_reattach_then_cancel_stops_the_work(
        self,
        conformance_attempts: DirectAttempts,
        conformance_backend: Backend[Any],
        conformance_next_backend: Backend[Any],
        conformance_scratch: Path,
    ) -> None:
        first, scratch = conformance_backend, conformance_scratch
        if self._claims_no_reattach(first, conformance_attempts, scratch, "c0"):
            return
        seconds = self.slow_task_seconds
        attempt = conformance_attempts.make(
            _tasks.sleep_then_mark, scratch=str(scratch), name="c", seconds=seconds
        )
        first.submit(attempt)
        self._wait_for(scratch / "c.started", "the slow task never started")
        nxt = conformance_next_backend
        again = conformance_attempts.again(attempt)
        nxt.submit(again)
        nxt.cancel(again.attempt_id)
        try:
            end = time.monotonic() + seconds + self.settle_seconds
            while time.monotonic() < end:
                assert nxt.poll(again.attempt_id).phase is not AttemptPhase.SUCCEEDED, (
                    "the re-attached attempt was cancelled, yet the backend reports it SUCCEEDED"
                )
                time.sleep(conformance_attempts.poll_every(nxt))
            if self.can_stop_running_work:
                assert not (scratch / "c.finished").exists(), (
                    "the re-attached work ran to its end after cancel(), but this backend "
                    "declares can_stop_running_work = True"
                )
        finally:
            nxt.release(again.attempt_id)
            first.release(attempt.attempt_id)
