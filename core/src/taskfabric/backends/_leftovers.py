"""What an attempt that ran apart (in a sandbox, a container, a pod) leaves on this machine,
checked before anyone reads it: a task that ran apart must not be able to point the engine,
the server or a later task at a path it was not given.

- `read_regular`: an outputs or error document is read only when it is a regular file, never
  through a link (a task could leave `outputs.pb -> /etc/taskfabric/taskfabric.toml`);
- `check_output_folder`: the attempt's raw-data folder holds only regular files and folders
  (a link or a device there would be followed by whoever reads the outputs later);
- `check_outputs`: every file, folder or dataframe the outputs name is one of the attempt's
  inputs or lies in its own raw-data folder (not another execution's, another project's).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote

from taskfabric.core.v1 import types_pb2
from taskfabric.plugin_api import AttemptError, TaskAttempt
from taskfabric.types import blob_uris

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "REFUSED",
    "check_output_folder",
    "check_outputs",
    "outputs_too_large_message",
    "oversized_outputs",
    "read_regular",
]

#: The most bytes of an outputs or error document read back from an attempt's folder.
MAX_DOCUMENT_BYTES = 1 << 30
#: The error code of an attempt whose leftovers were refused.
REFUSED = "SandboxRefused"


def outputs_too_large_message(task: str, size: int, limit: int) -> str:
    """Why an attempt's outputs of `size` bytes are refused (`[engine] max_output_bytes`)."""
    return (
        f"task '{task}' returned outputs of {size} bytes, more than the {limit} bytes an "
        "attempt's outputs may be ([engine] max_output_bytes): return large data as a "
        "File, Directory or DataFrame, which travel as blobs, or raise the setting"
    )


def oversized_outputs(attempt: TaskAttempt, path: Path, limit: int) -> AttemptError | None:
    """`OutputsTooLarge` when the outputs document the task left at `path` is over `limit`
    bytes (`BackendContext.max_output_bytes`), told by its size: a backend checks this before
    it reads the document, so a task's return value cannot exhaust the engine's memory."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size <= limit:
        return None
    message = outputs_too_large_message(attempt.task.id.name, info.st_size, limit)
    return AttemptError("OutputsTooLarge", message, kind="user", retryable=False)


def read_regular(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> bytes | None:
    """The bytes of `path` when it is a regular file (a link is not followed) of at most
    `limit` bytes, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        chunks = []
        read = 0
        while chunk := os.read(fd, 1 << 20):
            read += len(chunk)
            if read > limit:  # it grew since fstat
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_output_folder(raw: Path) -> AttemptError | None:
    """Refuse (and remove) a link or special file in the attempt's raw-data folder."""
    for folder, dirs, files in os.walk(raw):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "link" if stat.S_ISLNK(mode) else "special file"
                path.unlink()
                return AttemptError(
                    REFUSED,
                    f"the task left a {kind} in its output folder ({path.relative_to(raw)}): "
                    "a task that runs apart may output regular files and folders only",
                    kind="user",
                    retryable=False,
                )
    return None


def _inside(uri: str, own: str) -> bool:
    """`uri` names a path under the folder `own` (ending in `/`) whoever reads it: the file
    store reads a URI's path percent-decoded (`%2E%2E` is `..`, `%2F` a `/`), so the part after
    `own` may hold no `.` or `..` component, spelled plainly or encoded."""
    if not uri.startswith(own):
        return False
    rest = uri[len(own) :]
    return not any(
        part in (".", "..") for spelled in (rest, unquote(rest)) for part in spelled.split("/")
    )


def check_outputs(attempt: TaskAttempt, data: bytes) -> AttemptError | None:
    """Every blob the outputs document `data` names is the attempt's own (under its raw
    prefix) or one of its inputs."""
    outputs = types_pb2.LiteralMap()
    try:
        outputs.ParseFromString(data)
    except Exception:
        return AttemptError(REFUSED, "the task's outputs document is unreadable", kind="system")
    given = set(blob_uris(attempt.inputs))
    own = attempt.raw_prefix.rstrip("/") + "/"
    for uri in blob_uris(outputs):
        if uri in given or _inside(uri, own):
            continue
        return AttemptError(
            REFUSED,
            f"an output names {uri}, which is neither one of the attempt's inputs nor in "
            "its own output folder",
            kind="user",
            retryable=False,
        )
    return None
