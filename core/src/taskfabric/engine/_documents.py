"""An execution's documents in the blob store: each node's inputs and outputs, and the
execution's own outputs, packed into the execution's segment on local stores."""

from __future__ import annotations

from taskfabric.backends import outputs_too_large_message
from taskfabric.core.v1 import types_pb2
from taskfabric.engine._util import node_key
from taskfabric.storage import BlobStore, PackStore, ReadAhead
from taskfabric.types import blob_uris

#: the literal kinds that name no blob
_SCALARS = frozenset(
    {"integer", "float", "string", "boolean", "bytes", "datetime", "duration", "none", "enum"}
)


class Documents:
    """Reads and writes the literal maps of one execution."""

    def __init__(
        self,
        execution_id: str,
        store: BlobStore,
        literals: PackStore,
        *,
        max_output_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._literals = literals
        self._root = store.uri("executions", execution_id)
        #: `[engine] max_output_bytes`: the largest outputs document of a task (None: any).
        self.max_output_bytes = max_output_bytes

    def outputs_too_large(self, task: str, size: int | None) -> str:
        """Why an attempt's outputs of `size` bytes are refused, or "" when they are not."""
        limit = self.max_output_bytes
        if limit is None or size is None or size <= limit:
            return ""
        return outputs_too_large_message(task, size, limit)

    def uri(self, full_id: str, name: str) -> str:
        """Where a node's document `name` (outputs.pb, raw/2) lives, unpacked."""
        return f"{self._root}/{node_key(full_id, name)}"

    def put(self, full_id: str, name: str, m: types_pb2.LiteralMap) -> str:
        """Store a node's document; returns its URI (packed for local stores). A packed
        record is written by the next `flush` (the loop's documents of a turn in one write):
        the URI must not be committed or handed to a backend before."""
        return self._literals.put(
            self._root, node_key(full_id, name), m.SerializeToString(deterministic=True), defer=True
        )

    def put_execution_outputs(self, m: types_pb2.LiteralMap) -> str:
        """Store the execution's outputs (written by the next `flush`, as `put`)."""
        return self._literals.put(
            self._root, "outputs.pb", m.SerializeToString(deterministic=True), defer=True
        )

    def flush(self) -> None:
        """Write the documents put so far: called before each commit of the execution's
        records and before attempts are handed to their backends."""
        self._literals.flush()

    def size(self, uri: str) -> int | None:
        """The bytes of a stored document, without reading it (None: the store cannot tell)."""
        return self._literals.size(uri)

    def load(self, uri: str, ahead: ReadAhead | None = None) -> types_pb2.LiteralMap:
        """The document at `uri` (`ahead`: read through it, `PackStore.get`)."""
        out = types_pb2.LiteralMap()
        out.ParseFromString(self._literals.get(uri, ahead))
        return out

    def require_blobs(self, outputs: types_pb2.LiteralMap) -> None:
        """Raise FileNotFoundError when a file, directory or dataframe in `outputs` is gone."""
        for lit in outputs.literals.values():
            if lit.WhichOneof("value") in _SCALARS:  # most outputs (a cache hit's hot path)
                continue
            for uri in blob_uris(lit):
                if not self._store.exists(uri):
                    raise FileNotFoundError(f"output blob {uri} is gone")

    def close(self) -> None:
        """Seal the execution's pack segment (its documents are all written)."""
        self._literals.close_segment(self._root)
