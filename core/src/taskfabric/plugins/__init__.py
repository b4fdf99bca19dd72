"""The plugin system: which backends, stores, task types and hooks are installed."""

from taskfabric.plugins._registry import (
    BUILTIN_DRIVERS,
    DEFAULT_PLUGINS,
    KNOWN_PROVIDERS,
    PluginError,
    PluginInfo,
    Plugins,
    get_plugins,
    use_plugins,
)
from taskfabric.plugins._stores import open_blob_store

__all__ = [
    "BUILTIN_DRIVERS",
    "DEFAULT_PLUGINS",
    "KNOWN_PROVIDERS",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "get_plugins",
    "open_blob_store",
    "use_plugins",
]
