"""`pool()` and `service()`: calls a Python task makes itself, throttled by the same pools, held
through the engine that runs the task (the core's `taskfabric.hold`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from http_helpers import MakeEngine, service_toml

from taskfabric import HoldError, map_task, task, task_pools, workflow
from taskfabric_http import HttpClientError, PoolTimeout, pool, service
from taskfabric_http.testing import QuotaServer

POOLS = """
[pools.geo-api]
slots = 2
"""

LOCK = threading.Lock()
STATE = {"now": 0, "max": 0}


def _guarded_work() -> None:
    with LOCK:
        STATE["now"] += 1
        STATE["max"] = max(STATE["max"], STATE["now"])
    threading.Event().wait(0.02)
    with LOCK:
        STATE["now"] -= 1


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@task
def one_call(i: int) -> int:
    with pool("geo-api"):
        _guarded_work()
    return i


@workflow
def calls(n: int) -> list[int]:
    return map_task(one_call)(i=upto(n=n))


@task
def threaded_calls(n: int) -> int:
    mine = task_pools()  # caught in the task's thread, used from the others

    def work(_: int) -> None:
        with pool("geo-api", pools=mine):
            _guarded_work()

    with ThreadPoolExecutor(6) as ex:
        list(ex.map(work, range(n)))
    return n


@workflow
def threaded(n: int) -> int:
    return threaded_calls(n=n)


def test_pool_bounds_hand_written_calls(make_engine: MakeEngine) -> None:
    engine = make_engine(POOLS + "[engine]\nparallelism = 6\n")
    STATE.update(now=0, max=0)
    assert engine.launch(calls, {"n": 12}).phase == "SUCCEEDED"
    assert STATE["max"] == 2
    STATE.update(now=0, max=0)
    assert engine.launch(threaded, {"n": 24}).phase == "SUCCEEDED"
    assert STATE["max"] == 2
    assert engine.pool_manager.status()[0].in_use == 0


@task
def waits_in_vain() -> str:
    with pool("geo-api", weight=2):
        try:
            with pool("geo-api", timeout=0.3):
                return "granted"
        except PoolTimeout as exc:
            return str(exc)


@workflow
def in_vain() -> str:
    return waits_in_vain()


def test_pool_timeout_says_where_it_waits(make_engine: MakeEngine) -> None:
    engine = make_engine(POOLS)
    result = engine.launch(in_vain, {})
    assert result.phase == "SUCCEEDED", result.error
    message = result.python_outputs(in_vain, engine.store, engine.work_root)
    assert "geo-api (position 1)" in message and "not granted within 0.3s" in message


@task
def geocode_many(n: int) -> list[str]:
    with service("geo") as geo, ThreadPoolExecutor(6) as ex:
        found = list(ex.map(lambda i: geo.get("/geocode", params={"q": f"{i}"}), range(n)))
    try:
        with service("geo") as geo:
            geo.get("/geocode")
    except HttpClientError as exc:
        assert "400" in str(exc)
    else:
        raise AssertionError("a 400 did not raise")
    return [r.json()["query"] for r in found]


@workflow
def geocoding(n: int) -> list[str]:
    return geocode_many(n=n)


def test_service_client_holds_the_pool_and_handles_429(make_engine: MakeEngine) -> None:
    with QuotaServer(max_concurrent=2, delay=0.02) as server:
        engine = make_engine(POOLS + service_toml("geo", server.url, 'pools = ["geo-api"]'))
        server.script.append((429, {"Retry-After": "0.3"}, {"error": "slow"}))
        result = engine.launch(geocoding, {"n": 20})
        assert result.phase == "SUCCEEDED", result.error
        found = result.python_outputs(geocoding, engine.store, engine.work_root)
        assert found == [str(i) for i in range(20)]
        assert server.stats.rejected == 0  # the pool kept within the quota of 2
        assert server.stats.accepted == 21  # the 20 geocodes and the one answered 400
        assert server.stats.requests == 22  # and the one answered 429, sent again


def test_pool_outside_a_task_says_what_to_do() -> None:
    with pytest.raises(HoldError, match="only inside a running task"), pool("geo-api"):
        pass
