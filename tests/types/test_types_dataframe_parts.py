"""A dataframe literal may point at a folder of parquet part files (as Spark writes them):
the core's pandas type reads it whole, from a local store and from one without local paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.storage import LocalBlobStore
from taskfabric.types import Columns, TransformContext, TypeEngine


class _NoLocalPaths(LocalBlobStore):
    """A store like a remote one: it never gives local paths, so data is downloaded."""

    def local_path(self, uri: str) -> Path | None:
        return None


def _parts(folder: Path) -> None:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"region": ["north"], "units": [3]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"region": ["south"], "units": [5]}), folder / "part-1.parquet")


def _read(store: LocalBlobStore, tmp_path: Path) -> pd.DataFrame:
    local = tmp_path / "frame" / "data.parquet"
    _parts(local)
    uri = store.uri("raw", "x", "data.parquet")
    store.put_dir(local, uri)
    literal = pb.Literal(dataframe=pb.DataFrameValue(uri=uri, content_hash="sha256:ab"))
    ctx = TransformContext(store, store.uri("raw", "y"), tmp_path / "work")
    py_type = Annotated[pd.DataFrame, Columns(units=int)]
    frame: pd.DataFrame = TypeEngine.with_builtins().to_python(literal, py_type, ctx)
    return frame


def test_a_folder_of_parts_is_read_whole_from_a_local_store(tmp_path: Path) -> None:
    frame = _read(LocalBlobStore(tmp_path / "store"), tmp_path)
    assert sorted(frame["units"]) == [3, 5]
    assert list(frame.columns) == ["units"]  # only the declared columns


def test_a_folder_of_parts_is_downloaded_from_a_store_without_local_paths(
    tmp_path: Path,
) -> None:
    frame = _read(_NoLocalPaths(tmp_path / "store"), tmp_path)
    assert sorted(frame["units"]) == [3, 5]
