"""Workflow inputs without the workflow's code: JSON values and command-line text converted
to literals by the interface's literal types (`TypeEngine.guess_python_type`), so that a server
never imports registered code.

JSON values are read strictly (a string is not an int) and are what `literal_to_json` writes,
so outputs of one execution can be given as inputs of another.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any

from google.protobuf import json_format

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.server._uploads import Resolver, UploadError
from taskfabric.types import (
    Directory,
    File,
    TransformContext,
    default_engine,
    literal_to_json,
    parse_cli_value,
    strip_annotated,
    type_str,
)

_NONE = type(None)


class InputError(TaskfabricError, ValueError):
    """An input value that does not fit the workflow's interface; names the input."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"input '{name}': {message}" if name else message)
        self.input = name


class _Invalid(ValueError):
    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return "an array" if isinstance(value, list) else "an object"


def _is_blob(base: Any) -> bool:
    if isinstance(base, type) and issubclass(base, File | Directory | PurePath):
        return True
    return getattr(base, "__module__", "").startswith("pandas")


def _from_text(value: Any, base: Any, path: str) -> Any:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}", path)
    try:
        return parse_cli_value(value, base)
    except ValueError as exc:
        raise _Invalid(str(exc).split("; expected e.g.")[0], path) from None


def _python(value: Any, py_type: Any, path: str, uploads: Resolver | None = None) -> Any:
    """The Python value of a JSON value for a guessed type, strictly."""
    base = strip_annotated(py_type)[0]
    origin: Any = typing.get_origin(base)
    if origin is typing.Union or origin is types.UnionType:
        variants = typing.get_args(base)
        if value is None and _NONE in variants:
            return None
        problems = []
        for variant in variants:
            if variant is _NONE:
                continue
            try:
                return _python(value, variant, path, uploads)
            except _Invalid as exc:
                problems.append(exc.problem)
        raise _Invalid(" / ".join(dict.fromkeys(problems)), path)
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(f"expected an array, got {_kind(value)}", path)
        (item,) = typing.get_args(base)
        return [_python(v, item, f"{path}[{i}]", uploads) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(f"expected an object, got {_kind(value)}", path)
        item = typing.get_args(base)[1]
        return {k: _python(v, item, f"{path}[{k!r}]", uploads) for k, v in value.items()}
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        return _record(value, base, path, uploads)
    if _is_blob(base):
        return _uploaded(value, base, path, uploads)
    return _scalar(value, base, path)


def _uploaded(value: Any, base: Any, path: str, uploads: Resolver | None) -> Any:
    """A file, directory or dataframe input: `{"upload": ref}` of an upload made first."""
    if not (isinstance(value, dict) and set(value) == {"upload"}):
        raise _Invalid(
            f'expected {{"upload": REF}}, got {_kind(value)}: upload the data first '
            "(POST /api/v1/projects/P/domains/D/uploads, or `taskfabric launch --input "
            "NAME=LOCAL_PATH`, which uploads it) and pass the ref the server answers",
            path,
        )
    if uploads is None:
        raise _Invalid("uploaded data can be used only in a launch", path)
    want_dir = isinstance(base, type) and issubclass(base, Directory)
    ref = value["upload"]
    if isinstance(ref, str) and ref.startswith("directory/") != want_dir:
        raise _Invalid(
            f"upload {ref!r} is a {'directory' if not want_dir else 'file'}, the input a "
            f"{'directory' if want_dir else 'file'}: upload it with kind="
            f"{'directory' if want_dir else 'file'}",
            path,
        )
    try:
        local = uploads(ref)
        return parse_cli_value(str(local), base)
    except (UploadError, ValueError) as exc:
        raise _Invalid(str(exc).split("; expected e.g.")[0], path) from None


def _record(value: Any, cls: type[Any], path: str, uploads: Resolver | None) -> Any:
    if not isinstance(value, dict):
        raise _Invalid(f"expected an object, got {_kind(value)}", path)
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise _Invalid(f"no field {unknown[0]!r} (fields: {', '.join(names)})", path)
    missing = [n for n in names if n not in value]
    if missing:
        raise _Invalid(f"missing field {missing[0]!r}", path)
    return cls(**{n: _python(value[n], hints[n], f"{path}.{n}", uploads) for n in names})


def _scalar(value: Any, base: Any, path: str) -> Any:
    if base is _NONE:
        if value is None:
            return None
        raise _Invalid(f"expected null, got {_kind(value)}", path)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"expected a boolean, got {_kind(value)}", path)
    if base is int:
        if type(value) is int:
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)  # JSON has one number type: 3.0 is 3
        raise _Invalid(f"expected an integer, got {_kind(value)}", path)
    if base is float:
        if type(value) in (int, float):
            return float(value)
        if isinstance(value, str) and value.lower() in ("inf", "-inf", "nan"):
            return float(value)
        raise _Invalid(f"expected a number, got {_kind(value)}", path)
    if base is str:
        if isinstance(value, str):
            return value
        raise _Invalid(f"expected a string, got {_kind(value)}", path)
    if base is timedelta and type(value) in (int, float):
        return timedelta(seconds=value)
    if base in (bytes, datetime, timedelta) or (
        isinstance(base, type) and issubclass(base, enum.Enum)
    ):
        return _from_text(value, base, path)
    raise _Invalid(f"values of this type cannot be given as JSON ({base!r})", path)


def json_to_literal(
    value: Any,
    literal_type: types_pb2.LiteralType,
    *,
    name: str = "",
    uploads: Resolver | None = None,
) -> Any:
    """The literal of a JSON `value` for `literal_type`; InputError names `name` and the
    place inside the value that does not fit. `uploads` resolves `{"upload": ref}` values of
    file, directory and dataframe inputs (a launch's own project and domain)."""
    engine = default_engine()
    try:
        py_type = engine.guess_python_type(literal_type)
    except ValueError as exc:
        raise InputError(name, str(exc)) from None
    try:
        python = _python(value, py_type, "", uploads)
        return engine.to_literal(python, py_type, uploads.context if uploads else None)
    except _Invalid as exc:
        where = f"at {exc.path}: " if exc.path else ""
        raise InputError(
            name, f"{where}{exc.problem} (the input is {type_str(literal_type)})"
        ) from None
    except (ValueError, TypeError) as exc:
        raise InputError(name, f"{exc} (the input is {type_str(literal_type)})") from None


def is_blob_type(literal_type: types_pb2.LiteralType) -> bool:
    """Whether an input of this type is a file, a directory or a dataframe (data that is
    uploaded, not written as JSON)."""
    try:
        py_type = default_engine().guess_python_type(literal_type)
    except ValueError:
        return False
    return _is_blob(strip_annotated(py_type)[0])


def text_to_literal(
    text: str,
    literal_type: types_pb2.LiteralType,
    *,
    name: str = "",
    ctx: TransformContext | None = None,
) -> types_pb2.Literal:
    """The literal of a command-line value (`--input name=text`), parsed as `taskfabric run`
    parses it. Files need `ctx` (a blob store to upload to)."""
    engine = default_engine()
    try:
        py_type = engine.guess_python_type(literal_type)
        if ctx is None and _is_blob(strip_annotated(py_type)[0]):
            raise ValueError(
                "files, directories and dataframes are uploaded, not converted here: "
                "`taskfabric launch --input NAME=LOCAL_PATH` uploads them"
            )
        value = parse_cli_value(text, py_type)
        lit: types_pb2.Literal = engine.to_literal(value, py_type, ctx)
    except (ValueError, TypeError) as exc:
        raise InputError(name, str(exc)) from None
    return lit


def interface_inputs(
    interface: interface_pb2.TypedInterface,
    values: Mapping[str, Any],
    *,
    what: str,
    uploads: Resolver | None = None,
) -> dict[str, types_pb2.Literal]:
    """JSON inputs as literals, by the interface's types; an unknown name is an InputError."""
    declared = {p.name: p for p in interface.inputs}
    out: dict[str, types_pb2.Literal] = {}
    for key, value in values.items():
        param = declared.get(key)
        if param is None:
            expected = ", ".join(f"{p.name}: {type_str(p.type)}" for p in interface.inputs)
            raise InputError(key, f"{what} has no such input; its inputs are: {expected or 'none'}")
        out[key] = json_to_literal(value, param.type, name=key, uploads=uploads)
    return out


def literal_type_json(literal_type: types_pb2.LiteralType) -> dict[str, Any]:
    return json_format.MessageToDict(literal_type, preserving_proto_field_name=True)


def literal_type_from_json(data: Mapping[str, Any]) -> types_pb2.LiteralType:
    return json_format.ParseDict(dict(data), types_pb2.LiteralType())


def values_json(m: types_pb2.LiteralMap | None, order: list[str] | None = None) -> dict[str, Any]:
    """A literal map as {name: JSON value}, in `order` first (declared order), then sorted."""
    if m is None:
        return {}
    names = [n for n in (order or []) if n in m.literals]
    names += sorted(set(m.literals) - set(names))
    return {n: literal_to_json(m.literals[n]) for n in names}


__all__ = [
    "InputError",
    "interface_inputs",
    "is_blob_type",
    "json_to_literal",
    "literal_type_from_json",
    "literal_type_json",
    "text_to_literal",
    "values_json",
]
