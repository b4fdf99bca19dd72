"""The fairness rule on its own (no database): order, skipping, reservations, caps, shares."""

from __future__ import annotations

from pool_helpers import holder

from taskfabric.pools import PoolSpec
from taskfabric.pools._fair import PoolState, Waiter, blocked_by, plan, service_order


def waiter(
    name: str,
    weights: dict[str, int],
    seq: int,
    *,
    project: str = "p",
    priority: int = 0,
    skips: int = 0,
) -> Waiter:
    return Waiter(holder(name, project), weights, priority, seq, skips)


def names(waiters: list[Waiter]) -> list[str]:
    return [w.holder.execution_id.removeprefix("ex-") for w in waiters]


def test_priority_before_share_before_arrival() -> None:
    pools = {"a": PoolState(PoolSpec("a", 10), in_use=3, by_project={"busy": 3})}
    queue = [
        waiter("busy-early", {"a": 1}, 1, project="busy"),
        waiter("idle-late", {"a": 1}, 5, project="idle"),
        waiter("busy-urgent", {"a": 1}, 9, project="busy", priority=1),
    ]
    assert names(service_order(pools, queue)) == ["busy-urgent", "idle-late", "busy-early"]


def test_shares_are_weighted_and_updated_after_each_grant() -> None:
    spec = PoolSpec("a", 100, project_weights={"x": 3})
    queue = [waiter(f"x{i}", {"a": 1}, i, project="x") for i in range(6)]
    queue += [waiter(f"y{i}", {"a": 1}, 10 + i, project="y") for i in range(2)]
    order = names(plan({"a": PoolState(spec)}, queue, max_skips=8).granted)
    assert order == ["x0", "y0", "x1", "x2", "x3", "y1", "x4", "x5"]


def test_a_multi_pool_waiter_is_judged_by_its_busiest_pool() -> None:
    pools = {
        "a": PoolState(PoolSpec("a", 10)),
        "b": PoolState(PoolSpec("b", 10), in_use=4, by_project={"p": 4}),
    }
    queue = [
        waiter("p-ab", {"a": 1, "b": 1}, 1, project="p"),
        waiter("q-a", {"a": 1}, 2, project="q"),
    ]
    assert names(service_order(pools, queue)) == ["q-a", "p-ab"]


def test_skipping_counts_only_where_pools_are_shared() -> None:
    pools = {
        "a": PoolState(PoolSpec("a", 2), in_use=1),
        "b": PoolState(PoolSpec("b", 2)),
    }
    queue = [
        waiter("big-a", {"a": 2}, 1),
        waiter("small-a", {"a": 1}, 2),
        waiter("small-b", {"b": 1}, 3),
    ]
    decided = plan(pools, queue, max_skips=8)
    assert names(decided.granted) == ["small-a", "small-b"]
    assert decided.bypassed == {1} and decided.blocked == {1: "slots"}


def test_a_starving_waiter_reserves_slots_and_tokens() -> None:
    pools = {"a": PoolState(PoolSpec("a", 4, rate=1.0, burst=4), in_use=2, tokens=3.0)}
    queue = [waiter("big", {"a": 3}, 1, skips=8), waiter("small", {"a": 1}, 2)]
    decided = plan(pools, queue, max_skips=8)
    assert decided.granted == [] and decided.reserving == {1}
    assert decided.blocked == {1: "slots", 2: "slots"}
    # with slots enough but tokens short, the reservation holds the tokens back
    pools = {"a": PoolState(PoolSpec("a", 4, rate=1.0, burst=4), tokens=2.0)}
    decided = plan(pools, queue, max_skips=8)
    assert decided.granted == [] and decided.blocked == {1: "rate", 2: "rate"}
    # below max_skips nothing is reserved and the small one goes
    queue[0] = waiter("big", {"a": 3}, 1, skips=7)
    pools = {"a": PoolState(PoolSpec("a", 4, rate=1.0, burst=4), tokens=2.0)}
    decided = plan(pools, queue, max_skips=8)
    assert names(decided.granted) == ["small"] and decided.bypassed == {1}


def test_own_caps_and_pushbacks_neither_reserve_nor_count_skips() -> None:
    spec = PoolSpec("a", 4, project_caps={"capped": 1})
    pools = {"a": PoolState(spec, in_use=1, by_project={"capped": 1})}
    queue = [waiter("c", {"a": 1}, 1, project="capped", skips=99), waiter("o", {"a": 1}, 2)]
    decided = plan(pools, queue, max_skips=8)
    assert names(decided.granted) == ["o"]
    assert decided.blocked == {1: "cap"} and not decided.bypassed and not decided.reserving
    paused = {"a": PoolState(PoolSpec("a", 4), paused=True)}
    assert blocked_by(paused, queue[1]) == "paused"
    assert blocked_by({}, queue[1]) == "unknown"


def test_the_most_telling_reason_wins() -> None:
    spec = PoolSpec("a", 1, rate=1.0, project_caps={"*": 1})
    full = {"a": PoolState(spec, in_use=1, by_project={"p": 1}, tokens=0.0, paused=True)}
    assert blocked_by(full, waiter("w", {"a": 1}, 1)) == "cap"
    full["a"].by_project = {}
    assert blocked_by(full, waiter("w", {"a": 1}, 1)) == "paused"
    full["a"].paused = False
    assert blocked_by(full, waiter("w", {"a": 1}, 1)) == "slots"
    full["a"].in_use = 0
    assert blocked_by(full, waiter("w", {"a": 1}, 1)) == "rate"
