# reports.py, in docs/examples/registry/ (tests/registry/test_registry_docs.py runs it)
"""Daily reports: a workflow and two launch plans, registered with `taskfabric register`."""

from datetime import timedelta

from taskfabric import Cron, FixedRate, LaunchPlan, task, workflow


@task
def fetch(region: str, days: int) -> list[int]:
    """Pretend to fetch the order totals of a region."""
    return [len(region) * (i + 1) for i in range(days)]


@task
def top_total(orders: list[int], top: int) -> int:
    return sum(sorted(orders, reverse=True)[:top])


@workflow
def daily_report(region: str, days: int = 1, top: int = 3) -> int:
    return top_total(orders=fetch(region=region, days=days), top=top)


# 01:00 Paris time every night: a launch may change `top`, never `region`.
nightly_eu = LaunchPlan(
    "nightly-eu",
    daily_report,
    fixed_inputs={"region": "eu"},
    default_inputs={"days": 7, "top": 5},
    schedule=Cron("0 1 * * *", tz="Europe/Paris"),
    concurrency="skip",
    catch_up="latest",
)

# Every 15 minutes from its activation; after downtime, at most 4 missed runs.
refresh_us = LaunchPlan(
    "refresh-us",
    daily_report,
    fixed_inputs={"region": "us"},
    schedule=FixedRate(timedelta(minutes=15)),
    catch_up="all",
    max_catch_up=4,
)
