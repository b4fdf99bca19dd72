"""Every hook a taskfabric plugin can implement, grouped by when it is called.

A hook module (an entry point in the `taskfabric.hooks` group, or a module listed in
`taskfabric.plugins.DEFAULT_PLUGINS`) implements any of these with
`taskfabric.plugin_api.hookimpl`. Hook modules are imported when the plugin system loads,
which happens the first time the engine runs a workflow, a type has no built-in transformer,
or a `taskfabric plugins` command runs; never at `import taskfabric`.

Commands of the command line are not hooks but entry points of the `taskfabric.commands`
group (name = "module:command"), so that `taskfabric --help` can list them without loading
any plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from taskfabric.plugin_api import NodeEvent, TaskType
    from taskfabric.types import TypeTransformer

hookspec = pluggy.HookspecMarker("taskfabric")

# -- registrations: called once, when the plugin system loads ---------------------------------


@hookspec
def taskfabric_task_types() -> Sequence[TaskType]:
    """Task types this plugin adds (e.g. `shell`, `spark`).

    Called once at load. Two plugins adding the same task type name is an error naming both.
    """
    raise NotImplementedError


@hookspec
def taskfabric_type_transformers() -> Sequence[TypeTransformer[Any]]:
    """Type transformers this plugin adds (e.g. for a Spark DataFrame).

    Called once, the first time a Python type has no built-in transformer; the transformers
    are registered in the default type engine (a clash with another is an error).
    """
    raise NotImplementedError


# -- lifecycle events: called by the engine as executions run ---------------------------------


@hookspec
def taskfabric_execution_started(
    execution_id: str, workflow: str, project: str, domain: str
) -> None:
    """An execution started running (launched or resumed). Return value ignored."""


@hookspec
def taskfabric_node_event(event: NodeEvent) -> None:
    """A node changed phase (QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, ...).

    Called on the engine's loop thread for every transition: keep it fast, and hand slow work
    (HTTP calls, say) to a thread of your own. Return value ignored.
    """


@hookspec
def taskfabric_execution_finished(
    execution_id: str, phase: str, error: dict[str, Any] | None
) -> None:
    """An execution reached a terminal phase (SUCCEEDED, FAILED, ABORTED). Return value
    ignored."""
