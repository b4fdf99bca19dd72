"""Parsing command-line strings (`taskfabric run ... --x VALUE`) into typed Python values."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import re
import sys
import typing
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any

from taskfabric.types._blobs import Directory, File
from taskfabric.types._pytypes import (
    NoneType,
    TypeHint,
    get_args,
    get_origin,
    is_union,
    normalize,
    py_type_str,
    short_name,
)
from taskfabric.types._pytypes import strip_annotated as _strip

_TRUE = frozenset({"true", "yes", "1", "y", "on"})
_FALSE = frozenset({"false", "no", "0", "n", "off"})
_NULL = frozenset({"none", "null"})


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(plain number, ISO 8601 duration, one `<number><unit>` part), compiled on first use
    (compiling them costs more than the rest of importing this package)."""
    number = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
    iso = re.compile(
        r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
        r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
        re.IGNORECASE,
    )
    unit_part = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|us|µs|w|d|h|m|s)", re.IGNORECASE)
    return number, iso, unit_part


_UNIT_SECONDS = {
    "w": Decimal(604800),
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
}


def _base(py_type: TypeHint) -> TypeHint:
    return normalize(_strip(normalize(py_type))[0])


def example_for(py_type: TypeHint) -> str:
    """An example of valid command-line input for `py_type`."""
    base = _base(py_type)
    if _is_json_type(base):
        return json.dumps(_json_example(base))
    if is_union(base):
        variants = [a for a in get_args(base) if a is not NoneType]
        text = example_for(variants[0]) if variants else "none"
        return text + (" or none" if NoneType in get_args(base) else "")
    return _SCALAR_EXAMPLES.get(base) or _special_example(base)


_SCALAR_EXAMPLES: dict[Any, str] = {
    int: "42",
    float: "3.14",
    str: "hello",
    bool: "true (or false, yes, no, 1, 0)",
    bytes: "hello (UTF-8) or base64:aGVsbG8=",
    datetime: "2024-05-01T12:00:00Z (ISO 8601 with Z or an offset)",
    timedelta: "90s, 1h30m, 2d, 1.5h, PT1H30M or 5400 (seconds)",
    NoneType: "none",
}


def _special_example(base: TypeHint) -> str:
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return " or ".join(base.__members__)
    if isinstance(base, type) and issubclass(base, Directory):
        return "path/to/existing/folder"
    if isinstance(base, type) and issubclass(base, (File, PurePath)):
        return "path/to/existing/file"
    if _is_dataframe(base):
        return "path/to/data.csv or path/to/data.parquet"
    return "?"


def _json_example(base: TypeHint) -> Any:
    base = _base(base)
    origin = get_origin(base)
    if origin is list:
        return [_json_example(get_args(base)[0])]
    if origin is dict:
        return {"key": _json_example(get_args(base)[1])}
    if is_union(base):
        variants = [a for a in get_args(base) if a is not NoneType]
        return _json_example(variants[0]) if variants else None
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        hints = typing.get_type_hints(base, include_extras=True)
        return {f.name: _json_example(hints[f.name]) for f in dataclasses.fields(base)}
    if _is_pydantic(base):
        return {name: _json_example(info.annotation) for name, info in base.model_fields.items()}
    simple: dict[Any, Any] = {
        int: 1,
        float: 1.5,
        str: "text",
        bool: True,
        bytes: "base64:aGVsbG8=",
        datetime: "2024-05-01T12:00:00Z",
        timedelta: "1h30m",
        NoneType: None,
    }
    if base in simple:
        return simple[base]
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return next(iter(base.__members__))
    return "path/to/file"


def _is_pydantic(base: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(base, type) and issubclass(base, pydantic.BaseModel)


def _is_dataframe(base: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(base, type) and issubclass(base, pandas.DataFrame)


def _is_json_type(base: Any) -> bool:
    return (
        get_origin(base) in (list, dict)
        or (isinstance(base, type) and dataclasses.is_dataclass(base))
        or _is_pydantic(base)
    )


class _Invalid(ValueError):
    """A value that does not fit, with the path inside a JSON value."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path


def parse_cli_value(text: str, py_type: TypeHint) -> Any:
    """Turn a command-line string into a Python value of `py_type`.

    int, float, str; bool (true/false, yes/no, 1/0, on/off; any case); datetime (ISO 8601
    with `Z` or an offset); timedelta ("90s", "1h30m", "2d", "1.5h", "500ms", ISO 8601
    "PT1H30M", or a number of seconds); bytes (UTF-8 text, or `base64:<data>`); enums by
    member name or value; list, dict, dataclasses and pydantic models as JSON; File,
    Directory and Path as an existing local path; pandas DataFrame from a .csv or .parquet
    file; `T | None` accepts "none"/"null"; other unions try each variant in order.

    Raises ValueError naming the expected type with an example of valid input.
    """
    try:
        return _parse(text, py_type)
    except _Invalid as error:
        where = f" at {error.path}" if error.path else ""
        raise ValueError(
            f"invalid value {text!r} for type {py_type_str(py_type)}{where}: {error.problem}; "
            f"expected e.g. {example_for(py_type)}"
        ) from None


def _parse(text: str, py_type: TypeHint) -> Any:
    base = _base(py_type)
    if is_union(base):
        args = get_args(base)
        if NoneType in args and text.strip().lower() in _NULL:
            return None
        problems = []
        for variant in args:
            if variant is NoneType:
                continue
            try:
                return _parse(text, variant)
            except _Invalid as error:
                problems.append(f"not {py_type_str(variant)} ({error.problem})")
        raise _Invalid("; ".join(problems))
    if _is_json_type(base):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise _Invalid(f"not valid JSON ({error.msg} at character {error.pos})") from None
        return _from_json(data, base, "")
    if _is_dataframe(base):
        return _read_dataframe(text)
    return _scalar(text, base)


def _scalar(text: str, base: Any) -> Any:
    stripped = text.strip()
    if base is str:
        return text
    if base is int:
        if not re.fullmatch(r"[+-]?\d[\d_]*", stripped):
            raise _Invalid("not an integer")
        return int(stripped)
    if base is float:
        try:
            return float(stripped)
        except ValueError:
            raise _Invalid("not a number") from None
    if base is bool:
        lowered = stripped.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Invalid("not a boolean")
    if base is bytes:
        if text.startswith("base64:"):
            try:
                return base64.b64decode(text[len("base64:") :], validate=True)
            except binascii.Error as error:
                raise _Invalid(f"invalid base64 ({error})") from None
        return text.encode()
    if base is datetime:
        return parse_datetime(stripped)
    if base is timedelta:
        return parse_duration(stripped)
    if base is NoneType:
        if stripped.lower() in _NULL:
            return None
        raise _Invalid("only none/null is a None")
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return _enum(stripped, base)
    if isinstance(base, type) and issubclass(base, (File, Directory, PurePath)):
        return _path(stripped, base)
    raise _Invalid(f"values of type {py_type_str(base)} cannot be given on the command line")


def parse_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid("not an ISO 8601 date and time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise _Invalid("no timezone: add `Z` (UTC) or an offset such as `+02:00`")
    return value


def parse_duration(text: str) -> timedelta:
    # Decimal arithmetic: "P100000DT0.000001S" must not lose its microsecond to floats.
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-").strip()
    seconds = Decimal(0)
    number, iso_duration, unit_part = _patterns()
    if number.fullmatch(body):
        seconds = Decimal(body)
    elif (iso := iso_duration.fullmatch(body)) and body.upper() not in ("P", "PT"):
        if body.upper().endswith("T"):
            raise _Invalid("not a duration")
        seconds = sum(
            (Decimal(iso[unit]) * _UNIT_SECONDS[unit] for unit in "wdhms" if iso[unit]),
            Decimal(0),
        )
    else:
        position = 0
        while position < len(body):
            match = unit_part.match(body, position)
            if match is None:
                raise _Invalid("not a duration")
            unit = match[2].lower().replace("µs", "us")
            seconds += Decimal(match[1]) * _UNIT_SECONDS[unit]
            position = match.end()
        if position == 0:
            raise _Invalid("not a duration")
    micros = int((seconds * 1_000_000).to_integral_value())
    try:
        return timedelta(microseconds=sign * micros)
    except OverflowError:
        raise _Invalid("too long a duration") from None


def _enum(text: str, cls: type[enum.Enum]) -> enum.Enum:
    member = cls.__members__.get(text)
    if member is not None:
        return member
    for candidate in cls:
        if str(candidate.value) == text:
            return candidate
    lowered = {name.lower(): m for name, m in cls.__members__.items()}
    if text.lower() in lowered:
        return lowered[text.lower()]
    raise _Invalid(f"not a member of {short_name(cls)}")


def _path(text: str, cls: type[Any]) -> Any:
    path = Path(text).expanduser()
    if issubclass(cls, Directory):
        if not path.is_dir():
            raise _Invalid("no such folder" if not path.exists() else "not a folder")
        return cls(path)
    if not path.is_file():
        raise _Invalid("no such file" if not path.exists() else "not a file")
    return cls(path)


def _read_dataframe(text: str) -> Any:
    import pandas as pd

    path = Path(text.strip()).expanduser()
    if not path.is_file():
        raise _Invalid("no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise _Invalid("a DataFrame is read from a .csv or .parquet file")


def _from_json(data: Any, py_type: TypeHint, path: str) -> Any:
    base = _base(py_type)
    if is_union(base):
        args = get_args(base)
        if data is None and NoneType in args:
            return None
        for variant in args:
            try:
                return _from_json(data, variant, path)
            except _Invalid:
                continue
        raise _Invalid(f"expected {py_type_str(base)}, got {_json_kind(data)}", path)
    origin = get_origin(base)
    if origin is list:
        if not isinstance(data, list):
            raise _Invalid(f"expected a JSON array, got {_json_kind(data)}", path)
        item_type = get_args(base)[0]
        return [_from_json(item, item_type, f"{path}[{i}]") for i, item in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise _Invalid(f"expected a JSON object, got {_json_kind(data)}", path)
        value_type = get_args(base)[1]
        return {k: _from_json(v, value_type, f"{path}[{k!r}]") for k, v in data.items()}
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        return _record_from_json(data, base, path)
    if _is_pydantic(base):
        return _model_from_json(data, base, path)
    return _scalar_from_json(data, base, path)


def _record_from_json(data: Any, cls: type[Any], path: str) -> Any:
    if not isinstance(data, dict):
        raise _Invalid(
            f"expected a JSON object for {short_name(cls)}, got {_json_kind(data)}", path
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _Invalid(f"{short_name(cls)} has no field {unknown[0]!r}", path)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _from_json(data[name], hints[name], f"{path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _Invalid(f"missing field {name!r} of {short_name(cls)}", path)
    return cls(**values)


def _model_from_json(data: Any, cls: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _Invalid(
            f"expected a JSON object for {short_name(cls)}, got {_json_kind(data)}", path
        )
    values = {}
    by_key = {(info.alias or name): (name, info) for name, info in cls.model_fields.items()}
    for key, value in data.items():
        if key not in by_key:
            raise _Invalid(f"{short_name(cls)} has no field {key!r}", path)
        name, info = by_key[key]
        values[key] = _from_json(value, info.annotation, f"{path}.{name}")
    try:
        return cls.model_validate(values)
    except ValueError as error:
        raise _Invalid(f"invalid {short_name(cls)}: {error}", path) from None


def _scalar_from_json(data: Any, base: Any, path: str) -> Any:
    if base is int and type(data) is int:
        return data
    if base is float and type(data) in (int, float):
        return float(data)
    if base is float and isinstance(data, str) and data.lower() in ("inf", "-inf", "nan"):
        return float(data)
    if base is str and isinstance(data, str):
        return data
    if base is bool and isinstance(data, bool):
        return data
    if base is NoneType and data is None:
        return None
    if isinstance(data, str) and base not in (int, float, str, bool, NoneType):
        try:
            return _scalar(data, base)
        except _Invalid as error:
            raise _Invalid(error.problem, path) from None
    if base is timedelta and type(data) in (int, float):
        return timedelta(seconds=data)
    raise _Invalid(f"expected {py_type_str(base)}, got {_json_kind(data)}", path)


def _json_kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return f"boolean {json.dumps(data)}"
    if isinstance(data, (int, float)):
        return f"number {data!r}"
    if isinstance(data, str):
        return f"string {json.dumps(data)[:40]}"
    if isinstance(data, list):
        return "an array"
    return "an object"
