"""`{kind.NAME}` placeholder templates, for plugins whose task config holds text to fill in
(a shell script, a request's URL, headers and body).

A template is text with placeholders such as `{inputs.src}` or `{job.id}`; `{{` and `}}` are
literal braces. Which kinds of placeholder exist is the caller's choice (`kinds`); anything
else in braces is an error that names the line and says how to write a literal brace, so a
config is checked when the task is declared, not when it runs.

```python
from taskfabric.templates import parse, render

parts = parse("cp {inputs.src} {outputs.dst}", kinds=("inputs", "outputs"))
render(parts, lambda ph: f"/data/{ph.name}")  # 'cp /data/src /data/dst'
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Part", "Placeholder", "TemplateError", "parse", "placeholders", "render"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class TemplateError(ValueError):
    """The text is not a valid template (unknown placeholder, unbalanced brace)."""


@dataclass(frozen=True)
class Placeholder:
    """`{kind.name}` in a template, and the 1-based line of the template it is on."""

    kind: str
    name: str
    line: int = field(default=1, compare=False)

    def __str__(self) -> str:
        return "{" + f"{self.kind}.{self.name}" + "}"


#: A template is a list of parts: literal text (braces already unescaped) and placeholders.
Part = str | Placeholder


def _default_hint(kinds: Collection[str]) -> str:
    names = " and ".join("{" + f"{kind}.NAME" + "}" for kind in sorted(kinds))
    return f"placeholders are {names}; write {{{{ and }}}} for a literal brace"


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def parse(
    template: str, kinds: Collection[str], *, hint: str = "", spaces: bool = False
) -> list[Part]:
    """The template as literal text and placeholders, in order.

    `kinds` are the placeholder kinds allowed (`{kind.NAME}`); `hint` ends every error
    message (default: which placeholders exist and how to write a literal brace); `spaces`
    allows spaces inside the braces (`{ inputs.x }`). Raises TemplateError naming the line.
    """
    if not kinds:
        raise ValueError("parse() needs at least one placeholder kind")
    pattern = re.compile(rf"({'|'.join(re.escape(k) for k in kinds)})\.({_NAME})")
    hint = hint or _default_hint(kinds)
    parts: list[Part] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "{":
            if template.startswith("{{", i):
                text.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            line = _line_of(template, i)
            if end < 0:
                raise TemplateError(f"line {line}: '{{' is never closed; {hint}")
            inner = template[i + 1 : end]
            match = pattern.fullmatch(inner.strip() if spaces else inner)
            if match is None:
                shown = "{" + inner + "}" if "\n" not in inner else "{" + inner.split("\n")[0]
                raise TemplateError(f"line {line}: unknown placeholder {shown}; {hint}")
            if text:
                parts.append("".join(text))
                text = []
            parts.append(Placeholder(match[1], match[2], line))
            i = end + 1
        elif ch == "}":
            if template.startswith("}}", i):
                text.append("}")
                i += 2
                continue
            raise TemplateError(f"line {_line_of(template, i)}: single '}}'; {hint}")
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return parts


def placeholders(
    template: str, kinds: Collection[str], *, hint: str = "", spaces: bool = False
) -> Iterator[Placeholder]:
    """The placeholders of a template, in order (see `parse`)."""
    for part in parse(template, kinds, hint=hint, spaces=spaces):
        if isinstance(part, Placeholder):
            yield part


def render(parts: Sequence[Part], value_of: Callable[[Placeholder], str]) -> str:
    """The parsed template with each placeholder replaced by `value_of(placeholder)`."""
    return "".join(p if isinstance(p, str) else value_of(p) for p in parts)
