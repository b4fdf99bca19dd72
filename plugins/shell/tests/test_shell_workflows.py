"""Shell tasks in real workflows on the in-process engine: quoting, parsing, retries, shells.

(test_shell_backends.py runs the main cases on every built-in backend.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import shell_tasks

from taskfabric import File, WorkflowDefinition, task, workflow
from taskfabric.engine import Engine, ExecutionResult
from taskfabric.types import Format
from taskfabric_shell import Shell


def outputs(engine: Engine, wf: WorkflowDefinition[Any, Any], result: ExecutionResult) -> Any:
    assert result.phase == "SUCCEEDED", result.error
    return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)


def test_the_attempt_folder_keeps_the_rendered_script_and_logs(engine: Engine) -> None:
    result = engine.launch(shell_tasks.mixed, {"lines": 2})
    assert outputs(engine, shell_tasks.mixed, result) == 4
    [attempt_dir] = (engine.work_root / result.execution_id).rglob("shell-count_lines-*")
    script = (attempt_dir / "script.sh").read_text()
    assert script.startswith("wc -l < /") and "{inputs" not in script
    assert (attempt_dir / "stdout.log").is_file() and (attempt_dir / "stderr.log").is_file()
    assert [p.name for p in (attempt_dir / "outputs").iterdir()] == ["o0"]


def test_inputs_are_never_evaluated_by_the_shell(engine: Engine, tmp_path: Path) -> None:
    @task(config=Shell(script="printf '%s' {inputs.text} > {outputs.o0}"))
    def echo(text: str) -> str: ...

    @workflow
    def wf(text: str) -> str:
        return echo(text=text)

    canary = tmp_path / "canary"
    text = f"$(touch {canary}); `touch {canary}` 'quoted' \"double\" $HOME *"
    assert outputs(engine, wf, engine.launch(wf, {"text": text})) == text
    assert not canary.exists()


def test_an_unparseable_output_names_the_output_and_the_text(engine: Engine) -> None:
    @task(config=Shell(script="echo 'twelve' > {outputs.o0}"))
    def count() -> int: ...

    @workflow
    def wf() -> int:
        return count()

    result = engine.launch(wf, {})
    assert result.phase == "FAILED" and result.error is not None
    message = result.error["message"]
    assert "output 'o0' (int)" in message
    assert "'twelve\\n'" in message


def test_a_failed_attempt_is_retried_by_the_core(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "tried"

    @task(
        retries=1,
        config=Shell(
            script=f"""
            if [ ! -e {marker} ]; then touch {marker}; echo flaky >&2; exit 1; fi
            echo 42 > {{outputs.o0}}
            """
        ),
    )
    def flaky() -> int: ...

    @workflow
    def wf() -> int:
        return flaky()

    result = engine.launch(wf, {})
    assert outputs(engine, wf, result) == 42
    [node] = engine.metadata.nodes(result.execution_id)
    assert node.attempts == 2


def test_cwd_and_another_shell(engine: Engine) -> None:
    @task(config=Shell(script="mkdir -p sub && cd sub && pwd > {outputs.o0}", shell="sh"))
    def where() -> str: ...

    @task(config=Shell(script="import os\nprint(os.environ['TF_INPUT_N'])", shell="python3"))
    def py(n: int) -> None: ...

    @workflow
    def wf() -> str:
        py(n=1)
        return where()

    out = outputs(engine, wf, engine.launch(wf, {}))
    assert Path(out).name == "sub" and Path(out).parent.name.startswith("shell-where-")


def test_a_missing_shell_is_a_clear_error(engine: Engine) -> None:
    @task(config=Shell(script="true", shell="no-such-shell-xyz"))
    def nope() -> None: ...

    @workflow
    def wf() -> None:
        nope()

    result = engine.launch(wf, {})
    assert result.phase == "FAILED" and result.error is not None
    assert "shell 'no-such-shell-xyz' not found on PATH" in result.error["message"]


def test_parallel_shell_tasks_do_not_share_outputs(engine: Engine) -> None:
    @task(config=Shell(script="sleep 0.2; echo {inputs.i} > {outputs.o0}"))
    def ident(i: int) -> int: ...

    @task
    def total(a: int, b: int, c: int, d: int) -> int:
        return a + 10 * b + 100 * c + 1000 * d

    @workflow
    def wf() -> int:
        return total(a=ident(i=1), b=ident(i=2), c=ident(i=3), d=ident(i=4))

    assert outputs(engine, wf, engine.launch(wf, {})) == 4321


def test_a_formatted_file_output_keeps_its_format_as_suffix(engine: Engine) -> None:
    @task(config=Shell(script='printf "a,b\\n1,2\\n" > {outputs.o0}; basename {outputs.o0} >&2'))
    def table() -> Annotated[File, Format("csv")]: ...

    @workflow
    def wf() -> Annotated[File, Format("csv")]:
        return table()

    out = outputs(engine, wf, engine.launch(wf, {}))
    assert out.format == "csv" and out.name == "o0.csv"
    assert out.read_text() == "a,b\n1,2\n"


def test_a_shell_task_type_without_a_shell_config(engine: Engine) -> None:
    @task(task_type="shell")
    def bare(x: int) -> int: ...

    @workflow
    def wf() -> int:
        return bare(x=1)

    result = engine.launch(wf, {})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "ShellError"
    assert "no Shell config: declare it with @task(config=Shell(script=" in result.error["message"]
