"""Errors raised by the type engine."""

from __future__ import annotations

from typing import Any

from taskfabric.types._pytypes import TypeHint, py_type_str, short_name


class UnsupportedTypeError(TypeError):
    """A Python type hint that the type engine cannot carry between tasks.

    `py_type` is the type as declared; `reason` says what is wrong with it and what to use
    instead (for a nested type it starts with the offending part, e.g. "field `tags`:
    `set[str]`: sets are not supported: ..."). The SDK adds the function and parameter
    name around this message.
    """

    #: Whether `reason` already names the offending inner part.
    _located: bool = False

    def __init__(self, py_type: TypeHint, reason: str) -> None:
        self.py_type = py_type
        self.reason = reason
        super().__init__(f"unsupported type `{py_type_str(py_type)}`: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.py_type, self.reason))

    def inside(self, outer: TypeHint, *, field: str | None = None) -> UnsupportedTypeError:
        """This error seen from an enclosing type (a container or a record field)."""
        reason = self.reason
        if not self._located:
            reason = f"`{py_type_str(self.py_type)}`: {reason}"
        if field is not None:
            reason = f"field `{field}`: {reason}"
        error = UnsupportedTypeError(outer, reason)
        error._located = True
        return error


class LiteralConversionError(ValueError):
    """A value does not fit its declared type (or a literal does not fit a Python type).

    `path` locates the offending part inside the value, e.g. `[3].name` (empty at the top);
    `expected` is the expected type and `actual` describes what was found. Use
    `with_root("xs")` to get the same error with the path `xs[3].name`.
    """

    def __init__(self, expected: str, actual: str, *, path: str = "", detail: str = "") -> None:
        self.expected = expected
        self.actual = actual
        self.path = path
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"at {self.path}: " if self.path else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{where}expected {self.expected}, got {self.actual}{detail}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_conversion_error, (self.expected, self.actual, self.path, self.detail))

    def add_parent(self, segment: str) -> LiteralConversionError:
        """Prefix the path with `segment` (`"[3]"`, `"['key']"` or `".field"`); returns self."""
        self.path = segment + self.path
        self.args = (self._message(),)
        return self

    def with_root(self, name: str) -> LiteralConversionError:
        """A copy whose path starts at the named root, e.g. `xs` + `[3].name`."""
        error = LiteralConversionError(
            self.expected, self.actual, path=name + self.path, detail=self.detail
        )
        error.__cause__ = self.__cause__
        return error


def _rebuild_conversion_error(
    expected: str, actual: str, path: str, detail: str
) -> LiteralConversionError:
    return LiteralConversionError(expected, actual, path=path, detail=detail)


class TransformerConflictError(ValueError):
    """Two type transformers claim the same Python type (or the same name)."""


def describe_value(value: Any, *, limit: int = 60) -> str:
    """`str 'abc'`, `bool True`, `list of 3 items`: the value's type and a short repr."""
    kind = short_name(type(value))
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"{kind} of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{kind} {text}"


def expected_str(py_type: TypeHint) -> str:
    return py_type_str(py_type)
