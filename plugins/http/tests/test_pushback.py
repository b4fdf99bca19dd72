"""A throttling answer pauses the pools at once, and a call whose grant came before the pause
waits it out too (issue 14: calls reached the service inside a Retry-After second)."""

from __future__ import annotations

from pathlib import Path

from taskfabric.metadata import MetadataStore
from taskfabric.pools import PoolManager, PoolSpec
from taskfabric_http._send import Caller, OutgoingRequest, make_client
from taskfabric_http._settings import ServiceConfig
from taskfabric_http.testing import QuotaServer


def test_a_call_granted_before_a_pushback_waits_it_out(tmp_path: Path, server: QuotaServer) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    pools = PoolManager(store.engine, {"geo-api": PoolSpec("geo-api", 2)}, owner="test")
    service = ServiceConfig(base_url=server.url, pools=["geo-api"])
    client = make_client(service)
    try:
        # attempt A was granted its slot; then attempt B got a 429 and paused the pool
        paused_for = 0.3
        pools.pushback("geo-api", paused_for)
        caller = Caller(
            "geo",
            service,
            client,
            who="task 'a'",
            take_tokens=lambda: pools.take_tokens({"geo-api": 1}),
            pause_left=lambda: pools.take_tokens({"geo-api": 0}),
        )
        caller.send(OutgoingRequest("GET", "/geocode", params={"q": "x"}))
        # its first call, which its grant paid for, waited for the pause the pool reported
        assert 0 < caller.throttled_seconds <= paused_for
        assert pools.pause_left(["geo-api"]) == 0.0
        assert server.stats.accepted == 1
    finally:
        client.close()
        pools.close()
        store.close()
