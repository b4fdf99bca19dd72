# docs/examples/resume.py
import os

from taskfabric import task, workflow


@task
def extract(day: str) -> list[int]:
    return [len(day), 2, 3]


@task
def publish(rows: list[int]) -> str:
    token = os.environ.get("REPORT_TOKEN")
    if not token:
        raise RuntimeError("REPORT_TOKEN is not set")
    return f"published {len(rows)} rows"


@workflow
def daily_report(day: str) -> str:
    return publish(rows=extract(day=day))
