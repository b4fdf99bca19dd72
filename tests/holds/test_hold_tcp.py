"""`taskfabric.hold()` over TCP: the engine offers its pool channel on `[engine] hold_listen`
for tasks that run away from its host (an aws-batch job, a pod on another node), where its
Unix socket cannot be seen (issue 12). Here real task processes (the `subprocess` backend)
whose socket variable names a path that does not exist, as on another host, so that the TCP
address is the only way to their engine."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

import taskfabric
from taskfabric import HoldError, map_task, task, workflow
from taskfabric.config import load_config
from taskfabric.config._model import EngineConfig
from taskfabric.engine import Engine

ELSEWHERE = "/nonexistent/taskfabric-engine-host-only.sock"


def _away_from_the_engine_host() -> dict[str, str]:
    """What a task on another host sees: the socket's variable, but no socket at that path."""
    os.environ["TASKFABRIC_POOLS_SOCKET"] = ELSEWHERE
    return {
        "address": os.environ.get("TASKFABRIC_POOLS_ADDRESS", ""),
        "token": os.environ.get("TASKFABRIC_POOLS_TOKEN", ""),
    }


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@task
def held_remotely(i: int, log: str) -> int:
    seen = _away_from_the_engine_host()
    with taskfabric.hold("api", timeout=60) as lease:
        start = time.time()
        time.sleep(0.3)
        assert lease.take_tokens() == 0.0  # an op on the held block, over TCP
        end = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps([os.getpid(), start, end, seen]) + "\n")
    return i


@workflow
def fan(n: int, log: str) -> list[int]:
    return map_task(held_remotely)(i=upto(n=n), log=log)


@workflow
def once(log: str) -> int:
    return held_remotely(i=0, log=log)


@task
def holds_until_killed(flag: str) -> int:
    seen = _away_from_the_engine_host()
    with taskfabric.hold("api"):
        Path(flag).write_text(json.dumps([os.getpid(), seen]))
        time.sleep(120)
    return 0


@workflow
def holder_wf(flag: str) -> int:
    return holds_until_killed(flag=flag)


def _engine(tmp_path: Path, listen: str = "127.0.0.1:0", ttl: float = 30.0) -> Engine:
    config = tmp_path / "taskfabric.toml"
    hold = f'hold_listen = "{listen}"\n' if listen else ""
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n'
        f"[engine]\nparallelism = 6\n{hold}"
        '[task_types]\npython = "subprocess"\n'
        f"[pools.api]\nslots = 2\nlease_ttl = {ttl}\n"
    )
    return Engine(load_config(config))


def _ask(address: str, token: str) -> dict[str, object]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        request = {"op": "hold", "token": token, "pools": {"api": 1}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        answer: dict[str, object] = json.loads(sock.makefile().readline())
    return answer


def test_tasks_that_only_reach_the_tcp_address_hold_and_release(tmp_path: Path) -> None:
    log = tmp_path / "held.jsonl"
    with _engine(tmp_path) as engine:
        result = engine.launch(fan, {"n": 3, "log": str(log)})
        assert result.phase == "SUCCEEDED", result.error
        assert sorted(result.python_outputs(fan, engine.store, engine.work_root)) == list(range(3))
        assert engine.pool_manager.status()[0].in_use == 0  # every hold came back
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        # the address the engine advertised: hold_listen's host, and the port 0 picked
        addresses = {row[3]["address"] for row in rows}
        assert len(addresses) == 1
        (address,) = addresses
        assert address.startswith("127.0.0.1:") and int(address.rpartition(":")[2]) > 0
        # an attempt's secret is refused once the attempt has ended, as is a guessed one
        for token in {row[3]["token"] for row in rows} | {"guessed"}:
            answer = _ask(address, token)
            assert answer["ok"] is False and answer["kind"] == "refused"
        assert engine.pool_manager.status()[0].in_use == 0
    assert len({row[0] for row in rows}) == 3 and os.getpid() not in {row[0] for row in rows}
    held = most = 0
    for _, change in sorted([(r[1], 1) for r in rows] + [(r[2], -1) for r in rows]):
        held += change
        most = max(most, held)
    assert 1 <= most <= 2  # never more than the pool's 2 slots


def test_a_killed_task_process_releases_its_tcp_hold(tmp_path: Path) -> None:
    flag = tmp_path / "holding.json"
    # a TTL far beyond the test: only the closed connection can give the slot back
    engine = _engine(tmp_path, ttl=600)
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
        pid, seen = json.loads(flag.read_text())
        (api,) = engine.pool_manager.status()
        assert api.in_use == 1 and api.holders[0].holder.node_id.endswith("~hold1")
        # while the attempt runs, its secret is good and a guessed one is not: the guess
        # is refused at once, and takes nothing
        assert _ask(seen["address"], "guessed")["kind"] == "refused"
        assert engine.pool_manager.status()[0].in_use == 1
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=60)
        result = outcome["result"]
        assert getattr(result, "phase", None) == "FAILED"
        assert "was killed by SIGKILL" in str(getattr(result, "error", ""))
        assert engine.pool_manager.status()[0].in_use == 0
    finally:
        runner.join(timeout=60)
        engine.close()


def test_no_port_is_opened_unless_configured(tmp_path: Path) -> None:
    log = tmp_path / "held.jsonl"
    with _engine(tmp_path, listen="") as engine:
        # without the address, the task on "another host" cannot hold: it says what to set
        result = engine.launch(once, {"log": str(log)})
        assert result.phase == "FAILED"
        assert "hold_listen" in str(result.error) and ELSEWHERE in str(result.error)
        assert engine.pools.holds is not None and engine.pools.holds._tcp is None


def test_an_unreachable_address_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        monkeypatch.setenv("TASKFABRIC_POOLS_SOCKET", ELSEWHERE)
        monkeypatch.setenv("TASKFABRIC_POOLS_ADDRESS", f"127.0.0.1:{port}")
        monkeypatch.setenv("TASKFABRIC_POOLS_TOKEN", "secret")
        with pytest.raises(HoldError) as info, taskfabric.hold("api"):
            pass
    message = str(info.value)
    assert ELSEWHERE in message and f"127.0.0.1:{port}" in message
    assert "hold_advertise" in message


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"hold_listen": "0.0.0.0:7710"}, "set hold_advertise"),
        ({"hold_listen": "7710"}, "not a host:port address"),
        ({"hold_listen": "::1:7710"}, "in brackets"),
        ({"hold_advertise": "engine-1"}, "without hold_listen"),
    ],
)
def test_hold_listen_settings_are_checked(settings: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        EngineConfig.model_validate(settings)


def test_hold_advertise_may_name_a_host_alone() -> None:
    config = EngineConfig(hold_listen="[::]:0", hold_advertise="engine-1.internal")
    assert config.hold_advertise == "engine-1.internal"
