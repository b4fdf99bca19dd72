"""`python -m taskfabric_aws.array_item MANIFEST_URI`: one child of an AWS Batch array job,
run in the job's container: it finds its item in the manifest by its index and runs it as
`taskfabric-execute` would (inputs, outputs and error document of that item's attempt).

The manifest is an `s3://` URI (read with boto3's credentials) or, when the job has presigned
access to its blobs only, a presigned `https://` URL of it; each item's environment then
holds its own grants.

The index comes from `AWS_BATCH_JOB_ARRAY_INDEX`, which AWS Batch sets in every child; where
it is missing (moto's Batch sets only `AWS_BATCH_JOB_ID`) from the child's job id,
`<array job id>:<index>`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

import urllib3

from taskfabric import execute
from taskfabric_aws._s3 import S3BlobStore

__all__ = ["item_index", "main"]

EXIT_NO_ITEM = 2


def item_index(environ: Mapping[str, str]) -> int:
    """This child's index in its array job."""
    index = environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "")
    if not index:
        _, sep, index = environ.get("AWS_BATCH_JOB_ID", "").rpartition(":")
        if not sep:
            raise ValueError(
                "neither AWS_BATCH_JOB_ARRAY_INDEX nor an array child's AWS_BATCH_JOB_ID "
                "(<array job id>:<index>) is set: this runs only as a child of an array job"
            )
    if not index.isdigit():
        raise ValueError(f"the array index {index!r} is not a number")
    return int(index)


def _read(where: str) -> bytes:
    """The manifest at an `s3://` URI or a presigned URL."""
    if where.startswith("s3://"):
        return S3BlobStore.from_uri(where).get_bytes(where)
    response = urllib3.request("GET", where, retries=urllib3.Retry(5, backoff_factor=0.5))
    if response.status != 200:
        raise OSError(f"HTTP {response.status} reading the manifest (its URL may have expired)")
    return response.data


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taskfabric_aws.array_item MANIFEST_URI", file=sys.stderr)
        return EXIT_NO_ITEM
    try:
        index = item_index(os.environ)
        manifest = json.loads(_read(args[0]))
        item = manifest["items"][index]
    except Exception as exc:
        # A presigned URL's query is its signature: never printed.
        where, _, query = args[0].partition("?")
        said = str(exc).replace(query, "...") if query else str(exc)
        print(f"taskfabric: no item to run from {where}: {said}", file=sys.stderr)
        return EXIT_NO_ITEM
    os.environ.update(item["env"])
    return execute.main(list(item["args"]))


if __name__ == "__main__":
    sys.exit(main())
