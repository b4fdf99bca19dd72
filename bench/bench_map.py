"""Map scale benchmark: one fan-out of N no-op `int -> int` items, durable as in normal use.

    python bench/bench_map.py                      # 100,000 and 1,000,000 items
    python bench/bench_map.py --sizes 100000       # one size
    python bench/bench_map.py --sizes 20000 --no-targets

Each size runs in a fresh process (so the figure is that whole process's peak RSS): a task
returns `list(range(N))`, a map runs `x + 1` on each item on the built-in `local` backend, a
task sums the list. Everything is recorded as always: each item's state in the metadata
database (SQLite, WAL; items packed 64 to a chunk row, `metadata/_items.py`), each item's
inputs and outputs in the execution's pack segment, the map's list of outputs. The child
checks that every item ended SUCCEEDED and the sum is right, and reports wall time, CPU time
and peak RSS.

With `--resume-at F` (0 < F < 1) each size is also killed and resumed: a first process runs the
map and is killed with SIGKILL once a fraction F of its items are recorded SUCCEEDED, then a
fresh process resumes the execution (`Engine.resume`); the resume's wall time, CPU time and
peak RSS are printed on a line of their own (no target: the figure to watch is its memory,
which must not grow with the items done before).

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
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.logs import configure_logging
from taskfabric.metadata._items import ITEM, PHASES

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


def _child(n: int, root: Path, resume: str = "") -> None:
    configure_logging(level="warning")
    fan_out.compile()
    import_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Engine(Config(storage=StorageConfig(data_root=root))) as engine:
        cpu0 = time.process_time()
        started = time.perf_counter()
        if resume:
            result = engine.resume(resume, workflow=fan_out, force=True)
        else:
            result = engine.launch(fan_out, {"n": n})
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if not result.succeeded or result.outputs is None:
            raise SystemExit(f"the run failed: {result.error}")
        got = result.outputs.literals["o0"].integer
        if got != n * (n + 1) // 2:
            raise SystemExit(f"wrong sum {got}")
        counts = engine.metadata.item_counts(result.execution_id)
        phases = next(iter(counts.values()), {})
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


def _measured(n: int, args: list[str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(n), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{n} items: the run failed:\n{proc.stderr}{proc.stdout}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_size(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-map-") as tmp:
        return _measured(n, ["--root", tmp])


def _succeeded_items(db: Path) -> tuple[str, int]:
    succeeded = PHASES.index("SUCCEEDED")
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute("SELECT id FROM executions").fetchone()
            # each item's phase is the first byte of its packed state (metadata/_items.py)
            done = sum(
                bytes(state[0 :: ITEM.size]).count(succeeded)
                for (state,) in conn.execute("SELECT state FROM map_item_chunks")
            )
    except sqlite3.OperationalError:  # not made yet
        return "", 0
    return ("", 0) if row is None else (str(row[0]), done)


def run_killed_and_resumed(n: int, fraction: float) -> tuple[int, dict[str, float]]:
    """Run a map of `n` items, SIGKILL it once `fraction` of them succeeded, resume it in a
    fresh process: (items done at the kill, the resume's figures)."""
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-map-") as tmp:
        db = Path(tmp) / "taskfabric.db"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(n), "--root", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        execution_id, done = "", 0
        while done < fraction * n:
            if proc.poll() is not None:
                raise SystemExit(f"{n} items: the run ended before the kill ({proc.returncode})")
            time.sleep(0.2)
            execution_id, done = _succeeded_items(db)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        execution_id, done = _succeeded_items(db)
        return done, _measured(n, ["--root", tmp, "--resume", execution_id])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="taskfabric map scale benchmark")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated item counts")
    parser.add_argument("--no-targets", action="store_true", help="never exit 1 on a target")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--resume-at",
        type=float,
        default=0.0,
        help="also kill each run once this fraction of items is done, and resume it",
    )
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--resume", default="", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        _child(opts.child, opts.root, opts.resume)
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
        if opts.resume_at:
            done, r = run_killed_and_resumed(n, opts.resume_at)
            print(
                f"  killed at {done:,} items done ({done / n:.0%}), resumed: "
                f"{r['seconds']:6.1f} s wall, {r['cpu_seconds']:6.1f} s CPU, "
                f"peak RSS {r['peak_mb']:5.0f} MB",
                flush=True,
            )
    return 1 if missed and not opts.no_targets else 0


if __name__ == "__main__":
    sys.exit(main())
