"""What a pod sees of the engine's machine in `host-path` mode: only its own attempt.

With a local (`file://`) blob store, the pod gets, at the same paths as on the engine's
machine so every URI stays valid: its attempt folder (read-write: the task template and
inputs the backend wrote, where `taskfabric-execute` writes the outputs or error document),
its attempt's raw-data folder (read-write), each file or folder its inputs name (read-only),
the Unix sockets of `attempt.env` (the engine's pool channel) and, with `code = "host-path"`,
the task's code folder (read-only). Never the data root itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata as md
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import message

from taskfabric.core.v1 import tasks_pb2
from taskfabric.storage import BlobStore
from taskfabric_kubernetes._pods import HostMount


def blob_uris(msg: message.Message) -> Iterator[str]:
    """The `uri` of every file, folder and dataframe value inside a literal (map)."""
    for field, value in msg.ListFields():
        if field.type == field.TYPE_MESSAGE:
            if isinstance(value, message.Message):
                items: list[Any] = [value]
            elif hasattr(value, "values") and callable(value.values):  # a map field
                items = list(value.values())
            else:  # a repeated field
                items = list(value)
            for item in items:
                if isinstance(item, message.Message):
                    yield from blob_uris(item)
        elif field.name == "uri" and isinstance(value, str) and value:
            yield value


def input_mounts(store: BlobStore, uris: Iterable[str]) -> list[HostMount]:
    """Read-only mounts of the local files and folders that `uris` name."""
    paths: set[Path] = set()
    for uri in uris:
        try:
            path = store.local_path(uri.split("#", 1)[0])
        except ValueError:  # another scheme than the store's
            continue
        if path is not None and path.exists():
            paths.add(path)
    # A path inside another mounted folder needs no mount of its own.
    kept = sorted(p for p in paths if not any(q in p.parents for q in paths))
    return [HostMount(str(p), str(p), read_only=True) for p in kept]


def socket_mounts(values: Iterable[str]) -> list[HostMount]:
    """Read-write mounts of the Unix sockets that `values` name (absolute paths)."""
    found: list[HostMount] = []
    for value in values:
        if not value.startswith("/"):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(value).st_mode):
                found.append(HostMount(value, value, read_only=False))
    return found


@functools.cache
def _installed_top_levels() -> frozenset[str]:
    names = set(md.packages_distributions())
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            names.add(re.sub(r"[-.]+", "_", name).lower())
    return frozenset(names)


def code_root(function: tasks_pb2.PythonFunction) -> Path | None:
    """The folder the task's module is imported from, or None when the module belongs to an
    installed distribution (the image must install it too) or has no file."""
    if not function.source_file or not function.module:
        return None
    if function.module.split(".", 1)[0] in _installed_top_levels():
        return None
    source = Path(function.source_file).resolve()
    depth = function.module.count(".")
    if source.name == "__init__.py":
        depth += 1
    if depth >= len(source.parents):
        return None
    return source.parents[depth]


__all__ = ["blob_uris", "code_root", "input_mounts", "socket_mounts"]
