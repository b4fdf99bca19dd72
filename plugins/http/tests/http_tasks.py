"""Tasks of the tests, at module level so that any backend can import them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from taskfabric import task, workflow
from taskfabric_http import Call, HttpJob, HttpRequest


@dataclass
class Place:
    name: str
    lat: float
    lon: float


@task(config=HttpRequest(service="geo", url="/geocode", params={"q": "{inputs.address}"},
                         outputs="$.results[0]"))  # fmt: skip
def geocode(address: str) -> Place: ...


class Echoed(NamedTuple):
    status: int
    city: str
    method: str


@task(
    config=HttpRequest(
        service="geo",
        method="POST",
        url="/echo",
        body={"place": "{inputs.place}", "limit": 5, "note": "near {inputs.place}"},
        outputs={"status": "status", "city": "$.json.place.name", "method": "$.method"},
    )
)
def echo_place(place: Place) -> Echoed: ...


@workflow
def locate(address: str) -> Place:
    return geocode(address=address)


@workflow
def locate_and_echo(address: str) -> Echoed:
    return echo_place(place=geocode(address=address))


export = HttpJob(
    service="jobs",
    submit=Call(method="POST", url="/jobs", body={"rows": "{inputs.rows}"}),
    status=Call(url="/jobs/{job.id}"),
    result=Call(url="/jobs/{job.id}/result"),
    cancel=Call(method="DELETE", url="/jobs/{job.id}"),
    poll_seconds=0.1,
    error="$.error",
    outputs="$.output.rows",
)


@task(config=export)
def run_export(rows: list[int]) -> list[int]: ...


@workflow
def export_rows(rows: list[int]) -> list[int]:
    return run_export(rows=rows)
