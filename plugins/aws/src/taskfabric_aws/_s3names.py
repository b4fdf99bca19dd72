"""What the S3 store and the store of an attempt's grants (`_granted.py`) share: the grants'
environment variable, the store's error, and the `s3://` URI's parts. A module of its own,
so that `_granted` does not import `_s3`, which makes a `GrantedStore` in `from_uri`."""

from __future__ import annotations

from urllib.parse import unquote

from taskfabric.errors import TaskfabricError

__all__ = ["GRANTS_ENV", "S3StoreError", "split_uri"]

#: The environment variable of an attempt that runs apart with no credentials: the presigned
#: GET URL of its grants (see _grants.py), from which `from_uri` makes its store.
GRANTS_ENV = "TASKFABRIC_S3_GRANTS"


class S3StoreError(TaskfabricError):
    """S3 refused or failed an operation in a way the caller cannot retry away."""


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key's `%XX` escapes decoded."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: write s3://bucket/prefix")
    return bucket, unquote(key)


def _quote_key(key: str) -> str:
    """A key as it goes into a URI: `%`, `#` and `?` escaped (the engine reads `#` in a URI as
    the offset of a packed record), everything else as it is."""
    return key.replace("%", "%25").replace("#", "%23").replace("?", "%3F")
