"""Every semantic of the pool manager, on SQLite and on PostgreSQL (``db_url`` runs both)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from pool_helpers import Clock, holder

from taskfabric.pools import Lease, PoolError, PoolManager, PoolSpec

Make = Callable[..., PoolManager]


def in_use(manager: PoolManager, pool: str) -> int:
    return next(s.in_use for s in manager.status([pool]))


def waiting(manager: PoolManager, pool: str) -> list[str]:
    return [w.holder.execution_id for w in manager.status([pool])[0].waiters]


def granted(lease: Lease | None) -> Lease:
    assert lease is not None, "expected a grant"
    return lease


def hand_on(pm: PoolManager, lease: Lease) -> list[Lease]:
    """Release ``lease``; the grants that its slots went to, in any execution of this owner
    (``release`` returns those of its own execution, ``poll`` the others)."""
    return pm.release(lease) + pm.poll()


# -- slots and atomicity ----------------------------------------------------------------------


def test_grants_up_to_the_slots_then_queues(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("a", 2))
    first = granted(pm.request(holder("1"), {"a": 1}))
    second = granted(pm.request(holder("2"), {"a": 1}))
    assert pm.request(holder("3"), {"a": 1}) is None
    assert in_use(pm, "a") == 2
    assert pm.waiting_position(holder("3")) == {"a": 1}
    assert second.token > first.token
    # the freed slot goes to the waiter at once
    handed = hand_on(pm, first)
    assert [lease.holder for lease in handed] == [holder("3")]
    assert in_use(pm, "a") == 2 and waiting(pm, "a") == []


def test_a_request_weighs_several_slots(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("a", 3))
    big = granted(pm.request(holder("big"), {"a": 2}))
    assert pm.request(holder("two"), {"a": 2}) is None
    assert granted(pm.request(holder("one"), {"a": 1})).weights == {"a": 1}
    assert in_use(pm, "a") == 3
    hand_on(pm, big)
    assert in_use(pm, "a") == 3  # "two" got both freed slots
    assert {h.holder.execution_id for h in pm.status(["a"])[0].holders} == {"ex-one", "ex-two"}


def test_several_pools_are_all_or_nothing(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("a", 2), PoolSpec("b", 1))
    b_holder = granted(pm.request(holder("b"), {"b": 1}))
    assert pm.request(holder("ab"), {"a": 1, "b": 1}) is None
    # nothing of "a" is held while "b" is missing
    assert in_use(pm, "a") == 0
    assert pm.waiting_position(holder("ab")) == {"a": 1, "b": 1}
    # someone who needs only "a" is not held up by the waiter that also needs "b"
    only_a = granted(pm.request(holder("a"), {"a": 1}))
    handed = hand_on(pm, b_holder)
    assert [lease.weights for lease in handed] == [{"a": 1, "b": 1}]
    assert in_use(pm, "a") == 2 and in_use(pm, "b") == 1
    pm.release(only_a)
    pm.release(handed[0])
    assert in_use(pm, "a") == 0 and in_use(pm, "b") == 0


@pytest.mark.parametrize(
    ("spec", "weights", "message"),
    [
        (PoolSpec("a", 2), {"nope": 1}, "unknown pool 'nope' (configured pools: a)"),
        (PoolSpec("a", 2), {"a": 3}, "asks for 3 slots but at most 2"),
        (PoolSpec("a", 2), {"a": 0}, "integer >= 1"),
        (PoolSpec("a", 4, project_caps={"*": 1}), {"a": 2}, "project cap 1"),
        (PoolSpec("a", 4, domain_caps={"d": 2}), {"a": 3}, "domain cap 2"),
        (PoolSpec("a", 4, rate=1.0, burst=2), {"a": 3}, "burst 2"),
        (PoolSpec("a", 4), {}, "at least one pool"),
    ],
)
def test_requests_that_can_never_be_granted_fail_at_once(
    make_manager: Make, spec: PoolSpec, weights: dict[str, int], message: str
) -> None:
    pm = make_manager(spec)
    with pytest.raises(PoolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pm.request(holder("x"), weights)


def test_request_is_idempotent(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("a", 1))
    lease = granted(pm.request(holder("1"), {"a": 1}))
    assert pm.request(holder("1"), {"a": 1}) == lease  # the same lease, not a second one
    assert in_use(pm, "a") == 1
    assert pm.request(holder("2"), {"a": 1}) is None
    assert pm.request(holder("3"), {"a": 1}) is None
    assert pm.request(holder("2"), {"a": 1}) is None  # keeps its place
    assert waiting(pm, "a") == ["ex-2", "ex-3"]


# -- leases -----------------------------------------------------------------------------------


def test_renew_extends_and_expiry_reclaims(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("a", 1, lease_ttl=10))
    lease = granted(pm.request(holder("1"), {"a": 1}))
    assert lease.expires_at == clock.now + 10
    clock.advance(8)
    renewed = granted(pm.renew(lease))
    assert renewed.expires_at == clock.now + 10 and renewed.token == lease.token
    clock.advance(8)  # 16 s after the grant, 8 after the renewal: still held
    assert pm.request(holder("2"), {"a": 1}) is None
    clock.advance(3)  # expired now: the holder was killed, its machine is gone
    assert pm.reap_expired() == 1
    assert in_use(pm, "a") == 1  # reclaimed and handed to the waiter in the same pass
    assert [h.holder for h in pm.status(["a"])[0].holders] == [holder("2")]
    assert pm.renew(renewed) is None


def test_a_stale_holder_cannot_free_or_renew_the_new_holders_slot(
    make_manager: Make, clock: Clock
) -> None:
    pm = make_manager(PoolSpec("a", 1, lease_ttl=10))
    stale = granted(pm.request(holder("old"), {"a": 1}))
    clock.advance(11)
    # no reaper ran: the next request reclaims the expired lease itself
    fresh = granted(pm.request(holder("new"), {"a": 1}))
    assert fresh.token > stale.token
    assert pm.renew(stale) is None
    pm.release(stale)
    pm.release(stale)
    assert in_use(pm, "a") == 1
    assert granted(pm.renew(fresh)).token == fresh.token
    # the same holder asking again after losing its lease gets a new token
    assert pm.request(holder("old"), {"a": 1}) is None
    handed = hand_on(pm, fresh)
    assert [lease.holder for lease in handed] == [holder("old")]
    assert handed[0].token > fresh.token


def test_an_expired_lease_cannot_be_renewed_even_before_it_is_reaped(
    make_manager: Make, clock: Clock
) -> None:
    pm = make_manager(PoolSpec("a", 1, lease_ttl=5))
    lease = granted(pm.request(holder("1"), {"a": 1}))
    clock.advance(5.5)
    assert pm.renew(lease) is None
    assert pm.renew_many([lease]) == [None]


def test_renew_many_and_release_many(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("a", 3, lease_ttl=10), PoolSpec("b", 3, lease_ttl=4))
    leases = [granted(pm.request(holder(str(i)), {"a": 1, "b": 1})) for i in range(3)]
    assert {lease.expires_at for lease in leases} == {clock.now + 4}  # the shorter TTL
    pm.release(leases[1])
    clock.advance(3)
    renewed = pm.renew_many(leases)
    assert renewed[1] is None
    assert [r.expires_at if r else None for r in renewed] == [clock.now + 4, None, clock.now + 4]
    pm.release_many([r for r in renewed if r] + [leases[1]])
    assert in_use(pm, "a") == 0 and in_use(pm, "b") == 0


def test_release_during_retry_backoff_lets_others_in(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("a", 1))
    first_try = granted(pm.request(holder("t", attempt=1), {"a": 1}))
    assert pm.request(holder("other"), {"a": 1}) is None
    hand_on(pm, first_try)  # attempt 1 failed: the engine releases before the backoff
    assert [h.holder for h in pm.status(["a"])[0].holders] == [holder("other")]
    assert pm.request(holder("t", attempt=2), {"a": 1}) is None  # the retry queues anew
    assert waiting(pm, "a") == ["ex-t"]


def test_cancel_leaves_the_queue_and_frees_an_unseen_grant(make_manager: Make) -> None:
    a = make_manager(PoolSpec("p", 1), owner="a")
    b = make_manager(PoolSpec("p", 1), owner="b")
    held = granted(a.request(holder("1"), {"p": 1}))
    assert b.request(holder("2"), {"p": 1}) is None
    assert a.request(holder("3"), {"p": 1}) is None
    b.cancel(holder("2"))
    assert waiting(a, "p") == ["ex-3"] and b.waiting_position(holder("2")) == {}
    assert hand_on(a, held)[0].holder == holder("3")
    # a grant handed to a waiter that is cancelled before it saw it is released
    assert b.request(holder("4"), {"p": 1}) is None
    a.release(a.leases()[0])
    assert b.leases()[0].holder == holder("4")
    b.cancel(holder("4"))
    assert in_use(a, "p") == 0 and b.poll() == []


def test_release_execution_and_release_all(make_manager: Make) -> None:
    a = make_manager(PoolSpec("p", 2), owner="a")
    b = make_manager(PoolSpec("p", 2), owner="b")
    granted(a.request(holder("x"), {"p": 1}))
    granted(a.request(holder("y"), {"p": 1}))
    assert b.request(holder("x", attempt=2), {"p": 1}) is None
    assert b.request(holder("z"), {"p": 1}) is None
    a.release_execution("ex-x")  # the lease of x#1 and the waiter x#2 go
    assert [h.holder for h in a.status()[0].holders] == [holder("y"), holder("z")]
    assert waiting(a, "p") == []
    a.release_all()
    assert [h.holder for h in a.status()[0].holders] == [holder("z")]


# -- handing slots on, between processes --------------------------------------------------------


def test_grants_reach_the_waiters_owner_through_poll(make_manager: Make, clock: Clock) -> None:
    a = make_manager(PoolSpec("p", 1, lease_ttl=10), owner="a")
    b = make_manager(PoolSpec("p", 1, lease_ttl=10), owner="b")
    held = granted(a.request(holder("1"), {"p": 1}))
    assert b.request(holder("2"), {"p": 1}) is None
    assert a.release(held) == []  # not a's waiter: b picks it up
    got = b.poll()
    assert [lease.holder for lease in got] == [holder("2")]
    assert b.poll() == []  # delivered once
    assert b.request(holder("2"), {"p": 1}) == got[0]  # asking again returns it too
    # a waiter whose owner stops polling leaves the queue after a TTL
    assert a.request(holder("3"), {"p": 1}) is None
    clock.advance(11)
    b.poll()  # b's own lease expired too: reclaimed, and nobody alive waits
    assert waiting(b, "p") == [] and in_use(b, "p") == 0


def test_polling_keeps_waiters_alive(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 1, lease_ttl=10))
    held = granted(pm.request(holder("1"), {"p": 1}))
    assert pm.request(holder("2"), {"p": 1}) is None
    for _ in range(4):
        clock.advance(4)
        pm.renew(held)
        assert pm.poll() == []
    assert waiting(pm, "p") == ["ex-2"]


# -- the fair queue ----------------------------------------------------------------------------


def drain(pm: PoolManager, leases: list[Lease], rounds: int) -> list[str]:
    """Release the oldest lease ``rounds`` times; the execution ids granted, in order."""
    order = []
    for _ in range(rounds):
        handed = hand_on(pm, leases.pop(0))
        leases.extend(handed)
        order.extend(lease.holder.execution_id for lease in handed)
    return order


def test_priority_then_arrival(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 1))
    leases = [granted(pm.request(holder("0"), {"p": 1}))]
    for name, priority in (("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5), ("mid", 1)):
        assert pm.request(holder(name), {"p": 1}, priority=priority) is None
    assert waiting(pm, "p") == ["ex-high1", "ex-high2", "ex-mid", "ex-low1", "ex-low2"]
    assert pm.waiting_position(holder("mid")) == {"p": 3}
    assert drain(pm, leases, 5) == ["ex-high1", "ex-high2", "ex-mid", "ex-low1", "ex-low2"]


def test_projects_share_fairly_by_weight(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 3, project_weights={"big": 2}))
    leases = [granted(pm.request(holder(f"h{i}", "small"), {"p": 1})) for i in range(3)]
    # "small" queued 6 first, then "big" 6: arrival alone would serve all of small first
    for i in range(6):
        assert pm.request(holder(f"s{i}", "small"), {"p": 1}) is None
    for i in range(6):
        assert pm.request(holder(f"b{i}", "big"), {"p": 1}) is None
    order = drain(pm, leases, 6)
    # small holds 3 when it starts, so big (weight 2) catches up first, then they alternate
    # in proportion 2:1
    assert order[:2] == ["ex-b0", "ex-b1"]
    held = [h.holder.project for h in pm.status()[0].holders]
    assert held.count("big") == 2 and held.count("small") == 1


def test_one_tenant_cannot_starve_another(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 2))
    leases = [granted(pm.request(holder(f"a{i}", "a"), {"p": 1})) for i in range(2)]
    for i in range(20):
        pm.request(holder(f"a{i + 2}", "a"), {"p": 1})
    assert pm.request(holder("b0", "b"), {"p": 1}) is None
    assert pm.waiting_position(holder("b0", "b")) == {"p": 1}  # 20 arrived before it
    assert drain(pm, leases, 1) == ["ex-b0"]


def test_no_head_of_line_blocking_and_no_starvation(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 4), max_skips=2)
    s = {i: granted(pm.request(holder(f"s{i}"), {"p": 1})) for i in range(3)}

    def big() -> tuple[int, bool]:
        found = next(w for w in pm.status()[0].waiters if w.holder == holder("big"))
        return found.skips, found.reserving

    assert pm.request(holder("big"), {"p": 3}) is None
    # a smaller request that fits goes ahead of the big one (no head-of-line blocking) ...
    s[3] = granted(pm.request(holder("s3"), {"p": 1}))
    assert big() == (1, False)
    assert pm.request(holder("s4"), {"p": 1}) is None
    assert [lease.holder for lease in hand_on(pm, s[0])] == [holder("s4")]
    assert big() == (2, True)
    # ... until it has been passed over max_skips times: then freed slots wait for it
    assert pm.request(holder("s5"), {"p": 1}) is None
    assert hand_on(pm, s[1]) == []
    assert hand_on(pm, s[2]) == []
    assert [lease.holder for lease in hand_on(pm, s[3])] == [holder("big")]
    assert in_use(pm, "p") == 4 and waiting(pm, "p") == ["ex-s5"]


def test_a_waiter_held_back_by_its_own_cap_does_not_block_others(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 4, project_caps={"*": 2, "vip": 3}, domain_caps={"prod": 1}))
    granted(pm.request(holder("a1", "a"), {"p": 1}))
    granted(pm.request(holder("a2", "a"), {"p": 1}))
    assert pm.request(holder("a3", "a"), {"p": 1}) is None  # project cap 2
    granted(pm.request(holder("b1", "b"), {"p": 1}))  # slots are free for others
    granted(pm.request(holder("v1", "vip", "prod"), {"p": 1}))
    assert in_use(pm, "p") == 4
    status = pm.status()[0]
    assert [w.holder.execution_id for w in status.waiters] == ["ex-a3"]
    assert not status.waiters[0].reserving and status.waiters[0].skips == 0


def test_domain_caps(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 4, domain_caps={"prod": 1}))
    granted(pm.request(holder("1", "a", "prod"), {"p": 1}))
    assert pm.request(holder("2", "b", "prod"), {"p": 1}) is None
    granted(pm.request(holder("3", "b", "dev"), {"p": 1}))


# -- rates and pushback ------------------------------------------------------------------------


def test_rate_is_a_token_bucket(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 10, rate=2.0, burst=3))
    leases = [granted(pm.request(holder(str(i)), {"p": 1})) for i in range(3)]
    assert pm.request(holder("3"), {"p": 1}) is None  # slots free, bucket empty
    assert pm.next_grant_time() == pytest.approx(clock.now + 0.5)
    pm.release_many(leases)  # releasing gives back slots, not tokens
    assert pm.poll() == []
    clock.advance(0.5)
    assert [lease.holder for lease in pm.poll()] == [holder("3")]
    assert pm.next_grant_time() is None
    clock.advance(100)  # the bucket refills up to the burst only
    assert sum(pm.request(holder(f"r{i}"), {"p": 1}) is not None for i in range(5)) == 3


def test_a_clock_reading_behind_the_last_grant_refills_nothing_twice(
    make_manager: Make, clock: Clock
) -> None:
    """Engines on other hosts read clocks a little apart, and a reading taken before waiting
    for the pool lock is older than the grant made meanwhile. Such a reading must not move the
    bucket's refill time back, or the next refill would count that time twice and the service
    would see more than burst + rate x time (found by the three-engine proof on PostgreSQL)."""
    spec = PoolSpec("p", 100, rate=10.0, burst=2)
    a = make_manager(spec, owner="a")
    behind = Clock(clock.now - 1.0)
    b = make_manager(spec, owner="b", clock=behind)
    granted(a.request(holder("1"), {"p": 1}))
    granted(b.request(holder("2"), {"p": 1}))  # the last token, taken one second "earlier"
    assert a.request(holder("3"), {"p": 1}) is None  # no time passed: the bucket is empty
    clock.advance(0.15)
    behind.advance(0.15)
    (late,) = a.poll()  # 0.15 s x 10/s = 1.5 tokens
    assert (late.holder, late.acquired_at) == (holder("3"), clock.now)
    assert b.request(holder("4"), {"p": 1}) is None
    assert a.status(["p"])[0].tokens == pytest.approx(0.5)


def test_a_request_takes_as_many_tokens_as_it_weighs(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 10, rate=1.0, burst=4))
    granted(pm.request(holder("1"), {"p": 3}))
    assert pm.request(holder("2"), {"p": 2}) is None
    assert pm.next_grant_time() == pytest.approx(clock.now + 1)
    clock.advance(1)
    assert pm.request(holder("2"), {"p": 2}) is not None


def test_further_calls_under_a_lease_take_tokens_and_may_go_into_debt(
    make_manager: Make, clock: Clock
) -> None:
    pm = make_manager(PoolSpec("r", 10, rate=2.0, burst=2), PoolSpec("s", 10))
    lease = granted(pm.request(holder("1"), {"r": 1, "s": 1}))  # the grant pays for one call
    assert pm.take_tokens({"r": 1, "s": 1}) == 0.0  # the bucket's last token
    assert pm.take_tokens({"r": 1}) == pytest.approx(0.5)  # 1 token short at 2/s
    assert pm.take_tokens({"r": 1}) == pytest.approx(1.0)  # 2 short
    assert pm.status(["r"])[0].tokens == pytest.approx(-2.0)
    # a new grant waits until the debt is paid back and one token is there again
    assert pm.request(holder("2"), {"r": 1}) is None
    assert pm.next_grant_time() == pytest.approx(clock.now + 1.5)
    clock.advance(1.4)
    assert pm.poll() == []
    clock.advance(0.1)
    assert [x.holder for x in pm.poll()] == [holder("2")]
    # during a pushback the call waits for the pause, then for its token
    pm.pushback("r", 10)
    assert pm.take_tokens({"r": 2}) == pytest.approx(10 + 1.0)
    # a pool without a rate is not touched; an unknown pool is an error
    assert pm.take_tokens({"s": 5}) == 0.0
    with pytest.raises(PoolError, match="unknown pool 'nope'"):
        pm.take_tokens({"nope": 1})
    pm.release(lease)


def test_pushback_pauses_the_pool_and_empties_the_bucket(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 5), PoolSpec("r", 5, rate=1.0, burst=5))
    held = granted(pm.request(holder("1"), {"p": 1}))
    until = pm.pushback("p", 30)  # HTTP 429, Retry-After: 30
    assert until == clock.now + 30
    assert pm.request(holder("2"), {"p": 1}) is None
    assert pm.status(["p"])[0].paused_until == until
    assert pm.next_grant_time() == until
    assert granted(pm.renew(held))  # running work is not touched
    clock.advance(29)
    assert pm.poll() == []
    clock.advance(1)
    assert [lease.holder for lease in pm.poll()] == [holder("2")]
    # a rate-limited pool starts refilling only when the pause ends
    pm.pushback("r", 10)
    assert pm.status(["r"])[0].tokens == 0
    assert pm.request(holder("3"), {"r": 1}) is None
    assert pm.next_grant_time() == pytest.approx(clock.now + 11)
    clock.advance(10.5)
    assert pm.poll() == []
    clock.advance(0.5)
    assert len(pm.poll()) == 1


# -- transactions, config, status --------------------------------------------------------------


def test_calls_fold_into_the_callers_transaction(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 2))
    with pm.begin() as conn:
        lease = granted(pm.request(holder("1"), {"p": 1}, conn=conn))
        assert pm.renew(lease, conn=conn) is not None
        other = granted(pm.request(holder("2"), {"p": 1}, conn=conn))
        assert pm.request(holder("3"), {"p": 1}, conn=conn) is None
        assert pm.release(other, conn=conn) == []  # another execution's: poll hands it out
        assert [x.holder for x in pm.poll(conn=conn)] == [holder("3")]
    assert in_use(pm, "p") == 2
    with pytest.raises(RuntimeError), pm.begin() as conn:
        pm.release(lease, conn=conn)
        raise RuntimeError("the tick failed")
    assert in_use(pm, "p") == 2  # rolled back with the caller's transaction
    with pm.begin() as conn:
        pm.release_many(pm.leases(), conn=conn)
    assert in_use(pm, "p") == 0


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite: one write lock
def test_postgres_release_locks_only_the_pools_of_its_lease(
    make_manager: Make, db_url: str
) -> None:
    """With many pools, a release that nobody waits behind locks its own pools only: it
    does not queue behind transactions busy with other pools (a lock on them fails it here
    at once, through ``lock_timeout``); one that a waiter stands behind still hands on."""
    specs = [PoolSpec(name, 1) for name in ("a", "b", "c")]
    pm = make_manager(*specs)
    url = sa.make_url(db_url)
    options = f"{url.query.get('options', '')} -clock_timeout=5000".strip()
    impatient_engine = sa.create_engine(url.update_query_dict({"options": options}))
    impatient = PoolManager(impatient_engine, {s.name: s for s in specs}, owner="a")
    try:
        lease = granted(impatient.request(holder("1"), {"b": 1}))
        with pm.engine.connect() as blocker:
            blocker.execute(sa.text("SELECT name FROM pools WHERE name IN ('a', 'c') FOR UPDATE"))
            assert impatient.release(lease) == []
            blocker.rollback()
        assert in_use(pm, "b") == 0
        # a waiter behind the lease, asking for a pool that sorts before it too
        lease = granted(impatient.request(holder("2"), {"b": 1}))
        assert impatient.request(holder("3"), {"a": 1, "b": 1}) is None
        assert [x.holder for x in impatient.release(lease) + impatient.poll()] == [holder("3")]
        assert in_use(pm, "a") == 1 and in_use(pm, "b") == 1
    finally:
        impatient.close()
        impatient_engine.dispose()


def test_config_changes_reach_the_database(make_manager: Make) -> None:
    make_manager(PoolSpec("p", 2, rate=1.0, burst=8))
    pm = make_manager(PoolSpec("p", 3, rate=1.0, burst=2))
    status = pm.status()[0]
    assert status.spec.slots == 3 and status.tokens == 2
    with pm.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT slots, burst FROM pools WHERE name = 'p'")).one()
    assert tuple(row) == (3, 2)


def test_status_lists_holders_and_waiters_in_order(make_manager: Make, clock: Clock) -> None:
    pm = make_manager(PoolSpec("p", 1, lease_ttl=20), PoolSpec("q", 2))
    granted(pm.request(holder("1"), {"p": 1, "q": 1}))
    clock.advance(5)
    assert pm.request(holder("2", "x"), {"p": 1}) is None
    assert pm.request(holder("3", "y"), {"p": 1, "q": 1}, priority=2) is None
    p, q = pm.status()
    assert p.in_use == 1 and q.in_use == 1
    assert [(h.holder, h.acquired_at, h.expires_at) for h in p.holders] == [
        (holder("1"), clock.now - 5, clock.now + 15)
    ]
    assert [(w.position, w.holder.execution_id, w.priority) for w in p.waiters] == [
        (1, "ex-3", 2),
        (2, "ex-2", 0),
    ]
    assert [w.holder.execution_id for w in q.waiters] == ["ex-3"]
    assert pm.waiting_position(holder("2", "x")) == {"p": 2}
    with pytest.raises(PoolError, match="unknown pool 'z'"):
        pm.status(["z"])


def test_tokens_increase_in_grant_order(make_manager: Make) -> None:
    a = make_manager(PoolSpec("p", 1), owner="a")
    b = make_manager(PoolSpec("p", 1), owner="b")
    tokens = []
    for i in range(6):
        pm = (a, b)[i % 2]
        lease = granted(pm.request(holder(str(i)), {"p": 1}))
        tokens.append(lease.token)
        pm.release(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 6


def test_validate_request_before_launch_and_leases_hash(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("p", 4, project_caps={"small": 1}))
    assert pm.validate_request({"p": 2}, project="big", domain="d") == {"p": 2}
    with pytest.raises(PoolError, match="task 'fetch': pool 'p': asks for 2 slots but at most 1"):
        pm.validate_request({"p": 2}, project="small", domain="d", who="task 'fetch'")
    lease = granted(pm.request(holder("1"), {"p": 1}))
    assert {lease: "running"}[granted(pm.renew(lease))] == "running"


def test_grants_go_to_the_execution_that_asks(make_manager: Make) -> None:
    """One manager serving two executions: what release, cancel and poll hand out."""
    pm = make_manager(PoolSpec("p", 1))
    first = granted(pm.request(holder("x"), {"p": 1}))
    assert pm.request(holder("y"), {"p": 1}) is None  # another execution of this process
    assert pm.release(first) == []  # not x's: left for y's poll
    assert pm.poll(execution_id="ex-x") == []
    (for_y,) = pm.poll(execution_id="ex-y")
    assert for_y.holder == holder("y")
    assert pm.request(holder("x", attempt=2), {"p": 1}) is None
    assert [x.holder for x in pm.release(for_y, execution_id="ex-x")] == [holder("x", attempt=2)]
    # calls whose result an engine may ignore hand nothing out: poll does
    assert pm.request(holder("z"), {"p": 1}) is None
    assert pm.release_execution("ex-x") is None
    assert [x.holder for x in pm.poll()] == [holder("z")]


def test_pause_left_takes_nothing_and_sees_a_pushback_at_once(
    make_manager: Make, clock: Clock
) -> None:
    spec = PoolSpec("p", 2, rate=1.0, burst=2)
    pm = make_manager(spec, PoolSpec("q", 1), owner="a")
    other = make_manager(spec, PoolSpec("q", 1), owner="b")  # another engine process
    assert pm.take_tokens({"p": 0}) == 0.0 == pm.pause_left(["p", "q"])
    assert status_tokens(pm, "p") == 2.0  # a check takes no token
    pm.pushback("q", 5)  # a pool without a rate is paused too
    assert pm.pause_left(["p", "q"]) == 5.0 == other.take_tokens({"q": 0, "p": 0})
    clock.advance(2)
    assert other.pause_left(["q"]) == 3.0
    clock.advance(3)
    assert pm.pause_left(["p", "q"]) == 0.0 == other.pause_left(["q"])


def status_tokens(manager: PoolManager, pool: str) -> float | None:
    return next(s.tokens for s in manager.status([pool]))
