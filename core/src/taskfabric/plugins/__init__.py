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

__all__ = [
    "BUILTIN_DRIVERS",
    "DEFAULT_PLUGINS",
    "KNOWN_PROVIDERS",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "get_plugins",
    "use_plugins",
]
