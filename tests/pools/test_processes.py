"""Several processes hammer two small pools on one database; the grant log must never show a
pool over its slots (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import sqlalchemy as sa
from pool_helpers import HAMMER_SPECS, hammer

from taskfabric.metadata import MetadataStore

WORKERS = 4
CYCLES = 60


def most_held_at_once(grants: list[tuple[dict[str, int], float, float]], pool: str) -> int:
    events = []
    for weights, start, end in grants:
        if pool in weights:
            events.append((start, 1, weights[pool]))
            events.append((end, 0, -weights[pool]))  # ends sort before starts at one instant
    held = most = 0
    for _, _, change in sorted(events):
        held += change
        most = max(most, held)
    return most


def test_no_over_commit_across_processes(db_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    logs = [tmp_path / f"worker-{i}.jsonl" for i in range(WORKERS)]
    start = context.Barrier(WORKERS)
    workers = [
        context.Process(target=hammer, args=(db_url, i, CYCLES, str(logs[i]), start))
        for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * WORKERS
    grants, tokens, waits = [], [], 0
    for log in logs:
        for line in log.read_text().splitlines():
            token, weights, start, end, waited = json.loads(line)
            grants.append((weights, start, end))
            tokens.append(token)
            waits += waited
    assert len(grants) == WORKERS * CYCLES
    assert len(set(tokens)) == len(tokens)
    for pool, spec in HAMMER_SPECS.items():
        assert 0 < most_held_at_once(grants, pool) <= int(spec["slots"])
    # everything was given back, and the pools were contended: full, with waiters
    store = MetadataStore(db_url, migrate=False)
    with store.engine.connect() as conn:
        left = [
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("pool_leases", "pool_grants", "pool_waiters", "pool_waits")
        ]
    store.close()
    assert left == [0, 0, 0, 0]
    assert most_held_at_once(grants, "a") == 2
    assert waits > WORKERS, (
        f"only {waits} of {len(grants)} requests waited: the pools were never contended"
    )
