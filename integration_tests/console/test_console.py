"""The web console in headless Chromium, against a real `taskfabric server`: what a user
does, page by page. Each test waits for states (Playwright's `expect`), never for a time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import Console, sign_in
from playwright.sync_api import expect

CHECKOUT = "shopflows.checkout"
ORDER = {"item": "tea", "quantity": 3}


def _launch(console: Console, token: str, workflow: str, inputs: dict[str, Any]) -> str:
    with console.client(token) as c:
        launched = c.launch("shop", "prod", workflow=workflow, inputs=inputs)
    return launched.execution.id


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
