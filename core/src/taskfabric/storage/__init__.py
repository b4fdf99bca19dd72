"""Blob stores: where inputs, outputs, files and dataframes live."""

from taskfabric.storage._base import BlobNotFoundError, BlobStore
from taskfabric.storage._local import LocalBlobStore
from taskfabric.storage._pack import CorruptRecordError, PackStore, ReadAhead

__all__ = [
    "BlobNotFoundError",
    "BlobStore",
    "CorruptRecordError",
    "LocalBlobStore",
    "PackStore",
    "ReadAhead",
]
