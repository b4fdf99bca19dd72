"""docs/plugins/shell.md and docs/plugins/writing.md are true.

- A block whose first line is `# docs/plugins/examples/NAME` is that file, verbatim, and the
  example runs with the outputs the page shows.
- A block whose first line names a file of this repository under plugins/, protos/ or core/
  (`# path`, or `// path` in a .proto) quotes it: the lines between `# ...` cuts appear in the
  file, in order.
- The errors shown are the errors users get.
(integration_tests/plugins/test_writing_guide.py follows the walk-throughs of writing.md.)
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli
from taskfabric.plugins import Plugins

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs" / "plugins"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEADER = re.compile(r"^(?:#|//) ((?:docs/plugins/examples|plugins|protos|core)/\S+)$")
CUT = re.compile(r"^\s*(?:#|//) \.\.\.$", re.MULTILINE)


def blocks(doc: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of docs/plugins/<doc>."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def quoting_blocks() -> Iterator[tuple[str, str, str]]:
    for doc in ("shell.md", "writing.md"):
        for _, body in blocks(doc):
            header = HEADER.match(body.split("\n", 1)[0])
            if header:
                yield doc, header.group(1), body


def text_block_after(doc: str, marker: str) -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    start = text.index(marker)
    for match in FENCE.finditer(text):
        if match.start() > start and match.group(1) == "text":
            return match.group(2)
    raise AssertionError(f"no text block after {marker!r} in {doc}")


@pytest.mark.parametrize(
    ("doc", "path", "body"), list(quoting_blocks()), ids=lambda v: str(v).split("\n")[0][:50]
)
def test_blocks_quote_the_repository(doc: str, path: str, body: str) -> None:
    source = (REPO / path).read_text(encoding="utf-8")
    if path.startswith("docs/plugins/examples/"):
        assert body == source, f"the block of {doc} differs from {path}: copy one into the other"
        return
    position = 0
    for piece in CUT.split(body.split("\n", 1)[1]):
        chunk = piece.strip("\n")
        if not chunk:
            continue
        found = source.find(chunk, position)
        assert found >= 0, f"{doc} quotes {path}, which no longer holds:\n{chunk}"
        position = found + len(chunk)


def test_every_example_file_is_quoted() -> None:
    quoted = {path for _, path, _ in quoting_blocks() if path.startswith("docs/plugins/examples/")}
    files = {f"docs/plugins/examples/{p.name}" for p in (DOCS / "examples").glob("*.py")}
    assert files == quoted


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the example and its input, as the page's commands expect; the modules
    that `taskfabric run` imports from it are forgotten afterwards."""
    shutil.copy(DOCS / "examples" / "shell_report.py", tmp_path)
    (tmp_path / "notes.txt").write_text("apples\npears\nTODO: plums\napples\n")
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name in ("shell_report", "lines"):
            del sys.modules[name]


def test_the_report_example_prints_what_the_page_shows(workdir: Path, plugins: Plugins) -> None:
    result = CliRunner().invoke(cli, ["run", "shell_report.py:report", "--src", "notes.txt"])
    assert result.exit_code == 0, result.output
    shown = text_block_after("shell.md", "taskfabric run docs/plugins/examples/shell_report.py")
    for line in shown.splitlines():
        head = line.split("…", 1)[0]  # the page elides hashes and paths
        assert head in result.output, f"the page shows {line!r}; the run printed:\n{result.output}"


def test_the_interface_error_is_the_one_shown(workdir: Path, plugins: Plugins) -> None:
    first = next(body for language, body in blocks("shell.md") if language == "python")
    (workdir / "lines.py").write_text(first.replace("{inputs.src}", "{inputs.source}"))
    result = CliRunner().invoke(cli, ["run", "lines.py:count_lines"])
    assert result.exit_code != 0
    shown = text_block_after("shell.md", "## Mistakes are caught").strip()
    assert result.output.strip().replace(str(workdir), "…") == shown


def test_the_error_without_the_plugin_is_the_one_shown(
    workdir: Path, bare_plugins: Plugins
) -> None:
    result = CliRunner().invoke(cli, ["run", "shell_report.py:report", "--src", "notes.txt"])
    assert result.exit_code != 0
    shown = text_block_after("shell.md", "## Without the plugin").strip()
    assert result.output.strip() == shown
