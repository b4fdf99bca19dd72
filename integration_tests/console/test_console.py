"""The web console in headless Chromium, against a real `taskfabric server`: what a user
does, page by page. Each test waits for states (Playwright's `expect`), never for a time."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from conftest import Console, sign_in
from playwright.sync_api import expect

CHECKOUT = "shopflows.checkout"
ORDER = {"item": "tea", "quantity": 3}


def _launch(console: Console, token: str, workflow: str, inputs: dict[str, Any]) -> str:
    with console.client(token) as c:
        launched = c.launch("shop", "prod", workflow=workflow, inputs=inputs)
    return launched.execution.id


def _add_executions(console: Console, count: int) -> None:
    """`count` finished executions of project shop, older than any the tests launch."""
    import sqlalchemy as sa

    from taskfabric.metadata._schema import executions

    rows = [
        {
            "id": f"old{i:09d}",
            "project": "shop",
            "domain": "prod",
            "name": f"old-{i}",
            "workflow_name": CHECKOUT,
            "workflow_version": "v1",
            "phase": "SUCCEEDED",
            "created_at": 1_000_000_000.0 + i,
        }
        for i in range(count)
    ]
    engine = sa.create_engine(console.database)
    with engine.begin() as conn:
        conn.execute(executions.insert(), rows)
    engine.dispose()


def _add_items(console: Console, execution_id: str, map_id: str | None, total: int) -> None:
    """The map recorded again as a map of `total` items would be, through the store's own
    write path (packed in chunk rows, as an engine records a big map): the items it ran keep
    their state and attempts, the others end SUCCEEDED, every tenth FAILED."""
    import sqlalchemy as sa

    from taskfabric.metadata import Batch, MapItemsQueued, MetadataStore, NodeRecord
    from taskfabric.metadata._schema import map_item_chunks

    assert map_id
    store = MetadataStore(console.database)
    try:
        nodes = store.nodes(execution_id)
        (parent,) = [n for n in nodes if n.node_id == map_id]
        ran = {n.node_id: n for n in nodes if n.parent_id == map_id}
        attempts = [a for a in store.attempts(execution_id) if a.node_id in ran]
        # A map's size is fixed when it is queued: its chunks are made again for `total`.
        with store.engine.begin() as conn:
            conn.execute(
                sa.delete(map_item_chunks).where(
                    map_item_chunks.c.execution_id == execution_id,
                    map_item_chunks.c.map_id == map_id,
                )
            )
        now = time.time()
        batch = Batch()
        batch.queue_items(
            MapItemsQueued(execution_id, map_id, parent.name, parent.task_name, total, now)
        )
        store.apply(batch)
        batch = Batch()
        for i in range(total):
            node_id = f"{map_id}[{i}]"
            batch.node(
                ran.get(node_id)
                or NodeRecord(
                    execution_id,
                    node_id,
                    "map_item",
                    "FAILED" if i % 10 == 0 else "SUCCEEDED",
                    name=f"{parent.name}[{i}]",
                    parent_id=map_id,
                    task_name=parent.task_name,
                    attempts=1,
                    started_at=now,
                    finished_at=now,
                )
            )
        for attempt in attempts:
            batch.attempt(attempt)
        store.apply(batch)
    finally:
        store.close()


def test_sign_in_and_the_executions_list(page: Any, console: Console, shots: Path) -> None:
    done = _launch(console, console.shop_admin, CHECKOUT, {"order": ORDER, "size": "SMALL", "n": 2})
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/signin\?next="))
    page.fill("#token", "tf_000000000000_not-a-token-at-all-xxxxxxxx")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("the API token is unknown or revoked")
    sign_in(page, console.shop_admin)
    expect(page.locator("header .who")).to_contain_text("shop-admin · admin")
    row = page.locator(f"#executions tr[data-id='{done}']")
    # Live: the row turns SUCCEEDED without reloading the page.
    expect(row).to_have_attribute("data-phase", "SUCCEEDED")
    # Filters: a phase nobody is in empties the list and is kept in the URL.
    page.check("input[name=phase][value=TIMED_OUT]")
    expect(page.locator("#executions")).to_contain_text("no executions")
    expect(page).to_have_url(re.compile(r"phase=TIMED_OUT"))
    page.uncheck("input[name=phase][value=TIMED_OUT]")
    page.fill("input[name=workflow]", "checkout")
    page.press("input[name=workflow]", "Enter")
    expect(row).to_be_visible()
    expect(page).to_have_url(re.compile(r"workflow=checkout"))
    page.screenshot(path=str(shots / "executions.png"))
    # Pages of 50, each read after the last execution of the one before (a keyset).
    _add_executions(console, 60)
    page.goto("/console/")
    expect(page.locator("#page")).to_have_text("page 1")
    listed = httpx.get(
        f"{console.url}/api/v1/executions",
        params={"limit": 51},
        headers={"Authorization": f"Bearer {console.shop_admin}"},
    ).json()
    expect(page.locator("#executions tr[data-id]").last).to_have_attribute(
        "data-id", listed[49]["id"]
    )
    page.click("#older")
    expect(page.locator("#page")).to_have_text("page 2")
    expect(page).to_have_url(re.compile(f"before={listed[49]['id']}"))
    expect(page.locator("#executions tr[data-id]").first).to_have_attribute(
        "data-id", listed[50]["id"]
    )
    page.click("#newer")
    expect(page.locator("#page")).to_have_text("page 1")
    expect(page.locator("#newer")).to_be_disabled()


def test_each_page_draws_from_its_html_before_any_api_call(page: Any, console: Console) -> None:
    """The shell carries the answers of the page's first API calls (asked in-process through
    the same API): a page draws its data with no call of its own, and refreshes by calling."""
    done = _launch(console, console.shop_admin, CHECKOUT, {"order": ORDER, "size": "SMALL", "n": 2})
    with console.client(console.shop_admin) as c:
        assert c.wait(done, timeout=120).phase == "SUCCEEDED"
    sign_in(page, console.shop_admin)
    drawn = {
        "/console/": f"#executions tr[data-id='{done}']",
        "/console/?phase=SUCCEEDED&project=shop": f"#executions tr[data-id='{done}']",
        f"/console/executions/{done}": "#dag g.node[data-kind=map][data-phase=SUCCEEDED]",
        "/console/launch": f"#workflows a:text-is('{CHECKOUT}')",
        f"/console/launch/shop/prod/{CHECKOUT}": "#input-size",
        "/console/registry": "#schedules tr[data-plan=hourly]",
        "/console/registry?scope=shop/prod": f"details.entity[data-name='{CHECKOUT}']",
        "/console/pools": "section.pool[data-pool=ledger]",
    }
    for path, shown in drawn.items():
        page.goto(path)
        page.wait_for_selector("body[data-loaded]")
        assert page.locator(shown).count() >= 1, path
        before = page.evaluate(
            """() => performance.getEntriesByType("resource")
                .filter((e) => new URL(e.name).pathname.startsWith("/api/"))
                .filter((e) => e.startTime < Number(document.body.dataset.loaded))
                .map((e) => e.name)"""
        )
        assert before == [], (path, before)
    # Later refreshes are API calls: the list asks again every 2 s.
    page.goto("/console/")
    with page.expect_request(re.compile(r"/api/v1/executions\?")):
        page.wait_for_selector("body[data-loaded]")


def test_a_token_of_one_project_sees_nothing_of_another(
    page: Any, console: Console, shots: Path
) -> None:
    shop_id = _launch(
        console, console.shop_admin, CHECKOUT, {"order": ORDER, "size": "SMALL", "n": 1}
    )
    with console.client(console.bank_admin) as c:
        bank_id = c.launch("bank", "prod", workflow="bankflows.secret_ledger", inputs={"amount": 7})
    sign_in(page, console.shop_admin)
    expect(page.locator("#executions tr[data-id]").first).to_be_visible()
    page.select_option("select[name=project]", "")
    expect(page.locator(f"#executions tr[data-id='{shop_id}']")).to_be_visible()
    for path in ("/console/", "/console/registry", "/console/pools", "/console/launch"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        html = page.content()
        assert "bank" not in html and "secret_ledger" not in html, path
    options = page.locator("select[name=project] option")
    assert "bank" not in options.all_inner_texts()
    page.goto(f"/console/executions/{bank_id.execution.id}")
    expect(page.locator(".error")).to_contain_text("or this token cannot see it")
    assert "secret_ledger" not in page.content()


def test_a_viewer_sees_no_launch_cancel_or_activate(page: Any, console: Console) -> None:
    viewer = console.token(["shop"], "viewer", "shop-viewer")
    slow = _launch(console, console.shop_admin, "shopflows.slow", {"seconds": 600})
    sign_in(page, viewer)
    expect(page.locator("#executions tr[data-id]").first).to_be_visible()
    expect(page.locator("#launch")).to_have_count(0)
    page.goto(f"/console/executions/{slow}")
    expect(page.locator("#facts h1")).to_be_visible()
    expect(page.locator("#cancel")).to_have_count(0)
    with console.client(console.shop_admin) as c:
        c.cancel(slow)
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "ABORTED")
    expect(page.locator("#relaunch")).to_have_count(0)
    expect(page.locator("#resume")).to_have_count(0)
    # Nor the registry's Activate and Deactivate, and no launch form's button.
    page.goto("/console/registry")
    expect(page.locator("#schedules tr[data-plan=hourly]")).to_be_visible()
    expect(page.locator("#schedules button")).to_have_count(0)
    page.goto(f"/console/launch/shop/prod/{CHECKOUT}")
    expect(page.locator("#viewer-note")).to_be_visible()
    expect(page.locator("#submit")).to_have_count(0)


def test_launch_a_typed_workflow_from_the_form_and_watch_it_finish(
    page: Any, console: Console, shots: Path
) -> None:
    from taskfabric.core.v1 import types_pb2
    from taskfabric.server import InputError, text_to_literal

    launcher = console.token(["shop"], "launcher", "shop-launcher")
    sign_in(page, launcher)
    page.click("#launch")
    page.click(f"#workflows a:text-is('{CHECKOUT}')")
    expect(page.locator("#launch-form")).to_be_visible()
    # The form follows the interface: a record as JSON, an enum as a choice, defaults.
    assert page.locator("#input-size option").all_inner_texts() == ["choose…", "SMALL", "LARGE"]
    expect(page.locator("[data-field=label] .hint")).to_contain_text('default: "total"')
    page.fill("#input-order", '{"item": "tea", "quantity": 3}')
    page.select_option("#input-size", "LARGE")
    page.fill("#input-n", "three")
    page.click("#submit")
    # The command line's own message, under the field at fault.
    int_type = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
    try:
        text_to_literal("three", int_type, name="n")
    except InputError as exc:
        cli_message = str(exc)
    error = page.locator("[data-field=n] .field-error")
    expect(error).to_have_text(cli_message)
    expect(page.locator("[data-field=n]")).to_have_class(re.compile("invalid"))
    page.screenshot(path=str(shots / "launch.png"))

    page.fill("#input-n", "4")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/executions/\w+$"))
    # The DAG: every node ends SUCCEEDED; the map is one node with its 4 items counted.
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    nodes = page.locator("#dag g.node")
    expect(nodes).to_have_count(5)
    for i in range(5):
        expect(nodes.nth(i)).to_have_attribute("data-phase", "SUCCEEDED")
    mapped = page.locator("#dag g.node[data-kind=map]")
    expect(mapped).to_have_attribute("data-counts", "4 succeeded")
    expect(page.locator("#values table[data-what=outputs]")).to_contain_text("total: 12, cost 9")
    # A node's panel: typed inputs (the record as a table), its output, its attempt.
    page.click("#dag g.node[data-name=price]")
    panel = page.locator("#panel")
    expect(panel.locator("#node-title")).to_have_text("price")
    record = panel.locator("table[data-what=inputs] tr[data-name=order] table.record")
    expect(record).to_contain_text("tea")
    expect(panel.locator("table[data-what=inputs] tr[data-name=order] .type")).to_have_text(
        "Order{item: str, quantity: int}"
    )
    expect(panel.locator("table[data-what=outputs] tr[data-name=o0]")).to_contain_text("9")
    expect(panel.locator("#attempts tr[data-attempt='1'] .badge")).to_have_text("SUCCEEDED")
    page.screenshot(path=str(shots / "execution.png"), full_page=True)
    # The map's items, each opening in the panel.
    mapped.click()
    expect(panel.locator("#items tr")).to_have_count(4)
    panel.locator("#items a").nth(2).click()
    expect(panel.locator("table[data-what=outputs] tr[data-name=o0]")).to_contain_text("4")
    # A map of 120 items (116 more recorded as a bigger map would have them, every tenth
    # failed): paged 50 at a time in order, and filtered by phase.
    _add_items(console, page.url.rsplit("/", 1)[1], mapped.get_attribute("data-node-id"), 120)
    mapped.click()
    expect(panel.locator("#items-range")).to_have_text("1–50 of 120")
    expect(panel.locator("#items tr").last).to_have_attribute(
        "data-node-id", re.compile(r"\[49\]$")
    )
    panel.locator("#items-next").click()
    expect(panel.locator("#items-range")).to_have_text("51–100 of 120")
    expect(panel.locator("#items tr").first).to_have_attribute(
        "data-node-id", re.compile(r"\[50\]$")
    )
    panel.locator("#item-phases button[data-phase=FAILED]").click()
    expect(panel.locator("#items-range")).to_have_text("1–11 of 11")
    expect(panel.locator("#items .badge[data-phase=FAILED]")).to_have_count(11)
    expect(panel.locator("#items-next")).to_be_disabled()


def test_sub_workflows_and_branches_expand_in_the_dag(
    page: Any, console: Console, shots: Path
) -> None:
    ran = _launch(console, console.shop_admin, "shopflows.ship", {"order": ORDER, "n": 3})
    sign_in(page, console.shop_admin)
    page.goto(f"/console/executions/{ran}")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    pack = page.locator("#dag g.node[data-kind=workflow]")
    carrier = page.locator("#dag g.node[data-kind=branch]")
    # Collapsed at first: their nodes only counted by phase.
    expect(pack).to_have_attribute("data-counts", "4 succeeded")
    expect(carrier).to_have_attribute("data-counts", "1 succeeded · 1 not taken")
    expect(page.locator("#dag g.node g.node")).to_have_count(0)
    expect(pack.locator("text.sub")).to_have_text("4 nodes: 4 succeeded")

    pack.locator(":scope > g.toggle").click()
    inner = pack.locator("g.inner > g.node")
    expect(inner).to_have_count(4)
    for i in range(4):
        expect(inner.nth(i)).to_have_attribute("data-phase", "SUCCEEDED")
    # coloured by phase: a succeeded node's own box, whatever the box around it
    expect(inner.first.locator(":scope > rect.box")).to_have_css("stroke", "rgb(46, 157, 91)")
    mapped = pack.locator("g.node[data-kind=map]")
    expect(mapped).to_have_attribute("data-counts", "3 succeeded")
    carrier.locator(":scope > g.toggle").click()
    taken = carrier.locator("g.node[data-case=else]")
    expect(taken).to_have_attribute("data-phase", "SUCCEEDED")
    expect(taken).to_contain_text("else: post")
    skipped = carrier.locator("g.node[data-case='case 1']")
    expect(skipped).to_have_attribute("data-phase", "NOT TAKEN")
    expect(skipped.locator(":scope > rect.box")).to_have_css("stroke-dasharray", "4px, 3px")
    # A node inside opens its own panel, with the way up to the node around it.
    taken.click()
    panel = page.locator("#panel")
    expect(panel.locator("#node-title")).to_have_text("post")
    expect(panel.locator("table[data-what=outputs] tr[data-name=o0]")).to_contain_text(
        "post, 754 g"
    )
    expect(panel.locator("#node-up")).to_be_visible()
    page.screenshot(path=str(shots / "execution-nested.png"), full_page=True)
    # Collapsed again on a second click.
    pack.locator(":scope > g.toggle").click()
    expect(pack.locator("g.inner")).to_have_count(0)


def test_launch_with_a_file_uploaded_from_the_form(
    page: Any, console: Console, tmp_path: Path
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("id,item\n1,tea\n2,cake\n")
    sign_in(page, console.shop_admin)
    page.goto("/console/launch/shop/prod/shopflows.lines")
    page.set_input_files("#input-data", str(orders))
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/executions/\w+$"))
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    expect(page.locator("#values table[data-what=outputs] tr[data-name=o0]")).to_contain_text("3")
    uploaded = page.locator("#values table[data-what=inputs] tr[data-name=data]")
    expect(uploaded).to_contain_text("orders.csv")
    uploaded.locator("details.preview summary").click()
    expect(uploaded.locator("table.preview-rows tbody tr").nth(1)).to_have_text("2cake")


def test_launch_with_a_folder_or_several_files_for_a_directory_input(
    page: Any, console: Console, tmp_path: Path
) -> None:
    stock = tmp_path / "stock room"
    (stock / "shelf").mkdir(parents=True)
    (stock / "tea.txt").write_text("12\n")
    (stock / "shelf" / "cake.txt").write_text("3\n")
    sign_in(page, console.shop_admin)
    page.goto("/console/launch/shop/prod/shopflows.inventory")
    # Nothing chosen: the command line's message, under the field of the missing input.
    page.click("#submit")
    missing = page.locator("[data-field=folder] .field-error")
    expect(missing).to_have_text(
        "workflow 'shopflows.inventory' version v1: missing input folder (Directory)"
    )
    expect(page.locator("[data-field=folder]")).to_have_class(re.compile("invalid"))
    expect(page.locator("#form-error")).to_be_empty()
    page.set_input_files("#input-folder-folder", str(stock))
    expect(page.locator("[data-field=folder] .chosen")).to_have_text("2 files chosen")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/executions/\w+$"))
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    outputs = page.locator("#values table[data-what=outputs] tr[data-name=o0]")
    expect(outputs).to_contain_text("shelf/cake.txt=3, tea.txt=12")
    folder = page.locator("#values table[data-what=inputs] tr[data-name=folder]")
    expect(folder.locator(".blob code")).to_have_text("stock-room")
    folder.locator("details.preview summary").click()
    expect(folder.locator("ul.preview-files li")).to_have_text(["shelf/cake.txt", "tea.txt"])
    # Its download: one zip (or tar) of its files, under a folder of its name.
    with page.expect_download() as info:
        folder.locator("a.download[data-archive=zip]").click()
    assert info.value.suggested_filename == "stock-room.zip"
    with zipfile.ZipFile(info.value.path()) as packed:
        assert sorted(packed.namelist()) == ["stock-room/shelf/cake.txt", "stock-room/tea.txt"]
        assert packed.read("stock-room/shelf/cake.txt") == b"3\n"
    # Several files side by side make the directory too.
    page.goto("/console/launch/shop/prod/shopflows.inventory")
    page.set_input_files(
        "#input-folder-files", [str(stock / "tea.txt"), str(stock / "shelf" / "cake.txt")]
    )
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/executions/\w+$"))
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    expect(outputs).to_contain_text("cake.txt=3, tea.txt=12")


def test_files_and_dataframes_preview_and_download_and_the_cache_shows(
    page: Any, console: Console, shots: Path
) -> None:
    first = _launch(console, console.shop_admin, "shopflows.reports", {"n": 40})
    sign_in(page, console.shop_admin)
    page.goto(f"/console/executions/{first}")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    report = page.locator("#dag g.node[data-name=report]")
    report.click()
    panel = page.locator("#panel")
    expect(panel.locator("#cache-status")).to_have_text("miss: computed, then stored in the cache")
    # The same inputs again: served from the cache, which says by whom.
    second = _launch(console, console.shop_admin, "shopflows.reports", {"n": 40})
    page.goto(f"/console/executions/{second}")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    expect(report.locator("text.sub")).to_contain_text("cache hit")
    report.click()
    expect(panel.locator("#cache-status")).to_have_text(f"hit: computed by execution {first}")
    expect(panel.locator("#cache-source")).to_have_attribute("href", f"/console/executions/{first}")
    # A file: its first lines on demand, and its bytes.
    text_file = panel.locator("table[data-what=outputs] tr[data-name=o0]")
    expect(text_file.locator(".blob code")).to_have_text("squares.csv")
    text_file.locator("details.preview summary").click()
    expect(text_file.locator("table.preview-rows tbody tr")).to_have_count(10)
    expect(text_file.locator("table.preview-rows tbody tr").nth(3)).to_have_text("39")
    with page.expect_download() as info:
        text_file.locator("a.download").click()
    saved = Path(info.value.path()).read_text()
    assert saved.splitlines()[:3] == ["i,square", "0,0", "1,1"] and len(saved.splitlines()) == 41
    assert info.value.suggested_filename == "squares.csv"
    # A dataframe: its first rows as a table.
    frame = panel.locator("table[data-what=outputs] tr[data-name=o1]")
    frame.locator("details.preview summary").click()
    rows = frame.locator("table.preview-rows tbody tr")
    expect(rows).to_have_count(10)
    expect(rows.nth(9)).to_have_text("981")
    expect(frame.locator(".preview-body")).to_contain_text("first 10 rows of 40")
    page.screenshot(path=str(shots / "node-data.png"), full_page=True)


def test_a_node_waiting_for_a_pool_shows_its_place_in_the_queue(
    page: Any, console: Console
) -> None:
    busy = _launch(console, console.shop_admin, "shopflows.busy", {"n": 3})
    try:
        sign_in(page, console.shop_admin)
        page.goto(f"/console/executions/{busy}")
        mapped = page.locator("#dag g.node[data-kind=map]")
        # The ledger pool has 2 slots: two items run, the third waits in its queue.
        expect(mapped).to_have_attribute("data-counts", "2 running · 1 queued")
        mapped.click()
        queued = page.locator("#panel #items tr", has=page.locator(".badge[data-phase=QUEUED]"))
        expect(queued).to_have_count(1)
        queued.locator("a").click()
        wait = page.locator("#panel #pool-waits tr[data-pool=ledger]")
        expect(wait.locator(".position")).to_have_text("position 1 of 1")
        expect(wait.locator("a")).to_have_attribute("href", "/console/pools")
    finally:
        with console.client(console.shop_admin) as c:
            c.cancel(busy)


def test_open_a_nodes_log(page: Any, console: Console, shots: Path) -> None:
    ran = _launch(console, console.shop_admin, CHECKOUT, {"order": ORDER, "size": "LARGE", "n": 1})
    sign_in(page, console.shop_admin)
    page.goto(f"/console/executions/{ran}")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "SUCCEEDED")
    page.click("#dag g.node[data-name=price]")
    # The attempt's log, read through the API into the panel, and its links.
    log = page.locator("#panel #log")
    expect(log).to_contain_text("pricing 3 x tea (LARGE)")
    expect(log).to_have_attribute("data-complete", "true")
    expect(page.locator("#panel #attempts tr[data-attempt='1'] ul.logs li").first).to_be_visible()
    page.screenshot(path=str(shots / "node-log.png"))


def test_a_failed_node_shows_its_error_and_can_be_resumed(page: Any, console: Console) -> None:
    bad = {"order": {"item": "tea", "quantity": -1}, "size": "SMALL", "n": 1}
    failed = _launch(console, console.shop_admin, CHECKOUT, bad)
    sign_in(page, console.shop_admin)
    page.goto(f"/console/executions/{failed}")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "FAILED")
    expect(page.locator("#execution-error")).to_contain_text("quantity must not be negative")
    price = page.locator("#dag g.node[data-name=price]")
    expect(price).to_have_attribute("data-phase", "FAILED")
    price.click()
    error = page.locator("#panel #node-error")
    expect(error).to_contain_text("ValueError")
    expect(error).to_contain_text("shopflows.py")  # the user's frame in the traceback
    expect(page.locator("#resume")).to_be_visible()
    page.click("#resume")
    expect(page.locator("#message")).to_contain_text("resume: done")
    with console.client(console.shop_admin) as c:
        events = c.execution(failed, events=True).events
    assert any("recover requested by shop-admin" in e.message for e in events)
    # Queued again, it fails again the same way (the input is still wrong).
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "FAILED")


def test_cancel_a_running_execution(page: Any, console: Console) -> None:
    slow = _launch(console, console.shop_admin, "shopflows.slow", {"seconds": 600})
    sign_in(page, console.shop_admin)
    page.goto(f"/console/executions/{slow}")
    node = page.locator("#dag g.node").first
    expect(node).to_have_attribute("data-phase", "RUNNING")
    # The running attempt's log, streamed into the panel while it runs.
    node.click()
    expect(page.locator("#panel #log")).to_contain_text("waiting 600.0 s")
    expect(page.locator("#log-state")).to_contain_text("following")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#facts .badge")).to_have_attribute("data-phase", "ABORTED")
    expect(node).to_have_attribute("data-phase", re.compile("ABORTED|FAILED"))
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#resume")).to_be_visible()
    expect(page.locator("#relaunch")).to_be_visible()
    expect(page.locator("#panel #log")).to_have_attribute("data-complete", "true")
    # Relaunch: a new execution of the same inputs, opened in its place.
    page.click("#relaunch")
    page.wait_for_url(re.compile(r"/console/executions/(?!" + slow + r"$)\w+$"))
    again = page.url.rsplit("/", 1)[1]
    try:
        expect(page.locator("#dag g.node").first).to_have_attribute("data-phase", "RUNNING")
        with console.client(console.shop_admin) as c:
            ran = c.execution(again)
        assert ran.execution.workflow == "shopflows.slow"
        assert ran.inputs == {"seconds": 600.0}
    finally:
        with console.client(console.shop_admin) as c:
            c.cancel(again)


def test_registry_diff_and_activate_a_schedule(page: Any, console: Console, shots: Path) -> None:
    from taskfabric.registry import build_package

    with console.client(console.shop_admin) as c:
        c.register(
            build_package(
                Path(__file__).parent / "flows_shop", project="shop", domain="prod", version="v2"
            )
        )
    sign_in(page, console.shop_admin)
    page.click("header nav a:text-is('Registry')")
    plan = page.locator("#schedules tr[data-plan=hourly]")
    expect(plan.locator(".active-version")).to_have_text("inactive")
    plan.locator("select.version").select_option("v1")
    plan.locator("button.activate").click()
    expect(plan).to_have_attribute("data-active", "v1")
    expect(plan.locator(".next-run")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    with console.client(console.shop_admin) as c:
        found = c.launch_plan("shop", "prod", "hourly")
    assert found.active_version == "v1" and found.next_slot is not None
    # A diff between the two versions of a workflow.
    checkout = page.locator(f"details.entity[data-kind=workflow][data-name='{CHECKOUT}']")
    checkout.locator("summary").click()
    checkout.locator("select.old").select_option("v1")
    checkout.locator("select.new").select_option("v2")
    checkout.locator("button.compare").click()
    expect(checkout.locator(".diff-result .del").first).to_be_visible()
    expect(checkout.locator(".diff-result")).to_contain_text('+    version: "v2"')
    page.screenshot(path=str(shots / "registry.png"), full_page=True)
    plan.locator("button.deactivate").click()
    expect(plan).to_have_attribute("data-active", "")


def test_pools_show_holders_and_hide_other_projects(
    page: Any, console: Console, shots: Path
) -> None:
    slow = _launch(console, console.shop_admin, "shopflows.slow", {"seconds": 600})
    try:
        sign_in(page, console.shop_admin)
        page.goto("/console/pools")
        ledger = page.locator("section.pool[data-pool=ledger]")
        expect(ledger.locator(f"table.holders a:text-is('{slow}')")).to_be_visible()
        expect(ledger).to_contain_text("shop 2")
        # A pushback from a task (a 429 with Retry-After) is kept in the pool's history.
        pushed = _launch(console, console.shop_admin, "shopflows.throttle", {"seconds": 1.0})
        pushback = ledger.locator("table.pushbacks tr", has=page.locator(f"a:text-is('{pushed}')"))
        expect(pushback).to_have_count(1)
        expect(pushback.locator(".pause")).to_have_text("paused 1.0 s")
        expect(pushback).to_contain_text("shop/prod")
        page.screenshot(path=str(shots / "pools.png"))
        page.context.clear_cookies()
        sign_in(page, console.bank_admin)
        page.goto("/console/pools")
        expect(ledger).to_contain_text("in projects this token cannot see")
        expect(ledger.locator("table.pushbacks")).to_contain_text("a project this token cannot see")
        assert slow not in page.content() and "shop" not in page.content()
        assert pushed not in page.content()
    finally:
        with console.client(console.shop_admin) as c:
            c.cancel(slow)
