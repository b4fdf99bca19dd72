"""The script template: placeholders, escapes, and errors that say where and what to write."""

from __future__ import annotations

import pytest

from taskfabric_shell._template import Placeholder, TemplateError, env_var, parse, render


def test_placeholders_and_text_in_order() -> None:
    parts = parse("wc -l < {inputs.src} > {outputs.o0}\necho {inputs.n}")
    assert parts == [
        "wc -l < ",
        Placeholder("inputs", "src", 1),
        " > ",
        Placeholder("outputs", "o0", 1),
        "\necho ",
        Placeholder("inputs", "n", 2),
    ]


def test_doubled_braces_are_literal_braces() -> None:
    parts = parse("awk '{{print $1}}' {inputs.f} && echo ${{HOME}}")
    assert parts[0] == "awk '{print $1}' "
    assert parts[2] == " && echo ${HOME}"
    assert render(parts, lambda ph: f"<{ph.name}>") == "awk '{print $1}' <f> && echo ${HOME}"


def test_render_replaces_each_placeholder() -> None:
    parts = parse("cp {inputs.a} {outputs.b}; cat {inputs.a}")
    seen: list[str] = []

    def value_of(ph: Placeholder) -> str:
        seen.append(str(ph))
        return ph.kind[0] + ph.name

    assert render(parts, value_of) == "cp ia ob; cat ia"
    assert seen == ["{inputs.a}", "{outputs.b}", "{inputs.a}"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo ${HOME}", "line 1: unknown placeholder {HOME}"),
        ("echo ok\nawk '{print $1}'", "line 2: unknown placeholder {print $1}"),
        ("cat {input.src}", "unknown placeholder {input.src}"),
        ("cat {inputs.2x}", "unknown placeholder {inputs.2x}"),
        ("cat {inputs.src!r}", "unknown placeholder {inputs.src!r}"),
        ("echo {\n", "line 1: '{' is never closed"),
        ("echo }", "line 1: single '}'"),
    ],
)
def test_bad_templates_say_where_and_how_to_escape(script: str, expected: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(script)
    assert expected in str(info.value)
    assert "{{" in str(info.value)  # the hint: how to write a literal brace


def test_env_var_names() -> None:
    assert env_var("inputs", "src") == "TF_INPUT_SRC"
    assert env_var("outputs", "o0") == "TF_OUTPUT_O0"
