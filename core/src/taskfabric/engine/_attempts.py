"""The attempts of task nodes in the execution loop: taking their resource pools, submitting
them to their backends, polling, and what happens when one ends (success, failure and its
retry, a timeout, a lost pool lease)."""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING

from taskfabric.core.v1 import execution_pb2
from taskfabric.engine._handles import INTERRUPTED, handle_recorder
from taskfabric.engine._state import (
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    NodeState,
)
from taskfabric.engine._util import _system_error, error_dict
from taskfabric.logs import get_logger
from taskfabric.plugin_api import AttemptPhase, AttemptStatus, LogLink, TaskAttempt

if TYPE_CHECKING:
    from taskfabric.engine._runner import Runner

log = get_logger("taskfabric.engine")


def acquire_pools(r: Runner, ns: NodeState) -> bool:
    """Take the attempt's pools, or queue it in them (its node says where)."""
    assert r.pools is not None and ns.task is not None
    weights = r.pools.weights(ns, r.backend_for(ns.task))
    if not weights:
        return True
    try:
        if r.pools.acquire(ns, ns.attempt + 1, weights):
            return True
    except Exception as exc:  # PoolError: a request that can never be granted
        r._fail(ns, _system_error(type(exc).__name__, str(exc)))
        return False
    ns.phase = QUEUED
    r._record(ns, "waiting for " + r.pools.position_text(ns, ns.attempt + 1))
    return False


def lose_lease(r: Runner, ns: NodeState) -> None:
    """The attempt's pool lease expired under it: stop it rather than overrun the pool."""
    if ns.attempt_id not in r.running:
        return
    if ns.backend is not None:
        ns.backend.cancel(ns.attempt_id)
    r._attempt_over(ns)
    r._attempt_failed(
        ns,
        _system_error(
            "PoolLeaseLost",
            "the attempt's resource pool lease expired (the engine was "
            "stalled past the lease TTL); it was stopped so the pool is not overrun",
            retryable=True,
        ),
    )


def start_attempt(r: Runner, ns: NodeState) -> None:
    assert ns.task is not None and ns.inputs is not None
    ns.attempt += 1
    ns.attempt_started_at = time.time()
    ns.log_links = []
    ns.phase = RUNNING
    ns.outputs_uri = r._uri(ns.full_id, "outputs.pb")
    backend = r.backend_for(ns.task)
    ns.backend = backend
    handle, ns.handle = ns.handle, ""
    ns.reattached = bool(handle)
    if handle:
        r.reattach.pop(ns.full_id, None)
    spec = TaskAttempt(
        attempt_id=ns.attempt_id,
        execution_id=r.execution_id,
        node_id=ns.full_id,
        attempt=ns.attempt,
        task=ns.task,
        inputs=ns.inputs,
        inputs_uri=ns.inputs_uri,
        outputs_uri=ns.outputs_uri,
        raw_prefix=r._uri(ns.full_id, f"raw/{ns.attempt}"),
        notify=r.wakeups.put,
        task_definition=ns.task_def,
        project=r.project,
        domain=r.domain,
        handle=handle,
        record_handle=handle_recorder(r.metadata, r.execution_id, ns, backend.name),
    )
    if r.pools is not None:
        r.pools.attach(spec)
    r.running[spec.attempt_id] = ns
    r._record(ns)
    r._record_attempt(ns, RUNNING)
    if backend.poll_interval is not None:
        r._polled.setdefault(backend, 0.0)
    timeout = ns.task.timeout.ToTimedelta().total_seconds() if ns.task.HasField("timeout") else 0
    if timeout > 0:
        r._timer(time.monotonic() + timeout, "timeout", ns)
    try:
        backend.submit(spec)
    except Exception as exc:
        log.exception("backend submit failed", node_id=ns.full_id, backend=backend.name)
        r._attempt_over(ns)
        r._attempt_failed(
            ns,
            _system_error(
                type(exc).__name__,
                f"backend '{backend.name}' could not submit: {exc}",
                retryable=True,
            ),
        )


def attempt_over(r: Runner, ns: NodeState) -> None:
    """Bookkeeping when an attempt stops occupying a slot (its pools included)."""
    r.running.pop(ns.attempt_id, None)
    if ns.backend is not None:
        ns.backend.release(ns.attempt_id)
    if r.pools is not None:
        r.pools.detach(ns.attempt_id)
        r.pool_granted.extend(r.pools.release(ns, ns.attempt))
    parent = ns.parent
    if parent is not None and parent.kind == "map":
        parent.map_running -= 1
        if parent.map_waiting:
            r.runnable.appendleft(parent.map_waiting.popleft())


def attempt_ended(r: Runner, ns: NodeState, status: AttemptStatus) -> None:
    if r.pools is not None:
        for pool, seconds in status.pushback.items():
            r.pools.manager.pushback(pool, seconds)
    r._attempt_over(ns)
    if status.phase is AttemptPhase.SUCCEEDED:
        r._record_attempt(ns, SUCCEEDED, log_links=status.log_links)
        outputs = status.outputs
        if outputs is None:
            try:
                outputs = r._load_outputs(status.outputs_uri or ns.outputs_uri)
            except Exception as exc:
                r._attempt_failed(
                    ns,
                    _system_error(
                        "OutputsMissing",
                        f"the backend reported success but the outputs cannot be read: {exc}",
                        retryable=True,
                    ),
                )
                return
        if status.outputs_uri:
            ns.outputs_uri = status.outputs_uri
        r._succeeded(ns, outputs)
    else:
        err = (
            status.error.to_proto()
            if status.error is not None
            else _system_error("Unknown", status.message or "attempt failed")
        )
        r._attempt_failed(ns, err, log_links=status.log_links)


def attempt_failed(
    r: Runner,
    ns: NodeState,
    err: execution_pb2.ExecutionError,
    *,
    phase: str = FAILED,
    log_links: list[LogLink] | None = None,
) -> None:
    assert ns.task is not None
    edict = error_dict(err)
    r._record_attempt(ns, phase, edict, log_links)
    retry = ns.task.retry
    # A re-attached attempt whose work ended with the engine that watched it runs again, as
    # an interrupted attempt always did on resume: the task's retries are not spent on it.
    interrupted = ns.reattached and err.code == INTERRUPTED
    if err.retryable and (interrupted or ns.failures < retry.retries) and r.failing is None:
        if interrupted:
            delay = 0.0
        else:
            ns.failures += 1
            base = retry.initial_backoff.ToTimedelta().total_seconds()
            mult = retry.backoff_multiplier or 2.0
            cap = retry.max_backoff.ToTimedelta().total_seconds() or float("inf")
            delay = min(base * mult ** (ns.failures - 1), cap)
        ns.phase = RETRYING
        ns.error = edict
        what = "running again" if interrupted else f"retry {ns.failures}/{retry.retries}"
        r._record(ns, f"{what} in {delay:.1f}s after {err.code}: {err.message}"[:500])
        log.info(
            "attempt failed, will retry",
            node_id=ns.full_id,
            attempt=ns.attempt,
            code=err.code,
            delay_s=delay,
        )
        r._timer(time.monotonic() + delay, "retry", ns)
        return
    r._fail(ns, err, phase=phase)


def handle_wakeup(r: Runner, attempt_id: str) -> None:
    ns = r.running.get(attempt_id)
    if ns is None or ns.backend is None:
        return
    status = ns.backend.poll(attempt_id)
    if status.phase is not AttemptPhase.RUNNING:
        r._attempt_ended(ns, status)
        return
    if status.log_links and status.log_links != ns.log_links:
        # Links to follow the attempt while it runs (a live log, a job's page).
        ns.log_links = list(status.log_links)
        r._record_attempt(ns, RUNNING)
    if status.pushback and r.pools is not None:
        # Throttled while running (the backend waits and tries again itself): the pool
        # grants nothing new for that long.
        for pool, seconds in status.pushback.items():
            r.pools.manager.pushback(pool, seconds)


def poll_backends(r: Runner) -> None:
    now = time.monotonic()
    for backend, last in list(r._polled.items()):
        assert backend.poll_interval is not None
        if now - last < backend.poll_interval:
            continue
        r._polled[backend] = now
        for attempt_id, ns in list(r.running.items()):
            if ns.backend is backend:
                r._handle_wakeup(attempt_id)


def handle_timers(r: Runner) -> None:
    """Fire the due timers: retries after their backoff, cache waits, attempt timeouts."""
    now = time.monotonic()
    while r.timers and r.timers[0][0] <= now:
        _, _, kind, ns, attempt = heapq.heappop(r.timers)
        if attempt != ns.attempt:
            continue
        if kind == "retry" and ns.phase == RETRYING:
            if r.failing is None:
                ns.phase = QUEUED
                r.runnable.append(ns)
        elif kind == "cache_wait" and ns.phase == QUEUED and ns.attempt == attempt:
            if r.failing is None and not r._cache_lookup(ns):
                r._enqueue(ns)
        elif kind == "timeout" and ns.phase == RUNNING and ns.attempt_id in r.running:
            assert ns.task is not None
            if ns.backend is not None:
                ns.backend.cancel(ns.attempt_id)
            r._attempt_over(ns)
            secs = ns.task.timeout.ToTimedelta().total_seconds()
            r._attempt_failed(
                ns,
                _system_error(
                    "Timeout",
                    f"attempt {ns.attempt} ran longer than its timeout of {secs:g}s",
                    retryable=True,
                ),
                phase=TIMED_OUT,
            )
