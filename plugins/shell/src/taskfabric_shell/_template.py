"""The script template: `{inputs.NAME}` / `{outputs.NAME}` placeholders, `{{` `}}` escapes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Placeholder", "TemplateError", "env_var", "parse", "placeholders", "render"]

_FIELD = re.compile(r"(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)")
_ESCAPE_HINT = (
    "placeholders are {inputs.NAME} and {outputs.NAME}; write {{ and }} for a literal brace "
    "(e.g. ${{HOME}} or awk '{{print $1}}')"
)


class TemplateError(ValueError):
    """The script is not a valid template (unknown placeholder, unbalanced brace)."""


@dataclass(frozen=True)
class Placeholder:
    kind: str  # "inputs" or "outputs"
    name: str
    line: int  # 1-based line of the script where it appears

    def __str__(self) -> str:
        return "{" + f"{self.kind}.{self.name}" + "}"


Part = str | Placeholder


def env_var(kind: str, name: str) -> str:
    """The environment variable that also carries a placeholder's value: TF_INPUT_SRC."""
    return f"TF_{'INPUT' if kind == 'inputs' else 'OUTPUT'}_{name.upper()}"


def _line_of(script: str, index: int) -> int:
    return script.count("\n", 0, index) + 1


def parse(script: str) -> list[Part]:
    """The script as literal text and placeholders, in order."""
    parts: list[Part] = []
    text: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch == "{":
            if script.startswith("{{", i):
                text.append("{")
                i += 2
                continue
            end = script.find("}", i + 1)
            if end < 0:
                raise TemplateError(
                    f"line {_line_of(script, i)}: '{{' is never closed; {_ESCAPE_HINT}"
                )
            field = script[i + 1 : end]
            match = _FIELD.fullmatch(field)
            if match is None:
                shown = "{" + field + "}" if "\n" not in field else "{" + field.split("\n")[0]
                raise TemplateError(
                    f"line {_line_of(script, i)}: unknown placeholder {shown}; {_ESCAPE_HINT}"
                )
            if text:
                parts.append("".join(text))
                text = []
            parts.append(Placeholder(match[1], match[2], _line_of(script, i)))
            i = end + 1
        elif ch == "}":
            if script.startswith("}}", i):
                text.append("}")
                i += 2
                continue
            raise TemplateError(f"line {_line_of(script, i)}: single '}}'; {_ESCAPE_HINT}")
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return parts


def placeholders(script: str) -> Iterator[Placeholder]:
    for part in parse(script):
        if isinstance(part, Placeholder):
            yield part


def render(parts: list[Part], value_of: Callable[[Placeholder], str]) -> str:
    """The script with each placeholder replaced by `value_of(placeholder)`."""
    return "".join(p if isinstance(p, str) else value_of(p) for p in parts)
