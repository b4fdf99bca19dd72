"""Helpers of the registry tests: source trees, a fake clock, a launcher that records."""

from __future__ import annotations

import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from taskfabric.metadata import ExecutionRecord, MetadataStore
from taskfabric.metadata._schema import executions
from taskfabric.registry import LaunchRequest

FLOWS = """
from datetime import timedelta

from taskfabric import Cron, FixedRate, LaunchPlan, conditional, map_task, task, workflow

FACTOR = {factor}


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def scaled(x: int) -> int:
    return scale(x=x, factor=FACTOR)


@workflow
def pipeline(n: int, bonus: int = 0) -> int:
    s = total(xs=map_task(scale)(x=numbers(n=n), factor=FACTOR))
    extra = (
        conditional("bonus")
        .if_(bonus > 0)
        .then(scaled(x=bonus))
        .else_()
        .then(scale(x=bonus, factor=0))
    )
    return total(xs=[s, extra])


hourly = LaunchPlan(
    "hourly",
    pipeline,
    fixed_inputs={{"n": 3}},
    default_inputs={{"bonus": 1}},
    schedule={schedule},
    concurrency="{concurrency}",
    catch_up="{catch_up}",
    max_catch_up={max_catch_up},
    cluster="eu",
)
"""


def flows_source(
    *,
    factor: int = 2,
    schedule: str = 'Cron("0 * * * *", tz="Europe/Paris")',
    concurrency: str = "allow",
    catch_up: str = "all",
    max_catch_up: int = 10,
) -> str:
    return FLOWS.format(
        factor=factor,
        schedule=schedule,
        concurrency=concurrency,
        catch_up=catch_up,
        max_catch_up=max_catch_up,
    )


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def flows_package(root: Path, **kwargs: object) -> Path:
    """A package `acme` with `acme/flows.py` (and a helper module); returns the package."""
    write_tree(
        root,
        {
            "acme/__init__.py": "",
            "acme/flows.py": flows_source(**kwargs),  # type: ignore[arg-type]
            "acme/util.py": "VALUE = 1\n",
        },
    )
    return root / "acme"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc,arg-type]


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Crash(BaseException):
    """The scheduler process dying (not an Exception: nothing catches it)."""


class RecordingLauncher:
    """Creates QUEUED execution rows, idempotent by (project, domain, name), like
    `Engine.enqueue`, and remembers every execution it really created."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        self.created: list[LaunchRequest] = []
        self.calls = 0
        #: Raise Crash right after creating this many executions (then stop crashing).
        self.crash_after: int | None = None

    def __call__(self, request: LaunchRequest) -> str:
        self.calls += 1
        t = executions
        with self.metadata.engine.connect() as conn:
            found = conn.execute(
                sa.select(t.c.id).where(
                    t.c.project == request.project,
                    t.c.domain == request.domain,
                    t.c.name == request.name,
                )
            ).scalar()
        if found is not None:
            return str(found)
        rec = ExecutionRecord(
            id=uuid.uuid4().hex[:12],
            project=request.project,
            domain=request.domain,
            name=request.name,
            workflow_name=request.workflow.primary.id.name,
            workflow_version=request.workflow.primary.id.version,
            phase="QUEUED",
            created_at=time.time(),
            code=request.code,
            launch_plan=request.launch_plan,
            scheduled_at=request.scheduled_at,
        )
        self.metadata.create_execution(rec)
        self.created.append(request)
        if self.crash_after is not None and len(self.created) >= self.crash_after:
            self.crash_after = None
            raise Crash
        return rec.id

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.created]

    def set_phase(self, name: str, phase: str) -> None:
        t = executions
        with self.metadata.engine.begin() as conn:
            conn.execute(t.update().where(t.c.name == name).values(phase=phase))
