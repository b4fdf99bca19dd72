"""Typed interfaces of Python functions: hints to `TypedInterface`."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.errors import TaskDefinitionError
from taskfabric.storage import BlobStore
from taskfabric.types import (
    TransformContext,
    TypeEngine,
    UnsupportedTypeError,
    default_engine,
)

NO_DEFAULT: Any = inspect.Parameter.empty


def describe_function(fn: Callable[..., Any]) -> tuple[str, int]:
    """The source file and first line of a function, for error messages."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("<unknown>", 0)
    return (code.co_filename, code.co_firstlineno)


def location_str(file: str, line: int) -> str:
    try:
        rel = Path(file).resolve().relative_to(Path.cwd())
        file = str(rel)
    except ValueError:
        pass
    return f"{file}:{line}" if line else file


@dataclass(frozen=True)
class Param:
    name: str
    py_type: Any
    literal_type: types_pb2.LiteralType
    default: Any = NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT


@dataclass(frozen=True)
class Output:
    name: str
    py_type: Any
    literal_type: types_pb2.LiteralType


@dataclass(frozen=True)
class PyInterface:
    """A function's inputs and outputs with their Python and literal types."""

    inputs: dict[str, Param]
    outputs: dict[str, Output]
    # "none" (returns None), "single" (one output `o0`), "tuple" (o0, o1, ...), "namedtuple"
    output_kind: str
    namedtuple_cls: Any = None
    proto: interface_pb2.TypedInterface = field(default_factory=interface_pb2.TypedInterface)
    #: Parameters the task type passes itself (name -> type hint), not inputs: see
    #: `TaskConfig.context_parameters`.
    context: dict[str, Any] = field(default_factory=dict)

    def pack_outputs(self, value: Any) -> dict[str, Any]:
        """Split a function's return value into its named outputs."""
        if self.output_kind == "none":
            return {}
        if self.output_kind == "single":
            return {"o0": value}
        names = list(self.outputs)
        if not isinstance(value, tuple) or len(value) != len(names):
            got = f"{type(value).__name__}" + (
                f" of length {len(value)}" if isinstance(value, tuple) else ""
            )
            raise TypeError(
                f"expected a tuple of {len(names)} values ({', '.join(names)}), got {got}"
            )
        return dict(zip(names, value, strict=True))

    def unpack_outputs(self, values: dict[str, Any]) -> Any:
        """The inverse of pack_outputs: what the Python function would have returned."""
        if self.output_kind == "none":
            return None
        if self.output_kind == "single":
            return values["o0"]
        ordered = [values[n] for n in self.outputs]
        if self.output_kind == "namedtuple":
            return self.namedtuple_cls(*ordered)
        return tuple(ordered)

    def signature_str(self) -> str:
        from taskfabric.types import type_str

        ins = ", ".join(
            f"{p.name}: {type_str(p.literal_type)}" + ("" if p.required else " = …")
            for p in self.inputs.values()
        )
        outs = ", ".join(f"{o.name}: {type_str(o.literal_type)}" for o in self.outputs.values())
        return f"({ins}) -> ({outs})"


class _NoBlobStore(BlobStore):
    """Stand-in store for converting default values, which cannot be files."""

    scheme = "none"

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise TypeError("default values cannot be files, directories or dataframes")

    uri = put_bytes = get_bytes = exists = put_file = get_file = delete = _refuse

    def list(self, prefix_uri: str) -> Iterator[str]:
        raise TypeError("default values cannot be files, directories or dataframes")


def default_context() -> TransformContext:
    """A context for converting values that never touch the blob store."""
    return TransformContext(store=_NoBlobStore(), raw_prefix="", work_dir=Path("."))


def _is_namedtuple(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def extract_interface(
    fn: Callable[..., Any],
    *,
    kind: str,
    engine: TypeEngine | None = None,
    context: Callable[[Mapping[str, Any]], Collection[str]] | None = None,
) -> PyInterface:
    """Read the typed interface of a task or workflow function.

    `context` picks, from the parameters' type hints, the parameters a task type passes
    itself (`TaskConfig.context_parameters`): they are left out of the inputs.

    Raises TaskDefinitionError naming the function, the parameter and the type when a
    hint is missing or unsupported.
    """
    engine = engine or default_engine()
    name = getattr(fn, "__qualname__", repr(fn))
    where = location_str(*describe_function(fn))

    def fail(what: str, message: str) -> TaskDefinitionError:
        return TaskDefinitionError(f"{where}: {kind} '{name}', {what}: {message}")

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward references, etc.
        raise fail("type hints", f"cannot be resolved ({exc})") from exc
    sig = inspect.signature(fn)
    given: dict[str, Any] = {}
    if context is not None:
        param_hints = {p: hints[p] for p in sig.parameters if p in hints}
        try:
            chosen = set(context(param_hints))
        except Exception as exc:
            raise fail("context parameters", str(exc)) from exc
        unknown = chosen - set(param_hints)
        if unknown:
            raise fail("context parameters", f"no annotated parameter named {sorted(unknown)}")
        given = {p: param_hints[p] for p in sig.parameters if p in chosen}
    inputs: dict[str, Param] = {}
    proto = interface_pb2.TypedInterface()
    ctx = default_context()
    for pname, p in sig.parameters.items():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise fail(
                f"parameter '{pname}'",
                "*args and **kwargs are not supported: declare each input with a type",
            )
        if pname in given:
            continue
        if pname not in hints:
            raise fail(
                f"parameter '{pname}'",
                f"has no type annotation: annotate it, e.g. `{pname}: int`",
            )
        py_type = hints[pname]
        try:
            lt = engine.literal_type(py_type)
        except UnsupportedTypeError as exc:
            raise fail(f"parameter '{pname}'", str(exc)) from exc
        param = Param(pname, py_type, lt, p.default)
        entry = proto.inputs.add(name=pname, type=lt)
        if not param.required:
            try:
                entry.default.CopyFrom(engine.to_literal(p.default, py_type, ctx))
            except Exception as exc:
                raise fail(
                    f"parameter '{pname}'", f"default value {p.default!r} does not fit: {exc}"
                ) from exc
        inputs[pname] = param

    outputs: dict[str, Output] = {}
    ret = hints.get("return", inspect.Signature.empty)
    if ret is inspect.Signature.empty:
        raise fail(
            "return type",
            "is not annotated: add `-> None` if it returns nothing, or the type it returns",
        )
    namedtuple_cls = None
    if ret is None or ret is type(None):
        output_kind = "none"
        items: list[tuple[str, Any]] = []
    elif _is_namedtuple(ret):
        output_kind = "namedtuple"
        namedtuple_cls = ret
        nt_hints = typing.get_type_hints(ret, include_extras=True)
        items = [(f, nt_hints.get(f)) for f in ret._fields]
    elif typing.get_origin(ret) is tuple:
        args = typing.get_args(ret)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            raise fail(
                "return type",
                f"{ret} has no fixed length: return a tuple[A, B] of fixed types, "
                "a NamedTuple, or a list[T]",
            )
        output_kind = "tuple"
        items = [(f"o{i}", a) for i, a in enumerate(args)]
    else:
        output_kind = "single"
        items = [("o0", ret)]
    for oname, otype in items:
        if otype is None:
            raise fail(f"output '{oname}'", "has no type annotation")
        try:
            lt = engine.literal_type(otype)
        except UnsupportedTypeError as exc:
            raise fail(f"output '{oname}'", str(exc)) from exc
        outputs[oname] = Output(oname, otype, lt)
        proto.outputs.add(name=oname, type=lt)
    return PyInterface(inputs, outputs, output_kind, namedtuple_cls, proto, context=given)
