"""Where an output's value is read from a response.

`$` is the whole JSON body; `$.a.b`, `$.items[0].name`, `$["odd key"]` and `$.items[*].id`
(every item) walk into it. `status` is the status code, `text` the body as text and
`header:NAME` a response header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["PathError", "Source", "parse_source"]

_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)|\[(?P<index>-?\d+)\]|\[(?P<star>\*)\]"""
    r"""|\[(?P<quote>["'])(?P<key>.*?)(?P=quote)\]"""
)
_STAR = object()


class PathError(ValueError):
    """A path that does not lead to a value in this response."""


@dataclass(frozen=True)
class Source:
    """A parsed output source."""

    text: str
    kind: str  # "json", "status", "text", "header"
    steps: tuple[Any, ...] = ()  # json: str keys, int indexes, _STAR
    header: str = ""

    def read(self, body: Any, status: int, text: str, headers: Any) -> Any:
        if self.kind == "status":
            return status
        if self.kind == "text":
            return text
        if self.kind == "header":
            value = headers.get(self.header)
            if value is None:
                raise PathError(f"the response has no header {self.header!r}")
            return value
        return _walk(body, self.steps, "$")


def _walk(value: Any, steps: tuple[Any, ...], where: str) -> Any:
    for i, step in enumerate(steps):
        if step is _STAR:
            if not isinstance(value, list):
                raise PathError(f"{where} is {_kind(value)}, not a list, so [*] cannot apply")
            return [_walk(item, steps[i + 1 :], f"{where}[{n}]") for n, item in enumerate(value)]
        if isinstance(step, int):
            if not isinstance(value, list):
                raise PathError(f"{where} is {_kind(value)}, not a list")
            if not -len(value) <= step < len(value):
                raise PathError(f"{where} has {len(value)} item(s), so [{step}] is out of range")
            value = value[step]
            where = f"{where}[{step}]"
        else:
            if not isinstance(value, dict):
                raise PathError(f"{where} is {_kind(value)}, not an object")
            if step not in value:
                keys = ", ".join(sorted(map(str, value))[:10]) or "none"
                raise PathError(f"{where} has no key {step!r} (its keys: {keys})")
            value = value[step]
            where = f"{where}.{step}"
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def parse_source(text: str) -> Source:
    """Parse an output source; ValueError says what is wrong and what is allowed."""
    if text in ("status", "text"):
        return Source(text, text)
    if text.startswith("header:"):
        name = text.removeprefix("header:").strip()
        if not name:
            raise ValueError("'header:' names no header: write e.g. 'header:ETag'")
        return Source(text, "header", header=name)
    if not text.startswith("$"):
        raise ValueError(
            f"{text!r} is not an output source: write a JSON path ('$', '$.a.b', "
            "'$.items[0].id', '$.items[*].id'), 'status', 'text' or 'header:NAME'"
        )
    steps: list[Any] = []
    i = 1
    while i < len(text):
        match = _STEP.match(text, i)
        if match is None:
            raise ValueError(
                f"JSON path {text!r}: cannot read {text[i:]!r} (at {i}); steps are .name, "
                '[0], [*] and ["key"]'
            )
        if match.group("name") is not None:
            steps.append(match.group("name"))
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        elif match.group("star") is not None:
            steps.append(_STAR)
        else:
            steps.append(match.group("key"))
        i = match.end()
    return Source(text, "json", tuple(steps))
