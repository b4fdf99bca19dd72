"""Helpers of the pool tests (a module of its own so that test modules and worker processes
can import them)."""

from __future__ import annotations

from typing import Any

from taskfabric.pools import Holder

POOL_TABLES = (
    "pool_grants",
    "pool_leases",
    "pool_pushbacks",
    "pool_waits",
    "pool_waiters",
    "pools",
)


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def holder(name: str, project: str = "p", domain: str = "d", attempt: int = 1) -> Holder:
    return Holder(f"ex-{name}", "n0", attempt, project, domain)


#: The pools the worker processes of the over-commit test fight over.
HAMMER_SPECS = {
    "a": {"slots": 2, "lease_ttl": 30.0},
    "b": {"slots": 1, "lease_ttl": 30.0},
}
HAMMER_REQUESTS = ({"a": 1}, {"a": 2}, {"a": 1, "b": 1}, {"b": 1})


def hammer(url: str, worker: int, cycles: int, log_path: str, start: Any = None) -> None:
    """One worker process: request, hold a moment, release, ``cycles`` times; every grant is
    logged with the times it was surely held (after the grant returned, before the release
    was called). ``start``, a barrier shared by the workers, makes them begin their cycles
    together once each is set up (a worker's start-up takes far longer than its cycles: left
    to start one after another, they may never meet in a pool)."""
    import json
    import random
    import time

    from taskfabric.metadata import MetadataStore
    from taskfabric.pools import PoolManager, PoolSpec

    store = MetadataStore(url, migrate=False)
    specs = {name: PoolSpec(name, **kw) for name, kw in HAMMER_SPECS.items()}  # type: ignore[arg-type]
    pm = PoolManager(store.engine, specs, owner=f"worker-{worker}")
    rng = random.Random(worker)
    if start is not None:
        start.wait(timeout=100)
    with open(log_path, "w", encoding="utf-8") as log:
        for i in range(cycles):
            who = Holder(f"w{worker}-{i}", "n0", 1, rng.choice(["p0", "p1"]), "d")
            weights = rng.choice(HAMMER_REQUESTS)
            lease = pm.request(who, weights, priority=rng.randint(0, 1))
            waited = lease is None
            give_up = time.monotonic() + 60
            while lease is None:
                if time.monotonic() > give_up:
                    raise TimeoutError(f"{who} waited a minute")
                time.sleep(0.002)
                lease = next((x for x in pm.poll() if x.holder == who), None)
            held_from = time.time()
            time.sleep(rng.random() * 0.002)
            held_to = time.time()
            entry = [lease.token, dict(lease.weights), held_from, held_to, waited]
            log.write(json.dumps(entry) + "\n")
            pm.release(lease)
    pm.close()
    store.close()
