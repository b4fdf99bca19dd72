"""The recent pushbacks of each pool: who was pushed back, when and for how long, the newest
kept up to a bound."""

from __future__ import annotations

from collections.abc import Callable

from pool_helpers import Clock, holder

from taskfabric.pools import PoolManager, PoolSpec
from taskfabric.pools._pushbacks import KEEP

Make = Callable[..., PoolManager]


def test_pushbacks_are_kept_newest_first_with_who_and_how_long(
    make_manager: Make, clock: Clock
) -> None:
    pm = make_manager(PoolSpec("p", 2), PoolSpec("q", 2))
    assert pm.pushbacks() == {"p": [], "q": []}
    pm.pushback("p", 30, holder=holder("a", project="shop"))
    clock.advance(5)
    pm.pushback("p", 10)  # from a backend with no attempt at hand: no holder
    (newest, older), others = pm.pushbacks()["p"], pm.pushbacks()["q"]
    assert others == []
    assert (older.at, older.seconds, older.paused_until) == (clock.now - 5, 30, clock.now + 25)
    assert older.holder is not None
    assert (older.holder.execution_id, older.holder.node_id) == ("ex-a", "n0")
    assert (older.holder.project, older.holder.domain) == ("shop", "d")
    # a shorter pushback during a longer one does not shorten the pause
    assert (newest.seconds, newest.paused_until, newest.holder) == (10, clock.now + 25, None)
    assert [b.seconds for b in pm.pushbacks(["p"], limit=1)["p"]] == [10]


def test_only_the_newest_pushbacks_of_a_pool_are_kept(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 2), PoolSpec("q", 2))
    pm.pushback("q", 1)
    for i in range(KEEP + 5):
        clock.advance(1)
        pm.pushback("p", float(i))
    kept = pm.pushbacks()["p"]
    assert [b.seconds for b in kept] == [float(i) for i in range(KEEP + 4, 4, -1)]
    assert len(pm.pushbacks()["q"]) == 1  # another pool's are not touched
