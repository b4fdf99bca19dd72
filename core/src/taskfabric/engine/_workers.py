"""The worker pool: runs queued executions, each in a child engine process (or, for a
multi-tenant server, keeps long-lived engine processes that run many at once: `_serving`).

Each execution runs in its own `taskfabric executions run ID` process, so code from many
registered versions and repositories never meets in one interpreter, and a crash (or a
`kill -9`) of one execution's process loses nothing but its running attempts. The pool
claims nothing itself: the child claims the execution in the database (an atomic update of
its owner and heartbeat), so several pools on several hosts can share one database.
An execution whose owner stopped heartbeating (or died on this host) is started again by
the next scan and resumes without re-running its succeeded nodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from taskfabric.config import Config
from taskfabric.engine._owners import owner_is_dead
from taskfabric.logs import get_logger
from taskfabric.metadata import ExecutionRecord, MetadataStore

log = get_logger("taskfabric.workers")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Child:
    execution_id: str
    proc: subprocess.Popen[bytes]
    started: float


class WorkerPool:
    """Keeps up to `workers` executions running, each in its own child process."""

    def __init__(
        self,
        config: Config,
        *,
        workers: int,
        config_path: Path | None = None,
        poll_seconds: float = 0.5,
        python: str = sys.executable,
        log_dir: Path | None = None,
        isolate_code: bool = False,
        slots: int = 1,
        metadata: MetadataStore | None = None,
    ) -> None:
        """With `isolate_code` (a multi-tenant server's pool) each child runs its execution
        without importing its code, and only on backends that isolate it (`Engine`). With
        `slots` > 1 (and `isolate_code`) the children are `workers` long-lived engine
        processes (`taskfabric executions work`), each running up to `slots` executions at
        once and claiming them itself; the pool only keeps them running. `metadata` (the
        server's own store) saves the pool a connection pool of its own."""
        if slots > 1 and not isolate_code:
            raise ValueError(
                "several executions per engine process need isolate_code: a process that "
                "imports registered code holds one version of it"
            )
        self.config = config
        self.isolate_code = isolate_code
        self.slots = slots
        self.workers = max(1, workers)
        self.config_path = config_path
        self.poll_seconds = poll_seconds
        self.python = python
        self._own_metadata = metadata is None
        self.metadata = metadata or MetadataStore(
            config.metadata_url, pool_size=config.metadata.pool_size
        )
        self.log_dir = log_dir or (config.data_root / "work" / "workers")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, _Child] = {}
        self._host = socket.gethostname()

    def _command(self, execution_id: str) -> list[str]:
        cmd = [self.python, "-m", "taskfabric.cli"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += ["executions", "run", execution_id]
        return [*cmd, "--isolate-code"] if self.isolate_code else cmd

    def _work_command(self) -> list[str]:
        cmd = [self.python, "-m", "taskfabric.cli"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += ["executions", "work", "--slots", str(self.slots)]
        return [*cmd, "--poll-seconds", str(self.poll_seconds)]

    def candidates(self) -> list[ExecutionRecord]:
        """Executions a worker should start: queued, or running with a dead owner."""
        now = time.time()
        stale_before = now - 3 * self.config.engine.heartbeat_seconds
        found = self.metadata.runnable_executions(stale_before=stale_before)
        seen = {r.id for r in found}
        dead = [
            execution_id
            for execution_id, owner in self.metadata.running_owners(self._host)
            if execution_id not in seen and owner_is_dead(owner)
        ]
        for execution_id in dead:
            rec = self.metadata.get_execution(execution_id)
            if rec is not None:
                found.append(rec)
        return [r for r in found if r.id not in self.children]

    def reap(self) -> None:
        for execution_id, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[execution_id]
            level = log.info if code in (0, 1) else log.warning
            level(
                "execution process ended",
                execution_id=execution_id,
                exit_code=code,
                seconds=round(time.time() - child.started, 1),
            )

    def step(self) -> int:
        """Reap ended children and start new ones; returns how many were started."""
        self.reap()
        if self.slots > 1:  # long-lived engine processes: keep `workers` of them running
            missing = [f"worker-{i}" for i in range(self.workers)]
            for key in [k for k in missing if k not in self.children]:
                proc = self._start(key, self._work_command())
                log.info("engine worker started", worker=key, pid=proc.pid, slots=self.slots)
            return 0
        free = self.workers - len(self.children)
        if free <= 0:
            return 0
        started = 0
        for rec in self.candidates()[:free]:
            proc = self._start(rec.id, self._command(rec.id))
            log.info(
                "execution process started", execution_id=rec.id, pid=proc.pid, phase=rec.phase
            )
            started += 1
        return started

    def _start(self, key: str, command: list[str]) -> subprocess.Popen[bytes]:
        out = (self.log_dir / f"{key}.log").open("ab")
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        out.close()
        self.children[key] = _Child(key, proc, time.time())
        return proc

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("worker pool scan failed")
            stop.wait(self.poll_seconds)
        self.shutdown()

    def shutdown(self, grace_seconds: float = 20.0) -> None:
        """Stop the children; their executions are left to be resumed, not aborted."""
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for child in self.children.values():
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
        self.children.clear()
        if self._own_metadata:
            self.metadata.close()
