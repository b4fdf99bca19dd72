"""Where an attempt's files live, the same way for every backend and every engine process."""

from __future__ import annotations

from pathlib import Path

from taskfabric.plugin_api import BackendContext, TaskAttempt

__all__ = ["attempt_work_dir", "node_key"]


def node_key(node_id: str) -> str:
    """A node id as a relative path: `n1[3]` -> `n1/3`, `n2/n0` stays."""
    return node_id.replace("[", "/").replace("]", "")


def attempt_work_dir(context: BackendContext, attempt: TaskAttempt) -> Path:
    """The attempt's own local folder: `<work root>/<execution>/<node>/<attempt>`.

    Deterministic, so an engine process that re-attaches to an attempt an earlier one started
    finds the same folder (its log file, its pid file). Not created here."""
    # one join of one string: pathlib parses each `/` operand on its own (a map's items
    # make this path once each)
    return (
        context.work_root / f"{attempt.execution_id}/{node_key(attempt.node_id)}/{attempt.attempt}"
    )
