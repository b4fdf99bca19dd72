"""`taskfabric plugins list` and `taskfabric plugins check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def test_list_shows_builtins_and_what_the_config_selects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text('[task_types]\npython = "procs"\n[backends.procs]\ndriver = "subprocess"\n')
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(cfg))
    code, out = invoke("plugins", "list", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    python = next(t for t in data["task_types"] if t["name"] == "python")
    assert python == {
        "name": "python",
        "installed": True,
        "provided_by": "taskfabric",
        "config": "",
        "backend": "procs",
        "driver": "subprocess",
        "selected_by": "config",
    }
    names = {(d["group"], d["name"]): d["state"] for d in data["drivers"]}
    assert names[("taskfabric.backends", "local")] == "ok"
    assert names[("taskfabric.backends", "subprocess")] == "ok"
    assert names[("taskfabric.storage", "file")] == "ok"
    code, out = invoke("plugins", "list")
    assert code == 0 and "taskfabric_task_types" in out


def test_check_passes_for_builtins_and_fails_for_a_missing_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text('[task_types]\npython = "procs"\n[backends.procs]\ndriver = "subprocess"\n')
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(cfg))
    code, out = invoke("plugins", "check")
    assert code == 0, out
    assert "ok   backend procs (driver subprocess)" in out and "runs taskfabric" in out
    # The blob store is reached: a probe blob written, read back and deleted.
    assert "ok   storage file://" in out and "is writable (a probe blob written" in out
    cfg.write_text(
        '[task_types]\npython = "big"\nspark = "big"\n[backends.big]\n'
        'driver = "spark"\nmaster = "local[2]"\n'
    )
    code, out = invoke("plugins", "check")
    assert code == 1
    assert "FAIL task type spark" in out and "pip install taskfabric-spark" in out
    assert "FAIL backend big (driver spark)" in out


def test_check_shows_the_table_a_bad_key_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text(
        '[task_types]\npython = "procs"\n[backends.procs]\ndriver = "subprocess"\nkill_grace = 3\n'
    )
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(cfg))
    code, out = invoke("plugins", "check")
    assert code == 1
    # Printed as text: rich would take `[backends.procs]` for a style tag and drop it.
    assert "unknown key; allowed keys in [backends.procs]: " in out, out


def test_check_validates_a_backend_no_task_type_selects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "taskfabric.toml"
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(cfg))
    # a newcomer's table whose [task_types] line was forgotten: a typo in its driver or a key
    cfg.write_text('[backends.procs]\ndriver = "subproces"\n')
    code, out = invoke("plugins", "check")
    assert code == 1, out
    assert "FAIL backend procs (driver subproces): unknown backend driver 'subproces'" in out
    cfg.write_text('[backends.procs]\ndriver = "subprocess"\nkill_grace = 3\n')
    code, out = invoke("plugins", "check")
    assert code == 1, out
    assert "FAIL backend procs (driver subprocess)" in out
    assert "unknown key; allowed keys in [backends.procs]" in out
    cfg.write_text(
        '[backends.procs]\ndriver = "subprocess"\n[projects.ml.task_types]\npython = "procs"\n'
    )
    code, out = invoke("plugins", "check")
    assert code == 0, out
    assert (
        "ok   backend procs (driver subprocess): settings valid, not reached: selected by "
        "project ml (check it with --project)"
    ) in out
    assert "ok   backend local (driver local)" in out  # what python runs on without --project
