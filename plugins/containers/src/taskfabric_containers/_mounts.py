"""What an attempt's container sees of this machine: only its own attempt.

With a blob store on local files (`file://`), the container gets, at the same paths as on
the host so every URI stays valid:

- its attempt folder (read-write): the task template and inputs the backend wrote for it,
  where `taskfabric-execute` writes the outputs or error document;
- its attempt's raw-data folder (read-write): the files, folders and dataframes it outputs;
- each file, folder or dataframe its inputs name (read-only);
- a snapshot of the `.py` files of the task's code folder (read-only), unless the image holds
  the code.

Never the data root itself: it holds the metadata database and every other execution's data.
The engine's config file, tokens and environment are never passed. With an object store the
container gets no mounts; it reaches the store with the credentials the settings pass on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata as md
import os
import re
import shutil
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import message

from taskfabric.core.v1 import tasks_pb2
from taskfabric.storage import BlobStore

#: Folder names never copied into a code snapshot (hidden folders and virtualenvs neither).
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
#: A code folder with more Python files than this is not copied: put the code in the image.
MAX_CODE_FILES = 5000


class CodeError(ValueError):
    """The task's code cannot be given to its container."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool

    def docker(self) -> dict[str, str]:
        return {"bind": self.target, "mode": "ro" if self.read_only else "rw"}


def blob_uris(msg: message.Message) -> Iterator[str]:
    """The `uri` of every file, folder and dataframe value inside a literal (map)."""
    for field, value in msg.ListFields():
        if field.type == field.TYPE_MESSAGE:
            if isinstance(value, message.Message):
                items = [value]
            elif hasattr(value, "values") and callable(value.values):  # a map field
                items = list(value.values())
            else:  # a repeated field
                items = list(value)
            for item in items:
                if isinstance(item, message.Message):
                    yield from blob_uris(item)
        elif field.name == "uri" and isinstance(value, str) and value:
            yield value


def input_mounts(store: BlobStore, uris: Iterator[str]) -> list[Mount]:
    """Read-only mounts of the local files and folders that `uris` name."""
    mounts: dict[Path, Mount] = {}
    for uri in uris:
        try:
            path = store.local_path(uri.split("#", 1)[0])
        except ValueError:  # another scheme than the store's: reached through the network
            continue
        if path is None or not path.exists():
            continue  # another scheme, reached through the network, or a missing blob
        mounts.setdefault(path, Mount(path, str(path), read_only=True))
    # A path inside another mounted folder needs no mount of its own.
    kept = [m for m in mounts.values() if not any(p in m.source.parents for p in mounts)]
    return sorted(kept, key=lambda m: str(m.source))


def socket_mounts(values: Iterable[str]) -> list[Mount]:
    """Read-write mounts of the Unix sockets that `values` name (absolute paths)."""
    found: list[Mount] = []
    for value in values:
        if not value.startswith("/"):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(value).st_mode):
                found.append(Mount(Path(value), value, read_only=False))
    return found


@functools.cache
def _installed_top_levels() -> frozenset[str]:
    """Top-level import names of installed distributions. An editable install made by a
    PEP 660 backend (hatchling) lists no packages of its own, only a `.pth` file, so its
    name is counted too, as an import name (`taskfabric-http` -> `taskfabric_http`)."""
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
    top = function.module.split(".", 1)[0]
    if top in _installed_top_levels():
        return None
    source = Path(function.source_file).resolve()
    depth = function.module.count(".")
    if source.name == "__init__.py":
        depth += 1
    if depth >= len(source.parents):
        return None
    return source.parents[depth]


class CodeSnapshots:
    """Read-only copies of code folders' `.py` files, one per folder and content."""

    def __init__(self, root: Path, skip: tuple[Path, ...]) -> None:
        self.root = root
        self.skip = tuple(p.resolve() for p in skip)
        self._lock = threading.Lock()

    def _files(self, folder: Path) -> list[Path]:
        files: list[Path] = []
        for current, dirs, names in os.walk(folder):
            here = Path(current)
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".")
                and d not in _SKIPPED_DIRS
                and not (here / d / "pyvenv.cfg").exists()
                and (here / d).resolve() not in self.skip
            )
            files.extend(here / n for n in sorted(names) if n.endswith(".py"))
            if len(files) > MAX_CODE_FILES:
                raise CodeError(
                    f"the task's code folder {folder} holds more than {MAX_CODE_FILES} Python "
                    "files: run the task from a smaller folder, or build an image with the "
                    'code in it and set code = "image" in the backend\'s settings'
                )
        return files

    def snapshot(self, folder: Path) -> Path:
        """A folder holding a copy of `folder`'s `.py` files (the same tree), made once per
        content: a changed file gives a new snapshot."""
        files = self._files(folder)
        digest = hashlib.sha256(str(folder).encode())
        for path in files:
            stat = path.stat()
            digest.update(
                f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
        target = self.root / digest.hexdigest()[:32]
        with self._lock:
            if target.is_dir():
                return target
            partial = target.with_name(target.name + f".partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            for path in files:
                dest = partial / path.relative_to(folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            partial.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        return target


def engine_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


__all__ = [
    "MAX_CODE_FILES",
    "CodeError",
    "CodeSnapshots",
    "Mount",
    "blob_uris",
    "code_root",
    "engine_python_version",
    "input_mounts",
    "socket_mounts",
]
