"""The base class of type transformers: one family of Python types each."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError
from taskfabric.types._pytypes import TypeHint, py_type_str

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine

T = TypeVar("T")


class TypeTransformer(abc.ABC, Generic[T]):
    """Converts one family of Python types to literals and back.

    Subclass it, set `name` (unique, e.g. "pandas.DataFrame") and either `python_types`
    (the classes it owns exactly; used for the default `matches` and for conflict
    detection at registration) or override `matches` (for families such as "any
    dataclass"). Register an instance with `TypeEngine.register`; plugins return instances
    from the `taskfabric_type_transformers()` hook.

    `matches` receives the type with any `Annotated[...]` wrapper removed; the conversion
    methods receive the type as declared, so they can read `Annotated` metadata (see
    `taskfabric.types.strip_annotated`). Nested values are converted by calling back into
    `engine` (`engine.to_literal(item, item_type, ctx)`), which keeps caching and error
    paths working.
    """

    #: Unique name, shown in conflict errors and `taskfabric plugins`.
    name: str
    #: Classes handled by this transformer (exactly these, unless `matches` says otherwise).
    python_types: tuple[type[Any], ...] = ()

    def matches(self, py_type: TypeHint) -> bool:
        """Whether this transformer handles `py_type` (without `Annotated`)."""
        return py_type in self.python_types

    @abc.abstractmethod
    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        """The literal type of `py_type`; raise `UnsupportedTypeError` if it cannot be carried."""

    @abc.abstractmethod
    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        """`value` as a literal of `py_type`'s literal type; `LiteralConversionError` if it
        does not fit."""

    @abc.abstractmethod
    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> T:
        """The Python value of `literal`, as an instance of `py_type`."""

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        """A Python type that can read literals of `literal_type`, or None if not ours."""
        return None

    def mismatch(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Any:
        """Handle a literal of an unexpected kind in `to_python`.

        A union literal is unwrapped (the compiler lets `A | B` flow into `A` when every
        variant fits); anything else raises `LiteralConversionError`.
        """
        kind = literal.WhichOneof("value")
        if kind == "union":
            return engine.to_python(literal.union.value, py_type, ctx)
        raise LiteralConversionError(
            py_type_str(py_type), f"a literal of kind {kind or 'unset'}", detail="cannot read it"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {getattr(self, 'name', '?')!r}>"
