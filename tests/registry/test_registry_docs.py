"""docs/registry.md is true: its commands work and print what the page shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "registry.md"
EXAMPLE = REPO / "docs" / "examples" / "registry" / "reports.py"
SCOPE = ("--project", "shop", "--domain", "production")


def _block_after(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(r"^```text\n(.*?)^```$", re.M | re.S).search(text, start)
    assert match is not None, f"no text block after {marker!r}"
    return match.group(1)


def _cli(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _copy_example(root: Path, old: str = "", new: str = "") -> Path:
    target = root / "docs" / "examples" / "registry"
    target.mkdir(parents=True)
    shutil.copy(EXAMPLE, target / "reports.py")
    if old:
        text = (target / "reports.py").read_text()
        assert old in text
        (target / "reports.py").write_text(text.replace(old, new))
    return target


def test_the_page_quotes_the_example_file() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```python\n# reports.py, in docs/examples/registry/") + len("```python\n")
    assert text[start : text.index("```", start)] == EXAMPLE.read_text(encoding="utf-8")


def test_register_activate_and_list_as_documented(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, err = _cli(
        monkeypatch,
        REPO,
        "register",
        "docs/examples/registry",
        *SCOPE,
        "--version",
        "2026.11.27",
    )
    assert code == 0, err
    shown = _block_after("$ taskfabric register docs/examples/registry")
    assert [line.split() for line in out.splitlines()] == [
        line.split() for line in shown.splitlines()
    ]
    code, _, err = _cli(
        monkeypatch, REPO, "register", "docs/examples/registry", *SCOPE, "--version", "2026.11.27"
    )
    assert code == 0 and "nothing new" in err
    code, _, err = _cli(
        monkeypatch,
        REPO,
        "launchplans",
        "activate",
        "nightly-eu",
        "--version",
        "2026.11.27",
        *SCOPE,
    )
    assert code == 0 and "version 2026.11.27 is active" in err
    code, out, _ = _cli(monkeypatch, REPO, "launchplans", "list", *SCOPE)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["nightly-eu"][1] == "2026.11.27" and rows["refresh-us"][1] == "-"
    assert "cron '0 1 * * *' (Europe/Paris)" in out and "UTC" in out
    code, out, _ = _cli(monkeypatch, REPO, "entities", "list", "--kind", "workflow", *SCOPE)
    assert code == 0 and "reports.daily_report" in out and "2026.11.27" in out
    code, _, err = _cli(monkeypatch, REPO, "launchplans", "deactivate", "nightly-eu", *SCOPE)
    assert code == 0 and "deactivated" in err

    # the same version with other content: the refusal the page shows, line for line
    changed = _copy_example(tmp_path / "changed", '"top": 5}', '"top": 10}')
    code, _, err = _cli(
        monkeypatch, changed, "register", str(changed), *SCOPE, "--version", "2026.11.27"
    )
    assert code == 1
    expected = _block_after("the source files that changed:")
    assert [line.rstrip() for line in err.splitlines()] == expected.rstrip("\n").splitlines()


def test_the_declaration_error_is_the_one_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _copy_example(tmp_path, '"top": 5}', '"top": "five"}')
    code, _, err = _cli(
        monkeypatch, tmp_path, "register", "docs/examples/registry", *SCOPE, "--version", "x"
    )
    assert code == 2
    assert err.strip() == _block_after("naming the file, line, plan and input:").strip()
