"""pandas DataFrames as parquet blobs, with optional declared columns."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from taskfabric.storage import LocalBlobStore
from taskfabric.types import (
    Columns,
    Format,
    LiteralConversionError,
    TransformContext,
    TypeEngine,
    UnsupportedTypeError,
    literal_hash,
    type_str,
)

Sales = Annotated[pd.DataFrame, Columns(region=str, units=int, price=float)]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["north", "south"],
            "units": [3, 4],
            "price": [1.5, 2.0],
            "note": ["x", "y"],
        }
    )


def test_literal_types(engine: TypeEngine) -> None:
    assert type_str(engine.literal_type(pd.DataFrame)) == "DataFrame[parquet]"
    assert (
        type_str(engine.literal_type(Sales))
        == "DataFrame[parquet]{region: str, units: int, price: float}"
    )


def test_round_trip_keeps_data_and_dtypes(engine: TypeEngine, ctx: TransformContext) -> None:
    value = frame()
    literal = engine.to_literal(value, pd.DataFrame, ctx)
    assert literal.dataframe.uri.startswith(ctx.raw_prefix)
    assert literal.dataframe.content_hash.startswith("sha256:")
    assert literal.dataframe.type.format == "parquet"
    back = engine.to_python(literal, pd.DataFrame, ctx)
    pd.testing.assert_frame_equal(back, value)
    assert list(ctx.work_dir.iterdir()) == []  # the temporary parquet file is gone


def test_declared_columns_are_checked_and_selected(
    engine: TypeEngine, ctx: TransformContext
) -> None:
    literal = engine.to_literal(frame(), Sales, ctx)
    assert [c.name for c in literal.dataframe.type.columns] == ["region", "units", "price"]
    back = engine.to_python(literal, Sales, ctx)
    assert list(back.columns) == ["region", "units", "price"]
    full = engine.to_python(literal, pd.DataFrame, ctx)
    assert "note" in full.columns


def test_missing_declared_column_is_an_error(engine: TypeEngine, ctx: TransformContext) -> None:
    with pytest.raises(LiteralConversionError) as info:
        engine.to_literal(frame().drop(columns=["units"]), Sales, ctx)
    assert info.value.path == "['units']"
    assert "no such column" in str(info.value) and "'region'" in str(info.value)


def test_wrong_dtype_is_an_error(engine: TypeEngine, ctx: TransformContext) -> None:
    bad = frame().assign(units=["3", "4"])
    with pytest.raises(LiteralConversionError) as info:
        engine.to_literal(bad, Sales, ctx)
    assert info.value.path == "['units']"
    assert "expected a column of int" in str(info.value)
    with pytest.raises(LiteralConversionError, match="float"):
        engine.to_literal(frame().assign(price=[1, 2]), Sales, ctx)  # int is not float


def test_datetime_and_bool_columns(engine: TypeEngine, ctx: TransformContext) -> None:
    py_type = Annotated[pd.DataFrame, Columns(at=datetime, ok=bool)]
    value = pd.DataFrame({"at": [datetime(2024, 1, 1, tzinfo=UTC)], "ok": [True]})
    back = engine.to_python(engine.to_literal(value, py_type, ctx), py_type, ctx)
    pd.testing.assert_frame_equal(back, value)


def test_unsupported_declarations(engine: TypeEngine) -> None:
    with pytest.raises(UnsupportedTypeError, match="column 'xs'"):
        engine.literal_type(Annotated[pd.DataFrame, Columns(xs=list[int])])
    with pytest.raises(UnsupportedTypeError, match="parquet"):
        engine.literal_type(Annotated[pd.DataFrame, Format("csv")])


def test_not_a_dataframe(engine: TypeEngine, ctx: TransformContext) -> None:
    with pytest.raises(LiteralConversionError, match="dict"):
        engine.to_literal({"a": [1]}, pd.DataFrame, ctx)


def test_same_frame_hashes_equal_across_uploads(tmp_path: Path) -> None:
    engine = TypeEngine.with_builtins()
    store = LocalBlobStore(tmp_path / "store")
    ctx_a = TransformContext(store, store.uri("raw", "a"), tmp_path / "wa")
    ctx_b = TransformContext(store, store.uri("raw", "b"), tmp_path / "wb")
    one = engine.to_literal(frame(), pd.DataFrame, ctx_a)
    two = engine.to_literal(frame(), pd.DataFrame, ctx_b)
    other = engine.to_literal(frame().assign(units=[3, 5]), pd.DataFrame, ctx_b)
    assert one.dataframe.uri != two.dataframe.uri
    assert literal_hash(one) == literal_hash(two)
    assert literal_hash(one) != literal_hash(other)


@settings(max_examples=15, deadline=None)
@given(
    data_frames(
        columns=[
            column("i", dtype="int64"),
            column("f", elements=st.floats(allow_nan=False), dtype="float64"),
            column("s", elements=st.text(max_size=5), dtype=object),
            column("b", dtype=bool),
        ],
        index=range_indexes(max_size=8),
    )
)
def test_round_trip_property(value: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = LocalBlobStore(root / "store")
        ctx = TransformContext(store, store.uri("raw"), root / "work")
        engine = TypeEngine.with_builtins()
        py_type = Annotated[pd.DataFrame, Columns(i=int, f=float, s=str, b=bool)]
        back = engine.to_python(engine.to_literal(value, py_type, ctx), py_type, ctx)
        pd.testing.assert_frame_equal(back, value, check_dtype=False, check_index_type=False)
        assert list(back.dtypes.astype(str)[["i", "f", "b"]]) == ["int64", "float64", "bool"]
