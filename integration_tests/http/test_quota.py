"""Calls through a pool never trip the service's own quota; a 429 with Retry-After pauses the
pool and the call is sent again without counting as a failure."""

from __future__ import annotations

import time
from collections.abc import Callable

from services_wf import geocode_all

from taskfabric.engine import Engine
from taskfabric_http.testing import QuotaServer

MakeEngine = Callable[[str], Engine]


def test_hundreds_of_calls_through_the_pool_never_trip_the_quota(
    make_engine: MakeEngine,
) -> None:
    calls = 240
    with QuotaServer(max_concurrent=4, max_per_second=50, delay=0.01) as server:
        engine = make_engine(
            f"""
[engine]
parallelism = 16

[backends.http.services.geo]
base_url = "{server.url}"
pools = ["geo-api"]

[pools.geo-api]
slots = 4
rate = 40
burst = 4
"""
        )
        started = time.monotonic()
        result = engine.launch(geocode_all, {"n": calls})
        elapsed = time.monotonic() - started
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(geocode_all, engine.store) == calls
        stats = server.stats
        print(
            f"\n{calls} calls in {elapsed:.1f}s: max in flight {stats.max_in_flight} (pool 4, "
            f"quota 4); most started in 1s {stats.max_started_within(1.0)} (rate 40, quota 50); "
            f"rejected {stats.rejected}"
        )
        assert stats.rejected == 0
        assert stats.accepted == calls
        assert stats.max_in_flight <= 4
        # rate 40/s plus the burst of 4, and some jitter between a grant and its arrival
        assert stats.max_started_within(1.0) <= 48


def test_429_with_retry_after_pauses_the_pool(make_engine: MakeEngine) -> None:
    with QuotaServer(delay=0.02) as server:
        engine = make_engine(
            f"""
[backends.http.services.geo]
base_url = "{server.url}"
pools = ["geo-api"]

[pools.geo-api]
slots = 2
rate = 100
"""
        )
        server.script.append((429, {"Retry-After": "2"}, {"error": "slow down"}))
        result = engine.launch(geocode_all, {"n": 12})
        assert result.phase == "SUCCEEDED", result.error
        stats = server.stats
        throttled_at = stats.answered[0][0]
        assert stats.answered[0][1] == 429
        # Nothing new started while the pool was paused (at most the other slot's request,
        # already granted when the 429 arrived, lands in the window).
        during = [t for t in stats.arrived[1:] if throttled_at + 0.1 < t < throttled_at + 1.9]
        assert len(during) <= 1, during
        assert stats.accepted == 12
        # Throttling is no failure: every node has one attempt.
        attempts = [
            node.attempts
            for node in engine.metadata.nodes(result.execution_id)
            if node.node_id.startswith("n1[")
        ]
        assert attempts and all(n == 1 for n in attempts), attempts
