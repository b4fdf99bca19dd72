"""Value types of resource pools: the spec of a pool, a holder, a lease and what status reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from taskfabric.errors import TaskfabricError

#: The key of ``project_caps``, ``domain_caps`` and ``project_weights`` that applies to every
#: project (or domain) not named.
ANY = "*"


class PoolError(TaskfabricError, ValueError):
    """A pool spec or a request is invalid (unknown pool, a weight that can never be granted)."""


def _frozen(values: Mapping[str, int] | Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class PoolSpec:
    """One pool: ``slots`` units of concurrency, optionally a token-bucket rate, caps and weights.

    ``rate`` is in tokens per second (a grant of weight w takes w tokens) and ``burst`` is the
    bucket's size (default: ``slots``). ``project_caps`` / ``domain_caps`` bound the slots that
    one project / domain may hold at once; the key ``"*"`` is the cap of every project (domain)
    not named. ``project_weights`` weigh the fair share between projects (default 1; ``"*"``
    sets the default). ``lease_ttl`` is how long a grant lives without a renewal.
    """

    name: str
    slots: int
    rate: float | None = None
    burst: int | None = None
    project_caps: Mapping[str, int] = field(default_factory=dict)
    domain_caps: Mapping[str, int] = field(default_factory=dict)
    lease_ttl: float = 30.0
    project_weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"pool '{self.name}'"
        if not self.name:
            raise PoolError("a pool needs a name")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise PoolError(f"{where}: slots must be an integer >= 1, got {self.slots!r}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise PoolError(f"{where}: rate must be > 0 tokens per second, got {self.rate!r}")
        burst = self.slots if self.burst is None else self.burst
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise PoolError(f"{where}: burst must be an integer >= 1, got {self.burst!r}")
        if not (self.lease_ttl > 0 and math.isfinite(self.lease_ttl)):
            raise PoolError(f"{where}: lease_ttl must be > 0 seconds, got {self.lease_ttl!r}")
        for label, caps in (("project_caps", self.project_caps), ("domain_caps", self.domain_caps)):
            for key, cap in caps.items():
                if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                    raise PoolError(
                        f"{where}: {label}[{key!r}] must be an integer >= 1, got {cap!r}"
                    )
        for key, weight in self.project_weights.items():
            if not (weight > 0 and math.isfinite(weight)):
                raise PoolError(f"{where}: project_weights[{key!r}] must be > 0, got {weight!r}")
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "project_caps", _frozen(self.project_caps))
        object.__setattr__(self, "domain_caps", _frozen(self.domain_caps))
        object.__setattr__(self, "project_weights", _frozen(self.project_weights))

    @property
    def bucket(self) -> int:
        """The token bucket's size (``burst`` resolved)."""
        return self.slots if self.burst is None else self.burst

    def project_cap(self, project: str) -> int | None:
        return self.project_caps.get(project, self.project_caps.get(ANY))

    def domain_cap(self, domain: str) -> int | None:
        return self.domain_caps.get(domain, self.domain_caps.get(ANY))

    def weight_of(self, project: str) -> float:
        return float(self.project_weights.get(project, self.project_weights.get(ANY, 1.0)))

    def most_grantable(self, project: str, domain: str) -> int:
        """The largest weight a holder of ``project`` / ``domain`` can ever be granted here."""
        limits = [self.slots]
        if self.rate is not None:
            limits.append(self.bucket)
        for cap in (self.project_cap(project), self.domain_cap(domain)):
            if cap is not None:
                limits.append(cap)
        return min(limits)


@dataclass(frozen=True)
class Holder:
    """Who holds (or waits for) a lease: one attempt of one node of one execution."""

    execution_id: str
    node_id: str
    attempt: int
    project: str
    domain: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.execution_id, self.node_id, self.attempt)

    def __str__(self) -> str:
        return f"{self.execution_id}/{self.node_id}#{self.attempt}"


@dataclass(frozen=True)
class Lease:
    """A grant of ``weights`` (pool -> slots) to ``holder``.

    ``token`` is the fencing token: unique, never reused, increasing in the order of grants in
    each pool. ``expires_at`` is an epoch time of the manager's clock; renew before it.
    ``acquired_at`` is when the pool granted it (the granting manager's clock), which is
    earlier than when its holder got it when another process's pass made the grant.
    """

    holder: Holder
    weights: Mapping[str, int]
    token: int
    expires_at: float
    acquired_at: float

    def __hash__(self) -> int:
        return hash(self.token)  # the token identifies a lease; weights is a dict


@dataclass(frozen=True)
class HolderStatus:
    """One lease as ``status()`` shows it in one pool."""

    holder: Holder
    weight: int
    token: int
    owner: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True)
class WaiterStatus:
    """One waiter as ``status()`` shows it in one pool, in the order it would be served."""

    position: int
    holder: Holder
    weight: int
    priority: int
    owner: str
    enqueued_at: float
    skips: int
    reserving: bool
    """Bypassed often enough that it now reserves capacity (see the fairness rule)."""


@dataclass(frozen=True)
class PoolStatus:
    """A pool's configuration and its state in the database."""

    spec: PoolSpec
    in_use: int
    tokens: float | None
    """Tokens in the bucket now (``None`` without a rate)."""
    paused_until: float | None
    """Set after a pushback, while it lasts."""
    holders: tuple[HolderStatus, ...]
    waiters: tuple[WaiterStatus, ...]
    capacity: int | None = None
    """The slots it grants now when ``set_capacity`` sized it (at most ``spec.slots``; in
    this manager); ``None``: ``spec.slots``."""

    @property
    def name(self) -> str:
        return self.spec.name
