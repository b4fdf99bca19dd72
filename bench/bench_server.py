"""Load on a real `taskfabric server` on 127.0.0.1: how fast launched executions finish.

    python bench/bench_server.py                          # S1 and S2 on SQLite, 2 workers
    python bench/bench_server.py --launches 200 --rate 20 --workers 4
    python bench/bench_server.py --postgres postgresql+psycopg://USER:PW@127.0.0.1:5432/DB
    python bench/bench_server.py --setups sandbox-1,sandbox-8 --only S1   # before/after ratios

The server runs in a process of its own with `--workers W`, on a fresh data root; a one-task
workflow (`add_one(x) -> x + 1`) is registered through the API, then:

- S1 (a burst): `--launches` launches sent by 8 client threads as fast as the API takes them.
  Reports the launch rate the API accepted, the finish rate (executions per second from the
  first launch to the last finish), the launch-to-finish latency (p50, p99, max) and the
  median time from an execution's claim to its end (its slot's time: an engine process's
  slots / that time bounds its rate).
- S2 (a steady rate): launches at `--rate` per second for `--seconds`, open loop (a launch
  is sent at its time whether or not earlier ones finished). Reports the same figures; the
  issue's target is p99 < 2 s at 20 launches/s, and >= 50 executions/s finished.

`--setups` runs them on several server set-ups in turn (`trusted`: single-tenant, tasks in
the engine process, one engine process per execution; `sandbox-1`: multi-tenant, every task
in a bubblewrap sandbox, one engine process per execution; `sandbox-8`: the same with up to
8 executions per engine process; `sandbox-16`: 16 of them; `sandbox-8-bwrap`: `sandbox-8`
without the sandbox's fork server, each attempt starting `bwrap` and a fresh Python) and
prints each one's figures as ratios to the first's.

Before the scenarios a few executions warm the server up (with `sandbox-8` and `sandbox-16`,
until each engine process has started its sandbox's fork server); the CPU used until then
(starting the server, its engine processes and fork servers: paid once) is reported apart.
At the end it reports the CPU time that each role used per execution from the first launch
on (the server, its engine processes, fork servers and sandboxes, and with `--postgres`
PostgreSQL's backends), and the finish rate that this bounds on this machine's cores when
nothing else runs (the wall-clock figures depend on what else the machine does).

Every execution is checked to have SUCCEEDED with the right output, and each run exactly once
(one attempt of its one node). Latencies are the server's own times: `created_at` (the launch
recorded) to `finished_at` (the end recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from taskfabric.config import load_config
from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package
from taskfabric.server import Client, TokenStore

FLOWS = """
from taskfabric import task, workflow


@task
def add_one(x: int) -> int:
    return x + 1


@workflow
def one(x: int) -> int:
    return add_one(x=x)
"""
THREADS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: The server set-ups compared (`--setups`): what each adds to the server's config.
SETUPS = {
    # one team's own code: tasks in the worker's engine process, one process per execution
    "trusted": "single_tenant = true\n",
    # several projects: every task in a bubblewrap sandbox; one engine process per execution
    "sandbox-1": 'executions_per_worker = 1\n\n[task_types]\npython = "box"\n\n'
    '[backends.box]\ndriver = "sandbox"\n',
    # the same, each engine process running up to 8 executions at once (every attempt
    # forked from the sandbox's fork server, the default)
    "sandbox-8": 'executions_per_worker = 8\n\n[task_types]\npython = "box"\n\n'
    '[backends.box]\ndriver = "sandbox"\n',
    # the same, every attempt starting `bwrap` and a fresh Python (no fork server)
    # the same, with up to 16 executions per engine process
    "sandbox-16": 'executions_per_worker = 16\n\n[task_types]\npython = "box"\n\n'
    '[backends.box]\ndriver = "sandbox"\n',
    "sandbox-8-bwrap": 'executions_per_worker = 8\n\n[task_types]\npython = "box"\n\n'
    '[backends.box]\ndriver = "sandbox"\nfork_server = false\n',
}


def _proc_cpu(pid: int) -> tuple[float, float, int, str]:
    """(own CPU s, CPU s of its waited-for children, parent pid, command line) from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / tick
    children = (int(fields[13]) + int(fields[14])) / tick
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return own, children, int(fields[1]), cmd


def cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the server's process tree, by role: `api` (the server process:
    the API and its worker pool's thread), `engine` (the engine processes, those that ended
    with their own sandboxes and fork servers), `fork servers`
    and `sandboxes` (the attempts they forked and reaped: namespaces, mounts, the task)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                procs[int(entry.name)] = _proc_cpu(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    roles = {"api": 0.0, "engine": 0.0, "fork servers": 0.0, "sandboxes": 0.0}

    def under_server(pid: int) -> bool:
        while pid in procs and pid != server_pid:
            pid = procs[pid][2]
        return pid == server_pid

    for pid, (own, children, ppid, cmd) in procs.items():
        if not under_server(pid):
            continue
        if pid == server_pid:
            roles["api"] += own
            roles["engine"] += children  # engine processes that ended (one per execution)
        elif "--fork-server" in cmd:
            roles["fork servers"] += own
            roles["sandboxes"] += children
        elif ppid == server_pid:
            roles["engine"] += own + children
    return roles


class PostgresCPU:
    """CPU seconds of the PostgreSQL server processes serving `url`'s database (its backends:
    same host), sampled every half second so that a backend that exits mid-run counts up to
    its last sample. Not the server's own background processes (WAL writer, checkpointer)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (CPU at first sample, last)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._started = False  # once started, a backend not seen before counts from zero

    def _sample(self) -> None:
        with self.engine.connect() as conn:
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ).scalars()
            for pid in pids:
                try:
                    own = _proc_cpu(pid)[0]
                except (OSError, IndexError, ValueError):
                    continue
                first = self.seen.get(pid, (0.0 if self._started else own, own))[0]
                self.seen[pid] = (first, own)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self._sample()
            except Exception:  # a sample missed: the next one counts
                continue

    def start(self) -> None:
        self._sample()  # a backend already there counts from now
        self._started = True
        self.thread.start()

    def so_far(self) -> float:
        """CPU seconds of the backends since `start`, sampled now."""
        with contextlib.suppress(Exception):
            self._sample()
        return sum(last - first for first, last in self.seen.values())

    def total(self) -> float:
        self.stop.set()
        self.thread.join()
        found = self.so_far()
        self.engine.dispose()
        return found


class Server:
    def __init__(self, root: Path, workers: int, database: str | None, setup: str) -> None:
        self.root = root
        self.config = root / "taskfabric.toml"
        text = f'[storage]\ndata_root = "{root / "data"}"\n\n[server]\nscheduler = false\n'
        text += SETUPS[setup]
        if database:
            text += f'\n[metadata]\nurl = "{database}"\n'
        self.config.write_text(text)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(self.config)]
        cmd += ["--log-level", "warning", "server", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit(f"the server did not answer in 60 s: see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


#: In the launches' names and the registered version: a run's own on a database that earlier
#: runs used (their code bundles and documents went with their data roots).
RUN = secrets.token_hex(4)


def _launch(client: Client, x: int, tag: str) -> tuple[str, float]:
    sent = time.time()
    launched = client.launch(
        "bench",
        "load",
        workflow="flows.one",
        version=f"v-{RUN}",
        inputs={"x": x},
        name=f"{tag}-{RUN}-{x}",
    )
    assert launched.created
    return launched.execution.id, sent


def _wait(client: Client, ids: set[str], timeout: float) -> list[Any]:
    """The executions of `ids` once all have ended: polls the unfinished ones (as a client
    waiting for its launches would; a poll that listed every execution would make the API's
    share grow with the number of finished ones), then lists them all once."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = 0
        offset = 0
        while True:
            page = client.executions(
                project="bench", phases=["QUEUED", "RUNNING"], limit=1000, offset=offset
            )
            waiting += sum(e.id in ids for e in page)
            if len(page) < 1000:
                break
            offset += 1000
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(ids) - waiting} of {len(ids)} executions ended in {timeout} s")
        time.sleep(0.5)
    found = []
    offset = 0
    while True:
        page = client.executions(project="bench", limit=1000, offset=offset)
        found += [e for e in page if e.id in ids]
        if len(page) < 1000:
            break
        offset += 1000
    return found


def _check_once(database_url: str, ids: set[str]) -> None:
    """Each execution ran its one node exactly once."""
    store = MetadataStore(database_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT execution_id, COUNT(*) FROM node_attempts GROUP BY execution_id")
            ).all()
    finally:
        store.close()
    attempts = {r[0]: r[1] for r in rows if r[0] in ids}
    twice = {k: v for k, v in attempts.items() if v != 1}
    missing = ids - set(attempts)
    assert not twice and not missing, f"ran twice: {twice}; never ran: {missing}"


def _report(
    what: str, launches: list[tuple[str, float]], ended: list[Any], seconds: float
) -> float:
    """Print a scenario's figures; returns its finish rate (executions/s)."""
    by_id = {e.id: e for e in ended}
    assert all(e.phase == "SUCCEEDED" for e in ended), [e.error for e in ended if e.error][:3]
    latency = sorted(by_id[i].finished_at - by_id[i].created_at for i, _ in launches)
    first = min(sent for _, sent in launches)
    last_finish = max(e.finished_at for e in ended)
    n = len(launches)
    p99 = latency[min(n - 1, int(n * 0.99))]
    running = statistics.median(by_id[i].finished_at - by_id[i].started_at for i, _ in launches)
    print(
        f"{what}: {n} launches in {seconds:.1f} s ({n / seconds:.1f}/s accepted); "
        f"finished at {n / (last_finish - first):.2f} executions/s; launch to finish "
        f"p50 {statistics.median(latency):.2f} s, p99 {p99:.2f} s, max {latency[-1]:.2f} s; "
        f"claimed to finish p50 {running:.2f} s"
    )
    return n / (last_finish - first)


def burst(client: Client, n: int, timeout: float) -> tuple[list[tuple[str, float]], float]:
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        launches = list(pool.map(lambda x: _launch(client, x, "s1"), range(n)))
    return launches, time.monotonic() - started


def steady(client: Client, rate: float, seconds: float) -> tuple[list[tuple[str, float]], float]:
    n = int(rate * seconds)
    launches: list[tuple[str, float]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def one(x: int) -> None:
        delay = started + x / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        found = _launch(client, x, "s2")
        with lock:
            launches.append(found)

    with ThreadPoolExecutor(max(THREADS, int(rate))) as pool:
        list(pool.map(one, range(n)))
    return launches, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=100, help="S1's burst (default 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="S2's launches/s (default 20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="S2's length (default 5 s)")
    parser.add_argument("--workers", type=int, default=2, help="the server's workers")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="wait at most this long")
    parser.add_argument("--only", choices=["S1", "S2"], default=None)
    parser.add_argument(
        "--setups",
        default="trusted",
        help=f"comma-separated server set-ups to run one after the other: {', '.join(SETUPS)} "
        "(default: trusted); with several, their figures are compared as ratios to the first",
    )
    args = parser.parse_args(argv)
    if sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print(
            "note: PYTHONDONTWRITEBYTECODE is set: without .pyc files every process the server "
            "starts compiles its imports (unset it, and run once, for a deployment's figures)"
        )
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        parser.error(f"unknown set-up {', '.join(unknown)}: choose among {', '.join(SETUPS)}")
    figures = {setup: run_setup(args, setup) for setup in setups}
    if len(figures) > 1:
        first, (rate0, cpu0) = setups[0], figures[setups[0]]
        for setup in setups[1:]:
            rate, cpu = figures[setup]
            print(
                f"{setup} / {first}: finish rate x{rate / rate0:.2f}, "
                f"CPU per execution x{cpu / cpu0:.2f}"
            )
    return 0


def _roles(server_pid: int, postgres: PostgresCPU | None) -> dict[str, float]:
    roles = cpu_by_role(server_pid)
    if postgres is not None:
        roles["postgres backends"] = postgres.so_far()
    return roles


#: The set-ups whose long-lived engine processes each start a fork server, warmed up first
#: (elsewhere each execution starts its own engine process: nothing stays warm).
WARMED = ("sandbox-8", "sandbox-16")


def _warm_up(client: Client, server_pid: int, workers: int, timeout: float) -> int:
    """Run rounds of executions until `workers` fork servers run (at most 5 rounds);
    returns how many ran."""
    ran = 0
    for _ in range(5):
        forks = 0
        for pid in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if pid.name.isdigit() and b"--fork-server" in (pid / "cmdline").read_bytes():
                    forks += _under(int(pid.name), server_pid)
        if forks >= workers:
            break
        with ThreadPoolExecutor(THREADS) as pool:
            launched = list(pool.map(lambda x: _launch(client, x, "warm"), range(ran, ran + 16)))
        _wait(client, {i for i, _ in launched}, timeout)
        ran += len(launched)
    return ran


def _under(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = _proc_cpu(pid)[2]
        except (OSError, IndexError, ValueError):
            return False
    return False


def _settled(server_pid: int, postgres: PostgresCPU | None) -> dict[str, float]:
    """CPU by role once the server's processes have started: the engine processes and their
    fork servers (started as each engine process starts) use no more CPU than idle polls."""
    deadline = time.monotonic() + 30
    last = _roles(server_pid, postgres)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _roles(server_pid, postgres)
        if sum(now.values()) - sum(last.values()) < 0.02:
            return now
        last = now
    return last


def run_setup(args: argparse.Namespace, setup: str) -> tuple[float, float]:
    """Run the scenarios on a fresh server of `setup`: (S1's finish rate, CPU s/execution)."""
    rate = run_cpu = 0.0
    warm = 0
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        root = Path(tmp)
        server = Server(root, args.workers, args.postgres, setup)
        config = load_config(server.config)
        store = MetadataStore(config.metadata_url)
        token = TokenStore(store).create(projects=["bench"], role="admin")[1]
        store.close()
        src = root / "src"
        src.mkdir()
        # the run in the code too: bundles are stored once per content, in a data root
        (src / "flows.py").write_text(textwrap.dedent(FLOWS) + f"\n# bench run {RUN}\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        postgres = PostgresCPU(config.metadata_url) if args.postgres else None
        if postgres is not None:
            postgres.start()
        server.start()
        total = 0
        print(
            f"[{setup}] server: {args.workers} workers, "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}, {os.cpu_count()} cores"
        )
        try:
            with Client(server.url, token, timeout=120) as client:
                client.register(
                    build_package(src, project="bench", domain="load", version=f"v-{RUN}")
                )
                # What the server, its engine processes and their fork servers cost to start
                # is counted apart: it is paid once, not per execution. A few executions
                # first, until each engine process has started its sandbox's fork server.
                if setup in WARMED:
                    warm = _warm_up(client, server.proc.pid, args.workers, args.timeout)
                ready = _settled(server.proc.pid, postgres)
                for what in ("S1", "S2"):
                    if args.only not in (None, what):
                        continue
                    load = os.getloadavg()[0]  # what else the machine does moves the figures
                    if what == "S1":
                        launches, seconds = burst(client, args.launches, args.timeout)
                    else:
                        launches, seconds = steady(client, args.rate, args.seconds)
                    ids = {i for i, _ in launches}
                    total += len(ids)
                    ended = _wait(client, ids, args.timeout)
                    _check_once(config.metadata_url, ids)
                    label = what if what == "S1" else f"S2 at {args.rate:g}/s"
                    label += f" (load average {load:.1f} to {os.getloadavg()[0]:.1f})"
                    finished = _report(f"[{setup}] {label}", launches, ended, seconds)
                    rate = rate or finished
            if total and server.proc is not None:
                roles = _roles(server.proc.pid, postgres)
                print(
                    f"[{setup}] CPU to start (server, engine processes, fork servers; once): "
                    + ", ".join(f"{k} {ready[k]:.2f} s" for k in ready)
                )
                print(
                    f"[{setup}] CPU per execution by role (from the first launch on): "
                    + ", ".join(
                        f"{k} {1000 * (v - ready[k]) / total:.1f} ms" for k, v in roles.items()
                    )
                )
                run_cpu = sum(roles.values()) - sum(ready.values())
                print(
                    f"[{setup}] CPU per execution: {1000 * run_cpu / total:.1f} ms, every process "
                    f"above: at most {os.cpu_count() or 1} cores / that = "
                    f"{(os.cpu_count() or 1) * total / run_cpu:.1f} executions/s on an idle machine"
                )
                if postgres is not None:
                    postgres.total()
        finally:
            server.stop()
        # The server and every engine process it started have ended and been waited for.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if total:
            print(
                f"[{setup}] CPU with the start counted: {cpu:.1f} s for the server and its "
                f"engine processes (not PostgreSQL's), {1000 * cpu / (total + warm):.1f} ms per "
                f"execution ({total + warm}, {warm} of them warming up)"
            )
    return rate, run_cpu / max(1, total)


if __name__ == "__main__":
    raise SystemExit(main())
