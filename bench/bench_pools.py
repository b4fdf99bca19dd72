"""Resource pool benchmark: what a lease costs, on SQLite and on PostgreSQL.

    python bench/bench_pools.py                 # P1-P4 and E on a temporary SQLite database
    python bench/bench_pools.py --repeat 7
    python bench/bench_pools.py --postgres postgresql+psycopg://u:p@127.0.0.1:5432/db

- P1: acquire-and-release cycles per second, each call its own transaction (targets: SQLite
  >= 5,000/s and >= 60% of the bare sqlite3 floor; PostgreSQL >= 1,000/s).
- P2: the latency pools add per task, in the manager alone: a task costs the engine two loop
  ticks (dispatch, completion), each one transaction with the tick's own writes (here: an
  event row). Measured twice: with request/release folded into those tick transactions
  (``conn=``; the engine does so on SQLite, with ``grant_in``/``release_in`` on its own
  connection), and as separate transactions of their own (the P1 figure: the engine's on
  PostgreSQL, and on SQLite when somebody waits).
- E: what a pool adds per task to a real engine run (target on SQLite < 0.2 ms): a chain of
  100 no-op tasks, each asking for one slot of a free pool, against the same chain without
  pools, in one engine with the same config, runs interleaved.
- P3: a fan-out: K requests and K releases folded into one transaction per tick.
- P4: a contended pool: a queued request and the release that hands the slot on (no target).
- P5 (PostgreSQL only): the hand-off between two engine processes: one releases the only
  slot, whose pass grants it to the other's waiter; how long until that other engine, polling
  every 50 ms like the engine loop, has the lease; with grant notices (LISTEN/NOTIFY waking
  it; target: median <= 10 ms) and without (the poll finds it). Two managers of two owners,
  in two threads.
- raw: two write transactions per cycle (insert, then delete, two small tables) through bare
  sqlite3: the floor for any design that commits each acquire and each release on this disk.
  On PostgreSQL the same through bare psycopg, twice: each commit waiting for the disk (the
  default), and the release's commit not waiting (what the pools do: docs/pools.md says why
  that is safe), the floor of this design; a grant always waits for the disk, so on a busy
  disk both floors fall with it.

Exits 1 when a target is missed. Every figure is the median of ``--repeat`` runs; the machine's
load moves them, so compare the ratio to ``raw`` too: P1 and the floors run in turn, and a
share is the median of the ratios of runs made one after the other.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from taskfabric import task, workflow
from taskfabric.config import Config, PoolConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata import ExecutionRecord, MetadataStore
from taskfabric.metadata._schema import events
from taskfabric.pools import Holder, Lease, PoolManager, PoolSpec

CYCLES_TARGET = 5_000.0  # SQLite
FLOOR_SHARE_TARGET = 0.6  # SQLite: of the bare sqlite3 floor measured in the same run
POSTGRES_CYCLES_TARGET = 1_000.0
ADDED_MS_TARGET = 0.2  # SQLite
HANDOFF_MS_TARGET = 10.0  # PostgreSQL, with grant notices (median)
_serial = itertools.count()


def _holder(project: str = "bench") -> Holder:
    return Holder("bench-execution", f"n{next(_serial)}", 1, project, "development")


def _median_rate(run: Callable[[], float], repeat: int) -> float:
    run()  # warm up: statement caches, pages, the connection
    return statistics.median(run() for _ in range(repeat))


def _interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Each of ``runs`` once to warm up, then ``repeat`` rounds of each in turn."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            rates[name].append(run())
    return rates


def p1_cycles(pm: PoolManager, n: int) -> float:
    """Cycles per second, each request and release a transaction of its own."""
    started = time.perf_counter()
    for _ in range(n):
        lease = pm.request(_holder(), {"api": 1})
        assert lease is not None
        pm.release(lease)
    return n / (time.perf_counter() - started)


def p2_ticks(pm: PoolManager, n: int, *, pools: bool) -> float:
    """Seconds per task of ``n`` tasks, two tick transactions each (dispatch, completion),
    each writing an event like the engine does; ``pools`` adds the request and the release."""
    row = {"execution_id": "bench-execution", "node_id": "n", "phase": "RUNNING", "at": 0.0}
    insert = events.insert()
    started = time.perf_counter()
    for _ in range(n):
        with pm.begin() as conn:
            conn.execute(insert, row)
            lease = pm.request(_holder(), {"api": 1}, conn=conn) if pools else None
        with pm.begin() as conn:
            conn.execute(insert, row)
            if lease is not None:
                pm.release(lease, conn=conn)
    return (time.perf_counter() - started) / n


def p3_fan_out(pm: PoolManager, ticks: int, width: int) -> float:
    """Cycles per second with ``width`` requests, then ``width`` releases, per transaction."""
    started = time.perf_counter()
    for _ in range(ticks):
        with pm.begin() as conn:
            leases: list[Lease] = []
            for _ in range(width):
                lease = pm.request(_holder(), {"wide": 1}, conn=conn)
                assert lease is not None
                leases.append(lease)
        with pm.begin() as conn:
            pm.release_many(leases, conn=conn)
    return ticks * width / (time.perf_counter() - started)


def p4_handoff(pm: PoolManager, n: int) -> float:
    """Seconds per queued request plus the release that hands the only slot on to it."""
    held = pm.request(_holder(), {"one": 1})
    assert held is not None
    started = time.perf_counter()
    for _ in range(n):
        assert pm.request(_holder(), {"one": 1}) is None
        (held,) = pm.release(held)
    elapsed = time.perf_counter() - started
    pm.release(held)
    return elapsed / n


def p5_cross_process(url: str, n: int, *, notices: bool) -> list[float]:
    """Seconds from the release in one process to the lease in the other's hands, ``n`` times."""
    spec = {"one": PoolSpec("one", 1)}
    store_a, store_b = MetadataStore(url, migrate=False), MetadataStore(url, migrate=False)
    a = PoolManager(store_a.engine, spec, owner=f"bench-a:{uuid.uuid4().hex[:6]}")
    b = PoolManager(store_b.engine, spec, owner=f"bench-b:{uuid.uuid4().hex[:6]}")
    wakeups: queue.SimpleQueue[str] = queue.SimpleQueue()
    if notices:
        b.on_grant(lambda: wakeups.put("grant"))
        wakeups.get(timeout=10)  # the listener wakes once when its LISTEN is in place
    got: queue.SimpleQueue[tuple[float, Lease]] = queue.SimpleQueue()
    stop = threading.Event()

    def engine_loop() -> None:  # b's side: sleep until a wake-up or the next 50 ms tick
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                wakeups.get(timeout=0.05)
            for lease in b.poll():
                got.put((time.perf_counter(), lease))

    loop = threading.Thread(target=engine_loop, daemon=True)
    loop.start()
    latencies = []
    try:
        for _ in range(n):
            held = a.request(_holder(), {"one": 1})
            assert held is not None
            assert b.request(_holder(), {"one": 1}) is None
            time.sleep(random.uniform(0, 0.05))  # release at any point of b's tick
            released = time.perf_counter()
            assert a.release(held) == []
            at, lease = got.get(timeout=10)
            latencies.append(at - released)
            b.release(lease)
    finally:
        stop.set()
        loop.join()
        a.close()
        b.close()
        store_a.close()
        store_b.close()
    return latencies


def raw_cycles(folder: Path, n: int) -> float:
    """Two write transactions per cycle through bare sqlite3, WAL, synchronous=NORMAL."""
    path = folder / f"raw-{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE l (token INTEGER PRIMARY KEY AUTOINCREMENT, holder TEXT UNIQUE)")
    db.execute("CREATE TABLE g (pool TEXT, token INT, PRIMARY KEY (pool, token)) WITHOUT ROWID")
    started = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        token = db.execute("INSERT INTO l (holder) VALUES (?) RETURNING token", (str(i),))
        token = token.fetchone()[0]
        db.execute("INSERT INTO g VALUES ('a', ?)", (token,))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM l WHERE token = ?", (token,))
        db.execute("DELETE FROM g WHERE pool = 'a' AND token = ?", (token,))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - started)
    db.close()
    return rate


def raw_postgres_cycles(url: str, n: int, *, relaxed_release: bool = False) -> float:
    """The same two write transactions per cycle through bare psycopg (each commit waits
    for the disk, PostgreSQL's default; with ``relaxed_release`` the release's does not),
    in a schema of the benchmark's own."""
    import psycopg

    sa_url = sa.make_url(url)
    options = sa_url.query.get("options")
    conninfo = sa_url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    suffix = uuid.uuid4().hex[:8]
    with psycopg.connect(conninfo, options=options if isinstance(options, str) else None) as db:
        db.autocommit = True
        db.execute(f"CREATE TABLE raw_l_{suffix} (token BIGSERIAL PRIMARY KEY, holder TEXT UNIQUE)")
        db.execute(
            f"CREATE TABLE raw_g_{suffix} (pool TEXT, token BIGINT, PRIMARY KEY (pool, token))"
        )
        db.autocommit = False
        started = time.perf_counter()
        for i in range(n):
            with db.transaction():
                row = db.execute(
                    f"INSERT INTO raw_l_{suffix} (holder) VALUES (%s) RETURNING token", (str(i),)
                ).fetchone()
                assert row is not None
                db.execute(f"INSERT INTO raw_g_{suffix} VALUES ('a', %s)", (row[0],))
            with db.transaction():
                if relaxed_release:
                    db.execute("SET LOCAL synchronous_commit = off")
                db.execute(f"DELETE FROM raw_l_{suffix} WHERE token = %s", (row[0],))
                db.execute(f"DELETE FROM raw_g_{suffix} WHERE pool = 'a' AND token = %s", (row[0],))
        rate = n / (time.perf_counter() - started)
        db.autocommit = True
        db.execute(f"DROP TABLE raw_l_{suffix}, raw_g_{suffix}")
    return rate


CHAIN = 100


@task
def _step(x: int) -> int:
    return x + 1


@task(pools={"api": 1})
def _pooled_step(x: int) -> int:
    return x + 1


@workflow
def _plain_chain(x: int) -> int:
    for _ in range(CHAIN):
        x = _step(x=x)
    return x


@workflow
def _pooled_chain(x: int) -> int:
    for _ in range(CHAIN):
        x = _pooled_step(x=x)
    return x


def engine_chain(repeat: int) -> tuple[float, float]:
    """Seconds per task of the chain without and with a pool: medians of ``repeat`` runs
    each, interleaved, in one engine (SQLite metadata, the local backend)."""
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-pools-engine-") as tmp:
        config = Config(
            storage=StorageConfig(data_root=Path(tmp)), pools={"api": PoolConfig(slots=10)}
        )
        _plain_chain.compile()
        _pooled_chain.compile()
        times: dict[bool, list[float]] = {False: [], True: []}
        with Engine(config) as engine:
            for run in range(repeat + 1):
                for pooled in (False, True):
                    started = time.perf_counter()
                    result = engine.launch(_pooled_chain if pooled else _plain_chain, {"x": 0})
                    elapsed = time.perf_counter() - started
                    if not result.succeeded:
                        raise SystemExit(f"benchmark run failed: {result.error}")
                    if run:  # the first of each warms up
                        times[pooled].append(elapsed / CHAIN)
    return statistics.median(times[False]), statistics.median(times[True])


def _manager(url: str) -> tuple[MetadataStore, PoolManager]:
    store = MetadataStore(url)
    store.create_execution(
        ExecutionRecord(
            id="bench-execution",
            project="bench",
            domain="development",
            name=f"bench-{uuid.uuid4().hex[:8]}",
            workflow_name="bench",
            phase="RUNNING",
            created_at=time.time(),
        )
    )
    specs = {
        "api": PoolSpec("api", 10),
        "wide": PoolSpec("wide", 1_000),
        "one": PoolSpec("one", 1),
    }
    return store, PoolManager(store.engine, specs, owner=f"bench:{os.getpid()}")


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run_suite(url: str, label: str, repeat: int, folder: Path | None) -> bool:
    store, pm = _manager(url)
    ok = True
    try:
        print(f"-- {label}")
        postgres = folder is None
        # the floors run interleaved with P1, so that a ratio compares runs made under the
        # same load (on a shared machine it moves from one second to the next)
        runs: dict[str, Callable[[], float]] = {"pools": lambda: p1_cycles(pm, 2_000)}
        if folder is not None:
            sqlite_folder = folder
            runs["raw"] = lambda: raw_cycles(sqlite_folder, 2_000)
        else:
            runs["pools"] = lambda: p1_cycles(pm, 500)
            runs["raw"] = lambda: raw_postgres_cycles(url, 500)
            runs["relaxed"] = lambda: raw_postgres_cycles(url, 500, relaxed_release=True)
        rates = _interleaved(runs, repeat)
        rate = statistics.median(rates["pools"])
        raw = statistics.median(rates["raw"])
        share = statistics.median(p / r for p, r in zip(rates["pools"], rates["raw"], strict=True))
        if folder is not None:
            met = rate >= CYCLES_TARGET and share >= FLOOR_SHARE_TARGET
            floor = (
                f"bare sqlite3 floor {raw:,.0f}/s, we reach {share:.0%} of it "
                f"(target >= {FLOOR_SHARE_TARGET:.0%})"
            )
            target = CYCLES_TARGET
        else:
            relaxed = statistics.median(rates["relaxed"])
            relaxed_share = statistics.median(
                p / r for p, r in zip(rates["pools"], rates["relaxed"], strict=True)
            )
            met = rate >= POSTGRES_CYCLES_TARGET
            floor = (
                f"bare psycopg floors: two full commits {raw:,.0f}/s, we reach {share:.0%}; "
                f"a full and a relaxed commit {relaxed:,.0f}/s, we reach {relaxed_share:.0%}"
            )
            target = POSTGRES_CYCLES_TARGET
        ok &= met
        print(
            f"P1 acquire+release, own transactions: {rate:8,.0f} cycles/s, "
            f"{1e6 / rate:5.0f} us/cycle  (target >= {target:,.0f}/s: {_verdict(met)}; "
            f"{rate / target:.2f}x of target; {floor})"
        )
        if not postgres:
            plain, pooled = engine_chain(repeat)
            added = (pooled - plain) * 1000
            met = added < ADDED_MS_TARGET
            ok &= met
            print(
                f"E  added per pooled task in an engine run: {added:6.3f} ms (chain of "
                f"{CHAIN} no-op tasks: {plain * 1000:.3f} ms/task without a pool, "
                f"{pooled * 1000:.3f} with)  (target < {ADDED_MS_TARGET} ms: {_verdict(met)}; "
                f"{added / ADDED_MS_TARGET:.2f}x of target)"
            )
        base = statistics.median(p2_ticks(pm, 1_000, pools=False) for _ in range(repeat))
        folded = statistics.median(p2_ticks(pm, 1_000, pools=True) for _ in range(repeat))
        added = (folded - base) * 1000
        own = 1000 / rate
        print(
            f"P2 added per task, folded into the engine's tick transactions: {added:6.3f} ms "
            f"(ticks alone {base * 1000:.3f} ms/task)"
        )
        print(f"P2 added per task, as transactions of their own: {own:6.3f} ms")
        for width in (10, 100):
            fan = _median_rate(lambda w=width: p3_fan_out(pm, 2_000 // w, w), repeat)
            print(
                f"P3 fan-out, {width:3d} requests then {width:3d} releases per transaction: "
                f"{fan:9,.0f} cycles/s"
            )
        handoff = statistics.median(p4_handoff(pm, 300) for _ in range(repeat))
        print(
            f"P4 contended: queued request + release handing the slot on: {handoff * 1000:.2f} ms"
        )
        if url.startswith("postgresql"):
            for notices in (False, True):
                times = sorted(p5_cross_process(url, 40 * repeat, notices=notices))
                median = statistics.median(times) * 1000
                verdict = ""
                if notices:
                    met = median <= HANDOFF_MS_TARGET
                    ok &= met
                    verdict = f"  (target median <= {HANDOFF_MS_TARGET:.0f} ms: {_verdict(met)})"
                print(
                    f"P5 hand-off to another process, {'with' if notices else 'without'} grant "
                    f"notices: median {median:5.1f} ms, "
                    f"p90 {times[int(len(times) * 0.9)] * 1000:5.1f} ms{verdict}"
                )
    finally:
        pm.close()
        store.close()
    return ok


def _postgres_schema(url: str) -> tuple[str, Callable[[], None]]:
    """A throwaway schema in the PostgreSQL database at ``url``."""
    schema = f"bench_pools_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(description="taskfabric resource pool benchmark")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--postgres", default="", help="also run on this PostgreSQL database")
    opts = parser.parse_args()
    print(f"taskfabric pool benchmark ({os.cpu_count()} cores, median of {opts.repeat})")
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-pools-") as tmp:
        folder = Path(tmp)
        ok = run_suite(f"sqlite:///{folder / 'pools.db'}", "SQLite (WAL)", opts.repeat, folder)
    if opts.postgres:
        url, drop = _postgres_schema(opts.postgres)
        try:
            ok &= run_suite(url, "PostgreSQL", opts.repeat, None)
        finally:
            drop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
