"""Blob stores: where inputs, outputs, files and dataframes live."""

from taskfabric.storage._base import BlobNotFoundError, BlobStore
from taskfabric.storage._local import LocalBlobStore

__all__ = ["BlobNotFoundError", "BlobStore", "LocalBlobStore"]
