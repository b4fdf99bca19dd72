# docs/examples/custom_type.py
from decimal import Decimal
from typing import Any

from taskfabric import task, workflow
from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import (
    LiteralConversionError,
    TransformContext,
    TypeEngine,
    TypeTransformer,
    default_engine,
)


class DecimalTransformer(TypeTransformer[Decimal]):
    """decimal.Decimal, carried exactly as its string form."""

    name = "decimal.Decimal"
    python_types = (Decimal,)

    def get_literal_type(self, py_type: Any, engine: TypeEngine) -> pb.LiteralType:
        return pb.LiteralType(simple=pb.SIMPLE_TYPE_STRING)

    def to_literal(
        self, value: Any, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, Decimal):
            raise LiteralConversionError("Decimal", f"{type(value).__name__} {value!r}")
        return pb.Literal(string=str(value))

    def to_python(
        self, literal: pb.Literal, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> Decimal:
        if literal.WhichOneof("value") != "string":
            result: Decimal = self.mismatch(literal, py_type, ctx, engine)
            return result
        return Decimal(literal.string)


default_engine().register(DecimalTransformer())


@task
def add_vat(net: Decimal, rate: Decimal = Decimal("0.19")) -> Decimal:
    return (net * (1 + rate)).quantize(Decimal("0.01"))


@workflow
def invoice(net: Decimal) -> Decimal:
    return add_vat(net=net)
