"""docs/plugins/http.md is true: its example files are quoted verbatim and run as shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from http_helpers import MakeEngine

from taskfabric.engine import load_object
from taskfabric_http.testing import QuotaServer

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "plugins" / "http.md"
EXAMPLES = REPO / "docs" / "plugins" / "examples" / "http"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_examples_are_quoted_verbatim() -> None:
    bodies = [m.group(2) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]
    # files only: importing an example leaves a __pycache__ folder beside them (tox passes no
    # PYTHONDONTWRITEBYTECODE), and a second run found it
    for path in sorted(p for p in EXAMPLES.iterdir() if p.is_file()):
        assert path.read_text(encoding="utf-8") in bodies, f"http.md does not quote {path.name}"


def test_the_example_workflow_runs(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEO_TOKEN", "example-token")
    with QuotaServer(max_concurrent=4, job_seconds=0.2) as server:
        toml = (EXAMPLES / "services.toml").read_text(encoding="utf-8")
        engine = make_engine(toml.replace("http://127.0.0.1:8080", server.url))
        places = load_object(f"{EXAMPLES / 'geocode.py'}:places")[0]
        result = engine.launch(places, {"addresses": ["a", "bb", "ccc"]})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(places, engine.store) == [1.5, 3.0, 4.5]
        assert server.stats.rejected == 0 and len(server.jobs) == 1
        auth = {h.get("authorization") for m, p, h in server.stats.seen if p == "/geocode"}
        assert auth == {"Bearer example-token"}
