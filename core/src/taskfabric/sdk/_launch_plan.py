"""Launch plans: a workflow with fixed and default inputs, an optional schedule and policies.

Declared at module level next to the workflow; `taskfabric register` records them with the
workflow version they launch, and the scheduler launches the active version on its schedule.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from taskfabric.core.v1 import identifier_pb2, launch_plan_pb2, types_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.sdk._interface import default_context, location_str
from taskfabric.sdk._workflow import WorkflowDefinition

Concurrency = Literal["allow", "skip", "queue"]
CatchUp = Literal["all", "latest", "none"]

CONCURRENCY_POLICIES: dict[str, launch_plan_pb2.ConcurrencyPolicy.ValueType] = {
    "allow": launch_plan_pb2.CONCURRENCY_POLICY_ALLOW,
    "skip": launch_plan_pb2.CONCURRENCY_POLICY_SKIP,
    "queue": launch_plan_pb2.CONCURRENCY_POLICY_QUEUE,
}
CATCH_UP_POLICIES: dict[str, launch_plan_pb2.CatchUpPolicy.ValueType] = {
    "all": launch_plan_pb2.CATCH_UP_POLICY_ALL,
    "latest": launch_plan_pb2.CATCH_UP_POLICY_LATEST,
    "none": launch_plan_pb2.CATCH_UP_POLICY_NONE,
}

#: Launch plan names: they prefix execution names (`<plan>-<UTC slot>`), so they stay short.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class LaunchPlanError(TaskfabricError, ValueError):
    """A launch plan declaration is invalid (unknown input, wrong type, bad schedule)."""


@dataclass(frozen=True)
class Cron:
    """A cron schedule: five fields (minute hour day-of-month month day-of-week) read in the
    time zone `tz` (an IANA name, e.g. "Europe/Paris"), so "0 9 * * 1-5" is 9:00 local time
    in winter and in summer."""

    expression: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from croniter import croniter

        if len(self.expression.split()) != 5 or not croniter.is_valid(self.expression):
            raise LaunchPlanError(
                f"'{self.expression}' is not a cron expression: give five fields, "
                "minute hour day-of-month month day-of-week, e.g. '0 * * * *' (hourly)"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise LaunchPlanError(
                f"unknown time zone '{self.tz}': give an IANA name such as 'Europe/Paris' or 'UTC'"
            ) from None

    def to_proto(self) -> launch_plan_pb2.Schedule:
        return launch_plan_pb2.Schedule(
            cron=launch_plan_pb2.CronSchedule(expression=self.expression, time_zone=self.tz)
        )


@dataclass(frozen=True)
class FixedRate:
    """Every `interval` (whole seconds, at least one), counted from the activation of the
    launch plan version: the first launch is one interval after activation."""

    interval: timedelta

    def __post_init__(self) -> None:
        seconds = self.interval.total_seconds()
        if seconds < 1 or seconds != int(seconds):
            raise LaunchPlanError(
                f"a fixed rate must be a whole number of seconds, at least 1 (got {self.interval})"
            )

    def to_proto(self) -> launch_plan_pb2.Schedule:
        schedule = launch_plan_pb2.Schedule()
        schedule.fixed_rate.interval.FromTimedelta(self.interval)
        return schedule


Schedule = Cron | FixedRate


class LaunchPlan:
    """A way to launch a workflow: fixed inputs (no launch may change them), default inputs
    (a launch may override them), an optional schedule, and what to do when a scheduled
    launch finds the previous one still running (`concurrency`) or the scheduler was down
    (`catch_up`).

    ```python
    nightly = LaunchPlan(
        "nightly", etl, fixed_inputs={"region": "eu"}, default_inputs={"limit": 100},
        schedule=Cron("0 1 * * *", tz="Europe/Paris"), concurrency="skip",
    )
    ```

    - `concurrency`: "allow" launches anyway; "skip" skips a slot while an earlier execution
      of the plan is queued or running; "queue" launches and the workers run them in order.
    - `catch_up` after downtime: "all" missed slots (at most `max_catch_up`, the latest),
      only the "latest", or "none".
    """

    def __init__(
        self,
        name: str,
        workflow: WorkflowDefinition[Any, Any],
        *,
        fixed_inputs: Mapping[str, Any] | None = None,
        default_inputs: Mapping[str, Any] | None = None,
        schedule: Schedule | None = None,
        concurrency: Concurrency = "allow",
        catch_up: CatchUp = "latest",
        max_catch_up: int = 10,
        description: str = "",
        cluster: str = "",
    ) -> None:
        caller = sys._getframe(1)
        self.module: str = str(caller.f_globals.get("__name__", ""))
        self.location = location_str(caller.f_code.co_filename, caller.f_lineno)
        where = f"{self.location}: launch plan '{name}'"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise LaunchPlanError(
                f"{where}: the name must be 1-200 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if not isinstance(workflow, WorkflowDefinition):
            raise LaunchPlanError(
                f"{where}: {workflow!r} is not a @workflow; pass the decorated workflow"
            )
        if schedule is not None and not isinstance(schedule, Cron | FixedRate):
            raise LaunchPlanError(
                f"{where}: schedule must be Cron(...) or FixedRate(...), not {schedule!r}"
            )
        if concurrency not in CONCURRENCY_POLICIES:
            raise LaunchPlanError(
                f"{where}: concurrency must be one of {', '.join(CONCURRENCY_POLICIES)}, "
                f"not {concurrency!r}"
            )
        if catch_up not in CATCH_UP_POLICIES:
            raise LaunchPlanError(
                f"{where}: catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, not {catch_up!r}"
            )
        if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise LaunchPlanError(f"{where}: max_catch_up must be an int >= 1")
        self.name = name
        self.workflow = workflow
        self.schedule = schedule
        self.concurrency: Concurrency = concurrency
        self.catch_up: CatchUp = catch_up
        self.max_catch_up = max_catch_up
        self.description = description
        self.cluster = cluster
        self.fixed_inputs = dict(fixed_inputs or {})
        self.default_inputs = dict(default_inputs or {})
        both = sorted(set(self.fixed_inputs) & set(self.default_inputs))
        if both:
            raise LaunchPlanError(
                f"{where}: input {', '.join(both)} is both fixed and default; keep one"
            )
        self._fixed = self._convert(self.fixed_inputs, "fixed input", where)
        self._defaults = self._convert(self.default_inputs, "default input", where)
        if schedule is not None:
            missing = [
                p.name
                for p in workflow.interface.inputs.values()
                if p.required and p.name not in self.fixed_inputs and p.name not in self._defaults
            ]
            if missing:
                raise LaunchPlanError(
                    f"{where}: it has a schedule, so every required input of workflow "
                    f"'{workflow.short_name}' needs a fixed or default value; missing: "
                    f"{', '.join(missing)}"
                )

    def _convert(
        self, values: Mapping[str, Any], what: str, where: str
    ) -> dict[str, types_pb2.Literal]:
        from taskfabric.types import default_engine, type_str

        engine = default_engine()
        params = self.workflow.interface.inputs
        out: dict[str, types_pb2.Literal] = {}
        for key, value in values.items():
            param = params.get(key)
            if param is None:
                expected = ", ".join(
                    f"{p.name}: {type_str(p.literal_type)}" for p in params.values()
                )
                raise LaunchPlanError(
                    f"{where}: {what} '{key}': workflow '{self.workflow.short_name}' has no "
                    f"such input; its inputs are: {expected or 'none'}"
                )
            try:
                out[key] = engine.to_literal(value, param.py_type, default_context())
            except Exception as exc:
                raise LaunchPlanError(
                    f"{where}: {what} '{key}' ({type_str(param.literal_type)}): {exc}"
                ) from exc
        return out

    def __repr__(self) -> str:
        return f"<launch plan {self.name} of {self.workflow.name}>"

    def spec(
        self, workflow_id: identifier_pb2.Identifier | None = None
    ) -> launch_plan_pb2.LaunchPlanSpec:
        """The plan as a `LaunchPlanSpec` (project, domain and version are filled in when
        registered)."""
        spec = launch_plan_pb2.LaunchPlanSpec(
            id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.ResourceType.RESOURCE_TYPE_LAUNCH_PLAN,
                name=self.name,
            ),
            workflow_id=workflow_id or self.workflow.compile().primary.id,
            concurrency=CONCURRENCY_POLICIES[self.concurrency],
            catch_up=CATCH_UP_POLICIES[self.catch_up],
            max_catch_up=self.max_catch_up,
            description=self.description,
            cluster=self.cluster,
        )
        for key in sorted(self._fixed):
            spec.fixed_inputs.literals[key].CopyFrom(self._fixed[key])
        for key in sorted(self._defaults):
            spec.default_inputs.literals[key].CopyFrom(self._defaults[key])
        if self.schedule is not None:
            spec.schedule.CopyFrom(self.schedule.to_proto())
        return spec
