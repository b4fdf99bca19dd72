"""Task caching: keys and the data catalog (see `_key` for what a key covers)."""

from taskfabric.catalog._catalog import CacheEntry, Catalog
from taskfabric.catalog._key import cache_key, inputs_hash, interface_hash

__all__ = [
    "CacheEntry",
    "Catalog",
    "cache_key",
    "inputs_hash",
    "interface_hash",
]
