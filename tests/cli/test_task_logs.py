"""Task logs: each attempt's stdout and stderr kept in the blob store, linked from
`executions show`, printed and followed by `executions logs`, on the in-process `local`
backend (a capture of the task's own thread) and on the `subprocess` backend (its file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli
from taskfabric.storage import LocalBlobStore
from taskfabric.tasklogs import bounded_tail, keep_log, log_uri

FLOW = """
import os
import sys
from pathlib import Path

from taskfabric import map_task, task, workflow


@task(retries=1)
def flaky(n: int) -> list[int]:
    marker = Path(os.environ["FLAKY_MARKER"])
    first = not marker.exists()
    marker.touch()
    print(f"try {'1' if first else '2'} making {n} numbers")
    print("a warning on stderr", file=sys.stderr)
    if first:
        raise RuntimeError("first try fails")
    return list(range(n))


@task
def square(x: int) -> int:
    print(f"square of {x}")
    return x * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def wf(n: int = 4) -> int:
    return total(xs=map_task(square)(x=flaky(n=n)))


@task
def slow() -> int:
    print("started", flush=True)
    gate = Path(os.environ["GATE"])
    while not gate.exists():
        import time
        time.sleep(0.05)
    print("finished")
    return 1


@workflow
def gated() -> int:
    return slow()


@task
def runs_children() -> int:
    import subprocess
    child = [sys.executable, "-c", "import sys; print('inherited from a child'); "
             "print('and its stderr', file=sys.stderr)"]
    subprocess.run(child, check=True)
    captured = subprocess.run(
        [sys.executable, "-c", "print('captured from a child')"],
        capture_output=True, text=True, check=True,
    )
    print(captured.stdout, end="")
    return 1


@workflow
def children() -> int:
    return runs_children()
"""


def sections(out: str) -> dict[str, str]:
    """The logs `executions logs <execution>` printed, by their "==> title <==" lines."""
    found: dict[str, str] = {}
    title = None
    for line in out.splitlines(keepends=True):
        if line.startswith("==> ") and line.rstrip("\n").endswith(" <=="):
            title = line[4:].rstrip("\n")[:-4]
            found[title] = ""
        else:
            assert title is not None, f"output before the first title: {line!r}"
            found[title] += line
    return found


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    path = tmp_path / f"logflow_{request.node.callspec.id}.py"  # one module name per test
    path.write_text(textwrap.dedent(FLOW))
    monkeypatch.setenv("FLAKY_MARKER", str(tmp_path / "flaky.marker"))
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as under tox: not passed on
    monkeypatch.chdir(tmp_path)
    return path


def _run(flow: Path, *config: str) -> str:
    code, out, err = invoke(*config, "run", "-o", "json", f"{flow}:wf")
    assert code == 0, err
    doc = json.loads(out)  # stdout is the document only: the tasks' prints are elsewhere
    assert doc["outputs"] == {"o0": 14}
    return str(doc["execution_id"])


@pytest.mark.parametrize("backend", ["local", "subprocess"])
def test_each_attempt_keeps_its_output(flow: Path, tmp_path: Path, backend: str) -> None:
    config = []
    if backend == "subprocess":
        cfg = tmp_path / "taskfabric.toml"
        cfg.write_text('[task_types]\npython = "subprocess"\n')
        config = ["--config", str(cfg)]
    execution = _run(flow, *config)
    code, out, _ = invoke(*config, "executions", "logs", execution, "n0", "--attempt", "1")
    assert code == 0
    assert "try 1 making 4 numbers" in out and "a warning on stderr" in out
    assert "try 2" not in out
    code, out, _ = invoke(*config, "executions", "logs", execution, "flaky")  # the latest
    assert code == 0 and "try 2 making 4 numbers" in out and "try 1" not in out
    for i in range(4):  # map items ran side by side; each log holds its own prints only
        code, out, _ = invoke(*config, "executions", "logs", execution, f"n1[{i}]")
        assert out == f"square of {i}\n"
    code, out, _ = invoke(*config, "executions", "logs", execution)
    logs = sections(out)
    # stdout and stderr share the attempt's log in the order the task wrote them: process
    # backends run Python unbuffered (the `flow` fixture unsets PYTHONUNBUFFERED here)
    flaky = logs["n0 (flaky) attempt 2 SUCCEEDED"].splitlines()
    assert flaky == ["try 2 making 4 numbers", "a warning on stderr"]
    assert logs["n1[3] (map_square[3]) attempt 1 SUCCEEDED"] == "square of 3\n"
    assert not [title for title in logs if title.startswith("n2")]  # total printed nothing
    code, out, _ = invoke(*config, "executions", "show", execution)
    assert "/logs/n0/2.log" in out and "n0 #2 log: file://" in out
    code, _, err = invoke(*config, "executions", "logs", execution, "n0", "--attempt", "3")
    assert code == 2 and "has no attempt 3; it has 1, 2" in err


def test_a_log_keeps_its_tail_within_bounds(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    path = tmp_path / "output.log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    uri = keep_log(store, "e1", "n1[2]", 3, path, max_bytes=100)
    assert uri == log_uri(store, "e1", "n1[2]", 3)
    kept = store.get_bytes(uri).decode()
    first, rest = kept.split("\n", 1)
    assert first.startswith("[taskfabric: the first ") and "the last 100 are kept]" in first
    assert len(rest) == 100 and rest.endswith("line 999\n")
    assert bounded_tail(b"short") == b"short"
    assert keep_log(store, "e1", "n0", 1, tmp_path / "missing.log") is None


def test_logs_follow_a_running_attempt(tmp_path: Path) -> None:
    path = tmp_path / "logflow.py"
    path.write_text(textwrap.dedent(FLOW))
    gate = tmp_path / "gate"
    env = {**os.environ, "GATE": str(gate), "TASKFABRIC_DATA_ROOT": str(tmp_path / "data")}
    tf = [sys.executable, "-m", "taskfabric.cli"]
    run = subprocess.Popen(
        [*tf, "run", "-o", "json", f"{path}:gated"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        live = list((tmp_path / "data").glob("work/*/n0/1/output.log"))
        deadline = time.monotonic() + 120  # a hang guard, not a margin
        while not (live and "started" in live[0].read_text()):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
            live = list((tmp_path / "data").glob("work/*/n0/1/output.log"))
        execution = live[0].parents[2].name
        follower = subprocess.Popen(
            [*tf, "executions", "logs", execution, "slow", "--follow"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        assert follower.stdout.readline() == "started\n"  # printed while the task runs
        gate.touch()
        rest, _ = follower.communicate(timeout=120)
        assert rest == "finished\n" and follower.returncode == 0
        out, _ = run.communicate(timeout=120)
        assert json.loads(out)["outputs"] == {"o0": 1}
    finally:
        gate.touch()
        run.kill()


def test_a_task_that_redirects_stdout_keeps_its_prints_while_another_task_starts(
    tmp_path: Path,
) -> None:
    """A task on the local backend that uses contextlib.redirect_stdout (as pyspark's example
    programs are run) gets its prints where it redirected them, even when another attempt
    starts its capture meanwhile (that start once wrapped the redirect target and sent the
    prints to the first task's log)."""
    import contextlib
    import io
    import threading

    from taskfabric.tasklogs import capture_output

    redirected, b_started, a_done = threading.Event(), threading.Event(), threading.Event()
    printed = io.StringIO()

    def task_a() -> None:
        with capture_output(tmp_path / "a.log", echo=False), contextlib.redirect_stdout(printed):
            redirected.set()
            assert b_started.wait(60)
            print("from a")
        a_done.set()

    def task_b() -> None:
        assert redirected.wait(60)
        with capture_output(tmp_path / "b.log", echo=False):
            b_started.set()
            assert a_done.wait(60)
            print("from b")

    threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert printed.getvalue() == "from a\n"
    assert not (tmp_path / "a.log").exists()
    assert (tmp_path / "b.log").read_text() == "from b\n"


@pytest.mark.parametrize("backend", ["local", "subprocess"])
def test_what_child_processes_print_is_kept_as_the_docs_say(
    flow: Path, tmp_path: Path, backend: str
) -> None:
    """docs/quickstart.md#task-logs: a process backend keeps what a child process writes to
    the output it inherits; on `local` a child's captured output that the task prints is
    kept, and an inherited one goes to the engine's own output."""
    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text(f'[task_types]\npython = "{backend}"\n')
    env = {**os.environ, "TASKFABRIC_DATA_ROOT": str(tmp_path / "data")}
    env.pop("PYTHONUNBUFFERED", None)
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(cfg)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*base, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    done = run("run", "-o", "json", f"{flow}:children")
    execution = json.loads(done.stdout)["execution_id"]  # stdout: the document alone
    log = run("executions", "logs", execution, "n0").stdout
    assert "captured from a child" in log
    if backend == "subprocess":
        assert "inherited from a child" in log and "and its stderr" in log
    else:
        assert "inherited from a child" not in log
        assert "inherited from a child" in done.stderr  # -o json: fd 1 went to stderr
