# docs/plugins/examples/http/geocode.py
from dataclasses import dataclass

from taskfabric import map_task, task, workflow
from taskfabric_http import Call, HttpJob, HttpRequest


@dataclass
class Place:
    name: str
    lat: float
    lon: float


# One GET per address; the first result is mapped to the Place record.
@task(
    config=HttpRequest(
        service="geo", url="/geocode", params={"q": "{inputs.address}"}, outputs="$.results[0]"
    )
)
def geocode(address: str) -> Place: ...


# A remote job: submitted once (with an idempotency key), polled, fetched; DELETE on abort.
@task(
    config=HttpJob(
        service="jobs",
        submit=Call(method="POST", url="/jobs", body={"rows": "{inputs.rows}"}),
        status=Call(url="/jobs/{job.id}"),
        state="$.state",
        succeeded=["succeeded"],
        failed=["failed"],
        result=Call(url="/jobs/{job.id}/result"),
        cancel=Call(method="DELETE", url="/jobs/{job.id}"),
        poll_seconds=0.2,
        error="$.error",
        outputs="$.output.rows",
    )
)
def export(rows: list[float]) -> list[float]: ...


@workflow
def places(addresses: list[str]) -> list[float]:
    found = map_task(geocode)(address=addresses)
    return export(rows=lats(places=found))


@task
def lats(places: list[Place]) -> list[float]:
    return [p.lat for p in places]
