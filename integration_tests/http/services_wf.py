"""Workflows of the HTTP services suite (a module, so that a resumed run can reload them)."""

from __future__ import annotations

from dataclasses import dataclass

from taskfabric import map_task, task, workflow
from taskfabric_http import Call, HttpJob, HttpRequest


@dataclass
class Place:
    name: str
    lat: float


@task(
    config=HttpRequest(
        service="geo", url="/geocode", params={"q": "{inputs.address}"}, outputs="$.results[0]"
    )
)
def geocode(address: str) -> Place: ...


@task
def addresses(n: int) -> list[str]:
    return [f"{i} Main St" for i in range(n)]


@task
def count(places: list[Place]) -> int:
    return len({p.name for p in places})


@workflow
def geocode_all(n: int) -> int:
    return count(places=map_task(geocode)(address=addresses(n=n)))


@task(
    config=HttpJob(
        service="jobs",
        submit=Call(method="POST", url="/jobs", body={"rows": "{inputs.rows}"}),
        status=Call(url="/jobs/{job.id}"),
        result=Call(url="/jobs/{job.id}/result"),
        cancel=Call(method="DELETE", url="/jobs/{job.id}"),
        poll_seconds=0.1,
        error="$.error",
        outputs="$.output.rows",
    )
)
def export(rows: list[int]) -> list[int]: ...


@workflow
def export_rows(rows: list[int]) -> list[int]:
    return export(rows=rows)
