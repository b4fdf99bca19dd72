"""The built-in `local` backend: Python tasks in a pool of worker threads."""

from __future__ import annotations

from taskfabric.backends._threads import ThreadBackend
from taskfabric.plugin_api import BackendSettings

__all__ = ["LocalBackend", "LocalSettings"]


class LocalSettings(BackendSettings):
    """`[backends.<name>]` of driver `local`."""

    #: Worker threads; default: the engine's parallelism.
    workers: int | None = None


class LocalBackend(ThreadBackend[LocalSettings]):
    """Runs each attempt in one of the engine process's daemon worker threads.

    A thread cannot be killed: cancelling or timing out an attempt that has started makes
    the engine stop waiting for it and discard its result, but the function runs on to its
    end. Use the `subprocess` backend for tasks that must be stopped hard or isolated.
    """

    driver = "local"
    settings_model = LocalSettings
