"""The built-in transformers, in one explicit list."""

from __future__ import annotations

from typing import Any

from taskfabric.types._blob_transformers import (
    DirectoryTransformer,
    FileTransformer,
    PathTransformer,
)
from taskfabric.types._containers import DictTransformer, ListTransformer
from taskfabric.types._dataframes import PandasDataFrameTransformer
from taskfabric.types._enums import EnumTransformer
from taskfabric.types._records import DataclassTransformer, PydanticTransformer
from taskfabric.types._simple import simple_transformers
from taskfabric.types._transformer import TypeTransformer
from taskfabric.types._unions import UnionTransformer


def builtin_transformers() -> list[TypeTransformer[Any]]:
    return [
        *simple_transformers(),
        ListTransformer(),
        DictTransformer(),
        UnionTransformer(),
        EnumTransformer(),
        DataclassTransformer(),
        PydanticTransformer(),
        FileTransformer(),
        DirectoryTransformer(),
        PathTransformer(),
        PandasDataFrameTransformer(),
    ]
