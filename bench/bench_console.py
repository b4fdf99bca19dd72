"""Web console benchmark: how long each page takes to load in headless Chromium with 10,000
executions in the database, against a real `taskfabric server` on 127.0.0.1.

    python bench/bench_console.py                        # SQLite, 10,000 executions
    python bench/bench_console.py --executions 50000 --repeat 20
    python bench/bench_console.py --database postgresql+psycopg://u:p@127.0.0.1:5432/db

The database gets `--executions` finished executions (rows written directly: two projects,
six workflows, every phase) and one real execution of a typed workflow with a map, whose map
node then gets `--items` more item rows, so the graph and node panel are measured with a map
of that size.

A page is loaded when it has drawn its data: each page's module sets `body[data-loaded]` to
`performance.now()` then (milliseconds since the navigation started, by the browser's own
clock). Each page is loaded `--repeat` times, each after about:blank, with a warm server,
and two times are printed: `page` (navigation start to data drawn, read in the page) and
`wall` (from Playwright's `page.goto`, which waits for the load event, to the marker seen:
this adds the driver's own round trips). The baseline row is a bare JSON response
(`GET /healthz`) in the same browser, timed the same two ways (to its load event): what any
navigation costs on this machine at that moment. Each page's median is printed with its
ratio to the baseline's (`x1.20 of bare JSON`) and to the issue's target of 300 ms.

The machine is shared: the 300 ms target is checked only when it is quiet: the 1-minute load
average at most `--quiet-load` (default 1.0) when the bench starts, and at most one more when
the pages are done (the bench itself keeps about one core busy); then the bench exits
1 if a page's median `page` time misses it. On a busy machine it says so, prints the same
figures and ratios, and exits 0: read the ratios then.

The API section times, from a keep-alive client (`--api-repeat` times each), the calls
behind the pages (the HTTP API the command line uses too) and each page's HTML, which carries
the answers of the page's first calls (asked by the server in-process).
Needs playwright (`pip install playwright`) and Debian's chromium (`--no-browser`: the API
only).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration_tests" / "console"))

from conftest import CHROMIUM, CHROMIUM_ARGS, Console  # noqa: E402

from taskfabric.metadata._schema import executions, node_executions  # noqa: E402
from taskfabric.registry import build_package  # noqa: E402

#: The issue's target for a page load with 10,000 executions in the database (ms).
TARGET_MS = 300.0
PHASES = ["SUCCEEDED"] * 6 + ["FAILED", "ABORTED", "RUNNING", "QUEUED"]
WORKFLOWS = [f"shopflows.flow_{i}" for i in range(6)]


def seed(database: str, count: int) -> None:
    engine = sa.create_engine(database)
    now = time.time()
    rows = []
    rng = random.Random(7)
    for i in range(count):
        created = now - (count - i) * 30.0
        phase = rng.choice(PHASES)
        ended = phase in ("SUCCEEDED", "FAILED", "ABORTED")
        rows.append(
            {
                "id": uuid.uuid4().hex[:12],
                "project": "shop" if i % 10 < 7 else "bank",
                "domain": "prod",
                "name": f"seeded-{i}",
                "workflow_name": rng.choice(WORKFLOWS),
                "workflow_version": "v1",
                "phase": phase,
                "created_at": created,
                "started_at": created + 1 if phase != "QUEUED" else None,
                "finished_at": created + 20 if ended else None,
            }
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(executions.insert(), rows[start : start + 2000])
    engine.dispose()


def add_items(database: str, execution_id: str, map_node: str, first: int, count: int) -> None:
    engine = sa.create_engine(database)
    now = time.time()
    rows = [
        {
            "execution_id": execution_id,
            "node_id": f"{map_node}[{i}]",
            "name": f"double[{i}]",
            "kind": "map_item",
            "parent_id": map_node,
            "task_name": "shopflows.double",
            "phase": "SUCCEEDED" if i % 50 else "FAILED",
            "attempts": 1,
            "started_at": now,
            "finished_at": now + 0.01,
        }
        for i in range(first, first + count)
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(node_executions.insert(), rows[start : start + 2000])
    engine.dispose()


def _row(label: str, took: list[float], baseline: float | None, unit: str = "") -> str:
    median = statistics.median(took)
    vs_base = f"x{median / baseline:5.2f} of bare JSON" if baseline else " " * 19
    return (
        f"  {label:<40} {unit}median {median:7.1f} ms  min {min(took):7.1f} ms  "
        f"max {max(took):7.1f} ms  {vs_base}  x{median / TARGET_MS:4.2f} of {TARGET_MS:.0f} ms"
    )


def bench_api(url: str, token: str, calls: list[tuple[str, str]], repeat: int) -> None:
    """Each call `repeat` times (after one warm-up), from a keep-alive client signed in as
    a browser is (the session cookie), so a page's HTML is timed as the browser gets it."""
    import httpx

    print(f"API calls and pages' HTML, {repeat} each (a keep-alive client):")
    baseline = None
    with httpx.Client(base_url=url, cookies={"tf_session": token}, timeout=120) as http:
        for label, path in calls:
            http.get(path).raise_for_status()
            took = []
            for _ in range(repeat):
                started = time.perf_counter()
                http.get(path).raise_for_status()
                took.append((time.perf_counter() - started) * 1000)
            print(_row(label, took, baseline))
            if baseline is None:
                baseline = statistics.median(took)


_LOADED_AT = "Number(document.body.dataset.loaded)"
_JSON_LOADED = "performance.getEntriesByType('navigation')[0].loadEventEnd"


#: Where a page's time goes, from its navigation entry: the HTML's first byte (the server's
#: work, the in-process API calls included) and its last, and the modules run
#: (DOMContentLoaded fires after deferred module scripts have run).
_STEPS = (
    "(() => { const n = performance.getEntriesByType('navigation')[0];"
    " return [n.responseStart, n.responseEnd, n.domContentLoadedEventStart]; })()"
)


def load_page(page: Any, path: str, steps: list[list[float]] | None = None) -> tuple[float, float]:
    """(page, wall) ms of one load of a console page after about:blank; `steps` gets the
    times of its steps (`_STEPS`)."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(path, wait_until="load")  # as the bare JSON's: the same driver round trips
    page.wait_for_selector("body[data-loaded]", state="attached")
    wall = (time.perf_counter() - started) * 1000
    if steps is not None:
        steps.append([float(x) for x in page.evaluate(_STEPS)])
    return float(page.evaluate(_LOADED_AT)), wall


def load_json(page: Any, path: str) -> tuple[float, float]:
    """(page, wall) ms of one load of a bare JSON response after about:blank."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(path, wait_until="load")
    page.wait_for_function(f"{_JSON_LOADED} > 0")
    wall = (time.perf_counter() - started) * 1000
    return float(page.evaluate(_JSON_LOADED)), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--api-repeat", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true", help="time the API calls only")
    parser.add_argument("--database", default=None, help="default: SQLite in a temp folder")
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=1.0,
        help="the 1-minute load average up to which the machine counts as quiet and the "
        "300 ms target is checked (default 1.0)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    quiet_before = os.getloadavg()[0] <= args.quiet_load
    root = Path(tempfile.mkdtemp(prefix="bench-console-"))
    site = Console(root, database=args.database)
    site.start()
    try:
        token = site.token(["shop"], "admin", "bench")
        with site.client(token) as c:
            c.register(
                build_package(
                    HERE.parent / "integration_tests" / "console" / "flows_shop",
                    project="shop",
                    domain="prod",
                    version="v1",
                )
            )
            inputs = {"order": {"item": "tea", "quantity": 2}, "size": "SMALL", "n": 3}
            ran = c.launch("shop", "prod", workflow="shopflows.checkout", inputs=inputs)
            run_id = ran.execution.id
            while c.execution(run_id, values=False).execution.phase not in ("SUCCEEDED", "FAILED"):
                time.sleep(0.2)
            mapped = next(n for n in c.execution(run_id).nodes if n.kind == "map")
        seed(site.database, args.executions)
        add_items(site.database, run_id, mapped.node_id, 3, args.items)
        # Page 50 of a project's list is read after the last execution of page 49 (keyset).
        with site.client(token) as c:
            far = c.executions(project="shop", limit=1, offset=2449)[0].id
        pages = [
            ("executions list", "/console/"),
            ("executions, failed only", "/console/?phase=FAILED"),
            ("executions, page 50", f"/console/?project=shop&before={far}"),
            (f"one execution, map of {args.items + 3} items", f"/console/executions/{run_id}"),
            ("launch form", "/console/launch/shop/prod/shopflows.checkout"),
            ("launch: pick a workflow", "/console/launch"),
            ("registry", "/console/registry"),
            ("pools", "/console/pools"),
        ]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load average {load}")
        print(
            f"{args.executions} executions + a map of {args.items + 3} items, "
            f"{'SQLite' if args.database is None else 'PostgreSQL'}; {args.repeat} loads each"
        )
        ref = run_id
        map_id = mapped.node_id
        scope = "/api/v1/projects/shop/domains/prod"
        api_calls = [
            ("baseline: GET /healthz", "/healthz"),
            ("executions, newest 50 (a project)", "/api/v1/executions?project=shop&limit=50"),
            ("executions, every visible project", "/api/v1/executions?limit=50"),
            ("executions, failed only", "/api/v1/executions?project=shop&phase=FAILED"),
            ("executions, page 50 (keyset)", f"/api/v1/executions?project=shop&before={far}"),
            ("executions, page 50 (offset)", "/api/v1/executions?project=shop&offset=2450"),
            ("projects and domains", "/api/v1/projects"),
            ("graph, map of many items", f"/api/v1/executions/{ref}/graph?values=false"),
            ("graph with values", f"/api/v1/executions/{ref}/graph"),
            ("node detail of the map", f"/api/v1/executions/{ref}/nodes/{map_id}/detail"),
            (
                "map items, page 100 of 200 (keyset)",
                f"/api/v1/executions/{ref}/nodes/{map_id}/items?after={map_id}[4949]",
            ),
            (
                "map items, failed only",
                f"/api/v1/executions/{ref}/nodes/{map_id}/items?phase=FAILED",
            ),
            ("workflow interface", f"{scope}/workflows/shopflows.checkout"),
            ("entities, every kind", f"{scope}/entities?kind=workflow&kind=task&kind=launch_plan"),
            ("launch plans", f"{scope}/launch_plans"),
            ("pools", "/api/v1/pools"),
            *[(f"HTML: {label}", path) for label, path in pages],
        ]
        bench_api(site.url, token, api_calls, args.api_repeat)
        if args.no_browser:
            return 0
        print(
            f"pages in Chromium, {args.repeat} loads each: `page` = navigation start to data "
            "drawn (the page's clock), `wall` = page.goto to the marker seen (Playwright's)"
        )
        missed = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(base_url=site.url)
            page = context.new_page()
            page.goto("/console/")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/")
            load_json(page, "/healthz")  # warm
            json_times = [load_json(page, "/healthz") for _ in range(args.repeat)]
            base_page = statistics.median(t for t, _ in json_times)
            base_wall = statistics.median(w for _, w in json_times)
            label = "baseline: GET /healthz (bare JSON)"
            print(_row(label, [t for t, _ in json_times], None, "page "))
            print(_row("", [w for _, w in json_times], None, "wall "))
            for label, path in pages:
                load_page(page, path)  # warm: the server's caches, the modules
                steps: list[list[float]] = []
                times = [load_page(page, path, steps) for _ in range(args.repeat)]
                in_page = [t for t, _ in times]
                print(_row(label, in_page, base_page, "page "))
                print(_row("", [w for _, w in times], base_wall, "wall "))
                first, last, ran = (statistics.median(x) for x in zip(*steps, strict=True))
                print(
                    f"  {'':<40} (medians: HTML's first byte {first:.0f} ms, last byte "
                    f"{last:.0f} ms, modules run {ran:.0f} ms)"
                )
                if statistics.median(in_page) > TARGET_MS:
                    missed.append(label)
            # the node panel of the big map: its attempts, values and first 50 items
            page.goto(f"/console/executions/{run_id}")
            node = page.locator("#dag g.node[data-kind=map]")
            took = []
            for _ in range(args.repeat):
                page.click("#dag g.node[data-kind=task] >> nth=0")
                page.wait_for_selector("#attempts")
                started = time.perf_counter()
                node.click()
                page.wait_for_selector("#items tr")
                took.append((time.perf_counter() - started) * 1000)
            print(_row("node panel of the map (click to drawn)", took, base_wall, "wall "))
            if statistics.median(took) > TARGET_MS:
                missed.append("node panel of the map")
            browser.close()
        after = os.getloadavg()
        quiet = quiet_before and after[0] <= args.quiet_load + 1
        load = ", ".join(f"{x:.1f}" for x in after)
        if not quiet:
            print(
                f"load average now {load}: the machine was not quiet (1-minute load above "
                f"{args.quiet_load} at the start or {args.quiet_load + 1} at the end), so the "
                f"{TARGET_MS:.0f} ms target is not checked; read "
                "the ratios to the bare JSON response"
            )
            return 0
        if missed:
            print(f"load average now {load}; over {TARGET_MS:.0f} ms: {', '.join(missed)}")
            return 1
        print(f"load average now {load}; every page within {TARGET_MS:.0f} ms")
        return 0
    finally:
        site.stop()


if __name__ == "__main__":
    sys.exit(main())
