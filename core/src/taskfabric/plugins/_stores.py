"""The engine's blob store, built from the config by the driver of its URI's scheme."""

from __future__ import annotations

from urllib.parse import urlparse

from taskfabric.config import Config
from taskfabric.plugin_api import STORAGE_GROUP
from taskfabric.plugins._registry import PluginError, Plugins, get_plugins
from taskfabric.storage import BlobStore


def open_blob_store(config: Config, plugins: Plugins | None = None) -> BlobStore:
    """The blob store at `config.blob_root`: `[storage] blob_root` (or a URI `data_root`), else
    the local folder `<data_root>/blobs`. The driver is the `taskfabric.storage` entry point
    named by the URI's scheme (`file` is the core's own); it gets `[storage] options` and
    `durable`. Raises PluginError when no driver serves the scheme or it refuses the options."""
    root = config.blob_root
    scheme = urlparse(root).scheme
    plugins = plugins or get_plugins()
    cls = plugins.driver(STORAGE_GROUP, scheme)
    options = {**config.storage.options, "durable": config.storage.durable}
    try:
        store = cls.from_root(root, options)
    except ValueError as exc:
        where = f" ({config.source})" if config.source is not None else ""
        raise PluginError(f"[storage]{where}: the '{scheme}' blob store: {exc}") from exc
    if not isinstance(store, BlobStore):
        raise PluginError(
            f"the '{scheme}' blob store driver {cls.__qualname__} built a "
            f"{type(store).__name__}, not a taskfabric.storage.BlobStore"
        )
    return store


__all__ = ["open_blob_store"]
