"""docs/plugins/flink.md quotes files that these tests run: each block whose first line names
a file of this repository must equal that file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins" / "flink.md"


def test_quoted_files_match_the_doc() -> None:
    blocks = re.findall(r"```python\n(# (\S+)\n.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "the guide quotes no file"
    for text, path in blocks:
        assert (REPO / path).read_text(encoding="utf-8") == text, f"{path} differs from the doc"
