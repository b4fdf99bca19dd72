"""Refresh the pictures of docs/console.md from the console as it is now.

The browser tests (integration_tests/console: a real `taskfabric server`, Debian's Chromium
driven by Playwright) take the pictures as they go; this runs them with
TASKFABRIC_CONSOLE_SCREENSHOTS set to docs/console, then checks that every picture
docs/console.md shows was written by this run. From the repository's root, in a virtual
environment with the development requirements and playwright (`tox -e console` makes one):

    python scripts/console_screenshots.py
    .tox/console/bin/python scripts/console_screenshots.py

Exits 1 when a test fails or a picture the page shows was not taken.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "console.md"
PICTURES = ROOT / "docs" / "console"


def shown() -> list[Path]:
    """The pictures docs/console.md shows."""
    names = re.findall(r"!\[[^\]]*\]\(console/([^)]+\.png)\)", DOC.read_text())
    return [PICTURES / name for name in names]


def main() -> int:
    started = time.time()
    env = {**os.environ, "TASKFABRIC_CONSOLE_SCREENSHOTS": str(PICTURES)}
    cmd = [sys.executable, "-m", "pytest", "-q", str(ROOT / "integration_tests" / "console")]
    if subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0:
        print("the browser tests failed: no picture was refreshed for sure", file=sys.stderr)
        return 1
    stale = [p for p in shown() if not p.exists() or p.stat().st_mtime < started]
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"docs/console.md shows pictures no test took: {names}", file=sys.stderr)
        return 1
    print(f"refreshed {len(shown())} pictures in {PICTURES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
