"""The same workloads through taskfabric and its peers, side by side in one run: the README's
comparison figures come from this script.

    python bench/bench_compare.py                          # every framework importable here
    python bench/bench_compare.py --peer-python /tmp/peers/bin/python   # peers in their own venv
    python bench/bench_compare.py --repeat 5 --only chain,fanout

Workloads (no-op `int -> int` tasks, as issue 20 measured them):

- chain:   a chain of 100 tasks, one at a time (ms per task);
- fanout:  a fan-out of 500 mapped tasks and a reduce (ms per task);
- cached:  the chain of 100 with caching on, second run: all hits (ms per task);
- process: a whole new process that imports the framework and runs the chain once (s), on
  a database and caches an earlier process made (that first process is not counted).

The chain and the fan-out are measured on their second run in the process (the first warms the
engine, its connections and the code up, as a long-lived worker or notebook is).

taskfabric runs durably, as in normal use (SQLite metadata, literals in the local blob store, a
fresh data root per run); flytekit runs its local, in-memory execution; Dagster runs
`execute_in_process` with its default in-memory instance (an ephemeral instance records runs in
memory). Each figure is the median of `--repeat` runs, each framework in processes of its own,
and is printed with its ratio to taskfabric's in the same run: the machine's load moves the
absolute numbers, the ratios much less. A framework that is not importable by the chosen Python
is listed as not installed; nothing fails the script but a workload that errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WORKLOADS = ("chain", "fanout", "cached", "process")
TASKS = {"chain": 100, "fanout": 502, "cached": 100, "process": 100}

#: One program per framework: `run(workload) -> seconds` of the measured part.
PROGRAMS = {
    "taskfabric": """
import os, sys, tempfile, time
from taskfabric import map_task, task, workflow

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
def chain(x: int) -> int:
    for _ in range(100):
        x = inc(x=x)
    return x

@workflow
def cached_chain(x: int) -> int:
    for _ in range(100):
        x = cached_inc(x=x)
    return x

@workflow
def fanout(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))

def run(workload):
    if workload == "chain":
        assert chain(x=0) == 100  # warm-up: the engine, its connections, the code
        start = time.perf_counter(); assert chain(x=0) == 100
    elif workload == "fanout":
        assert fanout(n=500) == sum(range(1, 501))
        start = time.perf_counter(); assert fanout(n=500) == sum(range(1, 501))
    elif workload == "cached":
        assert cached_chain(x=0) == 100
        start = time.perf_counter(); assert cached_chain(x=0) == 100
    return time.perf_counter() - start
""",
    "flytekit": """
import time
from flytekit import map_task, task, workflow

@task
def inc(x: int) -> int:
    return x + 1

@task(cache=True, cache_version="1")
def cached_inc(x: int) -> int:
    return x + 1

@task
def numbers(n: int) -> list[int]:
    return list(range(n))

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@workflow
def chain(x: int) -> int:
    for _ in range(100):
        x = inc(x=x)
    return x

@workflow
def cached_chain(x: int) -> int:
    for _ in range(100):
        x = cached_inc(x=x)
    return x

@workflow
def fanout(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))

def run(workload):
    if workload == "chain":
        assert chain(x=0) == 100  # warm-up: the engine, its connections, the code
        start = time.perf_counter(); assert chain(x=0) == 100
    elif workload == "fanout":
        assert fanout(n=500) == sum(range(1, 501))
        start = time.perf_counter(); assert fanout(n=500) == sum(range(1, 501))
    elif workload == "cached":
        assert cached_chain(x=0) == 100
        start = time.perf_counter(); assert cached_chain(x=0) == 100
    return time.perf_counter() - start
""",
    "dagster": """
import time
from dagster import DynamicOut, DynamicOutput, In, Out, job, op

@op
def start() -> int:
    return 0

@op
def inc(x: int) -> int:
    return x + 1

@op(out=DynamicOut(int))
def numbers():
    for i in range(500):
        yield DynamicOutput(i, mapping_key=str(i))

@op
def total(xs: list) -> int:
    return sum(xs)

@job
def chain():
    x = start()
    for i in range(100):
        x = inc.alias(f"inc_{i}")(x)

@job
def fanout():
    total(numbers().map(inc).collect())

def run(workload):
    if workload == "chain":
        chain.execute_in_process()  # warm-up
        start_at = time.perf_counter()
        result = chain.execute_in_process()
        assert result.success and result.output_for_node("inc_99") == 100
    elif workload == "fanout":
        fanout.execute_in_process()  # warm-up
        start_at = time.perf_counter()
        result = fanout.execute_in_process()
        assert result.success and result.output_for_node("total") == sum(range(1, 501))
    else:
        return None  # no result cache
    return time.perf_counter() - start_at
""",
}


def _child(framework: str, workload: str, where: str) -> None:
    """Run one workload of one framework in this process (its files in `where`); print the
    seconds of its measured part as JSON: a warm run (after a first one) of the chain, the
    fan-out and the cached chain; the whole process for `process`."""
    folder = Path(where)
    os.environ.setdefault("TASKFABRIC_HOME", str(folder / "home"))
    os.environ["TASKFABRIC_CONFIG"] = str(folder / "taskfabric.toml")
    (folder / "taskfabric.toml").write_text(f'[storage]\ndata_root = "{folder / "data"}"\n')
    os.environ["DAGSTER_HOME"] = str(folder)
    os.environ["HOME"] = str(folder)  # flytekit's local cache lives under ~/.flyte
    module = folder / f"bench_{framework}.py"
    if not module.exists():
        module.write_text(textwrap.dedent(PROGRAMS[framework]))
    sys.path.insert(0, str(folder))
    started = time.perf_counter()
    program = __import__(f"bench_{framework}")
    if workload == "process":
        program.run("chain")
        seconds: float | None = time.perf_counter() - started
    else:
        seconds = program.run(workload)
    print(json.dumps({"seconds": seconds}))


def _importable(python: str, framework: str) -> bool:
    probe = subprocess.run(
        [python, "-c", f"import {framework}"], capture_output=True, timeout=300, check=False
    )
    return probe.returncode == 0


def _measure(python: str, framework: str, workload: str, repeat: int) -> float | None:
    """The median of `repeat` runs, each in a new process, all on one folder: the `process`
    workload's first run (which creates the framework's database and caches) is not counted."""
    times: list[float] = []
    folder = tempfile.mkdtemp(prefix=f"bench-{framework}-{workload}-")
    runs = repeat + 1 if workload == "process" else repeat
    for run in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            [python, __file__, "--child", framework, workload, folder],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{framework} {workload} failed:\n{proc.stderr[-3000:]}")
        answer = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
        if answer is None:
            return None
        if workload == "process" and run == 0:
            continue  # the first process created the database: not what a run costs
        times.append(time.perf_counter() - started if workload == "process" else answer)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="the Python that has flytekit and dagster installed (default: this one)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    workloads = [w for w in args.only.split(",") if w]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}: choose from {', '.join(WORKLOADS)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.2f}; median of {args.repeat}"
    )
    pythons = {"taskfabric": sys.executable}
    for peer in ("flytekit", "dagster"):
        if _importable(args.peer_python, peer):
            pythons[peer] = args.peer_python
        else:
            print(f"{peer}: not installed for {args.peer_python} (pip install {peer})")
    header = f"{'workload':<9} {'framework':<11} {'figure':>14} {'ratio to taskfabric':>21}"
    print(header)
    print("-" * len(header))
    for workload in workloads:
        base: float | None = None
        for framework, python in pythons.items():
            seconds = _measure(python, framework, workload, args.repeat)
            if seconds is None:
                print(f"{workload:<9} {framework:<11} {'(no cache)':>14}")
                continue
            if workload == "process":
                figure = f"{seconds:.2f} s"
            else:
                figure = f"{seconds * 1000 / TASKS[workload]:.3f} ms/task"
            if framework == "taskfabric":
                base = seconds
            ratio = f"{seconds / base:.2f}x" if base else "-"
            print(f"{workload:<9} {framework:<11} {figure:>14} {ratio:>21}")


if __name__ == "__main__":
    main()
