"""Map scale benchmark: one fan-out of N no-op `int -> int` items, durable as in normal use.

    python bench/bench_map.py                      # 100,000 and 1,000,000 items
    python bench/bench_map.py --sizes 100000       # one size
    python bench/bench_map.py --sizes 20000 --no-targets

Each size runs in a fresh process (so the figure is that whole process's peak RSS): a task
returns `list(range(N))`, a map runs `x + 1` on each item on the built-in `local` backend, a
task sums the list. Everything is recorded as always: one row per item in the metadata
database (SQLite, WAL), each item's inputs and outputs in the execution's pack segment, the
map's list of outputs. The child checks that every item's row ended SUCCEEDED and the sum is
right, and reports wall time, CPU time and peak RSS.

Targets (issue 20, a 2-core machine): 100,000 items in under 20 s and 300 MB; 1,000,000 in
under 3 minutes and 1 GB. Exits 1 when a target is missed (or a run fails), unless
--no-targets. The machine and its load average are printed first: on a shared machine the
wall time moves with the load, the CPU time and memory much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.logs import configure_logging

#: items -> (seconds, MB) that the run must stay under
TARGETS = {100_000: (20.0, 300.0), 1_000_000: (180.0, 1024.0)}


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def inc(x: int) -> int:
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def fan_out(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))


def _child(n: int, root: Path) -> None:
    configure_logging(level="warning")
    fan_out.compile()
    import_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Engine(Config(storage=StorageConfig(data_root=root))) as engine:
        cpu0 = time.process_time()
        started = time.perf_counter()
        result = engine.launch(fan_out, {"n": n})
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if not result.succeeded or result.outputs is None:
            raise SystemExit(f"the run failed: {result.error}")
        got = result.outputs.literals["o0"].integer
        if got != n * (n + 1) // 2:
            raise SystemExit(f"wrong sum {got}")
        with engine.metadata.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT phase, count(*) FROM node_executions "
                    "WHERE execution_id = :e AND kind = 'map_item' GROUP BY phase"
                ),
                {"e": result.execution_id},
            ).all()
        phases = {str(p): int(c) for p, c in rows}
        if phases != {"SUCCEEDED": n}:
            raise SystemExit(f"item rows: {phases}, expected {n} SUCCEEDED")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_mb": peak_kb / 1024,
                "import_mb": import_kb / 1024,
            }
        )
    )


def run_size(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-map-") as tmp:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--root", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{n} items: the run failed:\n{proc.stderr}{proc.stdout}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="taskfabric map scale benchmark")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated item counts")
    parser.add_argument("--no-targets", action="store_true", help="never exit 1 on a target")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        _child(opts.child, opts.root)
        return 0
    os.environ.pop("TASKFABRIC_DATA_ROOT", None)
    from bench_engine import machine  # the same machine line as the engine benchmark

    print(f"taskfabric map benchmark; machine: {machine()}")
    missed = False
    for n in (int(s) for s in opts.sizes.split(",") if s.strip()):
        r = run_size(n)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        line = (
            f"map of {n:>9,} items: {r['seconds']:7.1f} s wall, {r['cpu_seconds']:7.1f} s CPU, "
            f"{r['seconds'] / n * 1e6:6.1f} us/item, peak RSS {r['peak_mb']:5.0f} MB "
            f"({(r['peak_mb'] - r['import_mb']) * 1024 * 1024 / n:6.0f} B/item over the "
            f"{r['import_mb']:.0f} MB after imports); load average now {load}"
        )
        target = TARGETS.get(n)
        if target is not None:
            ok = r["seconds"] < target[0] and r["peak_mb"] < target[1]
            line += f"  (target < {target[0]:.0f} s and < {target[1]:.0f} MB: "
            line += "met)" if ok else "missed)"
            missed = missed or not ok
        print(line, flush=True)
    return 1 if missed and not opts.no_targets else 0


if __name__ == "__main__":
    sys.exit(main())
