"""Long-running remote jobs: submitted, polled, fetched; cancelled on abort; never submitted
twice, even when the engine is killed (kill -9) and the execution resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from services_wf import export_rows

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.metadata import MetadataStore
from taskfabric_http.testing import QuotaServer

HERE = Path(__file__).resolve().parent
MakeEngine = Callable[[str], Engine]


def jobs_toml(url: str) -> str:
    return f"""
[backends.http.services.jobs]
base_url = "{url}"
idempotency_header = "Idempotency-Key"
"""


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_job_is_submitted_polled_and_fetched(make_engine: MakeEngine) -> None:
    with QuotaServer(job_seconds=0.5) as server:
        engine = make_engine(jobs_toml(server.url))
        result = engine.launch(export_rows, {"rows": [3, 1, 2]})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(export_rows, engine.store) == [3, 1, 2]
        (job,) = server.jobs.values()
        assert job.state == "succeeded"
        methods = [(m, p) for m, p, _ in server.stats.seen]
        assert methods[0] == ("POST", "/jobs")
        assert methods[-1] == ("GET", f"/jobs/{job.id}/result")
        assert methods.count(("GET", f"/jobs/{job.id}")) >= 2


def test_every_call_of_a_job_counts_against_the_pool_rate(make_engine: MakeEngine) -> None:
    """The grant pays for the submit; each status poll and the result fetch take a token of
    their own, so a job polled every 0.1 s through a pool of 4 per second is polled at the
    pool's rate, not at 10 per second."""
    with QuotaServer(job_seconds=3.0) as server:
        engine = make_engine(
            jobs_toml(server.url)
            + """pools = ["jobs-api"]

[pools.jobs-api]
slots = 2
rate = 4
burst = 1
"""
        )
        result = engine.launch(export_rows, {"rows": [7]})
        assert result.phase == "SUCCEEDED", result.error
        stats = server.stats
        polls = [p for m, p, _ in stats.seen if m == "GET" and not p.endswith("/result")]
        busiest = stats.max_started_within(1.0)
        print(f"\n{len(stats.seen)} calls, {len(polls)} polls, at most {busiest} in one second")
        # rate 4 + burst 1; the token bucket is exact here (one process, one clock), and a
        # call leaves a little after its tokens were taken
        assert busiest <= 6, busiest
        assert len(polls) >= 8  # it kept polling at the pool's pace for the 3 s the job ran


def test_abort_cancels_the_remote_job(make_engine: MakeEngine) -> None:
    with QuotaServer(job_seconds=60) as server:
        engine = make_engine(jobs_toml(server.url))
        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.append(engine.launch(export_rows, {"rows": [1]}))
        )
        thread.start()
        wait_for(lambda: len(server.jobs) == 1)
        (execution,) = engine.metadata.list_executions()
        engine.request_cancel(execution.id)
        thread.join(30)
        engine.close()  # the backend lets the cancel request go out before it closes
        (job,) = server.jobs.values()
        assert job.state == "cancelled"
        assert ("DELETE", f"/jobs/{job.id}") in [(m, p) for m, p, _ in server.stats.seen]
        assert getattr(results[0], "phase", None) == "ABORTED"


def test_abort_while_the_submit_is_retried_still_cancels_the_job(make_engine: MakeEngine) -> None:
    # The service makes the job but answers after 5 s; the client gives up after 0.5 s and
    # waits 30 s before sending again. Aborted in that wait, the attempt never heard the job's
    # id: it sends the submit again with the same key to learn it, then cancels the job.
    with QuotaServer(job_seconds=60, submit_delay=5) as server:
        toml = jobs_toml(server.url) + "timeout = 0.5\nbackoff = 30\nretries = 2\n"
        engine = make_engine(toml)
        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.append(engine.launch(export_rows, {"rows": [1]}))
        )
        thread.start()
        wait_for(lambda: len(server.jobs) == 1)
        time.sleep(1.0)  # the first submit has timed out: the attempt waits to retry
        (execution,) = engine.metadata.list_executions()
        engine.request_cancel(execution.id)
        thread.join(30)
        engine.close()
        assert getattr(results[0], "phase", None) == "ABORTED"
        (job,) = server.jobs.values()  # one job: the second submit was a replay
        assert job.state == "cancelled"
        posts = [h for m, p, h in server.stats.seen if (m, p) == ("POST", "/jobs")]
        assert len(posts) == 2 and posts[0]["idempotency-key"] == posts[1]["idempotency-key"]
        assert ("DELETE", f"/jobs/{job.id}") in [(m, p) for m, p, _ in server.stats.seen]


def _taskfabric(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    exe = shutil.which("taskfabric", path=str(Path(sys.executable).parent))
    assert exe is not None
    return subprocess.Popen(
        [exe, *args],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_and_resume(
    config_path: Path, server: QuotaServer, kill_when: Callable[[], bool]
) -> tuple[str, str]:
    """Run export_rows with `taskfabric run`, kill -9 the engine when `kill_when()`, resume
    it with `taskfabric executions resume`; (execution id, the resume's output)."""
    env = {**os.environ, "TASKFABRIC_CONFIG": str(config_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    proc = _taskfabric("run", "services_wf.py:export_rows", "--rows", "[4, 5]", env=env)
    try:
        wait_for(kill_when)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    config = load_config(config_path)
    store = MetadataStore(config.metadata_url)
    try:
        (execution,) = store.list_executions()
    finally:
        store.close()
    resumed = _taskfabric("executions", "resume", execution.id, env=env)
    out, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out
    return execution.id, out


def test_crash_between_submit_and_record_creates_no_second_job(
    write_config: Callable[[str], Path],
) -> None:
    # The service creates the job, then takes 1.5 s to answer: the engine is killed in
    # between, so the job id was never recorded; the resumed attempt sends the same key.
    with QuotaServer(job_seconds=0.3, submit_delay=1.5) as server:
        config_path = write_config(jobs_toml(server.url))
        _, out = _kill_and_resume(config_path, server, lambda: len(server.jobs) == 1)
        assert "[4, 5]" in out
        assert len(server.jobs) == 1
        posts = [h for m, p, h in server.stats.seen if (m, p) == ("POST", "/jobs")]
        assert len(posts) == 2  # sent again after the crash ...
        assert posts[0]["idempotency-key"] == posts[1]["idempotency-key"]  # ... with its key


def test_engine_killed_while_polling_resumes_the_same_job(
    write_config: Callable[[str], Path],
) -> None:
    with QuotaServer(job_seconds=2.0) as server:
        config_path = write_config(jobs_toml(server.url))

        def polled() -> bool:
            return any(m == "GET" for m, _, _ in server.stats.seen)

        _, out = _kill_and_resume(config_path, server, polled)
        assert "[4, 5]" in out
        assert len(server.jobs) == 1
        posts = [p for m, p, _ in server.stats.seen if (m, p) == ("POST", "/jobs")]
        assert len(posts) == 1  # the job id was recorded: the resumed attempt only polls it
