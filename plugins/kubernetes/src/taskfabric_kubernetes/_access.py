"""How a pod reaches an S3 blob store with `data = "store"`: presigned access to its own
attempt's blobs, with no credential of the store (`blob_access = "presigned"`).

The presigning is taskfabric-aws's (`taskfabric_aws.grants`, the same grants an `aws-batch`
job gets): the engine writes the attempt's grants document beside its task template, and the
pod gets a presigned URL of it in `$TASKFABRIC_S3_GRANTS`, from a Secret of its own (see
_backend.py), never in its spec. taskfabric-aws is an optional dependency of this plugin
(`taskfabric-kubernetes[s3]`), imported here only when the blob store is an S3 one: a store
of `s3://` URIs comes from taskfabric-aws, so it is installed whenever it is needed.
"""

from __future__ import annotations

from typing import Any

from taskfabric.plugin_api import TaskAttempt
from taskfabric.storage import BlobStore
from taskfabric_kubernetes._settings import KubernetesSettings

#: The key of the attempt's Secret that holds the presigned URL of its grants.
SECRET_KEY = "grants-url"


class PresignedAccess:
    """Grants attempts of one backend their own blobs of an S3 store."""

    def __init__(self, store: Any, grants: Any, default_seconds: int) -> None:
        self.store = store
        self._grants = grants
        self.default_seconds = default_seconds
        #: The environment variable the pod reads its grants' URL from.
        self.variable: str = grants.GRANTS_ENV
        #: Variables that would hand a pod AWS credentials (a multi-tenant server refuses them).
        self.credential_variables: frozenset[str] = grants.CREDENTIAL_VARIABLES

    def grant(self, attempt: TaskAttempt, template_uri: str, grants_uri: str) -> str:
        """Write the attempt's grants at `grants_uri`; the presigned URL of them."""
        url: str = self._grants.grant_attempt(
            self.store,
            attempt,
            template_uri,
            grants_uri,
            default_seconds=self.default_seconds,
        )
        return url

    def revoke(self, grants_uri: str) -> None:
        """Delete the grants document: its URLs work until they expire (a presigned URL
        cannot be revoked), but nothing can learn them any more."""
        self.store.delete(grants_uri)


def presigned_access(
    store: BlobStore, settings: KubernetesSettings, backend: str
) -> PresignedAccess | None:
    """The presigned access of the backend's pods in `data = "store"` mode, or None when they
    reach the store with what the settings give them (`blob_access = "credentials"`, or
    `"auto"` on a store that is not S3). A setting that cannot work is a ValueError naming
    the fix."""
    section = f"[backends.{backend}]"
    if settings.blob_access == "credentials":
        return None
    if store.scheme != "s3":
        if settings.blob_access == "presigned":
            raise ValueError(
                f'{section} blob_access = "presigned" presigns access to an s3 blob store, '
                f"and this one is {type(store).__name__} ({store.scheme}://): put the data "
                'root in S3, or set blob_access = "credentials" (pods then reach the whole '
                "store with what secret_env gives them)"
            )
        return None
    try:
        from taskfabric_aws import grants
    except ImportError as exc:
        raise ValueError(
            f"{section}: pods of an s3 blob store get presigned access through "
            f"taskfabric-aws, which cannot be imported ({exc}): install it "
            "(pip install 'taskfabric-kubernetes[s3]'), or set blob_access = \"credentials\""
        ) from exc
    if not isinstance(store, grants.S3BlobStore):
        if settings.blob_access == "presigned":
            raise ValueError(
                f'{section} blob_access = "presigned": the s3:// store is '
                f"{type(store).__name__}, not taskfabric-aws's, and cannot presign: set "
                'blob_access = "credentials"'
            )
        return None
    return PresignedAccess(store, grants, settings.grant_seconds)


__all__ = ["SECRET_KEY", "PresignedAccess", "presigned_access"]
