"""ConfigError and the translation of pydantic errors into ``file:line: key: message`` lines."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from taskfabric.config._locate import KeyPath, find_line

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file."""

    file: str | None
    """The file as shown to the user (relative to the working directory when inside it)."""
    line: int | None
    key: str | None
    """The dotted key path, e.g. ``engine.parallelism``."""
    message: str

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid. ``str()`` is ready to show a user."""

    def __init__(self, message: str, issues: Sequence[ConfigIssue] = ()) -> None:
        super().__init__(message)
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)

    @classmethod
    def from_issues(cls, issues: Sequence[ConfigIssue]) -> ConfigError:
        ordered = sorted(issues, key=lambda issue: (issue.line or 0, issue.key or ""))
        if len(ordered) == 1:
            return cls(str(ordered[0]), ordered)
        header = f"{len(ordered)} problems in the config file:"
        return cls("\n".join([header, *(f"  {issue}" for issue in ordered)]), ordered)


def format_key(path: KeyPath) -> str:
    """``("backends", "my.spark", "driver")`` -> ``backends."my.spark".driver``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if _BARE_KEY.match(part) else json.dumps(part)
            text += f".{shown}" if text else shown
    return text


_SHOWN_CHARS = 60


def _toml_value(value: object) -> str:
    """`value` as TOML would write it inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        items = ", ".join(f"{format_key((str(k),))} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


def _toml_literal(value: object) -> str:
    """What a message says it got: the value as written, a table or array named as such."""
    text = _toml_value(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    if isinstance(value, dict):
        return f"the table {text}"
    if isinstance(value, list):
        return f"the array {text}"
    return text


def _unwrap(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def _model_at(root: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the table at ``path`` (relative to ``root``)."""
    current: Any = root
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unknown_key_message(root: type[BaseModel], path: KeyPath, prefix: KeyPath) -> str:
    name = str(path[-1]) if path else ""
    model = _model_at(root, path[:-1])
    if model is None:
        return "unknown key"
    allowed = sorted(model.model_fields)
    table = format_key((*prefix, *path[:-1]))
    where = f"in [{table}]" if table else "at the top level"
    message = f"unknown key; allowed keys {where}: {', '.join(allowed)}"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        message += f". Did you mean '{close[0]}'?"
    return message


_TYPE_MESSAGES = {
    "model_type": "Input should be a table",
    "model_attributes_type": "Input should be a table",
    "dict_type": "Input should be a table",
    "list_type": "Input should be an array",
    "missing": "required key is missing",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    message = _TYPE_MESSAGES.get(kind, error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    if kind != "missing":
        message += f" (got {_toml_literal(error['input'])})"
    return message


def issues_from_validation_error(
    error: ValidationError,
    *,
    root: type[BaseModel],
    file: str | None,
    lines: dict[KeyPath, int],
    prefix: KeyPath = (),
) -> list[ConfigIssue]:
    """One issue per pydantic error, located in the file.

    ``prefix`` is where ``root``'s table sits in the file (``("backends", "spark", ...)`` when a
    backend plugin validates its own options).
    """
    issues = []
    for details in error.errors(include_url=False):
        path: KeyPath = tuple(details["loc"])
        if details["type"] == "extra_forbidden":
            message = _unknown_key_message(root, path, prefix)
        else:
            message = _message(details)
        full = (*prefix, *path)
        issues.append(ConfigIssue(file, find_line(lines, full), format_key(full), message))
    return issues
