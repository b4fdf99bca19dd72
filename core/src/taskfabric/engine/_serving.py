"""A long-lived engine process that runs many executions at once (`taskfabric executions work`).

A multi-tenant server's workers import no registered code (`Engine(isolate_code=True)`): an
execution is its stored compiled workflow, and every attempt runs in a process of its own
(a sandbox). So executions of any project and version can share one engine process, its
database connections, backends and pool channel, instead of each paying for a process of its
own. Each runs on a thread of the process. Queued executions are claimed in the database
several at a time, in one transaction that also records their start
(`MetadataStore.claim_queued`), so several such processes, on several servers, share one
database without racing for the same ones; one whose owner stopped heartbeating (or died on
this host) is taken over by the next scan (`Engine.resume`).

Stopping (SIGTERM) sets the stop event: every execution's loop leaves within about a second,
its execution left RUNNING without an owner, to be resumed by the next engine.
"""

from __future__ import annotations

import socket
import threading
import time

from taskfabric.config import Config
from taskfabric.engine._engine import Engine, ExecutionBusyError
from taskfabric.engine._launching import CodeNotIsolatedError
from taskfabric.engine._owners import owner_is_dead, this_owner
from taskfabric.engine._util import EngineShutdown
from taskfabric.logs import get_logger
from taskfabric.metadata import ExecutionRecord, MetadataStore, engine_pool_size

log = get_logger("taskfabric.workers")


class ExecutionWorker:
    """Runs up to `slots` executions at once on one engine, until `stop` is set."""

    def __init__(
        self,
        config: Config,
        *,
        slots: int,
        isolate_code: bool = True,
        poll_seconds: float = 0.5,
    ) -> None:
        # Its connections, sized for `slots` executions (docs/server.md, "Database connections").
        metadata = MetadataStore(
            config.metadata_url,
            pool_size=config.metadata.pool_size or engine_pool_size(slots),
        )
        self.engine = Engine(config, isolate_code=isolate_code, metadata=metadata)
        self.slots = max(1, slots)
        self.poll_seconds = poll_seconds
        self.stop = threading.Event()
        self.running: dict[str, threading.Thread] = {}
        self._host = socket.gethostname()
        # Executions that ended since the last step, and the event that says so: a slot
        # freed is filled at once, not at the next poll.
        self._ended: dict[str, bool] = {}  # id -> whether it could not start
        self._ended_lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._owners_checked = float("-inf")  # time.monotonic() of the last dead-owner scan
        self._scanned = float("-inf")  # ... and of the last scan for abandoned executions
        # Executions that could not even start (their documents unreadable, say): left
        # queued, and not taken again before this time.monotonic(), so a worker does not
        # spin on one.
        self._not_before: dict[str, float] = {}
        self.retry_seconds = max(10.0, 20 * poll_seconds)

    def _not_before_expire(self) -> None:
        now = time.monotonic()
        for execution_id, at in list(self._not_before.items()):
            if at <= now:
                del self._not_before[execution_id]

    def candidates(self, limit: int) -> list[str]:
        """Ids of up to `limit` executions to take: queued, or running with a lapsed lease,
        or (looked for at most once per poll interval) with an owner that died on this
        host."""
        metadata = self.engine.metadata
        stale_before = time.time() - 3 * self.engine.config.engine.heartbeat_seconds
        now = time.monotonic()
        self._not_before_expire()
        skipped = self.running.keys() | self._not_before.keys()
        # The running ones and those held back are skipped: ask for as many more.
        found = [
            r.id
            for r in metadata.runnable_executions(
                stale_before=stale_before, limit=limit + len(skipped)
            )
            if r.id not in skipped
        ]
        if len(found) < limit and now - self._owners_checked >= self.poll_seconds:
            self._owners_checked = now
            seen = set(found)
            dead: dict[str, bool] = {}  # owner -> whether it died: the same few owners run many
            for execution_id, owner in metadata.running_owners(self._host):
                if execution_id in seen or execution_id in skipped:
                    continue
                if owner not in dead:
                    dead[owner] = owner_is_dead(owner)
                if dead[owner]:
                    found.append(execution_id)
        return found[:limit]

    def step(self) -> int:
        """Forget ended executions and start new ones; returns how many were started."""
        with self._ended_lock:
            ended, self._ended = self._ended, {}
        for execution_id, failed in ended.items():
            self.running.pop(execution_id, None)
            if failed:
                self._not_before[execution_id] = time.monotonic() + self.retry_seconds
        free = self.slots - len(self.running)
        if free <= 0:
            return 0
        # Queued executions are claimed here, several in one transaction (no engine process
        # races another for them); running ones left by a dead or silent owner are looked
        # for once the queue is empty, and claimed one by one by `Engine.resume`.
        self._not_before_expire()
        claimed = self.engine.metadata.claim_queued(
            this_owner(),
            now=time.time(),
            limit=free,
            skip=self.running.keys() | self._not_before.keys(),
        )
        for rec, fresh in claimed:
            self._start(rec.id, (rec, fresh))
        started = len(claimed)
        # The queue is empty: look for abandoned ones, at most once per poll interval (not
        # each time an execution ends: they are rare, and a read each time is not).
        now = time.monotonic()
        if started < free and now - self._scanned >= self.poll_seconds:
            self._scanned = now
            for execution_id in self.candidates(free - started):
                self._start(execution_id, None)
                started += 1
        return started

    def _start(self, execution_id: str, claimed: tuple[ExecutionRecord, bool] | None) -> None:
        thread = threading.Thread(
            target=self._run,
            args=(execution_id, claimed),
            name=f"execution-{execution_id}",
            daemon=True,
        )
        self.running[execution_id] = thread
        thread.start()

    def _run(self, execution_id: str, claimed: tuple[ExecutionRecord, bool] | None) -> None:
        failed = True
        try:
            failed = not self._execute(execution_id, claimed)
        finally:
            with self._ended_lock:
                self._ended[execution_id] = failed
            self._slot_freed.set()

    def _execute(self, execution_id: str, claimed: tuple[ExecutionRecord, bool] | None) -> bool:
        """Run the execution (`claimed` from the queue, else resumed); False when it could
        not run (an unexpected error, logged; a claimed one is put back in the queue)."""
        began = time.monotonic()
        try:
            if claimed is not None:
                rec, fresh = claimed
                result = self.engine.run_claimed(rec, fresh=fresh, stop=self.stop)
            else:
                result = self.engine.resume(execution_id, runnable_only=True, stop=self.stop)
        except ExecutionBusyError:
            return True  # another engine claimed it first, or it ended meanwhile
        except EngineShutdown:
            log.info("execution left to be resumed", execution_id=execution_id)
            return True
        except CodeNotIsolatedError as exc:
            log.warning("execution refused", execution_id=execution_id, error=str(exc))
            return True
        except Exception as exc:
            log.exception(
                "execution could not run; left as it is, taken again later",
                execution_id=execution_id,
                retry_seconds=self.retry_seconds,
            )
            if claimed is not None:
                self._unclaim(execution_id, exc)
            return False
        log.info(
            "execution ended",
            execution_id=execution_id,
            phase=result.phase,
            seconds=round(time.monotonic() - began, 2),
        )
        return True

    def _unclaim(self, execution_id: str, exc: Exception) -> None:
        """Put an execution claimed from the queue back in it, when its run never began (it
        is left as it is otherwise: ended, or running and resumed by the next engine)."""
        try:
            self.engine.metadata.unclaim(
                execution_id,
                this_owner(),
                now=time.time(),
                message=f"back in the queue: could not start: {type(exc).__name__}: {exc}",
            )
        except Exception:
            log.exception(
                "could not put the execution back in the queue", execution_id=execution_id
            )

    def run_forever(self) -> None:
        """Scan and run until `stop` is set, then wait for the executions to leave."""
        try:
            while not self.stop.is_set():
                self._slot_freed.clear()  # an execution that ends from here on wakes the wait
                try:
                    started = self.step()
                except Exception:
                    log.exception("worker scan failed")
                    started = 0
                if not started:
                    # Until the next poll, or an execution of ours ends (its slot is free).
                    self._slot_freed.wait(self.poll_seconds)
        finally:
            for thread in list(self.running.values()):
                thread.join(timeout=60)
            self.engine.close()
