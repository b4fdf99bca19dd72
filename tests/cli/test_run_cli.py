"""`taskfabric run` as a newcomer meets it: config errors, --help, option order, a clean
stdout under -o json, load errors that say where, piped output, progress and its summary;
`executions list` and `show` durations."""

from __future__ import annotations

import importlib.abc
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from taskfabric.cli import cli
from taskfabric.cli._common import out
from taskfabric.cli._progress import RunProgress
from taskfabric.cli._show import print_nodes, waited_and_ran
from taskfabric.config import load_config
from taskfabric.engine import NodeEvent
from taskfabric.metadata import ExecutionRecord, MetadataStore

FLOW = '''
import sys

from taskfabric import map_task, task, workflow


@task
def numbers(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def sum_of_squares(n: int = 10) -> int:
    """Squares, summed."""
    return total(xs=map_task(square)(x=numbers(n=n)))


@task
def greet(name: str) -> str:
    return "hello " + name


@workflow
def greeting(name: str) -> str:
    return greet(name=name)


@task
def long_text(n: int) -> str:
    return "x" * n + "END"


@workflow
def long(n: int = 500) -> str:
    return long_text(n=n)
'''


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    name = "runflow_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(FLOW))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage\nx = 1\n", ":1: invalid TOML"),
        ("[engine]\nparallelism = [\n", ":2: invalid TOML"),  # open at the end of the file
        ("[storage]\nbogus = 1\n", ":2: storage.bogus: unknown key"),
        ("[engine]\nparallelism = 'many'\n", ":2: engine.parallelism"),
        ("[backends.mine]\nworkers = 2\n", ":1: backends.mine.driver: required key is missing"),
    ],
)
def test_a_bad_config_file_is_a_config_error(
    flow: Path, tmp_path: Path, text: str, message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, _, err = invoke("--config", str(cfg), "run", f"{flow}:sum_of_squares")
    assert code == 2, err
    assert err.startswith(f"config error: bad.toml{message}"), err  # relative to the cwd
    assert "Traceback" not in err


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_run_help_lists_runs_own_options(flag: str) -> None:
    code, out_text, _ = invoke("run", flag)
    assert code == 0
    for option in ("--name", "--project", "--domain", "-o, --output", "--overwrite-cache"):
        assert option in out_text
    assert "FILE.py:WORKFLOW" in out_text
    code, _, err = invoke("run")
    assert code == 2 and "missing FILE.py:WORKFLOW" in err


def test_workflow_help_lists_inputs_and_run_options_apart(flow: Path) -> None:
    code, text, _ = invoke("run", f"{flow}:sum_of_squares", "-h")
    assert code == 0
    inputs, options = text.split("Inputs:")[1].split("Run options:")
    assert "--n INT" in inputs and "(default: 10)" in inputs and "--name" not in inputs
    assert "--name TEXT" in options and "--overwrite-cache" in options
    assert "Squares, summed." in text


def test_run_options_after_the_workflow_reference(flow: Path) -> None:
    code, text, err = invoke(
        "run", f"{flow}:sum_of_squares", "--n", "3", "--name", "after-ref", "-o", "json"
    )
    assert code == 0, err
    doc = json.loads(text)
    assert doc["outputs"] == {"o0": 5}
    code, text, _ = invoke("executions", "show", "after-ref", "-o", "json")
    assert json.loads(text)["execution"]["name"] == "after-ref"


def test_an_input_named_like_a_run_option_stays_the_input(flow: Path) -> None:
    code, text, err = invoke("run", "--name", "first", f"{flow}:greeting", "--name", "bob")
    assert code == 0, err
    assert text == 'o0 = "hello bob"\n'
    code, text, _ = invoke("executions", "show", "first", "-o", "json")
    assert json.loads(text)["execution"]["name"] == "first"
    code, text, _ = invoke("run", f"{flow}:greeting", "-h")
    assert "--name STR" in text.split("Inputs:")[1].split("Run options:")[0]
    # where run's own --name went is said, not just left out of the Run options
    assert "inputs named --name: after FILE.py:WORKFLOW they are the inputs; run's own " in (
        " ".join(text.split())
    )
    code, text, _ = invoke("run", f"{flow}:sum_of_squares", "-h")
    assert "inputs named" not in text


def test_json_output_is_alone_on_stdout_even_from_a_process(flow: Path, tmp_path: Path) -> None:
    # A real process: what the task prints goes through file descriptor 1 too.
    env = {**os.environ, "TASKFABRIC_DATA_ROOT": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "run", f"{flow}:sum_of_squares", "--n", "4"]
        + ["-o", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"o0": 14}
    assert "making 4 numbers" in done.stderr


def test_an_error_while_importing_a_helper_says_where(tmp_path: Path) -> None:
    (tmp_path / "helper_settings.py").write_text('import os\n\nX = os.environ["SETTING_X"]\n')
    wf = tmp_path / "needs_settings.py"
    wf.write_text("from taskfabric import workflow\nimport helper_settings\n")
    code, _, err = invoke("run", f"{wf}:wf")
    assert code == 2
    assert f'File "{tmp_path / "helper_settings.py"}", line 3, in <module>' in err
    assert f'File "{wf}", line 2, in <module>' in err
    assert "KeyError: 'SETTING_X'" in err
    assert "importlib" not in err and "_loader.py" not in err


class _Missing(importlib.abc.MetaPathFinder):
    """Makes one module missing, as if its distribution were not installed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return


@pytest.mark.parametrize(
    ("module", "hint"),
    [
        ("taskfabric_spark", "`pip install taskfabric-spark` provides it"),
        ("taskfabric_no_such_plugin", None),  # no hint naming a distribution that does not exist
    ],
)
def test_a_missing_plugin_module_is_named_with_a_hint_only_when_it_exists(
    tmp_path: Path, module: str, hint: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module is missing even where a developer has the plugin installed.
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Missing(module), *sys.meta_path])
    wf = tmp_path / f"needs_{module}.py"
    wf.write_text(f"from taskfabric import workflow\nimport {module}\n")
    code, _, err = invoke("run", f"{wf}:wf")
    assert code == 2
    assert f"No module named '{module}'" in err and f'File "{wf}", line 2' in err
    if hint is None:
        assert "pip install" not in err, err
    else:
        assert hint in " ".join(err.split()), err


def test_a_syntax_error_shows_the_line(tmp_path: Path) -> None:
    wf = tmp_path / "broken_syntax.py"
    wf.write_text("from taskfabric import task\n\n\ndef f():\n    return 1 +\n")
    code, _, err = invoke("run", f"{wf}:wf")
    assert code == 2
    assert f'File "{wf}", line 5' in err and "    return 1 +" in err
    assert "SyntaxError: invalid syntax" in err


BODY_ERRORS = """
import os

from taskfabric import task, workflow


@task
def inc(x: int) -> int:
    return x + 1


@workflow
def reads_a_setting() -> int:
    return inc(x=int(os.environ["TF_TEST_UNSET_SETTING"]))


@workflow
def loops_over_an_input(n: int = 3) -> int:
    for i in range(n):
        inc(x=i)
    return inc(x=n)


@workflow
def adds_to_an_output(n: int = 3) -> int:
    return inc(x=n) + 1
"""


@pytest.mark.parametrize(
    ("workflow", "line", "error"),
    [
        ("reads_a_setting", 14, "KeyError: 'TF_TEST_UNSET_SETTING'"),
        (
            "loops_over_an_input",
            19,
            "TypeError: workflow input 'n' has no value while the workflow is being compiled, "
            "so it cannot be used as an index or a count",
        ),
        (
            "adds_to_an_output",
            26,
            "TypeError: unsupported operand type(s) for +: 'Promise' and 'int' (a workflow "
            "input or a task's output is a Promise while the workflow is compiled: it has no "
            "value yet. Compute with it inside a @task that takes it as an input.)",
        ),
    ],
)
def test_an_error_in_a_workflows_body_says_where(
    tmp_path: Path, workflow: str, line: int, error: str
) -> None:
    wf = tmp_path / f"body_errors_{workflow}.py"  # one module name per test
    wf.write_text(BODY_ERRORS)
    code, text, err = invoke("run", f"{wf}:{workflow}")
    assert code == 2 and text == ""
    assert err.startswith(f"error: workflow '{workflow}' cannot be compiled: its body raised\n")
    assert f'File "{wf}", line {line}, in {workflow}' in err, err
    assert error in " ".join(err.split()), err
    assert "taskfabric/sdk" not in err and "taskfabric/cli" not in err  # the user's frames only


def test_running_a_task_says_to_call_it_from_a_workflow(flow: Path) -> None:
    code, _, err = invoke("run", f"{flow}:square")
    assert code == 2
    assert "is a @task; `taskfabric run` runs a @workflow" in " ".join(err.split()), err
    assert "return square(...)" in err


def test_piped_output_is_whole_and_progress_is_one_line_per_node(flow: Path) -> None:
    code, text, err = invoke("run", f"{flow}:long", "--n", "500")
    assert code == 0, err
    assert text == 'o0 = "' + "x" * 500 + 'END"\n'  # not cut, not wrapped
    code, _, err = invoke("run", f"{flow}:sum_of_squares", "--n", "2")
    lines = err.splitlines()
    for node in ("n0 numbers", "n1 map_square", "n1[0] map_square[0]", "n2 total"):
        (start,) = [i for i, line in enumerate(lines) if line.endswith(f"] start {node}")]
        (end,) = [i for i, line in enumerate(lines) if f"] end   {node} succeeded " in line]
        assert start < end, err
    assert "succeeded in " in err and "5 nodes, 5 succeeded; 0 cache hits" in err


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _event(node: str, phase: str, message: str = "", cache: str = "", kind: str = "task") -> Any:
    return NodeEvent("e1", node, f"task_{node}", kind, phase, 1, message, cache)


def test_a_terminal_keeps_a_summary_at_the_end() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    clock = _Clock()
    progress = RunProgress(console, "wf", clock=clock)
    with progress:
        progress(_event("n0", "SUCCEEDED", cache="hit"))
        progress(_event("n1", "QUEUED", "waiting for pool 'gpu' (1st of 1)"))
        clock.now += 2.0
        progress(_event("n1", "RUNNING"))
        clock.now += 3.0
        progress(_event("n1", "SUCCEEDED"))
        progress(_event("n2", "RUNNING"))
        clock.now += 0.5
        progress(_event("n2", "FAILED", "boom"))
        progress.finish("FAILED")
    text = screen.getvalue()
    tail = text[text.rindex("failed in") :]
    assert tail.startswith("failed in 5.5s: 3 nodes, 2 succeeded, 1 failed; 1 cache hit;")
    assert "1 cache hit;" in tail
    assert "1 waited for pools (2.0s in all)" in tail
    assert "slowest: task_n1 (n1) 3.0s, task_n2 (n2) 500ms" in tail


def test_list_shows_how_long_a_running_execution_has_run(tmp_path: Path) -> None:
    config = load_config()
    store = MetadataStore(config.metadata_url)
    now = time.time()
    store.create_execution(
        ExecutionRecord(
            id="abc123",
            project="p",
            domain="d",
            name="long-one",
            workflow_name="wf.slow",
            phase="RUNNING",
            created_at=now - 100,
            started_at=now - 100,
            heartbeat_at=now - 100 + 0.048,  # its last heartbeat says nothing of its length
        )
    )
    store.close()
    code, text, _ = invoke("executions", "list")
    assert code == 0
    row = next(line for line in text.splitlines() if "abc123" in line)
    assert "1m4" in row and "48ms" not in row


def test_a_map_item_shows_waiting_and_running_apart() -> None:
    item = SimpleNamespace(
        node_id="n1[3]",
        name="map_square[3]",
        kind="map_item",
        phase="SUCCEEDED",
        attempts=1,
        cache_status="",
        started_at=10.0,
        finished_at=13.0,
        error=None,
        message="",
        parent_id="n1",
    )
    attempt = SimpleNamespace(
        attempt=1, phase="SUCCEEDED", error=None, started_at=12.5, log_links=[]
    )
    assert waited_and_ran(item, [attempt]) == (2.5, 0.5)
    running = SimpleNamespace(**{**vars(item), "phase": "RUNNING", "finished_at": None})
    assert waited_and_ran(running, [attempt], now=20.0) == (2.5, 7.5)
    with out.capture() as captured:
        print_nodes(
            [item],
            attempts_of=lambda n: [attempt],
            values_of=lambda n: "",
            show_all=True,
            no_values=True,
        )
    header, row = captured.get().strip().splitlines()[:2]
    assert "WAITED" in header and "DURATION" in header
    assert "2.5s" in row and "500ms" in row


def test_resume_after_lines_are_added_above_the_workflow(tmp_path: Path) -> None:
    """Resume compares the workflow's structure (nodes, bindings, types), not line numbers:
    adding lines above it does not refuse a resume; a changed DAG does."""
    source = textwrap.dedent(
        """
        import os

        from taskfabric import task, workflow


        @task
        def first(x: int) -> int:
            return x + 1


        @task
        def second(x: int) -> int:
            if not os.environ.get("LET_IT_PASS"):
                raise RuntimeError("not yet")
            return x * 2


        @workflow
        def wf(x: int = 1) -> int:
            return second(x=first(x=x))
        """
    )
    wf = tmp_path / "resumable.py"
    wf.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "LET_IT_PASS"}
    env["TASKFABRIC_DATA_ROOT"] = str(tmp_path / "data")

    def tf(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskfabric.cli", *args],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    failed = tf("run", "-o", "json", f"{wf}:wf")
    assert failed.returncode == 1, failed.stderr
    execution = json.loads(failed.stdout)["execution_id"]
    wf.write_text("# a comment\n\n\nimport sys  # and a new import\n" + source)
    resumed = tf("executions", "resume", execution, LET_IT_PASS="1")
    assert resumed.returncode == 0, resumed.stderr
    # a second call in the workflow is another DAG: refused
    again = tf("run", "-o", "json", f"{wf}:wf")
    execution = json.loads(again.stdout)["execution_id"]
    wf.write_text(source.replace("second(x=first(x=x))", "second(x=first(x=first(x=x)))"))
    refused = tf("executions", "resume", execution, LET_IT_PASS="1")
    assert refused.returncode == 2
    assert "its DAG differs" in refused.stderr
