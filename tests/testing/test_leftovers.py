"""What an attempt that ran apart may name in its outputs (issue 21): its own raw-data folder
and its inputs, never a path outside them, however the URI spells it. The file store reads a
`file://` URI's path percent-decoded, so `%2E%2E` is `..` to it: an outputs document naming
`<own raw folder>/%2E%2E/%2E%2E/...` pointed the server's downloads (and the next task) at the
whole blob store, every project's uploads and outputs."""

from __future__ import annotations

import pytest

from taskfabric.backends import REFUSED, check_outputs
from taskfabric.core.v1 import tasks_pb2, types_pb2
from taskfabric.plugin_api import TaskAttempt

RAW = "file:///data/blobs/executions/e1/nodes/n0/raw/1"
GIVEN = "file:///data/blobs/uploads/alpha/prod/inputs/abc/mine.csv"


def _attempt() -> TaskAttempt:
    inputs = types_pb2.LiteralMap()
    inputs.literals["mine"].blob.uri = GIVEN
    return TaskAttempt(
        attempt_id="e1-n0-1",
        execution_id="e1",
        node_id="n0",
        attempt=1,
        task=tasks_pb2.TaskTemplate(),
        inputs=inputs,
        inputs_uri="file:///work/inputs.pb",
        outputs_uri="file:///work/outputs.pb",
        raw_prefix=RAW,
        notify=lambda _: None,
    )


def _outputs(*uris: str) -> bytes:
    found = types_pb2.LiteralMap()
    for n, uri in enumerate(uris):
        found.literals[f"o{n}"].blob.uri = uri
    return found.SerializeToString()


@pytest.mark.parametrize(
    "uri",
    [
        RAW + "/out.csv",
        RAW + "/a1b2/part/x.parquet",
        RAW + "/",
        RAW + "/name%20with%20spaces.txt",
        RAW + "/..data.txt",
        GIVEN,
    ],
)
def test_its_own_files_and_its_inputs_are_accepted(uri: str) -> None:
    assert check_outputs(_attempt(), _outputs(uri)) is None


@pytest.mark.parametrize(
    "uri",
    [
        RAW + "/../2/out.csv",
        RAW + "/..",
        RAW + "/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/",
        RAW + "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/uploads/beta/prod/inputs/x/secret.txt",
        RAW + "/%2E%2E%2F%2E%2E%2F%2E%2E/f.txt",
        RAW + "/.%2E/x.txt",
        RAW + "/x/%2E%2E",
        RAW + "/./../x.txt",
        RAW + "2/out.csv",  # a sibling folder whose name starts like its own
        "file:///data/blobs/uploads/beta/prod/inputs/abc/secret.txt",
        GIVEN + "/../../../beta/prod/inputs/abc/secret.txt",
    ],
)
def test_a_path_outside_its_folder_is_refused_however_spelled(uri: str) -> None:
    refused = check_outputs(_attempt(), _outputs(RAW + "/fine.txt", uri))
    assert refused is not None and refused.code == REFUSED, uri
    assert "neither one of the attempt's inputs nor in its own output folder" in refused.message
    assert not refused.retryable
