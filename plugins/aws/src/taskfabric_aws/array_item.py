"""`python -m taskfabric_aws.array_item MANIFEST_URI`: one child of an AWS Batch array job,
run in the job's container: it finds its item in the manifest by its index and runs it as
`taskfabric-execute` would (inputs, outputs and error document of that item's attempt).

The index comes from `AWS_BATCH_JOB_ARRAY_INDEX`, which AWS Batch sets in every child; where
it is missing (moto's Batch sets only `AWS_BATCH_JOB_ID`) from the child's job id,
`<array job id>:<index>`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taskfabric_aws.array_item MANIFEST_URI", file=sys.stderr)
        return EXIT_NO_ITEM
    try:
        index = item_index(os.environ)
        manifest = json.loads(S3BlobStore.from_uri(args[0]).get_bytes(args[0]))
        item = manifest["items"][index]
    except Exception as exc:
        print(f"taskfabric: no item to run from {args[0]}: {exc}", file=sys.stderr)
        return EXIT_NO_ITEM
    os.environ.update(item["env"])
    return execute.main(list(item["args"]))


if __name__ == "__main__":
    sys.exit(main())
