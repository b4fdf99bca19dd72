"""The engine runs DAGs durably: phases, parallelism, retries, timeouts, branches."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from taskfabric import File, Retry, conditional, map_task, task, workflow
from taskfabric.engine import Engine
from taskfabric.types import TransformContext, default_engine


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def maybe(x: int | None) -> str:
    return "none" if x is None else f"got {x}"


def python_outputs(engine: Engine, wf, result):  # type: ignore[no-untyped-def]
    return result.python_outputs(wf, engine.store, engine.work_root)


def test_chain_runs_and_records_every_node(engine: Engine) -> None:
    @workflow
    def chain(n: int) -> int:
        return add(a=double(x=double(x=n)), b=n)

    result = engine.launch(chain, {"n": 5})
    assert result.phase == "SUCCEEDED"
    assert python_outputs(engine, chain, result) == 25
    nodes = {n.node_id: n for n in engine.metadata.nodes(result.execution_id)}
    assert set(nodes) == {"n0", "n1", "n2"}
    assert all(n.phase == "SUCCEEDED" and n.attempts == 1 for n in nodes.values())
    # outputs are files in the blob store; the database holds their URIs only
    assert engine.store.exists(nodes["n2"].outputs_uri)
    rec = engine.metadata.get_execution(result.execution_id)
    assert rec is not None and rec.phase == "SUCCEEDED" and rec.finished_at
    phases = [e.phase for e in engine.metadata.events(result.execution_id) if e.node_id == "n0"]
    assert phases == ["QUEUED", "RUNNING", "SUCCEEDED"]


def test_calling_a_workflow_runs_it(engine: Engine) -> None:
    @workflow
    def wf(n: int) -> int:
        return double(x=n)

    assert wf(n=4) == 8


def test_independent_nodes_run_in_parallel(engine: Engine) -> None:
    barrier = threading.Barrier(2, timeout=10)

    @task
    def meet(x: int) -> int:
        barrier.wait()  # both must be running at the same time to pass
        return x

    @workflow
    def wf() -> int:
        return add(a=meet(x=1), b=meet(x=2))

    result = engine.launch(wf, {})
    assert result.phase == "SUCCEEDED", result.error
    assert python_outputs(engine, wf, result) == 3


def test_retries_with_backoff_then_success(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.write_text("0")

    @task(retries=Retry(retries=3, backoff=0.05, multiplier=2))
    def flaky(x: int) -> int:
        n = int(counter.read_text()) + 1
        counter.write_text(str(n))
        if n < 3:
            raise ConnectionError(f"attempt {n} failed")
        return x

    @workflow
    def wf(x: int) -> int:
        return flaky(x=x)

    started = time.monotonic()
    result = engine.launch(wf, {"x": 7})
    assert result.phase == "SUCCEEDED"
    assert time.monotonic() - started >= 0.05 + 0.1  # both backoffs were waited
    attempts = engine.metadata.attempts(result.execution_id)
    assert [a.phase for a in attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert attempts[0].error and attempts[0].error["code"] == "ConnectionError"
    node = engine.metadata.nodes(result.execution_id)[0]
    assert node.attempts == 3 and node.phase == "SUCCEEDED"
    assert "RETRYING" in [e.phase for e in engine.metadata.events(result.execution_id)]


def test_failure_propagates_and_downstream_is_skipped(engine: Engine) -> None:
    @task(retries=1)
    def boom(x: int) -> int:
        raise ValueError(f"bad value {x}")

    @workflow
    def wf(x: int) -> int:
        return double(x=boom(x=x))

    result = engine.launch(wf, {"x": 3})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["node_id"] == "n0"
    assert result.error["code"] == "ValueError" and "bad value 3" in result.error["message"]
    assert "raise ValueError" in result.error["traceback"]
    nodes = {n.node_id: n for n in engine.metadata.nodes(result.execution_id)}
    assert nodes["n0"].phase == "FAILED" and nodes["n0"].attempts == 2
    assert "n1" not in nodes or nodes["n1"].phase == "SKIPPED"


def test_output_of_wrong_type_is_a_clear_non_retried_error(engine: Engine) -> None:
    @task(retries=3)
    def liar(x: int) -> int:
        return "not an int"  # type: ignore[return-value]

    @workflow
    def wf(x: int) -> int:
        return liar(x=x)

    result = engine.launch(wf, {"x": 1})
    assert result.phase == "FAILED"
    assert result.error and result.error["code"] == "OutputTypeError"
    assert "liar" in result.error["message"]
    assert engine.metadata.nodes(result.execution_id)[0].attempts == 1


def test_timeout_fails_the_attempt(engine: Engine) -> None:
    @task(timeout=0.2)
    def slow(x: int) -> int:
        time.sleep(10.0)
        return x

    @workflow
    def wf(x: int) -> int:
        return slow(x=x)

    started = time.monotonic()
    result = engine.launch(wf, {"x": 1})
    assert time.monotonic() - started < 5  # not waited for: the task would take 10 s
    assert result.phase == "FAILED"
    assert result.error and result.error["code"] == "Timeout"
    node = engine.metadata.nodes(result.execution_id)[0]
    assert node.phase == "TIMED_OUT"


def test_map_task_respects_its_concurrency_bound(engine: Engine) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    @task
    def track(x: int) -> int:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return x * x

    @task
    def upto(n: int) -> list[int]:
        return list(range(n))

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @workflow
    def wf(n: int) -> int:
        return total(xs=map_task(track, concurrency=3)(x=upto(n=n)))

    result = engine.launch(wf, {"n": 20})
    assert result.phase == "SUCCEEDED"
    assert python_outputs(engine, wf, result) == sum(i * i for i in range(20))
    assert 1 < state["max"] <= 3
    items = [n for n in engine.metadata.nodes(result.execution_id) if n.kind == "map_item"]
    assert len(items) == 20 and all(i.phase == "SUCCEEDED" for i in items)


def test_empty_map_gives_an_empty_list(engine: Engine) -> None:
    @task
    def nothing() -> list[int]:
        return []

    @workflow
    def wf() -> list[int]:
        return map_task(double)(x=nothing())

    result = engine.launch(wf, {})
    assert python_outputs(engine, wf, result) == []


def test_failed_map_item_fails_the_map(engine: Engine) -> None:
    @task
    def picky(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    @task
    def upto(n: int) -> list[int]:
        return list(range(n))

    @workflow
    def wf(n: int) -> list[int]:
        return map_task(picky)(x=upto(n=n))

    result = engine.launch(wf, {"n": 5})
    assert result.phase == "FAILED"
    assert result.error and "item 3" in result.error["message"]


@pytest.mark.parametrize(("n", "expected"), [(5, 10), (-1, 99), (-50, -50)])
def test_conditional_runs_the_case_that_holds(engine: Engine, n: int, expected: int) -> None:
    @task
    def keep(x: int) -> int:
        return x

    @workflow
    def wf(n: int) -> int:
        return (
            conditional("sign")
            .if_(n > 0)
            .then(double(x=n))
            .elif_(n == -1)
            .then(add(a=n, b=100))
            .else_()
            .then(keep(x=n))
        )

    result = engine.launch(wf, {"n": n})
    assert result.phase == "SUCCEEDED", result.error
    assert python_outputs(engine, wf, result) == expected


def test_conditional_else_fail(engine: Engine) -> None:
    @workflow
    def wf(n: int) -> int:
        return conditional("c").if_(n > 0).then(double(x=n)).else_().fail("n must be positive")

    assert engine.launch(wf, {"n": 1}).phase == "SUCCEEDED"
    result = engine.launch(wf, {"n": -1})
    assert result.phase == "FAILED"
    assert result.error and result.error["message"] == "n must be positive"


def test_subworkflow_runs_inside_the_execution(engine: Engine) -> None:
    @workflow
    def inner(x: int) -> int:
        return double(x=double(x=x))

    @workflow
    def outer(n: int) -> int:
        return add(a=inner(x=n), b=inner(x=1))

    result = engine.launch(outer, {"n": 3})
    assert python_outputs(engine, outer, result) == 16
    ids = {n.node_id for n in engine.metadata.nodes(result.execution_id)}
    assert {"n0", "n0/n0", "n0/n1", "n1/n1", "n2"} <= ids


def test_value_bound_to_an_optional_input(engine: Engine) -> None:
    @workflow
    def wf(n: int) -> str:
        return maybe(x=double(x=n))

    result = engine.launch(wf, {"n": 2})
    assert python_outputs(engine, wf, result) == "got 4"

    @workflow
    def wf_none() -> str:
        return maybe(x=None)

    result = engine.launch(wf_none, {})
    assert python_outputs(engine, wf_none, result) == "none"


def test_files_travel_between_tasks_by_content(engine: Engine) -> None:
    @task
    def write(text: str) -> File:
        f = File.new("data.txt")
        Path(f.path).write_text(text)
        return f

    @task
    def read(f: File) -> str:
        return Path(f.path).read_text()

    @workflow
    def wf(text: str) -> str:
        return read(f=write(text=text))

    result = engine.launch(wf, {"text": "hello"})
    assert result.phase == "SUCCEEDED", result.error
    assert python_outputs(engine, wf, result) == "hello"


def test_launch_rejects_bad_inputs_before_running(engine: Engine) -> None:
    @workflow
    def wf(n: int) -> int:
        return double(x=n)

    from taskfabric import TaskfabricError

    with pytest.raises(TaskfabricError, match="needs input 'n'"):
        engine.launch(wf, {})
    with pytest.raises(TaskfabricError, match="no input named m"):
        engine.launch(wf, {"n": 1, "m": 2})
    assert engine.metadata.list_executions() == []


def test_launching_a_task_says_a_workflow_is_expected(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"runs a workflow, and .*double is a task: call it from"):
        engine.launch(double, {"x": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="runs a @workflow, not function"):
        engine.launch(python_outputs, {})  # type: ignore[arg-type]
    assert engine.metadata.list_executions() == []


def test_unknown_task_type_is_refused_before_running(engine: Engine) -> None:
    @task(task_type="spark")
    def sparky(x: int) -> int:
        return x

    @workflow
    def wf(x: int) -> int:
        return sparky(x=x)

    from taskfabric.engine import BackendNotConfiguredError

    with pytest.raises(BackendNotConfiguredError, match="task type 'spark'"):
        engine.launch(wf, {"x": 1})


def test_resume_of_a_failed_execution_reuses_succeeded_nodes(
    engine: Engine, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    fixed = tmp_path / "fixed"

    @task
    def first(x: int) -> int:
        with runs.open("a") as fh:
            fh.write("first\n")
        return x + 1

    @task
    def second(x: int) -> int:
        if not fixed.exists():
            raise RuntimeError("not yet")
        return x * 10

    @workflow
    def wf(x: int) -> int:
        return second(x=first(x=x))

    result = engine.launch(wf, {"x": 1})
    assert result.phase == "FAILED"
    fixed.touch()
    resumed = engine.resume(result.execution_id, workflow=wf)
    assert resumed.phase == "SUCCEEDED"
    assert python_outputs(engine, wf, resumed) == 20
    assert runs.read_text().splitlines() == ["first"]


def test_literal_conversion_context_is_usable() -> None:
    # the engine relies on TransformContext working with a plain local store
    from taskfabric.storage import LocalBlobStore

    store = LocalBlobStore(Path("/tmp") / "tf-ctx-check")
    ctx = TransformContext(store=store, raw_prefix=store.uri("raw"), work_dir=Path("/tmp"))
    lit = default_engine().to_literal(3, int, ctx)
    assert default_engine().to_python(lit, int, ctx) == 3


def test_map_over_a_list_written_in_the_workflow(engine: Engine) -> None:
    @workflow
    def wf(n: int) -> list[int]:
        return map_task(add)(a=[1, 2, n], b=10)

    result = engine.launch(wf, {"n": 5})
    assert python_outputs(engine, wf, result) == [11, 12, 15]


def test_conditions_combine_with_bool_promises(engine: Engine) -> None:
    @workflow
    def wf(n: int, flag: bool) -> int:
        return (
            conditional("c")
            .if_((n > 1) | flag)
            .then(double(x=n))
            .elif_(flag & (n < 0))
            .then(add(a=n, b=1))
            .else_()
            .then(add(a=n, b=100))
        )

    assert python_outputs(engine, wf, engine.launch(wf, {"n": 5, "flag": False})) == 10
    assert python_outputs(engine, wf, engine.launch(wf, {"n": 0, "flag": True})) == 0
    assert python_outputs(engine, wf, engine.launch(wf, {"n": 0, "flag": False})) == 100
