"""Blob access scoped to one attempt, for any backend that runs attempts apart on an S3 blob
store (`aws-batch` jobs, `kubernetes` pods): presigned URLs and upload policies in place of
credentials. See docs/plugins/aws.md, "What a job can reach".

The engine's side::

    url = grant_attempt(store, attempt, template_uri, grants_uri, default_seconds=86400)
    # run the attempt with {GRANTS_ENV: url} in its environment and no AWS credential
    # (none of CREDENTIAL_VARIABLES); when it ends: store.delete(grants_uri), and check its
    # outputs (taskfabric.backends.check_outputs) before anything reads them.

The attempt's side needs nothing but taskfabric-aws installed: `taskfabric-execute` finds
`$TASKFABRIC_S3_GRANTS` and serves the task's `s3://` reads and writes from its grants.
"""

from taskfabric_aws._grants import (
    CREDENTIAL_VARIABLES,
    GRANTS_ENV,
    MAX_GRANT_SECONDS,
    AttemptBlobs,
    attempt_blobs,
    grant_attempt,
    grant_seconds,
    grants_document,
)
from taskfabric_aws._s3 import S3BlobStore

__all__ = [
    "CREDENTIAL_VARIABLES",
    "GRANTS_ENV",
    "MAX_GRANT_SECONDS",
    "AttemptBlobs",
    "S3BlobStore",
    "attempt_blobs",
    "grant_attempt",
    "grant_seconds",
    "grants_document",
]
