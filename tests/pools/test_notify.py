"""Grant notices: a pass in one process wakes the process whose waiter it granted (PostgreSQL
``LISTEN``/``NOTIFY``), so that process polls at once instead of at its next tick."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from pool_helpers import holder

from taskfabric.pools import PoolManager, PoolSpec

Make = Callable[..., PoolManager]
WAIT = 10.0  # seconds: generous, a notice takes milliseconds


def _listening(pm: PoolManager) -> threading.Event:
    """Subscribe; the listener wakes its subscribers once when its LISTEN is in place."""
    woken = threading.Event()
    pm.on_grant(woken.set)
    assert woken.wait(WAIT), "the listener never started"
    woken.clear()
    return woken


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_grant_to_another_process_wakes_it(make_manager: Make) -> None:
    spec = PoolSpec("p", 1)
    a, b = make_manager(spec, owner="host:1"), make_manager(spec, owner="host:2")
    woken = _listening(b)
    held = a.request(holder("1"), {"p": 1})
    assert held is not None
    assert b.request(holder("2"), {"p": 1}) is None
    assert not woken.is_set()  # queueing is not a grant
    assert a.release(held) == []  # the freed slot went to b's waiter, in a's transaction
    assert woken.wait(WAIT), "b was not told of its grant"
    assert [lease.holder for lease in b.poll()] == [holder("2")]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_notices_come_back_after_the_connection_drops(make_manager: Make, db_url: str) -> None:
    spec = PoolSpec("p", 1)
    a, b = make_manager(spec, owner="host:1"), make_manager(spec, owner="host:2")
    woken = _listening(b)
    admin = sa.create_engine(db_url)
    with admin.begin() as conn:
        dropped = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query = 'LISTEN taskfabric_pool_grants' AND pid <> pg_backend_pid()"
            )
        ).all()
    admin.dispose()
    assert dropped, "no listening connection found"
    assert woken.wait(WAIT), "the listener did not listen again"  # it wakes on reconnect
    woken.clear()
    held = a.request(holder("1"), {"p": 1})
    assert held is not None and b.request(holder("2"), {"p": 1}) is None
    a.release(held)
    assert woken.wait(WAIT), "b was not told of its grant after the reconnect"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_has_no_notices_and_polling_still_delivers(make_manager: Make) -> None:
    spec = PoolSpec("p", 1)
    a, b = make_manager(spec, owner="host:1"), make_manager(spec, owner="host:2")
    woken = threading.Event()
    b.on_grant(woken.set)
    held = a.request(holder("1"), {"p": 1})
    assert held is not None and b.request(holder("2"), {"p": 1}) is None
    a.release(held)
    assert not woken.wait(0.2)
    assert [lease.holder for lease in b.poll()] == [holder("2")]
