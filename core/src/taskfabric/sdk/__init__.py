"""The Python SDK: declare tasks and workflows."""

from taskfabric.sdk._conditional import ConditionBuilder, conditional
from taskfabric.sdk._launch_plan import Cron, FixedRate, LaunchPlan, LaunchPlanError
from taskfabric.sdk._map import MapTask, map_task
from taskfabric.sdk._promise import Condition, Promise
from taskfabric.sdk._settings import Cache, Resources, Retry
from taskfabric.sdk._source_version import source_version
from taskfabric.sdk._task import TaskDefinition, task
from taskfabric.sdk._workflow import LocalRunner, WorkflowDefinition, set_local_runner, workflow

__all__ = [
    "Cache",
    "Condition",
    "ConditionBuilder",
    "Cron",
    "FixedRate",
    "LaunchPlan",
    "LaunchPlanError",
    "LocalRunner",
    "MapTask",
    "Promise",
    "Resources",
    "Retry",
    "TaskDefinition",
    "WorkflowDefinition",
    "conditional",
    "map_task",
    "set_local_runner",
    "source_version",
    "task",
    "workflow",
]
