"""`with pool("geo-api"):` — resource pools for calls a Python task makes itself.

The block runs while it holds a lease on the pools, taken from the same database state as the
engine's, so hand-written calls and `http` tasks share one quota across every engine and
process. The lease is renewed in the background while the block runs and released when it
ends; `lease.pushback(seconds)` tells the pools that the service throttled.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from taskfabric.config import Config, load_config
from taskfabric.logs import get_logger
from taskfabric.metadata import MetadataStore
from taskfabric.pools import Holder, Lease, PoolError, PoolManager, specs_from_config
from taskfabric_http._errors import HttpError

__all__ = ["PoolLease", "PoolTimeout", "pool"]

log = get_logger("taskfabric.http")

_counter = itertools.count(1)


class PoolTimeout(HttpError):
    """The pools were not granted within the timeout."""


@dataclass
class PoolLease:
    """A lease held by a `with pool(...)` block."""

    pools: tuple[str, ...]
    holder: Holder
    _hub: _Hub
    weight: int = 1

    def pushback(self, seconds: float) -> None:
        """The service throttled: its pools grant nothing new for `seconds`."""
        for name in self.pools:
            self._hub.call(lambda m, name=name: m.pushback(name, seconds))

    def take_tokens(self) -> float:
        """Rate tokens for one more call in this block (its grant paid for the first): the
        seconds to wait before making it so that the pools' rates hold."""
        weights = dict.fromkeys(self.pools, self.weight)
        return float(self._hub.call(lambda m: m.take_tokens(weights)))


class _Hub:
    """One process's PoolManager for helper blocks: shares grants among threads, renews."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metadata = MetadataStore(config.metadata_url)
        owner = f"{socket.gethostname()}:{os.getpid()}:helper"
        self.manager = PoolManager(self.metadata.engine, specs_from_config(config), owner=owner)
        self._lock = threading.Lock()
        self._granted: dict[tuple[str, str, int], Lease] = {}
        self._held: dict[tuple[str, str, int], Lease] = {}
        self._renewer: threading.Thread | None = None
        ttl = min((s.lease_ttl for s in self.manager.specs.values()), default=30.0)
        self.renew_seconds = max(0.5, ttl / 3)

    def call(self, fn: Any) -> Any:
        with self._lock:
            return fn(self.manager)

    def _keep(self, leases: list[Lease]) -> None:
        for lease in leases:
            self._granted[lease.holder.key] = lease

    def acquire(self, holder: Holder, weights: dict[str, int], timeout: float | None) -> Lease:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            lease = self.manager.request(holder, weights)
        delay = 0.02
        while lease is None:
            with self._lock:
                lease = self._granted.pop(holder.key, None)
                if lease is None:
                    self._keep(self.manager.poll(execution_id=holder.execution_id))
                    lease = self._granted.pop(holder.key, None)
                if lease is None and deadline is not None and time.monotonic() >= deadline:
                    where = self.manager.waiting_position(holder)
                    self._keep(self.manager.cancel(holder))
                    lease = self._granted.pop(holder.key, None)
                    if lease is None:
                        shown = ", ".join(f"{p} (position {n})" for p, n in sorted(where.items()))
                        raise PoolTimeout(
                            f"pool(s) {', '.join(sorted(weights))}: not granted within "
                            f"{timeout:g}s; still waiting in {shown or 'the queue'}"
                        )
            if lease is None:
                time.sleep(delay)
                delay = min(delay * 1.5, 0.2)
        with self._lock:
            self._held[holder.key] = lease
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="taskfabric-http-pools", daemon=True
                )
                self._renewer.start()
        return lease

    def release(self, holder: Holder) -> None:
        with self._lock:
            lease = self._held.pop(holder.key, None)
            if lease is not None:
                self._keep(self.manager.release(lease))

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.renew_seconds)
            with self._lock:
                keys = list(self._held)
                if not keys:
                    continue
                try:
                    renewed = self.manager.renew_many([self._held[k] for k in keys])
                except Exception:
                    log.exception("renewing helper pool leases failed")
                    continue
                for key, new in zip(keys, renewed, strict=True):
                    if new is None:
                        log.warning("a helper pool lease expired", holder=str(key))
                        self._held.pop(key, None)
                    else:
                        self._held[key] = new


_hubs: dict[tuple[str, str], _Hub] = {}
_hubs_lock = threading.Lock()


def _hub(config: Config | None) -> _Hub:
    config = config or load_config()
    key = (config.metadata_url, str(config.source))
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = _Hub(config)
        return hub


def _holder(config: Config) -> Holder:
    """Named after the attempt running this code (its ids are bound in the log context),
    with a counter so that blocks in one attempt never share a lease."""
    bound = structlog.contextvars.get_contextvars()
    execution_id = str(bound.get("execution_id") or f"helper-{socket.gethostname()}-{os.getpid()}")
    node_id = f"{bound.get('node_id', 'code')}~pool{next(_counter)}"
    attempt = int(bound.get("attempt") or 0)
    return Holder(execution_id, node_id, attempt, config.project.name, config.project.domain)


@contextmanager
def pool(
    *names: str, weight: int = 1, timeout: float | None = None, config: Config | None = None
) -> Iterator[PoolLease]:
    """Hold `weight` slots of each named pool for the duration of the block.

    Waits in the pools' queues (fairly, with every engine's attempts) until granted; raises
    PoolTimeout after `timeout` seconds, PoolError for a pool that does not exist or a weight
    it could never grant. `config`: the config whose `[pools]` and metadata database to use
    (default: the one `taskfabric` finds, `$TASKFABRIC_CONFIG`).
    """
    if not names:
        raise PoolError("pool() needs at least one pool name")
    hub = _hub(config)
    weights = dict.fromkeys(names, weight)
    holder = _holder(hub.config)
    hub.call(
        lambda m: m.validate_request(
            weights, project=holder.project, domain=holder.domain, who="pool()"
        )
    )
    hub.acquire(holder, weights, timeout)
    try:
        yield PoolLease(tuple(sorted(names)), holder, hub, weight)
    finally:
        hub.release(holder)
