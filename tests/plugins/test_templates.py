"""`taskfabric.templates`: the one `{kind.NAME}` parser the plugins share (shell, http)."""

from __future__ import annotations

import pytest

from taskfabric.templates import Placeholder, TemplateError, parse, placeholders, render

KINDS = ("inputs", "job")


def test_text_and_placeholders_in_order_with_their_lines() -> None:
    parts = parse("GET /a/{inputs.x}\n{{literal}} {job.id}", KINDS)
    assert parts == [
        "GET /a/",
        Placeholder("inputs", "x"),
        "\n{literal} ",
        Placeholder("job", "id"),
    ]
    assert [p.line for p in parts if isinstance(p, Placeholder)] == [1, 2]
    assert [str(p) for p in placeholders("{inputs.a}{inputs.b}", KINDS)] == [
        "{inputs.a}",
        "{inputs.b}",
    ]


def test_render_fills_each_placeholder() -> None:
    parts = parse("cp {inputs.src} {job.dst}", KINDS)
    assert render(parts, lambda ph: ph.name.upper()) == "cp SRC DST"


def test_spaces_inside_braces_only_when_allowed() -> None:
    assert parse("{ inputs.x }", KINDS, spaces=True) == [Placeholder("inputs", "x")]
    with pytest.raises(TemplateError, match=r"unknown placeholder \{ inputs.x \}"):
        parse("{ inputs.x }", KINDS)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a {outputs.x}", "line 1: unknown placeholder {outputs.x}"),
        ("ok\n{inputs.2x}", "line 2: unknown placeholder {inputs.2x}"),
        ("x {\n", "line 1: '{' is never closed"),
        ("\n\nx }", "line 3: single '}'"),
    ],
)
def test_errors_name_the_line_and_how_to_escape(template: str, expected: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(template, KINDS)
    message = str(info.value)
    assert expected in message
    assert "{inputs.NAME} and {job.NAME}; write {{ and }} for a literal brace" in message
    assert isinstance(info.value, ValueError)  # pydantic validators report it as is


def test_a_plugin_hint_replaces_the_default() -> None:
    with pytest.raises(TemplateError, match="use {{HOME}}$"):
        parse("{HOME}", KINDS, hint="use {{HOME}}")
