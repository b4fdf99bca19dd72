"""The type engine: Python type hints to `LiteralType`s, Python values to `Literal`s and back.

    from taskfabric.types import default_engine

    engine = default_engine()
    lt = engine.literal_type(list[int])            # LiteralType(list_type=int)
    lit = engine.to_literal([1, 2], list[int], ctx)
    engine.to_python(lit, list[int], ctx)          # [1, 2]

Supported types: int, float (int values accepted), str, bool (not int), bytes, datetime
(timezone-aware; read back in UTC), timedelta, None; list[T], dict[str, T]; `A | B` and
`Optional[A]`; `enum.Enum` subclasses (stored by member name); `@dataclass` classes and
pydantic models (records); `File`, `Directory` and `pathlib.Path` (blobs, with an optional
`Annotated[File, Format("csv")]` / `File["csv"]` format); pandas DataFrames (parquet, with
optional `Annotated[pd.DataFrame, Columns(a=int)]`). `Annotated[T, ...]` with other
metadata is the same as T. Plugins add types by registering a `TypeTransformer`.
"""

from taskfabric.types._blobs import Directory, File, Format
from taskfabric.types._castable import is_castable
from taskfabric.types._cli import parse_cli_value
from taskfabric.types._context import TransformContext
from taskfabric.types._dataframes import Columns
from taskfabric.types._display import literal_to_display, literal_to_json
from taskfabric.types._engine import TypeEngine, default_engine
from taskfabric.types._errors import (
    LiteralConversionError,
    TransformerConflictError,
    UnsupportedTypeError,
)
from taskfabric.types._hashing import canonical_bytes, literal_hash, literal_map_hash
from taskfabric.types._literal_types import type_str
from taskfabric.types._pytypes import py_type_str, strip_annotated
from taskfabric.types._transformer import TypeTransformer

__all__ = [
    "Columns",
    "Directory",
    "File",
    "Format",
    "LiteralConversionError",
    "TransformContext",
    "TransformerConflictError",
    "TypeEngine",
    "TypeTransformer",
    "UnsupportedTypeError",
    "canonical_bytes",
    "default_engine",
    "is_castable",
    "literal_hash",
    "literal_map_hash",
    "literal_to_display",
    "literal_to_json",
    "parse_cli_value",
    "py_type_str",
    "strip_annotated",
    "type_str",
]
