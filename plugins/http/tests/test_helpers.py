"""`pool()` and `service()`: calls a Python task makes itself, throttled by the same pools."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from http_helpers import MakeConfig, service_toml

from taskfabric_http import HttpClientError, PoolTimeout, pool, service
from taskfabric_http.testing import QuotaServer

POOLS = """
[pools.geo-api]
slots = 2
"""


def test_pool_bounds_hand_written_calls(make_config: MakeConfig) -> None:
    config = make_config(POOLS)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(_: int) -> None:
        with pool("geo-api", config=config):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            threading.Event().wait(0.02)
            with lock:
                state["now"] -= 1

    with ThreadPoolExecutor(6) as ex:
        list(ex.map(work, range(24)))
    assert state["max"] == 2


def test_pool_timeout_says_where_it_waits(make_config: MakeConfig) -> None:
    config = make_config(POOLS)
    with (
        pool("geo-api", weight=2, config=config),
        pytest.raises(PoolTimeout, match=r"geo-api.*position 1"),
        pool("geo-api", timeout=0.3, config=config),
    ):
        pass


def test_service_client_holds_the_pool_and_handles_429(make_config: MakeConfig) -> None:
    with QuotaServer(max_concurrent=2, delay=0.02) as server:
        config = make_config(POOLS + service_toml("geo", server.url, 'pools = ["geo-api"]'))
        server.script.append((429, {"Retry-After": "0.3"}, {"error": "slow"}))
        with service("geo", config=config) as geo, ThreadPoolExecutor(6) as ex:
            found = list(ex.map(lambda i: geo.get("/geocode", params={"q": f"{i}"}), range(20)))
        assert [r.json()["query"] for r in found] == [str(i) for i in range(20)]
        assert server.stats.rejected == 0  # the pool kept within the quota of 2
        assert server.stats.accepted == 20
        with service("geo", config=config) as geo, pytest.raises(HttpClientError, match="400"):
            geo.get("/geocode")
