"""The script template: `{inputs.NAME}` / `{outputs.NAME}` placeholders, `{{` `}}` escapes,
parsed by the core's `taskfabric.templates`."""

from __future__ import annotations

from collections.abc import Iterator

from taskfabric import templates
from taskfabric.templates import Part, Placeholder, TemplateError, render

__all__ = ["Placeholder", "TemplateError", "env_var", "parse", "placeholders", "render"]

_KINDS = ("inputs", "outputs")
_ESCAPE_HINT = (
    "placeholders are {inputs.NAME} and {outputs.NAME}; write {{ and }} for a literal brace "
    "(e.g. ${{HOME}} or awk '{{print $1}}')"
)


def env_var(kind: str, name: str) -> str:
    """The environment variable that also carries a placeholder's value: TF_INPUT_SRC."""
    return f"TF_{'INPUT' if kind == 'inputs' else 'OUTPUT'}_{name.upper()}"


def parse(script: str) -> list[Part]:
    """The script as literal text and placeholders, in order."""
    return templates.parse(script, _KINDS, hint=_ESCAPE_HINT)


def placeholders(script: str) -> Iterator[Placeholder]:
    return templates.placeholders(script, _KINDS, hint=_ESCAPE_HINT)
