"""Blob access scoped to one attempt: presigned URLs in place of credentials.

The engine holds the S3 store's credentials; an attempt that runs apart (an AWS Batch job)
gets none. Instead the engine presigns, for that attempt alone:

- a GET URL of each blob it reads: its task template, its inputs document, and every object
  its inputs name (a file, or each object under a folder or a dataframe, listed now);
- a POST policy per blob it writes: its outputs document and its error document (each an
  exact key), and its raw-data folder (`starts-with` the folder's key: files and dataframes
  of names known only when the task writes them).

Each URL and policy expires after `seconds` (the task's timeout and a margin, see
`grant_seconds`). The grants document holding them is written beside the attempt's
documents, and the job is given a presigned GET URL of it (`$TASKFABRIC_S3_GRANTS`) and no
credential; `taskfabric_aws._granted.GrantedStore` serves the task's reads and writes from
it. What S3 then refuses the job is what its signature does not cover: any other key, any
listing, any other method. (A presigned URL carries the signer's access key id, never its
secret.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskfabric.plugin_api import TaskAttempt
from taskfabric.types import blob_uris
from taskfabric_aws._s3 import GRANTS_ENV, S3BlobStore, split_uri

__all__ = [
    "CREDENTIAL_VARIABLES",
    "GRANTS_ENV",
    "MAX_GRANT_SECONDS",
    "AttemptBlobs",
    "attempt_blobs",
    "grant_attempt",
    "grant_seconds",
    "grants_document",
]

#: The longest a SigV4 presigned URL may live (7 days).
MAX_GRANT_SECONDS = 7 * 24 * 3600
#: Beyond the task's timeout: the job may wait in the queue before it starts.
_MARGIN_SECONDS = 3600
VERSION = 1

#: Environment variables through which boto3 finds credentials or where to get them: a job or
#: pod given one of these may reach the whole blob store.
CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    }
)


@dataclass(frozen=True)
class AttemptBlobs:
    """What one attempt reads and writes, as URIs of the store."""

    #: Documents and blobs it reads (a folder's or dataframe's URI: every object under it).
    reads: tuple[str, ...]
    #: Blobs it writes, each at exactly this URI (its outputs and error documents).
    writes: tuple[str, ...]
    #: The folder under which it writes blobs of any name (its raw-data folder).
    write_prefix: str


def attempt_blobs(attempt: TaskAttempt, template_uri: str) -> AttemptBlobs:
    """The blobs of `attempt` whose task template is at `template_uri`."""
    reads = [template_uri, attempt.inputs_uri, *blob_uris(attempt.inputs)]
    return AttemptBlobs(
        reads=tuple(dict.fromkeys(reads)),
        writes=(attempt.outputs_uri, attempt.error_uri),
        write_prefix=attempt.raw_prefix,
    )


def grant_seconds(timeout_seconds: float, default_seconds: int) -> int:
    """How long an attempt's grants live: its timeout and a margin, else `default_seconds`;
    at most SigV4's 7 days."""
    if timeout_seconds > 0:
        return int(min(MAX_GRANT_SECONDS, timeout_seconds + _MARGIN_SECONDS))
    return min(MAX_GRANT_SECONDS, default_seconds)


def _objects(store: S3BlobStore, uri: str) -> Iterable[str]:
    """The objects a URI names: itself, or every object under it (a folder)."""
    return store.list(uri.split("#", 1)[0])


def grants_document(store: S3BlobStore, blobs: Sequence[AttemptBlobs], seconds: int) -> bytes:
    """The grants of attempts that run in one job (a single attempt; for an array job's
    child, its own item only), as JSON: `get` (URI -> URL), `absent` (URIs that named no
    object when granted), `post` (URI or folder URI -> the policy's URL and fields)."""
    get: dict[str, str] = {}
    absent: list[str] = []
    post: dict[str, dict[str, Any]] = {}
    for attempt in blobs:
        for uri in attempt.reads:
            found = False
            for blob in _objects(store, uri):
                found = True
                get.setdefault(blob, store.presign_get(blob, seconds))
            if not found:
                absent.append(uri)
        for uri in attempt.writes:
            post[uri] = _post(store, uri, folder=False, seconds=seconds)
        prefix = attempt.write_prefix.rstrip("/") + "/"
        post[prefix] = _post(store, prefix, folder=True, seconds=seconds)
    document = {
        "version": VERSION,
        "expires": int(time.time()) + seconds,
        "get": get,
        "absent": absent,
        "post": post,
    }
    return json.dumps(document, indent=1, sort_keys=True).encode()


def _post(store: S3BlobStore, uri: str, *, folder: bool, seconds: int) -> dict[str, Any]:
    bucket, key = split_uri(uri)
    url, fields = store.presign_post(bucket, key, folder=folder, seconds=seconds)
    return {"url": url, "fields": fields}


def grant_attempt(
    store: S3BlobStore,
    attempt: TaskAttempt,
    template_uri: str,
    grants_uri: str,
    *,
    default_seconds: int,
) -> str:
    """Grant `attempt` (whose task template is at `template_uri`) its own blobs: its grants
    document written at `grants_uri`, and a presigned GET URL of that document, the value of
    `$TASKFABRIC_S3_GRANTS` for the process that runs it. Everything lasts the task's timeout
    and a margin, else `default_seconds`. Delete `grants_uri` when the attempt ends."""
    timeout = attempt.task.timeout.ToTimedelta().total_seconds()
    seconds = grant_seconds(timeout, default_seconds)
    document = grants_document(store, [attempt_blobs(attempt, template_uri)], seconds)
    store.put_bytes(grants_uri, document)
    return store.presign_get(grants_uri, seconds)
