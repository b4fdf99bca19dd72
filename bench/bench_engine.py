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

Absolute times depend on the machine and on what else runs on it, so each figure is also
given as a ratio to a baseline measured in the same run, on the same disk: B0, the floor of
a durable record (write a small file and commit one SQLite row, with the metadata store's
own settings: WAL, synchronous=NORMAL). B0 is measured right before each timed run, and a
workload's ratio is the median of its runs' ratios to their own B0 (a shared disk's speed
moves within seconds); the B0 line gives the median and the range of those measures. The
machine (CPU, cores, Python, load average) is printed first. The targets (issue 20, on a
2-core machine: W1 at most 0.3 ms per task, W2 at most 0.1 ms per task, W3's all-hit run at
most 0.05 ms per task; W4 under 30 s and 300 MB) are printed with each figure, met or
missed, and the benchmark exits 1 when one is missed (2 when a run fails). The README
quotes this output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

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
        _failed(f"benchmark run failed: {result.error}")
    return elapsed


def _failed(message: str) -> NoReturn:
    """A run failed: exit 2 (1 means a target was missed)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


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
        _failed(f"W4 failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _w4_child(n: int, root: Path) -> None:
    configure_logging(level="warning")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed = _timed(fan_out, {"n": n}, root)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "import_mb": baseline_kb / 1024})
    )


def baseline_ms(root: Path, n: int = 300) -> float:
    """B0: ms to write one small file and commit one SQLite row, per record, with the
    metadata store's settings (WAL, synchronous=NORMAL: a commit does not wait for the disk)."""
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "b0.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, uri TEXT)")
    payload = b"x" * 64
    started = time.perf_counter()
    for i in range(n):
        path = root / f"{i}.pb"
        path.write_bytes(payload)
        db.execute("INSERT INTO t (uri) VALUES (?)", (str(path),))
        db.commit()
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed / n * 1000


def machine() -> str:
    """CPU model, cores, Python and the load average: what the figures depend on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


#: The targets (issue 20), ms of engine time per task.
W1_TARGET_MS = 0.3
W2_TARGET_MS = 0.1
W3_TARGET_MS = 0.05


def _target(name: str, ok: bool, text: str, missed: list[str]) -> str:
    if not ok:
        missed.append(f"{name} {text}")
    return f"target {text}: {'met' if ok else 'missed'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="taskfabric engine overhead benchmark")
    parser.add_argument("--only", default="W1,W2,W3,W4", help="comma-separated workloads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (median)")
    parser.add_argument("--w4-size", type=int, default=10_000)
    parser.add_argument("--w4-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.w4_child:
        _w4_child(opts.w4_child, opts.root)
        return 0
    configure_logging(level="warning")
    only = {w.strip().upper() for w in opts.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="taskfabric-bench-") as tmp:
        base = Path(tmp)
        os.environ.pop("TASKFABRIC_DATA_ROOT", None)
        chain_py, fan_py = _plain_python(100, 500)
        # B0 is measured again right before each timed run, and each ratio is that run's
        # time over its own B0 (the median of those ratios is printed): on a shared machine
        # the disk's speed moves within seconds, and a B0 taken once at the start made the
        # same workload 0.4x or 10.9x B0 in three runs in a row.
        b0s: list[float] = []

        def b0_now() -> float:
            b0s.append(baseline_ms(base / f"b0-{len(b0s)}"))
            # B0 made 300 files: their journal commit and writeback would run during the
            # timed run that follows (W3's all-hit run measured 0.037-0.043 ms/task after
            # it, 0.028-0.036 after a sync, in turn): wait for them first
            os.sync()
            return b0s[-1]

        lines: list[str] = []
        missed: list[str] = []
        if "W1" in only:
            times, ratios = [], []
            for i in range(opts.repeat):
                b0 = b0_now()
                times.append(_timed(w1, {"x": 0}, base / f"w1-{i}") / 100 * 1000)
                ratios.append(times[-1] / b0)
            per_task = statistics.median(times)
            lines.append(
                f"W1 chain of 100:        {per_task:6.3f} ms/task = "
                f"{statistics.median(ratios):5.1f}x B0  "
                f"({_target('W1', per_task <= W1_TARGET_MS, f'<= {W1_TARGET_MS:g} ms', missed)})"
            )
        if "W2" in only:
            times, ratios = [], []
            for i in range(opts.repeat):
                b0 = b0_now()
                times.append(_timed(fan_out, {"n": 500}, base / f"w2-{i}") / 502 * 1000)
                ratios.append(times[-1] / b0)
            per_task = statistics.median(times)
            lines.append(
                f"W2 fan-out of 500:      {per_task:6.3f} ms/task = "
                f"{statistics.median(ratios):5.1f}x B0  "
                f"({_target('W2', per_task <= W2_TARGET_MS, f'<= {W2_TARGET_MS:g} ms', missed)}; "
                f"plain Python {fan_py / 502 * 1e6:.2f} us/call)"
            )
        if "W3" in only:
            # The second run in the same engine (as in a worker, a server or a notebook), and
            # in a fresh engine (as in a second `taskfabric run`, which also pays for opening
            # the database and the catalog's connection).
            misses, hits, cold_hits, ratios = [], [], [], []
            w3.compile()
            for i in range(opts.repeat):
                root = base / f"w3-{i}"
                b0 = b0_now()
                with _engine(root) as engine:
                    for record in (misses, hits):
                        started = time.perf_counter()
                        result = engine.launch(w3, {"x": i})
                        record.append(time.perf_counter() - started)
                        if not result.succeeded:
                            _failed(f"benchmark run failed: {result.error}")
                ratios.append(hits[-1] / 100 * 1000 / b0)
                cold_hits.append(_timed(w3, {"x": i}, root))
            miss = statistics.median(misses) / 100 * 1000
            hit = statistics.median(hits) / 100 * 1000
            cold = statistics.median(cold_hits) / 100 * 1000
            lines.append(
                f"W3 chain of 100 cached: {hit:6.3f} ms/task = {statistics.median(ratios):5.1f}x "
                f"B0 all hits, {hit / miss:.2f}x a computed run ({miss:.3f} ms/task), "
                f"{cold:.3f} ms/task in a fresh engine  "
                f"({_target('W3', hit <= W3_TARGET_MS, f'<= {W3_TARGET_MS:g} ms', missed)})"
            )
        if "W4" in only:
            before = b0_now()
            r = run_w4(base / "w4", opts.w4_size)
            b0 = (before + b0_now()) / 2  # one long run: the B0 before it and after it
            per_task = r["seconds"] / opts.w4_size * 1000
            ok = r["seconds"] < 30 and r["peak_mb"] < 300
            lines.append(
                f"W4 fan-out of {opts.w4_size}: {r['seconds']:6.2f} s wall, {per_task:.3f} "
                f"ms/task = {per_task / b0:5.1f}x B0, peak RSS {r['peak_mb']:.0f} MB (after "
                f"imports {r['import_mb']:.0f} MB)  "
                f"({_target('W4', ok, '< 30 s and < 300 MB', missed)})"
            )
        b0 = statistics.median(b0s) if b0s else b0_now()
        print(f"taskfabric engine benchmark, median of {opts.repeat}")
        print(f"machine: {machine()}")
        print(
            f"B0 durable record floor: {b0:6.3f} ms/record (a small file + one SQLite commit; "
            f"{min(b0s):.3f} to {max(b0s):.3f} over {len(b0s)} measures, one before each run); "
            f"plain Python call {chain_py / 100 * 1e6:.2f} us"
        )
        for line in lines:
            print(line)
        if missed:
            print(f"missed {len(missed)} target(s): {', '.join(missed)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
