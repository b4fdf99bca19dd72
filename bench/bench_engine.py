"""Engine overhead benchmark: per-task cost of durable runs on the embedded defaults.

    python bench/bench_engine.py            # W1, W2, W4
    python bench/bench_engine.py --only W1 --repeat 5

- W1: a chain of 100 no-op `int -> int` tasks (one task at a time: latency per task).
- W2: a fan-out of 500 such tasks (map_task) plus a reduce (throughput per task).
- W3: W1 with caching on: a first run fills the catalog, a second run is all cache hits.
- W4: a fan-out of 10,000 such tasks: wall time and the engine process's peak memory
  (measured in a fresh subprocess, so the figure is the whole process's peak RSS).

Every run is durable as in normal use: SQLite metadata (WAL), inputs and outputs written as
protobuf files to the local blob store, one row per node and attempt, every transition
recorded. The time of compiling the workflow is excluded; everything after launch is in.
Targets on a 2-core machine: W1 and W2 at most 1 ms per task; W3's all-hit run at most
0.1 ms per task; W4 under 30 s and 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.logs import configure_logging


@task
def inc(x: int) -> int:
    return x + 1


@task(cache=True)
def cached_inc(x: int) -> int:
    return x + 1


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def w1(x: int) -> int:
    for _ in range(100):
        x = inc(x=x)
    return x


@workflow
def w3(x: int) -> int:
    for _ in range(100):
        x = cached_inc(x=x)
    return x


@workflow
def fan_out(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))


def _engine(root: Path) -> Engine:
    return Engine(Config(storage=StorageConfig(data_root=root)))


def _timed(wf: Any, inputs: dict[str, int], root: Path) -> float:
    wf.compile()
    with _engine(root) as engine:
        started = time.perf_counter()
        result = engine.launch(wf, inputs)
        elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"benchmark run failed: {result.error}")
    return elapsed


def _plain_python(n_chain: int, n_fan: int) -> tuple[float, float]:
    """The same work as plain function calls, to show what the engine adds."""
    started = time.perf_counter()
    x = 0
    for _ in range(n_chain):
        x = inc.function(x)
    chain = time.perf_counter() - started
    started = time.perf_counter()
    total.function([inc.function(i) for i in numbers.function(n_fan)])
    fan = time.perf_counter() - started
    return chain, fan


def run_w4(root: Path, n: int) -> dict[str, float]:
    """Run inside a fresh process (see --w4-child) and report wall time and peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "--w4-child", str(n), "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"W4 failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _w4_child(n: int, root: Path) -> None:
    configure_logging(level="warning")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed = _timed(fan_out, {"n": n}, root)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "import_mb": baseline_kb / 1024})
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="taskfabric engine overhead benchmark")
    parser.add_argument("--only", default="W1,W2,W3,W4", help="comma-separated workloads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (median)")
    parser.add_argument("--w4-size", type=int, default=10_000)
    parser.add_argument("--w4-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.w4_child:
        _w4_child(opts.w4_child, opts.root)
        return 0
    configure_logging(level="warning")
    only = {w.strip().upper() for w in opts.only.split(",")}
    failed = False
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-") as tmp:
        base = Path(tmp)
        os.environ.pop("TASKFABRIC_DATA_ROOT", None)
        chain_py, fan_py = _plain_python(100, 500)
        print(f"taskfabric engine benchmark ({os.cpu_count()} cores, median of {opts.repeat})")
        if "W1" in only:
            times = [_timed(w1, {"x": 0}, base / f"w1-{i}") for i in range(opts.repeat)]
            per_task = statistics.median(times) / 100 * 1000
            ok = per_task <= 1.0
            failed |= not ok
            print(
                f"W1 chain of 100:        {per_task:6.3f} ms/task  (target <= 1 ms: "
                f"{'met' if ok else 'MISSED'}; {per_task / 1.0:.2f}x of target; plain "
                f"Python {chain_py / 100 * 1e6:.2f} us/call)"
            )
        if "W2" in only:
            times = [_timed(fan_out, {"n": 500}, base / f"w2-{i}") for i in range(opts.repeat)]
            per_task = statistics.median(times) / 502 * 1000
            ok = per_task <= 1.0
            failed |= not ok
            print(
                f"W2 fan-out of 500:      {per_task:6.3f} ms/task  (target <= 1 ms: "
                f"{'met' if ok else 'MISSED'}; {per_task / 1.0:.2f}x of target; plain "
                f"Python {fan_py / 502 * 1e6:.2f} us/call)"
            )
        if "W3" in only:
            # The second run in the same engine (as in a worker, a server or a notebook), and
            # in a fresh engine (as in a second `taskfabric run`, which also pays for opening
            # the database and the catalog's connection).
            misses, hits, cold_hits = [], [], []
            w3.compile()
            for i in range(opts.repeat):
                root = base / f"w3-{i}"
                with _engine(root) as engine:
                    for record in (misses, hits):
                        started = time.perf_counter()
                        result = engine.launch(w3, {"x": i})
                        record.append(time.perf_counter() - started)
                        if not result.succeeded:
                            raise SystemExit(f"benchmark run failed: {result.error}")
                cold_hits.append(_timed(w3, {"x": i}, root))
            miss = statistics.median(misses) / 100 * 1000
            hit = statistics.median(hits) / 100 * 1000
            cold = statistics.median(cold_hits) / 100 * 1000
            ok = hit <= 0.1
            failed |= not ok
            print(
                f"W3 chain of 100 cached: {hit:6.3f} ms/task all hits ({cold:.3f} in a fresh "
                f"engine), {miss:.3f} ms/task first run  (target <= 0.1 ms: "
                f"{'met' if ok else 'MISSED'}; {hit / 0.1:.2f}x of target; hits cost "
                f"{hit / miss:.2f}x a computed run)"
            )
        if "W4" in only:
            r = run_w4(base / "w4", opts.w4_size)
            ok = r["seconds"] < 30 and r["peak_mb"] < 300
            failed |= not ok
            print(
                f"W4 fan-out of {opts.w4_size}: {r['seconds']:6.2f} s wall, "
                f"{r['seconds'] / opts.w4_size * 1000:.3f} ms/task, peak RSS "
                f"{r['peak_mb']:.0f} MB (after imports {r['import_mb']:.0f} MB)  "
                f"(targets < 30 s, < 300 MB: {'met' if ok else 'MISSED'}; "
                f"{r['seconds'] / 30:.2f}x and {r['peak_mb'] / 300:.2f}x of target)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
