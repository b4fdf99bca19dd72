"""docs/server.md and the [server] section of docs/configuration.md tell the truth."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from taskfabric.config import load_config
from taskfabric.config._model import ServerConfig
from taskfabric.console import mount
from taskfabric.server import InputError, create_app, json_to_literal
from taskfabric.types import default_engine

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_server_key_is_documented_with_its_default() -> None:
    text = _text("configuration.md")
    table = text[text.index("### `[server]`") :].split("\n\n")[2]
    documented = {}
    for line in table.splitlines()[2:]:
        key, default, _ = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        documented[key.strip("`")] = default
    assert set(documented) == set(ServerConfig.model_fields)
    for key, field in ServerConfig.model_fields.items():
        if field.default is None:
            assert documented[key] == "unset", key
        else:
            assert tomllib.loads(f"v = {documented[key].strip('`')}")["v"] == field.default


def test_the_route_table_lists_every_route() -> None:
    app = create_app(load_config())
    mount(app)  # as `taskfabric server` serves it: the console's API routes are documented too
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    documented = set(
        re.findall(r"^\| (GET|POST|DELETE) \| `([^`]+)` \|", _text("server.md"), re.MULTILINE)
    )
    assert documented == routes
    app.state.plane.close()


def test_the_documented_input_error_is_the_real_one() -> None:
    text = _text("server.md")
    block = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert block is not None
    example = json.loads(block.group(1))
    with pytest.raises(InputError) as caught:
        json_to_literal("ten", default_engine().literal_type(int), name="limit")
    assert example == {"detail": str(caught.value), "input": caught.value.input}


def test_the_table_of_contents_resolves() -> None:
    text = _text("server.md")
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^## (.+)$", text, re.MULTILINE)
    }
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in headings, anchor
