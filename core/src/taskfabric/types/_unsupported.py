"""Why a Python type is not supported, and what to use instead."""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from typing import Any

from taskfabric.types._pytypes import TypeHint, get_args, get_origin, py_type_str, short_name

_CONTAINER_HINTS: dict[Any, str] = {
    dict: "plain `dict` needs parameters: use dict[str, int] (or another value type)",
    list: "plain `list` needs parameters: use list[int] (or another element type)",
    tuple: "tuples are not supported: use a @dataclass for a fixed set of fields, or list[T]",
    set: "sets are not supported: use list[T] (sorted if the order must be stable)",
    frozenset: "frozensets are not supported: use list[T]",
    object: "`object` carries no type: declare a concrete type",
}


def explain_unsupported(py_type: TypeHint) -> str:
    """A reason, ending with a fix, for a type no transformer matches."""
    if py_type is typing.Any:
        return "typing.Any carries no type: declare a concrete type"
    if isinstance(py_type, typing.TypeVar):
        return "a type variable carries no type: declare a concrete type"
    if isinstance(py_type, str):
        return (
            "an unresolved forward reference: define the class at module level so that "
            "typing.get_type_hints can resolve it"
        )
    if py_type in _CONTAINER_HINTS:
        return _CONTAINER_HINTS[py_type]
    origin = get_origin(py_type)
    args = get_args(py_type)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _CONTAINER_HINTS[tuple].replace("[T]", f"[{_first_arg(args)}]")
        return _CONTAINER_HINTS[tuple]
    if origin in (set, frozenset):
        return _CONTAINER_HINTS[origin].replace("[T]", f"[{_first_arg(args)}]")
    if origin is dict or origin is collections.abc.Mapping:
        return _dict_reason(args)
    if origin is typing.Literal:
        return "Literal types are not supported: use an enum.Enum"
    if origin in (collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection):
        return f"abstract collections are not supported: use list[{_first_arg(args)}]"
    if origin is collections.abc.Callable:
        return "functions cannot be passed between tasks"
    if origin is not None and dataclasses.is_dataclass(origin):
        return "generic dataclasses are not supported: declare a concrete @dataclass"
    if inspect.isclass(py_type):
        if issubclass(py_type, dict):
            return _dict_reason(())
        if py_type.__module__ == "datetime":
            return (
                f"{py_type.__qualname__} is not supported: use datetime.datetime (timezone-aware)"
            )
        return (
            f"class {short_name(py_type)} is not a supported type: make it a @dataclass "
            "or a pydantic BaseModel (or register a TypeTransformer for it)"
        )
    return f"{py_type_str(py_type)} is not a supported type annotation: declare a concrete type"


def _dict_reason(args: tuple[Any, ...]) -> str:
    if len(args) == 2 and args[0] is not str:
        return f"map keys must be str: use dict[str, {py_type_str(args[1])}]"
    return "plain `dict` needs parameters: use dict[str, int] (or another value type)"


def _first_arg(args: tuple[Any, ...]) -> str:
    return py_type_str(args[0]) if args and args[0] is not Ellipsis else "T"
