"""`taskfabric ui`: the console of the embedded store on 127.0.0.1, signed in by its link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from taskfabric.metadata import MetadataStore
from taskfabric.server import TokenStore


def test_taskfabric_ui_signs_in_by_its_link_and_revokes_the_token_at_exit(
    browser: Any, tmp_path: Path
) -> None:
    config = tmp_path / "taskfabric.toml"
    database = f"sqlite:///{tmp_path / 'tf.db'}"
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n[metadata]\nurl = "{database}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFABRIC_")}
    cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(config)]
    proc = subprocess.Popen(
        [*cmd, "ui", "--port", "0", "--workers", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        link = proc.stdout.readline().strip()
        assert link.startswith("http://127.0.0.1:") and "/console/signin#token=tf_" in link, link
        context = browser.new_context()
        page = context.new_page()
        page.goto(link)
        page.wait_for_url("**/console/")
        expect(page.locator("header .who")).to_contain_text("taskfabric ui")
        expect(page.locator("header .who")).to_contain_text("admin")
        expect(page.locator("#executions")).to_contain_text("no executions")
        assert "#token" not in page.url
        context.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    metadata = MetadataStore(database)
    try:
        tokens = TokenStore(metadata).list(include_revoked=True)
    finally:
        metadata.close()
    assert [t.name.startswith("taskfabric ui") for t in tokens] == [True]
    assert tokens[0].revoked_at is not None
