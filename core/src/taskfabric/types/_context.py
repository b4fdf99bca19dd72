"""What a conversion may need besides the value: where blobs go and where to download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taskfabric.storage import BlobStore


@dataclass
class TransformContext:
    """Where files, directories and dataframes are uploaded to and downloaded from.

    Scalars, containers and records need no context (`None` is accepted for them, e.g. when
    the SDK converts default values at decoration time); blob types raise without one.
    """

    #: The blob store that holds (and will hold) blob data.
    store: BlobStore
    #: URI prefix under which new files, directories and dataframes are uploaded, e.g.
    #: `store.uri("raw", "<execution>", "<node>")`.
    raw_prefix: str
    #: A local scratch folder for downloads (created on first use).
    work_dir: Path


def require_context(ctx: TransformContext | None, what: str) -> TransformContext:
    if ctx is None:
        raise ValueError(
            f"converting a {what} needs a TransformContext (blob store, raw prefix, work dir); "
            "pass ctx= to TypeEngine.to_literal/to_python"
        )
    return ctx
