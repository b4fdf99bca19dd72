"""Helpers for inspecting Python type hints."""

from __future__ import annotations

import types
import typing
from typing import Any

NoneType: type[None] = type(None)

#: A Python type hint: a class, or a typing form such as `list[int]`, `int | None` or
#: `Annotated[File, Format("csv")]`. Typing forms are not `type` instances, hence `Any`.
TypeHint = Any

_ANNOTATED_TYPE: Any = type(typing.Annotated[int, "x"])
_TYPING_UNION_TYPE: Any = type(typing.Union[int, str])  # noqa: UP007 - the typing form itself


def get_origin(py_type: TypeHint) -> Any:
    """`typing.get_origin`, typed loosely (its stubs assume special forms)."""
    return typing.get_origin(py_type)


def get_args(py_type: TypeHint) -> tuple[Any, ...]:
    return typing.get_args(py_type)


def strip_annotated(py_type: TypeHint) -> tuple[TypeHint, tuple[Any, ...]]:
    """`(base type, metadata)` of `Annotated[base, *metadata]`; `(py_type, ())` otherwise."""
    if type(py_type) is _ANNOTATED_TYPE:
        return py_type.__origin__, tuple(py_type.__metadata__)
    return py_type, ()


def find_metadata(py_type: TypeHint, kind: type[Any]) -> Any | None:
    """The first `Annotated` metadata item of class `kind` on `py_type`, if any."""
    for item in strip_annotated(py_type)[1]:
        if isinstance(item, kind):
            return item
    return None


def is_union(py_type: TypeHint) -> bool:
    """Whether `py_type` is `A | B` or `typing.Union[A, B]` / `Optional[A]`."""
    return type(py_type) is types.UnionType or (
        type(py_type) is _TYPING_UNION_TYPE and py_type.__origin__ is typing.Union
    )


def normalize(py_type: TypeHint) -> TypeHint:
    """`None` (as written in annotations) becomes `NoneType`; anything else is unchanged."""
    return NoneType if py_type is None else py_type


def structural_key(py_type: TypeHint) -> Any:
    """A hashable key that tells apart type hints that Python considers equal.

    `int | str == str | int` in Python, but the variant order matters to us (the first
    variant that accepts a value wins), so unions keep their order here.
    """
    if isinstance(py_type, type):
        return py_type
    if type(py_type) is _ANNOTATED_TYPE:
        return ("annotated", structural_key(py_type.__origin__), py_type.__metadata__)
    args = typing.get_args(py_type)
    if not args:
        return py_type
    origin = "union" if is_union(py_type) else get_origin(py_type)
    return (origin, tuple(structural_key(a) for a in args))


def short_name(cls: type[Any]) -> str:
    """`Outer.Inner` for a nested class, `Point` for one defined inside a function."""
    return cls.__qualname__.rsplit("<locals>.", 1)[-1]


def qualified_name(cls: type[Any]) -> str:
    explicit = cls.__dict__.get("__taskfabric_record_name__")
    if isinstance(explicit, str):
        return explicit
    return f"{cls.__module__}.{cls.__qualname__}"


def py_type_str(py_type: TypeHint) -> str:
    """A readable rendering of a type hint: `dict[int, str]`, `int | None`, `File[csv]`."""
    py_type = normalize(py_type)
    if py_type is NoneType:
        return "None"
    if py_type is typing.Any:
        return "typing.Any"
    if type(py_type) is _ANNOTATED_TYPE:
        base, metadata = strip_annotated(py_type)
        shown = ", ".join(_metadata_str(m) for m in metadata)
        return f"Annotated[{py_type_str(base)}, {shown}]"
    if is_union(py_type):
        return " | ".join(py_type_str(a) for a in typing.get_args(py_type))
    origin = get_origin(py_type)
    args = get_args(py_type)
    if origin is not None and args:
        origin_name = short_name(origin) if isinstance(origin, type) else _plain_repr(origin)
        if origin is typing.Literal:
            return f"Literal[{', '.join(repr(a) for a in args)}]"
        return f"{origin_name}[{', '.join(_arg_str(a) for a in args)}]"
    if isinstance(py_type, type):
        return short_name(py_type)
    return _plain_repr(py_type)


def _arg_str(arg: Any) -> str:
    if isinstance(arg, list):  # Callable[[int], str]
        return "[" + ", ".join(_arg_str(a) for a in arg) + "]"
    if arg is Ellipsis:
        return "..."
    return py_type_str(arg)


def _metadata_str(item: Any) -> str:
    return repr(item)


def _plain_repr(obj: Any) -> str:
    text = repr(obj)
    return (
        text.removeprefix("typing.")
        if text.startswith("typing.") and obj is not typing.Any
        else text
    )
