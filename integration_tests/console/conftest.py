"""The console in a real browser: one `taskfabric server` (SQLite, two engine workers, a pool)
with projects "shop" and "bank" registered, driven by Debian's Chromium through Playwright.

Nothing here waits for a fixed time: Playwright's waits (`expect(...)`, `wait_for_*`) poll
until a state is reached, with generous timeouts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package
from taskfabric.server import Client, TokenStore

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("TASKFABRIC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the tests save their screenshots; docs/console.md shows those of docs/console/.
SHOTS_ENV_VAR = "TASKFABRIC_CONSOLE_SCREENSHOTS"
#: Playwright's timeout for every wait (ms): generous, never a margin a test depends on.
WAIT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Console:
    """The server under test, its tokens and clients."""

    def __init__(self, root: Path, database: str | None = None) -> None:
        self.root = root
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.database = database or f"sqlite:///{data / 'taskfabric.db'}"
        self.config = root / "taskfabric.toml"
        self.config.write_text(
            f'[storage]\ndata_root = "{data}"\n\n'
            f'[metadata]\nurl = "{self.database}"\n\n'
            "[server]\nworkers = 2\nsingle_tenant = true\n\n"
            "[pools.ledger]\nslots = 2\nrate = 5\nproject_caps = { shop = 2, bank = 1 }\n"
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._metadata = MetadataStore(self.database)
        self.tokens = TokenStore(self._metadata)
        self.shop_admin = ""
        self.bank_admin = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFABRIC_")}
        cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(self.config)]
        cmd += ["server", "--port", str(self.port), "--workers", "2"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._metadata.close()

    def token(self, projects: list[str], role: str, name: str) -> str:
        return self.tokens.create(projects=projects, role=role, name=name)[1]

    def client(self, token: str) -> Client:
        return Client(self.url, token)


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    site = Console(tmp_path_factory.mktemp("console"))
    site.start()
    try:
        site.shop_admin = site.token(["shop"], "admin", "shop-admin")
        site.bank_admin = site.token(["bank"], "admin", "bank-admin")
        with site.client(site.shop_admin) as c:
            c.register(
                build_package(HERE / "flows_shop", project="shop", domain="prod", version="v1")
            )
        with site.client(site.bank_admin) as c:
            c.register(
                build_package(HERE / "flows_bank", project="bank", domain="prod", version="v1")
            )
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does), or set "
            "TASKFABRIC_TEST_CHROMIUM",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test, its errors made test failures."""
    context = browser.new_context(base_url=console.url, viewport={"width": 1360, "height": 860})
    context.set_default_timeout(WAIT_MS)
    found = context.new_page()
    problems: list[str] = []
    found.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    try:
        yield found
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get(SHOTS_ENV_VAR)
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Any, token: str) -> None:
    page.goto("/console/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
