"""HTTP services benchmark: what a call costs as an `http` task, against the same calls made
with a bare httpx client, on one real HTTP server on 127.0.0.1 (taskfabric-http's QuotaServer).

    python bench/bench_http.py                 # H1-H2, 400 calls, 8 at once
    python bench/bench_http.py --calls 1000 --repeat 5

- raw: `--calls` GET /geocode with one httpx.Client, 8 threads.
- H1: the same calls as a fan-out (`map_task(geocode, concurrency=8)`) of `http` tasks, each
  holding a slot of a pool of 8 slots: the engine records every node and attempt, converts
  the response to a typed output and takes and gives back a pool lease per call.
- H2: H1 with the pool removed (the engine without pools).

The figure to read is the ratio to `raw` and the added milliseconds per call, from medians of
`--repeat` runs; the server's answers are the same in every run. Needs taskfabric-http
installed (`pip install -e plugins/http`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from taskfabric import map_task, task, workflow
from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric_http import HttpRequest
from taskfabric_http.testing import QuotaServer


@task(
    config=HttpRequest(
        service="geo", url="/geocode", params={"q": "{inputs.address}"}, outputs="$.results[0].name"
    )
)
def geocode(address: str) -> str: ...


CONCURRENCY = 8


@workflow
def geocode_all(addresses: list[str]) -> list[str]:
    return map_task(geocode, concurrency=CONCURRENCY)(address=addresses)


def raw(url: str, addresses: list[str], concurrency: int) -> float:
    with httpx.Client(base_url=url) as client, ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        answers = list(pool.map(lambda a: client.get("/geocode", params={"q": a}), addresses))
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in answers)
    return elapsed


def engine_run(url: str, addresses: list[str], concurrency: int, pools: bool, root: Path) -> float:
    config_path = root / f"taskfabric-{time.monotonic_ns()}.toml"
    text = f'[storage]\ndata_root = "{root / "data"}"\n\n'
    text += '[backends.http]\ndriver = "http"\n\n'
    text += f'[backends.http.services.geo]\nbase_url = "{url}"\n'
    if pools:
        text += f'pools = ["geo-api"]\n\n[pools.geo-api]\nslots = {concurrency}\n'
    config_path.write_text(text, encoding="utf-8")
    with Engine(load_config(config_path)) as engine:
        started = time.perf_counter()
        result = engine.launch(geocode_all, {"addresses": addresses})
        elapsed = time.perf_counter() - started
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(geocode_all, engine.store) == addresses
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    addresses = [f"street {i}" for i in range(args.calls)]
    n, c = args.calls, CONCURRENCY
    with QuotaServer() as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw(server.url, addresses[:20], c)  # warm up
        engine_run(server.url, addresses[:20], c, True, root)
        base = statistics.median(raw(server.url, addresses, c) for _ in range(args.repeat))
        print(f"raw httpx, {c} threads: {n} calls in {base:.2f}s, {1e3 * base / n:.2f} ms/call")
        for label, pools in (("H1 http tasks, pool", True), ("H2 http tasks, no pool", False)):
            took = statistics.median(
                engine_run(server.url, addresses, c, pools, root) for _ in range(args.repeat)
            )
            print(
                f"{label}: {n} calls in {took:.2f}s, {1e3 * took / n:.2f} ms/call, "
                f"{took / base:.1f}x raw, +{1e3 * (took - base) / n:.2f} ms per call"
            )
        stats = server.stats
        print(f"server: {stats.requests} requests, at most {stats.max_in_flight} at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
