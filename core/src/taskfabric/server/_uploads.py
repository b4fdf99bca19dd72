"""Files, directories and dataframes given as launch inputs through the API.

A client uploads the data first (`POST .../uploads`, the raw bytes of a file, or a tar of a
directory) and then launches with `{"upload": "<ref>"}` as the input's JSON value. Uploads are
content-addressed and scoped: they are stored under `uploads/<project>/<domain>/staged/` in
the server's blob store, and a launch only resolves refs under its own project and domain, so
a token of one project can neither read nor use another project's uploads (a ref of another
project is simply not found).

At launch the staged data is fetched into a scratch folder and converted by the input's
declared type exactly as `taskfabric run` converts a local path (a `File`, a `Directory`, a
pandas DataFrame from .csv or .parquet), into `uploads/<project>/<domain>/inputs/`, which is
content-addressed too: launching again with the same upload gives the same literal, so an
idempotent launch (`name`) with a file input stays idempotent.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from taskfabric.errors import TaskfabricError
from taskfabric.server._names import NAME_PATTERN, NAME_RULE, is_name, is_scope
from taskfabric.storage import BlobStore
from taskfabric.types import TransformContext

KINDS = ("file", "directory")
_REF = re.compile(r"(file|directory)/([0-9a-f]{64})/(" + NAME_PATTERN[1:-1] + r")\Z")


class UploadError(TaskfabricError, ValueError):
    """A bad upload or upload reference; the message says what and how to fix it."""


class UploadTooLarge(UploadError):
    """An upload over `[server] max_upload_bytes`."""


def check_name(name: str) -> str:
    if not is_name(name):
        raise UploadError(
            f"upload name {name!r}: use {NAME_RULE} (the file's own name, e.g. 'orders.csv')"
        )
    return name


def _check_scope(project: str, domain: str) -> None:
    # The routes check these already; the staged path must never depend on it.
    for what, value in (("project", project), ("domain", domain)):
        if not is_scope(value):
            raise UploadError(f"{what} {value!r} is not a valid {what} name")


def _staged(store: BlobStore, project: str, domain: str, kind: str, digest: str, name: str) -> str:
    return store.uri("uploads", project, domain, "staged", kind, digest, name)


def stage(
    store: BlobStore,
    project: str,
    domain: str,
    *,
    name: str,
    kind: str,
    body: IO[bytes],
    work_dir: Path,
    max_bytes: int,
) -> tuple[str, str, int]:
    """Store an uploaded body; returns (ref, sha256 hex, size). A directory is a tar (plain
    or gzip) and is checked here, so a bad archive is refused at upload, not at launch."""
    check_name(name)
    _check_scope(project, domain)
    if kind not in KINDS:
        raise UploadError(f"upload kind {kind!r}: use one of {', '.join(KINDS)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=work_dir, delete=False) as tmp:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge(
                    f"upload {name!r} is larger than the server takes: at most {max_bytes} "
                    "bytes ([server] max_upload_bytes)"
                )
            digest.update(chunk)
            tmp.write(chunk)
    local = Path(tmp.name)
    try:
        if kind == "directory":
            _check_archive(local, name)
        hexdigest = digest.hexdigest()
        uri = _staged(store, project, domain, kind, hexdigest, name)
        if not store.exists(uri):
            store.put_file(local, uri)
    finally:
        local.unlink(missing_ok=True)
    return f"{kind}/{hexdigest}/{name}", hexdigest, size


def _check_archive(path: Path, name: str) -> None:
    try:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                # The data filter would quietly strip a leading '/': refuse it instead.
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise UploadError(
                        f"directory upload {name!r}: unsafe archive member {member.name!r}, "
                        "absolute or climbing out with '..'; archive the directory with paths "
                        "relative to it (tar -C DIR -czf out.tar.gz .)"
                    )
                tarfile.data_filter(member, "/nonexistent")
    except tarfile.FilterError as exc:
        raise UploadError(f"directory upload {name!r}: unsafe archive member ({exc})") from None
    except tarfile.TarError as exc:
        raise UploadError(
            f"directory upload {name!r} is not a tar archive ({exc}); send the directory as a "
            "tar or tar.gz (the client and `taskfabric launch` do)"
        ) from None


class Resolver:
    """Turns `{"upload": ref}` input values of one launch into local paths, only under the
    launch's own project and domain."""

    def __init__(self, store: BlobStore, project: str, domain: str, work_dir: Path) -> None:
        self.store = store
        self.project = project
        self.domain = domain
        self.work_dir = work_dir
        self.context = TransformContext(
            store=store,
            raw_prefix=store.uri("uploads", project, domain, "inputs"),
            work_dir=work_dir / "convert",
        )

    def __call__(self, ref: object) -> Path:
        if not isinstance(ref, str) or not (match := _REF.match(ref)):
            raise UploadError(
                f"upload ref {ref!r} is not one the server gave: upload the data first "
                "(POST .../uploads) and pass the 'ref' of its answer"
            )
        kind, digest, name = match.groups()
        uri = _staged(self.store, self.project, self.domain, kind, digest, name)
        if not self.store.exists(uri):
            raise UploadError(
                f"no upload {ref!r} in {self.project}/{self.domain}: uploads are usable only "
                "in the project and domain they were made in; upload it there"
            )
        target = Path(tempfile.mkdtemp(dir=self._mkdir(), prefix="upload-"))
        local = target / name
        self.store.get_file(uri, local)
        if kind == "file":
            return local
        unpacked = target / "dir" / name
        unpacked.mkdir(parents=True)
        with tarfile.open(local) as tar:
            tar.extractall(unpacked, filter="data")
        local.unlink()
        return unpacked

    def _mkdir(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


Fetch = Callable[[object], Path]

__all__ = ["KINDS", "Fetch", "Resolver", "UploadError", "UploadTooLarge", "check_name", "stage"]
