"""A response mapped to a task's typed outputs (records and dataclasses included)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from taskfabric.types import py_type_str
from taskfabric_http._config import default_sources
from taskfabric_http._errors import HttpResponseError
from taskfabric_http._paths import PathError, parse_source
from taskfabric_http._send import excerpt
from taskfabric_http._settings import Redactor

__all__ = ["json_body", "map_outputs", "read_path"]

_NOT_READ = object()


def json_body(response: httpx.Response, who: str, why: str, redact: Redactor) -> Any:
    if not response.content:
        raise HttpResponseError(f"{who}: {why}, but the response has an empty body")
    try:
        return json.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "no content-type")
        raise HttpResponseError(
            f"{who}: {why}, but the response is not JSON ({kind}): {excerpt(response, redact)}"
        ) from None


def read_path(response: httpx.Response, path: str, who: str, what: str, redact: Redactor) -> Any:
    """The value at JSON path `path` of the response, for `what` ("the job id")."""
    source = parse_source(path)
    body = json_body(response, who, f"{what} is read from {path}", redact)
    try:
        return source.read(body, response.status_code, "", response.headers)
    except PathError as exc:
        raise HttpResponseError(
            f"{who}: {what} is read from {path}, but {exc}; the response was: "
            f"{excerpt(response, redact)}"
        ) from None


def map_outputs(
    response: httpx.Response, task: Any, outputs: dict[str, str], who: str, redact: Redactor
) -> Any:
    """What the task's function would return, read from `response`."""
    interface = task.interface
    sources = default_sources(outputs, list(interface.outputs))
    body: Any = _NOT_READ
    values: dict[str, Any] = {}
    for name, out in interface.outputs.items():
        source = parse_source(sources[name])
        if source.kind == "json" and body is _NOT_READ:
            body = json_body(response, who, f"output '{name}' is read from {source.text}", redact)
        try:
            raw = source.read(body, response.status_code, response.text, response.headers)
        except PathError as exc:
            raise HttpResponseError(
                f"{who}: output '{name}' is read from {source.text}, but {exc}; the "
                f"response was: {excerpt(response, redact)}"
            ) from None
        try:
            values[name] = TypeAdapter(out.py_type).validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:5]
            )
            shown = redact(json.dumps(raw, default=str))
            if len(shown) > 300:
                shown = shown[:300] + "..."
            raise HttpResponseError(
                f"{who}: output '{name}' ({py_type_str(out.py_type)}) is read from "
                f"{source.text}, but {shown} does not fit: {problems}"
            ) from None
    return interface.unpack_outputs(values)
