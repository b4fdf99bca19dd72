"""`taskfabric.hold()`: pool slots around a block of a task's own code, taken by the attempt's
engine, in the engine's threads and in task processes of their own (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import taskfabric
from taskfabric import HoldError, HoldTimeout, map_task, task, workflow
from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.pools import PoolManager

LOCK = threading.Lock()
STATE = {"now": 0, "max": 0}


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@task
def guarded(i: int, log: str) -> int:
    """Holds a slot of `api` around its 'call'; logs when it surely held it."""
    with taskfabric.hold("api", timeout=60) as lease:
        start = time.time()
        with LOCK:
            STATE["now"] += 1
            STATE["max"] = max(STATE["max"], STATE["now"])
        time.sleep(0.3)
        assert lease.take_tokens() == 0.0  # no rate on `api`
        with LOCK:
            STATE["now"] -= 1
        end = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps([os.getpid(), start, end]) + "\n")
    return i


@workflow
def fan(n: int, log: str) -> list[int]:
    return map_task(guarded)(i=upto(n=n), log=log)


@task
def hold_and_wait(flag: str) -> int:
    with taskfabric.hold("api"):
        Path(flag).write_text(str(os.getpid()))
        time.sleep(120)
    return 0


@workflow
def holder_wf(flag: str) -> int:
    return hold_and_wait(flag=flag)


@task
def asks_too_much() -> str:
    try:
        with taskfabric.hold("api", weight=5):
            return "granted"
    except HoldError as exc:
        return f"HoldError: {exc}"


@task
def waits_in_vain() -> str:
    with taskfabric.hold("api", weight=2):
        try:
            with taskfabric.hold("api", timeout=0.3):
                return "granted"
        except HoldTimeout as exc:
            return f"HoldTimeout: {exc}"


@workflow
def refusals() -> tuple[str, str]:
    return asks_too_much(), waits_in_vain()


def _engine(tmp_path: Path, backend: str, ttl: float = 30.0, db_url: str = "") -> Engine:
    config = tmp_path / "taskfabric.toml"
    task_types = '[task_types]\npython = "subprocess"\n' if backend == "subprocess" else ""
    metadata = f'[metadata]\nurl = "{db_url}"\n' if db_url else ""
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n{metadata}'
        f"[engine]\nparallelism = 6\n{task_types}"
        f"[pools.api]\nslots = 2\nlease_ttl = {ttl}\n"
    )
    return Engine(load_config(config))


def _most_at_once(log: Path) -> int:
    events = []
    for line in log.read_text().splitlines():
        _, start, end = json.loads(line)
        events += [(start, 1), (end, -1)]
    held = most = 0
    for _, change in sorted(events):
        held += change
        most = max(most, held)
    return most


@pytest.mark.parametrize("backend", ["local", "subprocess", "subprocess-postgres"])
def test_hold_bounds_blocks_of_task_code(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    STATE.update(now=0, max=0)
    log = tmp_path / "held.jsonl"
    db_url = ""
    if backend.endswith("-postgres"):
        backend = backend.removesuffix("-postgres")
        db_url = request.getfixturevalue("postgres_schema")("holds")
    with _engine(tmp_path, backend, db_url=db_url) as engine:
        result = engine.launch(fan, {"n": 8, "log": str(log)})
        assert result.phase == "SUCCEEDED", result.error
        outputs = result.python_outputs(fan, engine.store, engine.work_root)
        assert sorted(outputs) == list(range(8))
        assert engine.pool_manager.status()[0].in_use == 0  # every hold came back
    pids = {json.loads(line)[0] for line in log.read_text().splitlines()}
    if backend == "local":
        assert pids == {os.getpid()} and STATE["max"] == 2
    else:
        assert os.getpid() not in pids and len(pids) == 8  # one process per attempt
    # never more than the pool's 2 slots (and, with 8 blocks of 0.3 s on 6 workers, 2 at once
    # unless the machine runs the task processes one by one)
    assert 1 <= _most_at_once(log) <= 2


@pytest.mark.parametrize("backend", ["local", "subprocess"])
def test_hold_refuses_what_can_never_be_granted_and_times_out(tmp_path: Path, backend: str) -> None:
    with _engine(tmp_path, backend) as engine:
        result = engine.launch(refusals, {})
        assert result.phase == "SUCCEEDED", result.error
        too_much, timed_out = result.python_outputs(refusals, engine.store, engine.work_root)
    assert too_much.startswith("HoldError: ") and "asks for 5 slots but at most 2" in too_much
    assert "taskfabric.hold() in task node" in too_much
    assert timed_out.startswith("HoldTimeout: ") and "not granted within 0.3s" in timed_out
    assert "api (position 1)" in timed_out


def test_hold_outside_a_task_says_what_to_do() -> None:
    with pytest.raises(HoldError, match="only inside a running task"), taskfabric.hold("api"):
        pass


def test_a_channel_out_of_reach_says_why_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that runs away from the engine's host (a batch job) has the channel's variables
    but cannot see its socket: a HoldError that says so, not a bare socket error."""
    monkeypatch.setenv("TASKFABRIC_POOLS_SOCKET", str(tmp_path / "engine-host-only.sock"))
    monkeypatch.setenv("TASKFABRIC_POOLS_TOKEN", "secret")
    with pytest.raises(HoldError) as info, taskfabric.hold("api"):
        pass
    message = str(info.value)
    assert "engine-host-only.sock" in message and "away from the engine's host" in message
    assert "Backend.pool_requests" in message and "[engine] hold_listen" in message


def test_a_killed_task_process_leaks_no_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "holding.pid"
    # a TTL far beyond the test: only the closed channel can give the slot back
    engine = _engine(tmp_path, "subprocess", ttl=600)
    # A slow release: the closed connection's release is still in flight when the attempt
    # ends, and the slot must be back once the run has ended all the same.
    slow = PoolManager.release

    def release(self: PoolManager, *args: Any, **kwargs: Any) -> Any:
        if self.owner.endswith("/holds"):  # the manager that serves the holds
            time.sleep(0.5)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(PoolManager, "release", release)
    outcome: dict[str, object] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(result=engine.launch(holder_wf, {"flag": str(flag)}))
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() or not flag.read_text():
            assert runner.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.02)
        pid = int(flag.read_text())
        (api,) = engine.pool_manager.status()
        assert api.in_use == 1 and api.holders[0].holder.node_id.endswith("~hold1")
        assert api.holders[0].owner.endswith("/holds")
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=60)
        result = outcome["result"]
        assert getattr(result, "phase", None) == "FAILED"
        assert "was killed by SIGKILL" in str(getattr(result, "error", ""))
        assert engine.pool_manager.status()[0].in_use == 0
    finally:
        runner.join(timeout=60)
        engine.close()


@task(timeout=timedelta(seconds=1))
def holds_past_its_timeout() -> int:
    with taskfabric.hold("api"):
        time.sleep(20)  # a worker thread cannot be stopped: it runs on after the timeout
    return 0


@workflow
def overrun() -> int:
    return holds_past_its_timeout()


def test_the_attempts_end_releases_what_its_code_holds(tmp_path: Path) -> None:
    with _engine(tmp_path, "local") as engine:
        result = engine.launch(overrun, {})
        assert result.phase == "FAILED" and "longer than its timeout" in str(result.error)
        # the thread still sleeps inside its block, but the attempt is over: its slot is back
        assert engine.pool_manager.status()[0].in_use == 0


def test_the_channel_refuses_a_wrong_secret(tmp_path: Path) -> None:
    with _engine(tmp_path, "subprocess") as engine:
        assert engine.launch(refusals, {}).phase == "SUCCEEDED"
        path = engine.pools.holds._serve()  # type: ignore[union-attr]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(b'{"op": "hold", "token": "guessed", "pools": {"api": 1}}\n')
            answer = json.loads(sock.makefile().readline())
        assert answer["ok"] is False and answer["kind"] == "refused"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert engine.pool_manager.status()[0].in_use == 0


def test_two_engines_of_one_process_have_channels_of_their_own(tmp_path: Path) -> None:
    # the local backend is enough: every engine with pools opens its channel on the first
    # attempt, whatever runs it (and task processes cost seconds each)
    with _engine(tmp_path, "local") as first, _engine(tmp_path, "local") as second:
        assert first.work_root == second.work_root
        left_behind = first.work_root / "pools" / "999999999-dead.sock"
        left_behind.parent.mkdir(parents=True, exist_ok=True)
        left_behind.write_text("")  # an engine killed with -9 left its socket behind
        for engine in (first, second):
            result = engine.launch(fan, {"n": 2, "log": str(tmp_path / "log")})
            assert result.phase == "SUCCEEDED", result.error
        paths = [engine.pools.holds._serve() for engine in (first, second)]  # type: ignore[union-attr]
        assert paths[0] != paths[1] and all(p.exists() for p in paths)
        if len(str(left_behind)) < 90:  # else the sockets went to a short folder of /tmp
            assert all(p.parent == left_behind.parent for p in paths)
            assert not left_behind.exists()


@task
def overlong_line() -> str:
    """A task's code holds a slot through the channel, then sends a request line longer than
    the channel reads (64 KiB) with no end: the engine answers and drops it, rather than
    buffering whatever a tenant sends in the engine process every project's tasks share."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["TASKFABRIC_POOLS_SOCKET"])
    sock.settimeout(20)  # only a failing engine makes it wait: it answers at once
    reader = sock.makefile("rb")
    secret = os.environ["TASKFABRIC_POOLS_TOKEN"]
    request = {"op": "hold", "token": secret, "pools": {"api": 1}}
    sock.sendall(json.dumps(request).encode() + b"\n")
    granted = json.loads(reader.readline())
    sock.sendall(b"x" * (65 * 1024))  # fits the socket's buffers; no end of line
    try:
        answer = reader.readline()
    except TimeoutError:
        return json.dumps([granted, "no answer"])
    return json.dumps([granted, json.loads(answer)])


@workflow
def overlong() -> str:
    return overlong_line()


def test_the_channel_drops_an_overlong_request_line(tmp_path: Path) -> None:
    with _engine(tmp_path, "subprocess") as engine:
        result = engine.launch(overlong, {})
        assert result.phase == "SUCCEEDED", result.error
        report = result.python_outputs(overlong, engine.store, engine.work_root)
        granted, answer = json.loads(report)
        assert granted["ok"] is True
        assert answer["ok"] is False and answer["kind"] == "invalid", answer
        assert "longer than 65536 bytes" in answer["error"], answer
        assert engine.pool_manager.status()[0].in_use == 0
