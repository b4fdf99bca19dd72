"""The type engine: Python type hints to `LiteralType`s, Python values to `Literal`s and back.

    from taskfabric.types import TransformContext, default_engine

    engine = default_engine()
    lt = engine.literal_type(list[int])            # LiteralType(list_type=int)
    lit = engine.to_literal([1, 2], list[int])     # ctx only needed for files/dataframes
    engine.to_python(lit, list[int])               # [1, 2]

Supported types and their rules:

- int (64-bit), float (int values accepted and converted), str, bool (bool is not int and
  int is not bool), bytes, datetime (timezone-aware only; read back in UTC, equal as
  instants; microsecond precision), timedelta (+-10,000 years), None.
  NaN round-trips as NaN (compare with math.isnan); -0.0 keeps its sign, inf is fine.
- list[T] (the value must be a list) and dict[str, T] (keys come back sorted).
- `A | B`, `Optional[A]`: the variant whose class is exactly the value's class wins,
  else the first variant in declaration order that accepts the value. Variants that
  would be stored identically (e.g. `File | Path`) are rejected.
- `enum.Enum` subclasses, stored by member name.
- `@dataclass` classes and pydantic v2 models: records, nested at will; fields missing
  from a stored record take their defaults. Recursive types are rejected.
- `File`, `Directory` and `pathlib.Path` (blobs): see `File`. A format is declared with
  `Annotated[File, Format("csv")]` (mypy-clean) or the shorthand `File["csv"]`.
- pandas DataFrames (parquet), optionally `Annotated[pd.DataFrame, Columns(a=int)]`.
- `Annotated[T, ...]` with any other metadata is the same as T.

Anything else raises `UnsupportedTypeError` saying what to use instead; a value that does
not fit raises `LiteralConversionError` with the path inside the value. Plugins add types
by registering a `TypeTransformer` with `TypeEngine.register`.
"""

from taskfabric.types._blobs import Directory, File, Format
from taskfabric.types._castable import is_castable
from taskfabric.types._cli import parse_cli_value
from taskfabric.types._context import TransformContext
from taskfabric.types._dataframes import Columns, dataframe_literal_type
from taskfabric.types._display import literal_to_display, literal_to_json
from taskfabric.types._engine import TypeEngine, default_engine, set_default_fallback
from taskfabric.types._errors import (
    LiteralConversionError,
    TransformerConflictError,
    UnsupportedTypeError,
)
from taskfabric.types._hashing import canonical_bytes, literal_hash, literal_map_hash
from taskfabric.types._literal_types import type_str
from taskfabric.types._pytypes import find_metadata, py_type_str, strip_annotated
from taskfabric.types._transformer import TypeTransformer
from taskfabric.types._uris import blob_uris

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
    "blob_uris",
    "canonical_bytes",
    "dataframe_literal_type",
    "default_engine",
    "find_metadata",
    "is_castable",
    "literal_hash",
    "literal_map_hash",
    "literal_to_display",
    "literal_to_json",
    "parse_cli_value",
    "py_type_str",
    "set_default_fallback",
    "strip_annotated",
    "type_str",
]
