"""The type engine: finds the transformer for a Python type and caches what it can."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from taskfabric import _upcalls
from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import TransformerConflictError, UnsupportedTypeError
from taskfabric.types._literal_types import type_str
from taskfabric.types._pytypes import (
    TypeHint,
    normalize,
    py_type_str,
    strip_annotated,
    structural_key,
)
from taskfabric.types._transformer import TypeTransformer
from taskfabric.types._unsupported import explain_unsupported


@dataclass
class _Registration:
    transformer: TypeTransformer[Any]
    #: 0 for an ordinary registration; registrations with override=True get increasing
    #: priorities, so the latest override wins over everything registered before it.
    priority: int
    order: int


class TypeKeyedCache:
    """A dict keyed by type hints that does not confuse `int | str` with `str | int`.

    Python considers unions with the same members equal whatever their order, but the order
    matters here. The fast path is a dict lookup plus an identity check (annotations are
    usually the very same objects each time); otherwise a structural key decides.
    """

    def __init__(self) -> None:
        self._by_type: dict[Any, tuple[Any, Any]] = {}
        self._by_structure: dict[Any, Any] = {}

    def get(self, py_type: TypeHint) -> Any | None:
        try:
            hit = self._by_type.get(py_type)
        except TypeError:  # unhashable metadata inside Annotated
            return None
        if hit is not None and hit[0] is py_type:
            return hit[1]
        try:
            return self._by_structure.get(structural_key(py_type))
        except TypeError:
            return None

    def put(self, py_type: TypeHint, value: Any) -> None:
        try:
            self._by_structure[structural_key(py_type)] = value
            self._by_type.setdefault(py_type, (py_type, value))
        except TypeError:
            pass

    def clear(self) -> None:
        self._by_type.clear()
        self._by_structure.clear()


class TypeEngine:
    """Converts Python values to literals and back through registered transformers.

    Use `default_engine()` for the process-wide engine with the built-in transformers, or
    `TypeEngine.with_builtins()` for a private one (tests). Lookups are cached per type:
    converting a simple value costs a dict lookup plus the conversion itself.
    """

    def __init__(self, transformers: Iterable[TypeTransformer[Any]] = ()) -> None:
        self._registrations: list[_Registration] = []
        self._order = 0
        self._top_priority = 0
        self._lock = threading.RLock()
        # Types whose transformer is known and whose literal type was built successfully.
        self._transformers: dict[Any, TypeTransformer[Any]] = {}
        self._literal_types = TypeKeyedCache()
        self._guesses: dict[bytes, Any] = {}
        self._plans: dict[str, TypeKeyedCache] = {}
        self._building: set[Any] = set()
        self._fallback: Callable[[TypeEngine], None] | None = None
        for transformer in transformers:
            self.register(transformer)

    @classmethod
    def with_builtins(cls) -> TypeEngine:
        """A new engine with the built-in transformers (scalars, containers, records, enums,
        unions, File, Directory, Path and pandas DataFrame)."""
        from taskfabric.types._builtins import builtin_transformers

        return cls(builtin_transformers())

    # -- registration ---------------------------------------------------------------------

    @property
    def transformers(self) -> tuple[TypeTransformer[Any], ...]:
        """Registered transformers, most preferred first."""
        return tuple(r.transformer for r in self._ranked())

    def register(self, transformer: TypeTransformer[Any], *, override: bool = False) -> None:
        """Add a transformer.

        Raises `TransformerConflictError` (naming both) if another transformer has the same
        name or already handles one of its `python_types`, unless `override=True`: then the
        new transformer replaces the one with the same name and takes precedence over every
        earlier one for the types both match.
        """
        if not isinstance(transformer, TypeTransformer):
            raise TypeError(
                f"{transformer!r} is not a TypeTransformer: subclass "
                "taskfabric.types.TypeTransformer"
            )
        name = getattr(transformer, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{type(transformer).__qualname__} has no `name`: set a unique name")
        with self._lock:
            same_name = [r for r in self._registrations if r.transformer.name == name]
            if not override:
                for registration in self._registrations:
                    clash = _clash(registration.transformer, transformer)
                    if clash is not None:
                        raise TransformerConflictError(
                            f"cannot register type transformer {_describe(transformer)}: "
                            f"{clash} is already handled by {_describe(registration.transformer)}; "
                            "pass override=True to replace it"
                        )
            for registration in same_name:
                self._registrations.remove(registration)
            priority = 0
            if override:
                self._top_priority += 1
                priority = self._top_priority
            self._order += 1
            self._registrations.append(_Registration(transformer, priority, self._order))
            self._clear_caches()

    def unregister(self, name: str) -> TypeTransformer[Any]:
        """Remove the transformer called `name` and return it (KeyError if none)."""
        with self._lock:
            for registration in self._registrations:
                if registration.transformer.name == name:
                    self._registrations.remove(registration)
                    self._clear_caches()
                    return registration.transformer
        raise KeyError(f"no type transformer named {name!r}")

    def _clear_caches(self) -> None:
        self._transformers = {}
        self._literal_types = TypeKeyedCache()
        self._guesses = {}
        self._plans = {}

    def plan_cache(self, transformer: TypeTransformer[Any]) -> TypeKeyedCache:
        """A per-type cache that `transformer` may use for what it precomputes per type
        (field lists, variant types); emptied whenever the registrations change."""
        cache = self._plans.get(transformer.name)
        if cache is None:
            cache = self._plans.setdefault(transformer.name, TypeKeyedCache())
        return cache

    def _ranked(self) -> list[_Registration]:
        return sorted(self._registrations, key=lambda r: (-r.priority, -r.order))

    # -- lookups --------------------------------------------------------------------------

    def set_fallback(self, loader: Callable[[TypeEngine], None] | None) -> None:
        """Call `loader(engine)` once, the first time a type has no transformer, then try again.

        The plugin system uses it to register plugins' transformers only when a type needs
        them, so that built-in types never pay for loading plugins.
        """
        self._fallback = loader

    def _load_fallback(self) -> bool:
        loader, self._fallback = self._fallback, None
        if loader is None:
            return False
        loader(self)
        return True

    def transformer_for(self, py_type: TypeHint) -> TypeTransformer[Any]:
        """The transformer for `py_type`; raises `UnsupportedTypeError` if there is none or
        the type cannot be carried (the whole type, nested parts included, is checked)."""
        try:
            return self._transformers[py_type]
        except (KeyError, TypeError):
            pass
        try:
            self._shared_literal_type(py_type)
        except UnsupportedTypeError:
            if self._load_fallback():
                return self.transformer_for(py_type)
            raise
        transformer = self._resolve(py_type)
        with contextlib.suppress(TypeError):  # unhashable Annotated metadata: not cached
            self._transformers[py_type] = transformer
        return transformer

    def _resolve(self, py_type: TypeHint) -> TypeTransformer[Any]:
        base = normalize(strip_annotated(py_type)[0])
        found: list[_Registration] = []
        for registration in self._registrations:
            try:
                matched = registration.transformer.matches(base)
            except Exception as error:
                raise TypeError(
                    f"type transformer {_describe(registration.transformer)} failed in "
                    f"matches({base!r}): {error}"
                ) from error
            if matched:
                found.append(registration)
        if not found:
            raise UnsupportedTypeError(py_type, explain_unsupported(base))
        top = max(r.priority for r in found)
        best = [r for r in found if r.priority == top]
        if len(best) > 1:
            names = " and ".join(_describe(r.transformer) for r in best)
            raise TransformerConflictError(
                f"type `{py_type_str(base)}` is claimed by type transformers {names}; register "
                "the one "
                "to use with override=True"
            )
        return best[0].transformer

    def literal_type(self, py_type: TypeHint) -> pb.LiteralType:
        """The literal type of `py_type` (a fresh copy; raises `UnsupportedTypeError`)."""
        try:
            shared = self._shared_literal_type(py_type)
        except UnsupportedTypeError:
            if self._load_fallback():
                return self.literal_type(py_type)
            raise
        copy = pb.LiteralType()
        copy.CopyFrom(shared)
        return copy

    def _shared_literal_type(self, py_type: TypeHint) -> pb.LiteralType:
        cached: pb.LiteralType | None = self._literal_types.get(py_type)
        if cached is not None:
            return cached
        py_type = normalize(py_type)
        with self._lock:
            again: pb.LiteralType | None = self._literal_types.get(py_type)
            if again is not None:
                return again
            transformer = self._resolve(py_type)
            key = structural_key(py_type)
            try:
                hash(key)
            except TypeError:  # unhashable Annotated metadata
                key = id(py_type)
            if key in self._building:
                raise UnsupportedTypeError(
                    py_type,
                    "recursive types are not supported: break the cycle, e.g. store children "
                    "in a separate list of records that refer to each other by id",
                )
            self._building.add(key)
            try:
                lt: pb.LiteralType = transformer.get_literal_type(py_type, self)
            finally:
                self._building.discard(key)
            self._literal_types.put(py_type, lt)
            with contextlib.suppress(TypeError):  # unhashable: not cached
                self._transformers[py_type] = transformer
            return lt

    def nested_literal_type(
        self, outer: TypeHint, inner: TypeHint, *, field: str | None = None
    ) -> pb.LiteralType:
        """`literal_type(inner)` for a transformer building `outer`'s literal type: an error
        names the offending inner type (and `field`) from `outer`'s point of view."""
        try:
            return self._shared_literal_type(inner)
        except UnsupportedTypeError as error:
            raise error.inside(outer, field=field) from None

    # -- conversions ----------------------------------------------------------------------

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None = None
    ) -> pb.Literal:
        """`value` as a literal of `py_type`.

        Raises `LiteralConversionError` if the value does not fit (its `path` locates the
        part that does not) and `UnsupportedTypeError` if the type cannot be carried.
        """
        try:
            transformer = self._transformers[py_type]
        except (KeyError, TypeError):
            transformer = self.transformer_for(py_type)
        return transformer.to_literal(value, py_type, ctx, self)

    def to_python(
        self, literal: pb.Literal, py_type: TypeHint, ctx: TransformContext | None = None
    ) -> Any:
        """The Python value of `literal` as `py_type` (`LiteralConversionError` if it does
        not fit). Blob values are lazy: nothing is downloaded until used."""
        try:
            transformer = self._transformers[py_type]
        except (KeyError, TypeError):
            transformer = self.transformer_for(py_type)
        return transformer.to_python(literal, py_type, ctx, self)

    def guess_python_type(self, literal_type: pb.LiteralType) -> Any:
        """A Python type that reads literals of `literal_type` when the code that declared it
        is not available: records become dataclasses built on the fly (the same class each
        time for the same record type), enums become `enum.Enum`s of the member names.

        Raises `ValueError` if no transformer knows the literal type.
        """
        key = literal_type.SerializeToString(deterministic=True)
        cached = self._guesses.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._guesses.get(key)
            if cached is not None:
                return cached
            for registration in self._ranked():
                guess = registration.transformer.guess_python_type(literal_type, self)
                if guess is not None:
                    self._guesses[key] = guess
                    return guess
        raise ValueError(f"no Python type known for literal type {type_str(literal_type)}")


def _clash(existing: TypeTransformer[Any], new: TypeTransformer[Any]) -> str | None:
    if existing.name == new.name:
        return f"the name {new.name!r}"
    for py_type in new.python_types:
        if existing.matches(py_type):
            return f"type `{py_type_str(py_type)}`"
    for py_type in existing.python_types:
        if new.matches(py_type):
            return f"type `{py_type_str(py_type)}`"
    return None


def _describe(transformer: TypeTransformer[Any]) -> str:
    cls = type(transformer)
    return f"{transformer.name!r} ({cls.__module__}.{cls.__qualname__})"


_default_engine: TypeEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> TypeEngine:
    """The process-wide engine with the built-in transformers, built on first use; installed
    plugins' transformers are registered the first time a type is not built in."""
    global _default_engine  # noqa: PLW0603 - built lazily, once
    engine = _default_engine
    if engine is None:
        with _default_lock:
            engine = _default_engine
            if engine is None:
                engine = _default_engine = TypeEngine.with_builtins()
                engine.set_fallback(_upcalls.type_fallback)
    return engine


def set_default_fallback(loader: Callable[[TypeEngine], None]) -> None:
    """Make `loader` the process-wide engine's fallback (see `TypeEngine.set_fallback`).

    The plugin system sits above the types, so the types cannot call it: the package face
    (`taskfabric/__init__.py`, which runs before any of its modules) sets its loader in
    `taskfabric._upcalls`; this sets it there too (tests, embedding applications).
    """
    with _default_lock:
        _upcalls.type_fallback = loader
        if _default_engine is not None:
            _default_engine.set_fallback(loader)
