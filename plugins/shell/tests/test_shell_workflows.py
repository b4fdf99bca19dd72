"""Shell tasks in real workflows, run by the real engine with the plugin registered."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from taskfabric import Directory, File, WorkflowDefinition, task, workflow
from taskfabric.engine import Engine, ExecutionResult
from taskfabric_shell import Shell


def outputs(engine: Engine, wf: WorkflowDefinition[Any, Any], result: ExecutionResult) -> Any:
    assert result.phase == "SUCCEEDED", result.error
    return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)


# -- tasks -----------------------------------------------------------------------------------


@task
def make_text(lines: int) -> File:
    out = File.new("text.txt")
    Path(out).write_text("".join(f"line {i}\n" for i in range(lines)))
    return out


@task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
def count_lines(src: File) -> int: ...


@task
def double(x: int) -> int:
    return 2 * x


@task(config=Shell(script="tr a-z A-Z < {inputs.src} > {outputs.o0}"))
def upper(src: File) -> File: ...


@task
def read_text(f: File) -> str:
    return f.read_text()


class Summary(NamedTuple):
    words: int
    mean: float
    empty: bool
    first: str


@task(
    config=Shell(
        script="""
        set -euo pipefail
        wc -w < {inputs.src} > {outputs.words}
        awk '{{ n += NF }} END {{ print n / NR }}' {inputs.src} > {outputs.mean}
        if [ -s {inputs.src} ]; then echo false; else echo true; fi > {outputs.empty}
        head -n 1 {inputs.src} > "$TF_OUTPUT_FIRST"
        """
    )
)
def summarize(src: File) -> Summary: ...


@task(
    config=Shell(
        script="""
        for i in $(seq 1 {inputs.n}); do echo "part $i" > {outputs.o0}/part-$i.txt; done
        cp {inputs.files} {outputs.o0}/
        echo "$GREETING, $TF_INPUT_LABEL" > {outputs.o1}
        """,
        env={"GREETING": "hello"},
    )
)
def fill(n: int, files: list[File], label: str) -> tuple[Directory, str]: ...


@task
def count_files(d: Directory) -> int:
    return len(d.files())


# -- workflows -------------------------------------------------------------------------------


@workflow
def mixed(lines: int) -> int:
    return double(x=count_lines(src=make_text(lines=lines)))


def test_python_and_shell_tasks_in_one_workflow(engine: Engine) -> None:
    result = engine.launch(mixed, {"lines": 7})
    assert outputs(engine, mixed, result) == 14
    nodes = {n.node_id: n for n in engine.metadata.nodes(result.execution_id)}
    assert all(n.phase == "SUCCEEDED" for n in nodes.values())
    # the shell task's own work folder keeps the rendered script and its logs
    [attempt_dir] = (engine.work_root / result.execution_id).glob("shell-count_lines-*")
    script = (attempt_dir / "script.sh").read_text()
    assert script.startswith("wc -l < /") and "{inputs" not in script
    assert (attempt_dir / "stdout.log").exists() and (attempt_dir / "stderr.log").exists()


def test_a_file_in_and_a_file_out(engine: Engine, tmp_path: Path) -> None:
    @workflow
    def shout(src: File) -> str:
        return read_text(f=upper(src=src))

    src = tmp_path / "in put.txt"  # a space in the name: the path is quoted
    src.write_text("quiet words\n")
    result = engine.launch(shout, {"src": File(src)})
    assert outputs(engine, shout, result) == "QUIET WORDS\n"


def test_a_file_output_is_stored_as_a_blob(engine: Engine, tmp_path: Path) -> None:
    @workflow
    def shout(src: File) -> File:
        return upper(src=src)

    src = tmp_path / "a.txt"
    src.write_text("abc\n")
    out = outputs(engine, shout, engine.launch(shout, {"src": File(src)}))
    assert isinstance(out, File) and out.uri is not None
    assert out.read_text() == "ABC\n"


def test_scalar_outputs_of_each_type(engine: Engine, tmp_path: Path) -> None:
    @workflow
    def stats(src: File) -> Summary:
        return summarize(src=src)

    src = tmp_path / "t.txt"
    src.write_text("one two\nthree four five six\n")
    assert outputs(engine, stats, engine.launch(stats, {"src": File(src)})) == Summary(
        words=6, mean=3.0, empty=False, first="one two"
    )


def test_directory_output_list_input_and_env(engine: Engine, tmp_path: Path) -> None:
    @workflow
    def wf(n: int, files: list[File], label: str) -> tuple[int, str]:
        folder, greeting = fill(n=n, files=files, label=label)
        return count_files(d=folder), greeting

    given = []
    for name in ("x 1.txt", "y.txt"):
        (tmp_path / name).write_text(name)
        given.append(File(tmp_path / name))
    result = engine.launch(wf, {"n": 3, "files": given, "label": "it's me"})
    assert outputs(engine, wf, result) == (5, "hello, it's me")


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


def test_a_failing_script_fails_the_node_with_its_stderr(engine: Engine) -> None:
    @task(
        config=Shell(
            script="""
            for i in $(seq 1 30); do echo "stderr line $i" >&2; done
            echo "not in the error"
            exit 3
            """
        )
    )
    def fails(x: int) -> int: ...

    @workflow
    def wf(x: int) -> int:
        return double(x=fails(x=x))

    result = engine.launch(wf, {"x": 1})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["node_id"] == "n0"
    assert result.error["code"] == "ShellScriptError"
    message = result.error["message"]
    assert "exited with code 3" in message
    assert "last 20 lines of stderr" in message
    assert "stderr line 30" in message and "stderr line 11" in message
    assert "stderr line 10\n" not in message
    assert "not in the error" not in message
    assert "stderr.log" in message  # where the whole output is
    nodes = {n.node_id: n for n in engine.metadata.nodes(result.execution_id)}
    assert "n1" not in nodes or nodes["n1"].phase != "SUCCEEDED"


def test_a_missing_output_file_is_a_clear_error(engine: Engine) -> None:
    @task(config=Shell(script="echo 'forgot to write' > /dev/null"))
    def forgets(x: int) -> File: ...

    @workflow
    def wf(x: int) -> File:
        return forgets(x=x)

    result = engine.launch(wf, {"x": 1})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "ShellOutputError"
    message = result.error["message"]
    assert "did not create output 'o0' (File)" in message
    assert "{outputs.o0}" in message and "$TF_OUTPUT_O0" in message


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


def test_a_timed_out_script_is_killed(engine: Engine, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    @task(timeout=1, config=Shell(script=f"sleep 60 & echo $! > {pid_file}; wait"))
    def slow() -> None: ...

    @workflow
    def wf() -> None:
        slow()

    result = engine.launch(wf, {})
    assert result.phase in ("FAILED", "TIMED_OUT")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the script's child process outlived the task's timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
