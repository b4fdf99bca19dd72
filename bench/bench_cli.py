"""Start-up of the `taskfabric` command, against the interpreter's own start-up.

    python bench/bench_cli.py [--repeat 7]

Each case is a fresh process, run `--repeat` times in turn with the others (so a burst of
load hits every case alike); the median wall time is printed with its ratio to B0, a bare
`python -c pass` of the same interpreter measured in the same run. Byte-code caches are
written first (PYTHONDONTWRITEBYTECODE is unset for the children), as on an installed
machine. Targets (issue 20), printed met or missed, never failing the benchmark:

- `taskfabric --help` within 0.2 s;
- `taskfabric executions list` no slower than a one-task `taskfabric run`;
- a whole `taskfabric run` of a chain of 100 tasks within 0.5 s (the process, from its start
  to its exit, on a database an earlier run made).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKFLOW = """
from taskfabric import task, workflow

@task
def inc(x: int) -> int:
    return x + 1

@workflow
def one(x: int = 1) -> int:
    return inc(x=x)

@workflow
def chain(x: int = 1) -> int:
    for _ in range(100):
        x = inc(x=x)
    return x
"""


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    exe = Path(sys.executable)
    cli = exe.with_name("taskfabric")
    if not cli.exists():
        sys.exit(f"no taskfabric command beside {exe}: install the core in this environment")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="tf-bench-cli-") as folder:
        cwd = Path(folder)
        (cwd / "one.py").write_text(WORKFLOW)
        env["TASKFABRIC_CONFIG"] = str(cwd / "taskfabric.toml")
        (cwd / "taskfabric.toml").write_text(f'[storage]\ndata_root = "{cwd / "data"}"\n')
        cases = {
            "B0 python -c pass": [str(exe), "-c", "pass"],
            "import click": [str(exe), "-c", "import click"],
            "taskfabric --help": [str(cli), "--help"],
            "taskfabric run (one task)": [str(cli), "run", "one.py:one"],
            "taskfabric executions list": [str(cli), "executions", "list"],
            "taskfabric run (chain of 100)": [str(cli), "run", "one.py:chain"],
        }
        for argv in cases.values():  # byte-code caches, the database and its schema
            _timed(argv, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, argv in cases.items():
                times[name].append(_timed(argv, cwd, env))
    median = {name: statistics.median(found) for name, found in times.items()}
    base = median["B0 python -c pass"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"taskfabric command start-up, median of {args.repeat}; load average {load}")
    for name, seconds in median.items():
        print(f"{name:<30} {seconds * 1000:7.0f} ms  {seconds / base:5.1f}x B0")
    helped = median["taskfabric --help"]
    print(
        f"target --help <= 200 ms: {'met' if helped <= 0.2 else 'missed'} ({helped * 1000:.0f} ms)"
    )
    listed, ran = median["taskfabric executions list"], median["taskfabric run (one task)"]
    print(
        "target executions list <= a one-task run: "
        f"{'met' if listed <= ran else 'missed'} ({listed / ran:.2f}x)"
    )
    chained = median["taskfabric run (chain of 100)"]
    print(
        f"target run of a chain of 100 <= 500 ms: {'met' if chained <= 0.5 else 'missed'} "
        f"({chained * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
