"""The recent pushbacks of each pool: one row per pushback, the newest `KEEP` per pool kept
(older ones are deleted as new ones come), so the table stays small whatever the traffic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskfabric.pools._schema import pool_pushbacks
from taskfabric.pools._spec import Holder

#: Pushbacks kept per pool.
KEEP = 50
PB = pool_pushbacks


@dataclass(frozen=True)
class Pushback:
    """One pushback: the pool granted nothing new from `at` to `paused_until`."""

    pool: str
    at: float
    seconds: float
    paused_until: float
    #: The attempt whose call was pushed back, when the pushback came from one.
    holder: Holder | None


def record(
    conn: Connection, pool: str, at: float, seconds: float, until: float, holder: Holder | None
) -> None:
    """Add a pushback of `pool` and forget its oldest beyond KEEP (in the caller's
    transaction)."""
    who = (
        {
            "execution_id": holder.execution_id,
            "node_id": holder.node_id,
            "project": holder.project,
            "domain": holder.domain,
        }
        if holder is not None
        else {}
    )
    conn.execute(PB.insert().values(pool=pool, at=at, seconds=seconds, paused_until=until, **who))
    kept = sa.select(PB.c.id).where(PB.c.pool == pool).order_by(PB.c.id.desc()).limit(KEEP)
    conn.execute(PB.delete().where(PB.c.pool == pool, PB.c.id.not_in(kept.scalar_subquery())))


def recent(conn: Connection, names: Iterable[str], limit: int = KEEP) -> dict[str, list[Pushback]]:
    """pool -> its last `limit` pushbacks, newest first."""
    found: dict[str, list[Pushback]] = {}
    for name in names:
        rows = conn.execute(
            sa.select(PB).where(PB.c.pool == name).order_by(PB.c.id.desc()).limit(limit)
        ).all()
        found[name] = [
            Pushback(
                row.pool,
                row.at,
                row.seconds,
                row.paused_until,
                Holder(row.execution_id, row.node_id, 0, row.project, row.domain)
                if row.execution_id
                else None,
            )
            for row in rows
        ]
    return found
