"""What a run returns: the execution's phase, outputs and error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskfabric.core.v1 import types_pb2
from taskfabric.engine._state import SUCCEEDED
from taskfabric.errors import ExecutionFailedError
from taskfabric.sdk import WorkflowDefinition
from taskfabric.storage import BlobStore
from taskfabric.types import TransformContext, default_engine


@dataclass
class ExecutionResult:
    execution_id: str
    phase: str
    outputs: types_pb2.LiteralMap | None
    error: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        return self.phase == SUCCEEDED

    def python_outputs(
        self, wf: WorkflowDefinition[Any, Any], store: BlobStore, work_dir: Any = None
    ) -> Any:
        """The outputs as the workflow function would have returned them."""
        if self.outputs is None:
            raise ExecutionFailedError(self.execution_id, self.phase, error_text(self.error))
        ctx = TransformContext(store=store, raw_prefix="", work_dir=Path(work_dir or "."))
        engine = default_engine()
        values = {
            name: engine.to_python(self.outputs.literals[name], out.py_type, ctx)
            for name, out in wf.interface.outputs.items()
        }
        return wf.interface.unpack_outputs(values)


def error_text(error: dict[str, Any] | None) -> str:
    """An execution's error in one line: `node n3: Code: message`."""
    if not error:
        return "unknown error"
    node = f"node {error['node_id']}: " if error.get("node_id") else ""
    return f"{node}{error.get('code', '')}: {error.get('message', '')}"
