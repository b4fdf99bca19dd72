# docs/examples/castability.py
import enum
from dataclasses import dataclass
from typing import Annotated

import pandas as pd
from pydantic import BaseModel

from taskfabric import task, workflow
from taskfabric.types import Columns


@dataclass
class Point:
    x: float
    y: float


class PointModel(BaseModel):  # another class with the same fields: the same record type
    x: float
    y: float


@dataclass
class Point3D:
    x: float
    y: float
    z: float


class Small(enum.Enum):
    A = 1
    B = 2


class Big(enum.Enum):
    A = "a"
    B = "b"
    C = "c"


Prices = Annotated[pd.DataFrame, Columns(sku=str, price=float)]
PricesOnly = Annotated[pd.DataFrame, Columns(price=float)]


@task
def origin() -> Point:
    return Point(0.0, 0.0)


@task
def count() -> int:
    return 3


@task
def describe(p: PointModel, limit: int | None, grade: Big) -> str:
    return f"{type(p).__name__}({p.x}, {p.y}), limit={limit}, grade={grade.name}"


@task
def grade() -> Small:
    return Small.B


@workflow
def fits() -> str:
    return describe(p=origin(), limit=count(), grade=grade())
