"""Python values as shell words and environment variables; script-written outputs read back."""

from __future__ import annotations

import enum
import shlex
import types
import typing
from pathlib import PurePath
from typing import Any

from taskfabric import Directory, File
from taskfabric.types import strip_annotated

__all__ = [
    "INPUT_TYPES",
    "OUTPUT_TYPES",
    "env_text",
    "input_supported",
    "output_kind",
    "parse_scalar",
    "shell_words",
]

#: What the messages say a shell task accepts.
INPUT_TYPES = (
    "str, int, float, bool, an Enum, File, Directory, pathlib.Path, a list of those, "
    "or any of those | None"
)
OUTPUT_TYPES = "File, Directory, pathlib.Path, str, int, float or bool"

_SCALARS: tuple[type[Any], ...] = (bool, int, float, str)
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def _base(py_type: Any) -> Any:
    return strip_annotated(py_type)[0]


def _without_none(py_type: Any) -> Any:
    """X for `X | None` (and Optional[X]); the type itself otherwise."""
    if typing.get_origin(py_type) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(py_type) if a is not type(None)]
        if len(args) == 1:
            return _base(args[0])
    return py_type


def _item_supported(py_type: Any) -> bool:
    tp = _without_none(_base(py_type))
    return isinstance(tp, type) and (
        tp in _SCALARS or issubclass(tp, (File, Directory, PurePath, enum.Enum))
    )


def input_supported(py_type: Any) -> bool:
    """Whether an input of this type can appear in a script (as a placeholder or env var)."""
    tp = _without_none(_base(py_type))
    if typing.get_origin(tp) is list:
        args = typing.get_args(tp)
        return len(args) == 1 and _item_supported(args[0])
    return _item_supported(tp)


def output_kind(py_type: Any) -> str | None:
    """The kind of an output type: file, directory, path, bool, int, float or str (None:
    a script cannot produce it)."""
    tp = _base(py_type)
    if not isinstance(tp, type):
        return None
    if issubclass(tp, File):
        return "file"
    if issubclass(tp, Directory):
        return "directory"
    if issubclass(tp, PurePath):
        return "path"
    for scalar in _SCALARS:  # bool first: bool is a subclass of int
        if tp is scalar:
            return scalar.__name__
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _text(value.value)
    if isinstance(value, (File, Directory)):
        return str(value.path)  # a stored blob is fetched here, on first use
    if isinstance(value, (PurePath, int, float, str)):
        return str(value)
    raise TypeError(f"a {type(value).__name__} cannot be passed to a shell script")


def shell_words(value: Any) -> str:
    """The value as it replaces a placeholder: one shell-quoted word, or for a list one quoted
    word per item separated by spaces (an empty list is no word at all)."""
    if isinstance(value, list):
        return " ".join(shlex.quote(_text(item)) for item in value)
    return shlex.quote(_text(value))


def env_text(value: Any) -> str:
    """The value as a `TF_INPUT_<NAME>` variable holds it: unquoted; a list one item a line."""
    if isinstance(value, list):
        return "\n".join(_text(item) for item in value)
    return _text(value)


def parse_scalar(text: str, kind: str) -> Any:
    """A str/int/float/bool output from what the script wrote (surrounding whitespace
    ignored). Raises ValueError saying what was expected."""
    text = text.strip()
    if kind == "str":
        return text
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true/false (or 1/0, yes/no, on/off)")
    raise ValueError(f"unsupported output kind {kind}")
