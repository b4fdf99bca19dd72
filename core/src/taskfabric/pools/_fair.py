"""The fairness rule: which waiters a pass grants, in which order. Pure; no database.

The rule (also in the package docstring):

1. Waiters are considered one at a time. The next one is chosen among the head waiter of each
   project's queue (a project's queue is ordered by priority, highest first, then arrival):
   highest priority first; among equal priorities, the project with the lowest share, where
   the share of a waiter is the largest, over the pools it asks for, of
   ``slots its project holds in the pool / the project's weight in the pool``; then arrival.
   Shares are updated after every grant of the pass, so projects take turns in proportion to
   their weights.
2. A waiter is granted when every pool it asks for has the slots free (after reservations,
   see 4), enough tokens, no pushback in force, and its project and domain stay within their
   caps. It is all or nothing: a waiter takes all of its pools or none.
3. No head-of-line blocking: a waiter that does not fit is passed over and the next one is
   considered, so smaller requests that fit go ahead.
4. No starvation: each time a waiter blocked on slots or tokens is passed over by a grant in
   a pool it asks for, its skip count grows. From ``max_skips`` skips on it reserves what it
   asks for: every waiter considered after it sees those slots and tokens as taken, so freed
   capacity accumulates until it fits. Waiters held back by their own project's or domain's
   cap, or by a pushback, neither count skips nor reserve: nobody else is taking their place.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from taskfabric.pools._spec import Holder, PoolSpec

Blocked = Literal["cap", "unknown", "paused", "slots", "rate"]
_RANK: dict[Blocked, int] = {"cap": 0, "unknown": 1, "paused": 2, "slots": 3, "rate": 4}


@dataclass
class PoolState:
    """A pool during one pass; grants and reservations change it."""

    spec: PoolSpec
    in_use: int = 0
    by_project: dict[str, int] = field(default_factory=dict)
    by_domain: dict[str, int] = field(default_factory=dict)
    tokens: float = math.inf
    """Tokens available now (after refilling); infinite without a rate."""
    paused: bool = False
    reserved_slots: int = 0
    reserved_tokens: float = 0.0

    def add(self, project: str, domain: str, weight: int) -> None:
        self.in_use += weight
        self.by_project[project] = self.by_project.get(project, 0) + weight
        self.by_domain[domain] = self.by_domain.get(domain, 0) + weight


@dataclass(frozen=True)
class Waiter:
    """A queued request as the rule sees it."""

    holder: Holder
    weights: Mapping[str, int]
    priority: int
    seq: int
    """Arrival order: smaller came first."""
    skips: int = 0


@dataclass
class Plan:
    granted: list[Waiter] = field(default_factory=list)
    order: list[Waiter] = field(default_factory=list)
    """Every waiter, in the order it was considered."""
    blocked: dict[int, Blocked] = field(default_factory=dict)
    """seq -> why it was not granted."""
    bypassed: set[int] = field(default_factory=set)
    """Waiters blocked on slots or tokens that a later waiter went ahead of, in a shared pool."""
    reserving: set[int] = field(default_factory=set)


def share(pools: Mapping[str, PoolState], waiter: Waiter) -> float:
    project = waiter.holder.project
    worst = 0.0
    for name in waiter.weights:
        state = pools.get(name)
        if state is not None:
            worst = max(worst, state.by_project.get(project, 0) / state.spec.weight_of(project))
    return worst


def blocked_by(pools: Mapping[str, PoolState], waiter: Waiter) -> Blocked | None:
    """Why ``waiter`` cannot be granted now (the most telling reason), or ``None``."""
    project, domain = waiter.holder.project, waiter.holder.domain
    reason: Blocked | None = None

    def worse(new: Blocked) -> None:
        nonlocal reason
        if reason is None or _RANK[new] < _RANK[reason]:
            reason = new

    for name, weight in waiter.weights.items():
        state = pools.get(name)
        if state is None:
            worse("unknown")
            continue
        spec = state.spec
        cap = spec.project_cap(project)
        if cap is not None and state.by_project.get(project, 0) + weight > cap:
            worse("cap")
        cap = spec.domain_cap(domain)
        if cap is not None and state.by_domain.get(domain, 0) + weight > cap:
            worse("cap")
        if state.paused:
            worse("paused")
        if state.in_use + state.reserved_slots + weight > spec.slots:
            worse("slots")
        if spec.rate is not None and state.tokens - state.reserved_tokens < weight:
            worse("rate")
    return reason


def walk(
    pools: Mapping[str, PoolState], waiters: Iterable[Waiter], visit: Callable[[Waiter], None]
) -> None:
    """Call ``visit`` on every waiter in the order of rule 1 (``visit`` may change ``pools``)."""
    by_project: dict[str, list[Waiter]] = {}
    for waiter in waiters:
        by_project.setdefault(waiter.holder.project, []).append(waiter)
    queues = {
        project: deque(sorted(queue, key=lambda w: (-w.priority, w.seq)))
        for project, queue in by_project.items()
    }
    while queues:
        best: tuple[tuple[int, float, int], str] | None = None
        for project, queue in queues.items():
            head = queue[0]
            key = (-head.priority, share(pools, head), head.seq)
            if best is None or key < best[0]:
                best = (key, project)
        assert best is not None
        queue = queues[best[1]]
        chosen = queue.popleft()
        if not queue:
            del queues[best[1]]
        visit(chosen)


def plan(pools: Mapping[str, PoolState], waiters: Iterable[Waiter], *, max_skips: int) -> Plan:
    """Decide one pass. ``pools`` is updated with the grants and reservations made."""
    result = Plan()
    passed_over: list[Waiter] = []

    def visit(waiter: Waiter) -> None:
        result.order.append(waiter)
        reason = blocked_by(pools, waiter)
        if reason is None:
            for name, weight in waiter.weights.items():
                state = pools[name]
                state.add(waiter.holder.project, waiter.holder.domain, weight)
                if state.spec.rate is not None:
                    state.tokens -= weight
            result.granted.append(waiter)
            for other in passed_over:
                if not other.weights.keys().isdisjoint(waiter.weights):
                    result.bypassed.add(other.seq)
            return
        result.blocked[waiter.seq] = reason
        if reason in ("slots", "rate"):
            passed_over.append(waiter)
            if waiter.skips >= max_skips:
                result.reserving.add(waiter.seq)
                for name, weight in waiter.weights.items():
                    pools[name].reserved_slots += weight
                    pools[name].reserved_tokens += weight

    walk(pools, waiters, visit)
    return result


def service_order(pools: Mapping[str, PoolState], waiters: Iterable[Waiter]) -> list[Waiter]:
    """The order the waiters would be served in if each were granted in turn (for display and
    queue positions; capacity is ignored). ``pools`` is updated as if each were granted."""
    order: list[Waiter] = []

    def visit(waiter: Waiter) -> None:
        order.append(waiter)
        for name, weight in waiter.weights.items():
            state = pools.get(name)
            if state is not None:
                state.add(waiter.holder.project, waiter.holder.domain, weight)

    walk(pools, waiters, visit)
    return order
