"""Launch plan declarations: inputs checked against the workflow, schedules validated."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskfabric import Cron, FixedRate, LaunchPlan, task, workflow
from taskfabric.core.v1 import launch_plan_pb2
from taskfabric.sdk import LaunchPlanError


@task
def add(a: int, b: int) -> int:
    return a + b


@workflow
def wf(a: int, b: int = 2) -> int:
    return add(a=a, b=b)


def test_a_launch_plan_records_its_inputs_schedule_and_policies() -> None:
    lp = LaunchPlan(
        "nightly",
        wf,
        fixed_inputs={"a": 1},
        default_inputs={"b": 5},
        schedule=Cron("0 1 * * *", tz="Europe/Paris"),
        concurrency="skip",
        catch_up="all",
        max_catch_up=3,
    )
    spec = lp.spec()
    assert spec.id.name == "nightly" and spec.workflow_id.name == wf.name
    assert spec.fixed_inputs.literals["a"].integer == 1
    assert spec.default_inputs.literals["b"].integer == 5
    assert spec.schedule.cron.expression == "0 1 * * *"
    assert spec.schedule.cron.time_zone == "Europe/Paris"
    assert spec.concurrency == launch_plan_pb2.CONCURRENCY_POLICY_SKIP
    assert spec.catch_up == launch_plan_pb2.CATCH_UP_POLICY_ALL and spec.max_catch_up == 3
    assert lp.module == __name__
    rate = LaunchPlan(
        "often", wf, default_inputs={"a": 0}, schedule=FixedRate(timedelta(minutes=5))
    )
    assert rate.spec().schedule.fixed_rate.interval.seconds == 300


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"fixed_inputs": {"c": 1}},
            "fixed input 'c': workflow 'wf' has no such input; its inputs are: a: int, b: int",
        ),
        ({"default_inputs": {"a": "x"}}, "default input 'a' (int): expected int, got str 'x'"),
        ({"fixed_inputs": {"a": 1}, "default_inputs": {"a": 2}}, "a is both fixed and default"),
        (
            {"schedule": Cron("0 * * * *")},
            "every required input of workflow 'wf' needs a fixed or default value; missing: a",
        ),
        ({"concurrency": "sometimes"}, "concurrency must be one of allow, skip, queue"),
        ({"catch_up": "most"}, "catch_up must be one of all, latest, none"),
        ({"max_catch_up": 0}, "max_catch_up must be an int >= 1"),
    ],
)
def test_declaration_errors_are_clear(kwargs: dict[str, object], message: str) -> None:
    where = "test_launch_plans.py:[0-9]+: launch plan 'lp'"
    with pytest.raises(LaunchPlanError, match=where) as info:
        LaunchPlan("lp", wf, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_bad_names_and_schedules() -> None:
    with pytest.raises(LaunchPlanError, match="the name must be"):
        LaunchPlan("no spaces", wf)
    with pytest.raises(LaunchPlanError, match="not a @workflow"):
        LaunchPlan("lp", add)  # type: ignore[arg-type]
    with pytest.raises(LaunchPlanError, match="is not a cron expression"):
        Cron("every hour")
    with pytest.raises(LaunchPlanError, match="is not a cron expression"):
        Cron("0 0 * * * *")
    with pytest.raises(LaunchPlanError, match="unknown time zone 'Mars/Olympus'"):
        Cron("0 * * * *", tz="Mars/Olympus")
    with pytest.raises(LaunchPlanError, match="whole number of seconds"):
        FixedRate(timedelta(milliseconds=1500))
