"""Hypothesis interleaves requests, renewals, releases, cancels, pushbacks and expiry (a fake
clock) and checks the invariants after every step, on SQLite and on PostgreSQL:

- no pool holds more than its slots, no project or domain more than its cap;
- every lease the manager handed out and that has not expired is in the database, unchanged;
- a lease that was released or lost cannot be renewed, and releasing it touches no other lease;
- a renewal succeeds exactly when the lease has not expired;
- after ``poll`` (a pass over every queue), every waiter left is blocked: nothing that fits
  waits behind something that does not (no head-of-line blocking);
- grants that no call returned are exactly the undelivered ones, and ``poll`` returns them.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pool_helpers import POOL_TABLES, Clock

from taskfabric.metadata import MetadataStore
from taskfabric.pools import Holder, Lease, PoolError, PoolManager, PoolSpec
from taskfabric.pools._fair import PoolState, Waiter, blocked_by

SPECS = {
    "a": PoolSpec("a", 3, project_caps={"p0": 2}, lease_ttl=10),
    "b": PoolSpec("b", 4, rate=0.5, burst=2, lease_ttl=10),
    "c": PoolSpec("c", 2, domain_caps={"d1": 1}, lease_ttl=6),
}
PROJECTS = ("p0", "p1", "p2")
DOMAINS = ("d0", "d1")

weights_strategy = st.dictionaries(
    st.sampled_from(sorted(SPECS)), st.integers(1, 2), min_size=1, max_size=3
)


def make_machine(engine: sa.engine.Engine) -> type[RuleBasedStateMachine]:
    class PoolMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            with engine.begin() as conn:
                for table in POOL_TABLES:
                    conn.execute(sa.text(f"DELETE FROM {table}"))
            self.clock = Clock()
            # max_skips so high that nothing reserves: then after a pass no waiter may fit
            self.pm = PoolManager(engine, SPECS, owner="me", clock=self.clock, max_skips=10**6)
            self.held: dict[int, Lease] = {}
            self.stale: list[Lease] = []
            self.asked: dict[Holder, dict[str, int]] = {}
            self.serial = 0
            self.pushbacks = 0

        def teardown(self) -> None:
            if hasattr(self, "pm"):
                self.pm.close()

        # -- helpers --------------------------------------------------------------------

        def take(self, leases: list[Lease]) -> None:
            for lease in leases:
                assert lease.token not in self.held
                self.held[lease.token] = lease
                self.asked.pop(lease.holder, None)

        def db_leases(self) -> dict[int, tuple[Holder, dict[str, int], float, bool]]:
            found: dict[int, tuple[Holder, dict[str, int], float, bool]] = {}
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT l.token, l.execution_id, l.node_id, l.attempt, l.project, "
                        "l.domain, l.expires_at, l.delivered, g.pool, g.weight "
                        "FROM pool_leases l JOIN pool_grants g ON g.token = l.token"
                    )
                ).all()
            for row in rows:
                holder = Holder(row[1], row[2], row[3], row[4], row[5])
                entry = found.setdefault(row[0], (holder, {}, row[6], bool(row[7])))
                entry[1][row[8]] = row[9]
            return found

        # -- rules ----------------------------------------------------------------------

        @rule(
            weights=weights_strategy,
            project=st.sampled_from(PROJECTS),
            domain=st.sampled_from(DOMAINS),
            priority=st.integers(0, 2),
        )
        def request_new(
            self, weights: dict[str, int], project: str, domain: str, priority: int
        ) -> None:
            self.serial += 1
            holder = Holder(f"ex{self.serial}", "n0", 1, project, domain)
            fits = all(w <= SPECS[p].most_grantable(project, domain) for p, w in weights.items())
            try:
                lease = self.pm.request(holder, weights, priority)
            except PoolError:
                assert not fits
                return
            assert fits
            if lease is None:
                self.asked[holder] = weights
            else:
                assert lease.weights == weights
                self.take([lease])

        @precondition(lambda self: self.asked)
        @rule(data=st.data())
        def request_again(self, data: st.DataObject) -> None:
            holder = data.draw(st.sampled_from(sorted(self.asked, key=str)))
            lease = self.pm.request(holder, self.asked[holder])
            if lease is not None:
                if lease.token in self.held:  # granted earlier by a pass, then polled
                    assert self.held[lease.token] == lease
                else:
                    self.take([lease])

        @rule()
        def poll(self) -> None:
            self.take(self.pm.poll())
            self.check_no_waiter_fits()

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            token = data.draw(st.sampled_from(sorted(self.held)))
            lease = self.held.pop(token)
            self.take(self.pm.release(lease))
            self.stale.append(lease)

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def renew(self, data: st.DataObject) -> None:
            token = data.draw(st.sampled_from(sorted(self.held)))
            lease = self.held[token]
            renewed = self.pm.renew(lease)
            if lease.expires_at >= self.clock.now:
                assert renewed is not None and renewed.token == token
                assert renewed.expires_at > lease.expires_at or renewed.expires_at == (
                    lease.expires_at
                )
                self.held[token] = renewed
            else:
                assert renewed is None
                self.stale.append(self.held.pop(token))

        @precondition(lambda self: self.stale)
        @rule(data=st.data())
        def stale_lease_has_no_effect(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.stale))
            before = self.db_leases()
            assert self.pm.renew(lease) is None
            # releasing it removes its own rows (still there if it expired and was not
            # reclaimed yet) and, if that runs a pass, leases that expired; every other lease
            # is left as it was
            self.take(self.pm.release(lease))
            after = self.db_leases()
            assert lease.token not in after
            for token, entry in before.items():
                if token != lease.token and entry[2] >= self.clock.now:
                    assert after.get(token) == entry

        @precondition(lambda self: self.held or self.asked)
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            holders = sorted({*self.asked, *(x.holder for x in self.held.values())}, key=str)
            holder = data.draw(st.sampled_from(holders))
            self.asked.pop(holder, None)
            for token, lease in list(self.held.items()):
                if lease.holder == holder:
                    self.stale.append(self.held.pop(token))
            self.take(self.pm.cancel(holder))
            assert holder not in {entry[0] for entry in self.db_leases().values()}

        @rule(seconds=st.sampled_from([0.4, 1.0, 3.0, 7.0]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule()
        def reap(self) -> None:
            self.pm.reap_expired()
            for token, lease in list(self.held.items()):
                if lease.expires_at < self.clock.now:
                    self.stale.append(self.held.pop(token))

        @precondition(lambda self: self.pushbacks < 2)
        @rule(pool=st.sampled_from(sorted(SPECS)), seconds=st.sampled_from([0.0, 2.0]))
        def pushback(self, pool: str, seconds: float) -> None:
            self.pushbacks += 1
            assert self.pm.pushback(pool, seconds) >= self.clock.now + seconds

        # -- invariants -----------------------------------------------------------------

        @invariant()
        def within_slots_and_caps(self) -> None:
            if not hasattr(self, "pm"):
                return
            total: dict[str, int] = defaultdict(int)
            by_project: dict[tuple[str, str], int] = defaultdict(int)
            by_domain: dict[tuple[str, str], int] = defaultdict(int)
            for holder, weights, _, _ in self.db_leases().values():
                for pool, weight in weights.items():
                    total[pool] += weight
                    by_project[pool, holder.project] += weight
                    by_domain[pool, holder.domain] += weight
            for pool, spec in SPECS.items():
                assert total[pool] <= spec.slots
                for project in PROJECTS:
                    cap = spec.project_cap(project)
                    assert cap is None or by_project[pool, project] <= cap
                for domain in DOMAINS:
                    cap = spec.domain_cap(domain)
                    assert cap is None or by_domain[pool, domain] <= cap

        @invariant()
        def handed_out_leases_are_valid(self) -> None:
            if not hasattr(self, "pm"):
                return
            in_db = self.db_leases()
            for token, lease in self.held.items():
                if lease.expires_at >= self.clock.now:
                    holder, weights, expires_at, delivered = in_db[token]
                    assert (holder, weights, expires_at, delivered) == (
                        lease.holder,
                        dict(lease.weights),
                        lease.expires_at,
                        True,
                    )
            stale = {lease.token for lease in self.stale}
            for token, (_, _, expires_at, delivered) in in_db.items():
                if token in self.held or not delivered:
                    continue
                # handed out, then lost to expiry, and not reclaimed yet
                assert token in stale and expires_at < self.clock.now, (
                    "a lease was marked delivered but returned to nobody"
                )
            seen = [holder for holder, _, _, _ in in_db.values()]
            assert len(seen) == len(set(seen)), "a holder has two leases"

        def check_no_waiter_fits(self) -> None:
            now = self.clock.now
            states = {}
            statuses = self.pm.status()
            for status in statuses:
                state = PoolState(
                    status.spec,
                    tokens=float("inf") if status.tokens is None else status.tokens,
                    paused=status.paused_until is not None,
                )
                for held in status.holders:
                    state.add(held.holder.project, held.holder.domain, held.weight)
                states[status.name] = state
            queued: dict[Holder, dict[str, int]] = defaultdict(dict)
            for status in statuses:
                for waiter in status.waiters:
                    queued[waiter.holder][status.name] = waiter.weight
            for holder, weights in queued.items():
                reason = blocked_by(states, Waiter(holder, weights, 0, 0))
                assert reason is not None, f"{holder} waits at {now} though {weights} fits"

    return PoolMachine


def run_machine(url: str, examples: int) -> None:
    store = MetadataStore(url, migrate=False)
    try:
        machine = make_machine(store.engine)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        store.close()


def test_invariants_hold_on_sqlite(sqlite_pools_url: str) -> None:
    run_machine(sqlite_pools_url, examples=60)


def test_invariants_hold_on_postgres(postgres_pools_url: str) -> None:
    run_machine(postgres_pools_url, examples=25)
