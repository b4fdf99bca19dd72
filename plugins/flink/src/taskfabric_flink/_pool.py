"""A flink-cluster backend's pool sized from the cluster's task slots (`pool_refresh_seconds`).

The pool's capacity is what the cluster can give taskfabric's jobs: `slots-total` of
`/overview`, less the backend's `pool_margin`, less the slots that jobs taskfabric did not
submit hold (those not named `taskfabric-...`; a running job holds as many slots as its
largest vertex's parallelism, Flink's default slot sharing). The pool's own jobs are not
taken out: their attempts hold the pool's leases already, and an attempt that has its lease
but not yet its job (its client is starting) must count too, which `slots-available` would
miss. Read once before the first `pool_requests` and then every `pool_refresh_seconds` on a
thread of its own; a cluster that does not answer sizes the pool to 0 (its jobs could not
run) until it answers again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from taskfabric.logs import get_logger
from taskfabric_flink._environment import JOB_PREFIX
from taskfabric_flink._rest import TERMINAL_STATES, FlinkRest, FlinkRestError

__all__ = ["ClusterPool", "job_slots"]

log = get_logger("taskfabric.flink")


def job_slots(job: dict[str, Any]) -> int:
    """The task slots a job holds (`GET /jobs/<id>`): its largest vertex's parallelism."""
    return max((int(v.get("parallelism", 0)) for v in job.get("vertices", [])), default=0)


class ClusterPool:
    """Keeps pool `pool` sized to the cluster behind `rest` (see the module docstring)."""

    def __init__(
        self,
        backend: str,
        pool: str,
        rest: FlinkRest,
        *,
        margin: int,
        every: float,
        set_capacity: Callable[[str, int | None], None],
    ) -> None:
        self.backend = backend
        self.pool = pool
        self.rest = rest
        self.margin = margin
        self.every = every
        self._set_capacity = set_capacity
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: the last capacity set (None before the first reading)
        self.capacity: int | None = None

    def read(self) -> int:
        """The slots taskfabric's jobs may use now. Raises FlinkRestError."""
        total = int(self.rest.overview().get("slots-total", 0))
        foreign = 0
        for job in self.rest.jobs():
            if job.get("state") in TERMINAL_STATES:
                continue
            if str(job.get("name", "")).startswith(JOB_PREFIX):
                continue
            try:
                foreign += job_slots(self.rest.job(str(job["jid"])))
            except FlinkRestError:
                continue  # it ended meanwhile
        return max(0, total - self.margin - foreign)

    def refresh(self) -> int:
        """Read the cluster and size the pool; the capacity set."""
        try:
            capacity = self.read()
        except FlinkRestError as exc:
            capacity = 0
            log.warning(
                "the Flink cluster does not answer: its pool grants nothing until it does",
                backend=self.backend,
                pool=self.pool,
                error=str(exc),
            )
        if capacity != self.capacity:
            log.info(
                "pool sized from the Flink cluster",
                backend=self.backend,
                pool=self.pool,
                slots=capacity,
                before=self.capacity,
            )
        self._set_capacity(self.pool, capacity)
        self.capacity = capacity
        return capacity

    def start(self) -> None:
        """Size the pool now, then every `every` seconds on a thread of its own (once)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            try:
                self.refresh()
            except LookupError as exc:  # no such pool: the engine refuses its requests
                log.warning("cannot size the pool", backend=self.backend, error=str(exc))
                return
            self._thread = threading.Thread(
                target=self._run, name=f"flink-pool-{self.pool}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.refresh()
            except Exception:  # never let the thread die: the pool would stop following
                log.exception("cannot size the pool", backend=self.backend, pool=self.pool)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
