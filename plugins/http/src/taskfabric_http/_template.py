"""Request templates: `{inputs.NAME}` and `{job.id}` placeholders, `{{` `}}` for literal braces.

A string template renders to a string. In a JSON body a string that is exactly one
placeholder is replaced by the value itself (a number stays a number, a record becomes an
object); inside a longer string the value is rendered as text.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from taskfabric import templates
from taskfabric.templates import Part, Placeholder
from taskfabric_http._errors import TemplateError

__all__ = ["Placeholder", "jsonable", "parse", "placeholders", "render", "render_json"]

_KINDS = ("inputs", "job")
_HINT = "placeholders are {inputs.NAME} and {job.id}; write {{ and }} for a literal brace"


def parse(template: str) -> list[Part]:
    """The template as literal text and placeholders, in order (spaces inside the braces
    allowed: `{ inputs.x }`)."""
    try:
        return templates.parse(template, _KINDS, hint=_HINT, spaces=True)
    except templates.TemplateError as exc:
        raise TemplateError(f"{template!r}: {exc}") from None


def placeholders(value: Any) -> Iterator[Placeholder]:
    """Every placeholder of a string template or of the strings of a JSON template."""
    if isinstance(value, str):
        for part in parse(value):
            if isinstance(part, Placeholder):
                yield part
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders(key)
            yield from placeholders(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from placeholders(item)


def jsonable(value: Any) -> Any:
    """A Python value (record, enum, container) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):  # pydantic models
        return jsonable(value.model_dump(mode="json"))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _text(value: Any) -> str:
    data = jsonable(value)
    if isinstance(data, str):
        return data
    if isinstance(data, bool):
        return "true" if data else "false"
    if data is None:
        return ""
    if isinstance(data, int | float):
        return str(data)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


Lookup = Callable[[Placeholder], Any]


def render(template: str, lookup: Lookup, *, encode: bool = False) -> str:
    """The template with every placeholder replaced by its value as text; `encode`:
    percent-encode the values (for a URL path or query), not the template's own text."""
    out: list[str] = []
    for part in parse(template):
        if isinstance(part, str):
            out.append(part)
        else:
            text = _text(lookup(part))
            out.append(quote(text, safe="") if encode else text)
    return "".join(out)


def render_json(template: Any, lookup: Lookup) -> Any:
    """A JSON template with its placeholders replaced (see the module docstring)."""
    if isinstance(template, str):
        parts = parse(template)
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            return jsonable(lookup(parts[0]))
        return render(template, lookup)
    if isinstance(template, Mapping):
        return {render(k, lookup): render_json(v, lookup) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render_json(v, lookup) for v in template]
    return template
