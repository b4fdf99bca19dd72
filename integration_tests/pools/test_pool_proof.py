"""The proof of resource pools (issue 4): a real HTTP service on 127.0.0.1 that counts its own
concurrent requests and requests per second, called by 200 tasks from three projects through
a pool of 5 slots and 20 requests per second, run by three `taskfabric run` processes sharing
one PostgreSQL database. The service must never see more than 5 at once; the pool must never
grant more than the rate allows (plus the burst), and every request the service sees must come
after its own grant; every task finishes; no project waits disproportionately. Then the same
with one engine killed with -9 mid-run: its slots come back within the lease TTL, its execution
is resumed, and nothing is lost.

The rate is checked at the pool's grant times, which the engines log ("pool lease granted",
JSON at debug level). The service's own one-second count is printed, not judged by it: a grant
made by one engine's pass for another engine's waiter reaches that engine at its next poll
(every 50 ms) and its request follows a scheduler tick later, so on a busy machine a second at
the service can hold grants from a little more than a second.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

SLOTS, RATE, BURST = 5, 20, 5
PROJECTS = {"atlas": (0, 67), "borealis": (67, 67), "cygnus": (134, 66)}  # 200 items

WORKFLOW = """
import os, urllib.request
from taskfabric import map_task, task, workflow

URL = os.environ["GEO_URL"]

@task
def items(n: int, offset: int) -> list[int]:
    return list(range(offset, offset + n))

@task(pools={"geo": 1}, retries=2)
def geocode(i: int, project: str) -> str:
    with urllib.request.urlopen(f"{URL}/geo?item={i}&project={project}", timeout=60) as r:
        return r.read().decode()

@task
def count(xs: list[str]) -> int:
    return len(xs)

@workflow
def geo(n: int, offset: int, project: str) -> int:
    return count(xs=map_task(geocode)(i=items(n=n, offset=offset), project=project))
"""


@dataclass
class Service:
    """The external service: records every request; never limits (so it can judge)."""

    active: int = 0
    max_active: int = 0
    requests: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _serve(service: Service) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = parse_qs(urlparse(self.path).query)
            with service.lock:
                service.active += 1
                service.max_active = max(service.max_active, service.active)
                service.requests.append((time.time(), query["project"][0], int(query["item"][0])))
            time.sleep(0.1)
            with service.lock:
                service.active -= 1
            body = json.dumps({"item": int(query["item"][0])}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get("TASKFABRIC_TEST_POSTGRES_URL", "")
    if not base:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TASKFABRIC_TEST_POSTGRES_URL is not set", pytrace=False)
        pytest.skip("needs PostgreSQL: set TASKFABRIC_TEST_POSTGRES_URL (bash .ci/run does)")
    schema = f"proof_{secrets.token_hex(4)}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    options = f"-csearch_path={schema}"
    yield (
        sa.make_url(base)
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def setup(tmp_path: Path, pg_url: str) -> Iterator[tuple[Service, dict[str, str], Path]]:
    service = Service()
    server, url = _serve(service)
    (tmp_path / "geo_wf.py").write_text(textwrap.dedent(WORKFLOW))
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        textwrap.dedent(f'''
        [storage]
        data_root = "{tmp_path / "data"}"
        [metadata]
        url = "{pg_url}"
        [engine]
        parallelism = 8
        heartbeat_seconds = 1.0
        [pools.geo]
        slots = {SLOTS}
        rate = {RATE}
        burst = {BURST}
        lease_ttl = 3
    ''')
    )
    env = dict(
        os.environ, GEO_URL=url, TASKFABRIC_CONFIG=str(config), PYTHONPATH=os.pathsep.join(sys.path)
    )
    env.pop("TASKFABRIC_DATA_ROOT", None)
    yield service, env, tmp_path
    server.shutdown()


# The engines log each pool grant at debug level, as JSON lines on stderr (see _grants).
_CLI = [sys.executable, "-m", "taskfabric.cli", "--log-level", "debug", "--log-format", "json"]


def _launch(env: dict[str, str], folder: Path, project: str) -> subprocess.Popen[str]:
    offset, n = PROJECTS[project]
    # Output to files, not pipes: a pipe nobody reads while we wait for another engine fills
    # up and blocks the engine writing to it.
    out = (folder / f"{project}.out").open("w")
    err = (folder / f"{project}.err").open("w")
    return subprocess.Popen(
        [
            *_CLI,
            "run",
            "--project",
            project,
            f"{folder / 'geo_wf.py'}:geo",
            "--n",
            str(n),
            "--offset",
            str(offset),
            "--project",
            project,
        ],
        stdout=out,
        stderr=err,
        text=True,
        env=env,
        cwd=folder,
    )


def _finish(proc: subprocess.Popen[str], folder: Path, project: str) -> str:
    proc.wait(timeout=300)
    err = (folder / f"{project}.err").read_text()
    assert proc.returncode == 0, f"{project}: {err[-3000:]}"
    return (folder / f"{project}.out").read_text()


def _busiest_second(times: list[float]) -> int:
    starts = sorted(times)
    j = 0
    worst = 0
    for i, t in enumerate(starts):  # every window (t - 1 s, t]
        while starts[j] <= t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


def _grants(logs: list[tuple[str, str]]) -> dict[tuple[str, int], list[float]]:
    """(project, item) -> grant times of its attempts, from each project's engine's JSON log."""
    grants: dict[tuple[str, int], list[float]] = {}
    for project, text in logs:
        for line in text.splitlines():
            if '"pool lease granted"' not in line:
                continue
            event = json.loads(line)
            index = int(event["node_id"].removeprefix("n1[").removesuffix("]"))
            item = PROJECTS[project][0] + index
            grants.setdefault((project, item), []).append(float(event["granted_at"]))
    return grants


def _check_limits(service: Service, logs: list[tuple[str, str]]) -> None:
    assert service.max_active <= SLOTS, f"the service saw {service.max_active} at once"
    grants = _grants(logs)
    granted_at = [t for times in grants.values() for t in times]
    worst = _busiest_second(granted_at)
    assert worst <= RATE + BURST, f"{worst} grants within one second (rate {RATE}, burst {BURST})"
    # every request the service saw came after a grant of its own: the k-th request for an
    # item after the k-th grant for it (a retry asks the pool again)
    requests: dict[tuple[str, int], list[float]] = {}
    for t, project, item in service.requests:
        requests.setdefault((project, item), []).append(t)
    delays = []
    for key, times in requests.items():
        given = sorted(grants.get(key, []))
        assert len(given) >= len(times), f"{key}: {len(times)} requests, {len(given)} grants"
        for at, grant in zip(sorted(times), given, strict=False):
            assert at >= grant, f"{key}: a request at {at} before its grant at {grant}"
            delays.append(at - grant)
    delays.sort()
    counted = _busiest_second([t for t, _, _ in service.requests])
    print(
        f"service saw at most {service.max_active} at once; the pool granted at most {worst} "
        f"in one second, the service counted {counted}; "
        f"grant to request: median {delays[len(delays) // 2] * 1000:.0f} ms, "
        f"max {delays[-1] * 1000:.0f} ms"
    )


def _logs(folder: Path, *more: tuple[str, str]) -> list[tuple[str, str]]:
    return [(p, (folder / f"{p}.err").read_text()) for p in PROJECTS] + list(more)


@pytest.mark.slow
def test_three_engines_share_one_pool_fairly(setup: tuple[Service, dict[str, str], Path]) -> None:
    service, env, folder = setup
    procs = {p: _launch(env, folder, p) for p in PROJECTS}
    for project, proc in procs.items():
        assert f"o0 = {PROJECTS[project][1]}" in _finish(proc, folder, project)
    _check_limits(service, _logs(folder))
    items = {i for _, _, i in service.requests}
    assert items == set(range(200))
    # fairness: the projects ran side by side; none finished long after the others
    last = {p: max(t for t, q, _ in service.requests if q == p) for p in PROJECTS}
    first = min(t for t, _, _ in service.requests)
    spans = {p: last[p] - first for p in PROJECTS}
    assert max(spans.values()) / min(spans.values()) < 1.5, spans
    print(
        "seconds from the first request to each project's last:",
        {p: round(s, 1) for p, s in spans.items()},
    )
    half = sorted(service.requests)[:100]
    for p in PROJECTS:
        share = sum(1 for _, q, _ in half if q == p) / 100
        assert 0.2 < share < 0.47, (p, share)


@pytest.mark.slow
def test_a_killed_engine_loses_nothing_and_leaks_no_slot(
    setup: tuple[Service, dict[str, str], Path],
) -> None:
    service, env, folder = setup
    procs = {p: _launch(env, folder, p) for p in PROJECTS}
    deadline = time.monotonic() + 60
    while sum(1 for _, q, _ in service.requests if q == "borealis") < 10:
        assert time.monotonic() < deadline, "borealis made no progress"
        time.sleep(0.05)
    victim = procs.pop("borealis")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    for project, proc in procs.items():
        _finish(proc, folder, project)
    # the survivors finished; the dead engine's slots came back (at most after the TTL)
    db = sa.create_engine(
        next(
            line.split('"')[1]
            for line in (folder / "taskfabric.toml").read_text().splitlines()
            if line.strip().startswith("url")
        )
    )
    with db.connect() as conn:
        (execution_id,) = conn.execute(
            sa.text("SELECT id FROM executions WHERE project = 'borealis'")
        ).one()
    resumed = subprocess.run(
        [*_CLI, "executions", "resume", execution_id],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "o0 = 67" in resumed.stdout
    _check_limits(service, _logs(folder, ("borealis", resumed.stderr)))
    assert {i for _, _, i in service.requests} == set(range(200))  # nothing lost
    after_kill = [t for t, _, _ in service.requests if t > killed_at]
    assert after_kill, "the other engines kept calling the service after the kill"
    with db.connect() as conn:
        in_use = conn.execute(sa.text("SELECT count(*) FROM pool_leases")).scalar()
    assert in_use == 0
    db.dispose()
