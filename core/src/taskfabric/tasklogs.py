"""Task logs: what each attempt of a task wrote to stdout and stderr.

While an attempt runs, its output goes to a live file in its work folder
(``<work_root>/<execution>/<node>/<attempt>/output.log``: the process's own file for process
backends, a capture of the task thread's ``sys.stdout``/``sys.stderr`` for the in-process
``local`` backend). When it ends, the last `MAX_LOG_BYTES` of that file are kept in the blob
store at `log_uri` (with a first line saying how much was dropped), and the attempt's log
links name it ``log``. `taskfabric executions logs` and the server's
``GET /api/v1/executions/{ref}/logs/{node}`` read them with `read_log`: the live file while it
exists on this machine, else the stored copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import urlparse
from urllib.request import url2pathname

from taskfabric.errors import TaskfabricError
from taskfabric.logs import get_logger
from taskfabric.storage import BlobNotFoundError, BlobStore

log = get_logger("taskfabric.tasklogs")

#: The most of one attempt's log kept in the blob store: the tail, the end of a failing run
#: being what people read first.
MAX_LOG_BYTES = 1024 * 1024
#: The name of an attempt's live log file in its work folder.
LIVE_LOG_NAME = "output.log"
#: The name of the stored log among an attempt's log links.
LOG_LINK_NAME = "log"
#: The most `read_log` returns at once.
CHUNK_BYTES = 256 * 1024


def node_key(node_id: str) -> str:
    """`n1[3]` -> `n1/3`: a node id as a path."""
    return node_id.replace("[", "/").replace("]", "")


def log_uri(store: BlobStore, execution_id: str, node_id: str, attempt: int) -> str:
    """Where the log of one attempt is kept in the blob store."""
    return store.uri("executions", execution_id, "logs", node_key(node_id), f"{attempt}.log")


def live_log_path(work_root: Path, execution_id: str, node_id: str, attempt: int) -> Path:
    """The live log file of one attempt (written while it runs, on the engine's machine)."""
    return work_root / execution_id / node_key(node_id) / str(attempt) / LIVE_LOG_NAME


def bounded_tail(data: bytes, max_bytes: int = MAX_LOG_BYTES, *, dropped: int = 0) -> bytes:
    """`data` itself when it fits, else a line saying what was dropped and its last bytes."""
    dropped += max(0, len(data) - max_bytes)
    if not dropped:
        return data
    kept = data[-max_bytes:]
    note = f"[taskfabric: the first {dropped} bytes of this log were dropped; the last "
    note += f"{len(kept)} are kept]\n"
    return note.encode() + kept


def keep_log(
    store: BlobStore,
    execution_id: str,
    node_id: str,
    attempt: int,
    path: Path,
    max_bytes: int = MAX_LOG_BYTES,
) -> str | None:
    """Store the tail of the log file `path` as the attempt's log; returns its URI, or None
    when there is no file or it is empty. Never raises: a log is not worth failing a task."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return None
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
        uri = log_uri(store, execution_id, node_id, attempt)
        store.put_bytes(uri, bounded_tail(data, max_bytes, dropped=size - len(data)))
    except FileNotFoundError:
        return None
    except Exception as exc:
        log.warning("could not keep a task log", path=str(path), error=str(exc))
        return None
    return uri


# -- capturing the output of in-process tasks ------------------------------------------------

_current: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar(
    "taskfabric_task_output", default=None
)
_install_lock = threading.Lock()
#: Captures running now, in any thread (guarded by _install_lock): a one-item list.
_active = [0]


class _Capture:
    """One attempt's output: a live file opened at the first write."""

    __slots__ = ("_file", "_lock", "_name", "_where", "echo", "wrote")

    def __init__(self, path: Path, echo: TextIO | None, name: str | None = None) -> None:
        self._where = path
        self._name = name
        self.echo = echo
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        #: whether anything was written (the file exists): else there is no log to keep
        self.wrote = False

    @property
    def path(self) -> Path:
        """The live log file (joined only when asked: most tasks print nothing)."""
        return self._where if self._name is None else self._where / self._name

    def write(self, text: str) -> None:
        with self._lock:
            if self._file is None:
                path = self.path
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("a", encoding="utf-8", errors="replace")
                self.wrote = True
            self._file.write(text)
            self._file.flush()  # followers read the file as it grows
        if self.echo is not None:
            with contextlib.suppress(Exception):
                self.echo.write(text)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def end(self) -> None:
        """End a capture begun by `capture_in_context`: close the file, count it out."""
        try:
            self.close()
        finally:
            _leave()


class _Router(io.TextIOBase):
    """Stands in for `sys.stdout` or `sys.stderr`: a write made in the context of a captured
    attempt goes to its log, any other one to the stream this replaced."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        capture = _current.get()
        if capture is None:
            return self.stream.write(text)
        capture.write(text)
        return len(text)

    def flush(self) -> None:
        if _current.get() is None:
            self.stream.flush()

    def isatty(self) -> bool:
        return _current.get() is None and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _enter() -> None:
    """Count a capture in; put routers in front of `sys.stdout` and `sys.stderr` when it is
    the only one (again when something, a test runner say, replaced them since). While
    other captures run, a stream that is not a router was put there by one of their tasks
    (`contextlib.redirect_stdout` in a task): wrapping it would send that task's prints to
    its log instead of where it redirected them, so it is left alone until they end."""
    with _install_lock:
        if _active[0] == 0:
            if not isinstance(sys.stdout, _Router):
                sys.stdout = _Router(sys.stdout)
            if not isinstance(sys.stderr, _Router):
                sys.stderr = _Router(sys.stderr)
        _active[0] += 1


def _leave() -> None:
    with _install_lock:
        _active[0] -= 1


class capture_output:
    """Send what this thread (and the context it runs) writes to `sys.stdout`/`sys.stderr`
    to the live log `path` (created at the first write), and, with `echo`, to this process's
    stderr too, never to its stdout. Other threads are not affected; threads the task starts
    itself are not captured. Gives the capture (`with capture_output(path) as capture`):
    its `wrote` says whether the file was made (a task that printed nothing has no log to
    keep). With `name`, `path` is the folder the live log `name` goes in, joined at the
    first write (a task that prints nothing builds no path for it). A class, not a generator:
    the local backend captures each attempt."""

    __slots__ = ("_capture", "_echo", "_name", "_path", "_token")

    def __init__(self, path: Path, *, echo: bool = True, name: str | None = None) -> None:
        self._path = path
        self._echo = echo
        self._name = name

    def __enter__(self) -> _Capture:
        self._capture = _begin(self._path, self._echo, self._name)
        self._token = _current.set(self._capture)
        return self._capture

    def __exit__(self, *exc: object) -> None:
        try:
            _current.reset(self._token)
            self._capture.close()
        finally:
            _leave()


def capture_in_context(path: Path, *, echo: bool = True, name: str | None = None) -> _Capture:
    """`capture_output` for the rest of the current context, which the caller made for this
    (`contextvars.copy_context().run(...)`: the context ends with the attempt, so there is
    no token to reset); `capture.end()` ends it. What the `local` backend does per attempt:
    one call instead of a context manager's three."""
    capture = _begin(path, echo, name)
    _current.set(capture)
    return capture


def _begin(path: Path, echo: bool, name: str | None) -> _Capture:
    """A new capture, counted in (the routers installed on the first): what both ways of
    capturing begin with."""
    _enter()  # (before anything that may fail: the `except` below counts it out)
    try:
        stderr = sys.stderr
        echo_to = stderr.stream if isinstance(stderr, _Router) else stderr
        return _Capture(path, echo_to if echo else None, name)
    except BaseException:
        _leave()
        raise


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogChunk:
    """Bytes of an attempt's log from `offset` on (at most `CHUNK_BYTES`)."""

    data: bytes
    offset: int
    #: Where the next read starts.
    next_offset: int
    #: "live" (the file being written), "stored" (the copy in the blob store) or "none".
    source: str
    #: The whole log is `next_offset` bytes long (no more is known now).
    at_end: bool


def read_log(
    store: BlobStore,
    work_root: Path,
    execution_id: str,
    node_id: str,
    attempt: int,
    offset: int = 0,
    *,
    live_paths: tuple[Path, ...] = (),
    limit: int | None = None,
) -> LogChunk:
    """Read an attempt's log from `offset`: its live file (the default one, or one of
    `live_paths` that a backend linked) while it exists, else the stored copy; at most
    `limit` bytes (default `CHUNK_BYTES`)."""
    limit = CHUNK_BYTES if limit is None else limit
    for path in (live_log_path(work_root, execution_id, node_id, attempt), *live_paths):
        try:
            with path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(min(offset, size))
                data = fh.read(limit)
        except (FileNotFoundError, IsADirectoryError):
            continue
        end = min(offset, size) + len(data)
        return LogChunk(data, offset, end, "live", end >= size)
    try:
        stored = store.get_bytes(log_uri(store, execution_id, node_id, attempt))
    except (BlobNotFoundError, FileNotFoundError):
        return LogChunk(b"", offset, offset, "none", True)
    data = stored[offset : offset + limit]
    end = min(offset, len(stored)) + len(data)
    return LogChunk(data, offset, end, "stored", end >= len(stored))


def utf8_prefix(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut at its end (the next read starts there)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start]
    return data


class LogNotFoundError(TaskfabricError):
    """The node has no attempt (with that number)."""


@dataclass(frozen=True)
class AttemptLog:
    """A piece of one attempt's log and what is known of the attempt."""

    node_id: str
    attempt: int
    attempts: int
    phase: str
    chunk: LogChunk

    @property
    def complete(self) -> bool:
        """The attempt has ended and the chunk reaches the end of its log."""
        return self.phase != "RUNNING" and self.chunk.at_end

    @property
    def text(self) -> str:
        return self.chunk.data.decode("utf-8", "replace")


def attempt_log(
    metadata: Any,
    store: BlobStore,
    work_root: Path,
    execution_id: str,
    node_id: str,
    attempt: int | None = None,
    offset: int = 0,
) -> AttemptLog:
    """Read the log of a node's attempt (the latest by default) from `offset`; `metadata` is
    a `MetadataStore`."""
    attempts = metadata.attempts(execution_id, node_id)
    if not attempts:
        raise LogNotFoundError(
            f"node '{node_id}' of execution {execution_id} has no attempt: it has not run, "
            "was served from the cache, or is not a task (`taskfabric executions show "
            f"{execution_id}` lists the nodes)"
        )
    if attempt is None:
        rec = attempts[-1]
    else:
        found = [a for a in attempts if a.attempt == attempt]
        if not found:
            raise LogNotFoundError(
                f"node '{node_id}' of execution {execution_id} has no attempt {attempt}; "
                f"it has {', '.join(str(a.attempt) for a in attempts)}"
            )
        rec = found[0]
    live = tuple(
        Path(url2pathname(urlparse(link["uri"]).path))
        for link in rec.log_links or []
        if str(link.get("uri", "")).startswith("file://") and link.get("name") != LOG_LINK_NAME
    )
    # The phase is read before the log: a log read after its attempt ended is whole.
    phase = rec.phase
    chunk = read_log(store, work_root, execution_id, node_id, rec.attempt, offset, live_paths=live)
    if not chunk.at_end or phase == "RUNNING":
        data = utf8_prefix(chunk.data)
        if len(data) != len(chunk.data):
            chunk = LogChunk(data, chunk.offset, chunk.offset + len(data), chunk.source, False)
    return AttemptLog(node_id, rec.attempt, len(attempts), phase, chunk)


__all__ = [
    "CHUNK_BYTES",
    "LIVE_LOG_NAME",
    "LOG_LINK_NAME",
    "MAX_LOG_BYTES",
    "AttemptLog",
    "LogChunk",
    "LogNotFoundError",
    "attempt_log",
    "bounded_tail",
    "capture_in_context",
    "capture_output",
    "keep_log",
    "live_log_path",
    "log_uri",
    "node_key",
    "read_log",
    "utf8_prefix",
]
