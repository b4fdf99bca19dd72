"""The command line with or without a server: `[server] url` set, commands go to the server
(`taskfabric.server.Client`); unset, they run on this config's own database and blob store
through the same control plane code the server runs (`ControlPlane`). Either way they print
the same output."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from taskfabric.cli._common import (
    elapsed,
    err,
    fmt_age,
    fmt_duration,
    fmt_time,
    out,
    phase_text,
    state,
)
from taskfabric.cli._show import print_events, print_nodes
from taskfabric.errors import TaskfabricError

if TYPE_CHECKING:
    from taskfabric.metadata import ExecutionRecord
    from taskfabric.server import Client, ControlPlane
    from taskfabric.server import _models as m


def remote_client() -> Client | None:
    """The client of the configured server, or None when the store is local (then the
    server's package, httpx and the token store are not imported: a local command starts
    faster)."""
    config = state().config
    if not config.server.url:
        return None
    from taskfabric.server import client_for

    return client_for(config)


@contextmanager
def local_plane() -> Iterator[ControlPlane]:
    from taskfabric.server._service import ControlPlane

    plane = ControlPlane(state().config)
    try:
        yield plane
    finally:
        plane.close()


class Control:
    """Execution operations on the configured server, or on the local store: the same calls
    and results either way."""

    def __init__(self, client: Client | None, plane: ControlPlane | None) -> None:
        self._client = client
        self._plane = plane
        self.local = client is None

    def cancel(self, ref: str, reason: str) -> m.PhaseResult:
        if self._client is not None:
            return self._client.cancel(ref, reason)
        assert self._plane is not None
        return self._plane.cancel(_local_user(), ref, reason)

    def relaunch(self, ref: str, name: str | None) -> m.Launched:
        if self._client is not None:
            return self._client.relaunch(ref, name)
        assert self._plane is not None
        return self._plane.relaunch(_local_user(), ref, name)

    def recover(self, ref: str) -> m.Execution:
        if self._client is not None:
            return self._client.recover(ref)
        assert self._plane is not None
        return self._plane.recover(_local_user(), ref)

    def launch_plans(self, project: str, domain: str) -> list[m.LaunchPlan]:
        if self._client is not None:
            return self._client.launch_plans(project, domain)
        assert self._plane is not None
        return self._plane.launch_plans(_local_user(), project, domain)

    def entities(self, project: str, domain: str, kind: str, name: str | None) -> list[m.Entity]:
        if self._client is not None:
            return self._client.entities(project, domain, kind, name)
        assert self._plane is not None
        return self._plane.entities(_local_user(), project, domain, kind, name)


def _local_user() -> Any:
    from taskfabric.server import ANONYMOUS_ADMIN

    return ANONYMOUS_ADMIN


@contextmanager
def control() -> Iterator[Control]:
    client = remote_client()
    if client is not None:
        with client:
            yield Control(client, None)
        return
    with local_plane() as plane:
        yield Control(None, plane)


def as_record(e: m.Execution) -> ExecutionRecord:
    """An API execution as the record `executions list` prints."""
    from taskfabric.metadata import ExecutionRecord

    return ExecutionRecord(
        id=e.id,
        project=e.project,
        domain=e.domain,
        name=e.name,
        workflow_name=e.workflow,
        workflow_version=e.workflow_version,
        phase=e.phase,
        created_at=e.created_at,
        started_at=e.started_at,
        finished_at=e.finished_at,
        owner=e.owner,
        heartbeat_at=e.heartbeat_at,
        launch_plan=e.launch_plan,
        scheduled_at=e.scheduled_at,
        error=e.error.model_dump() if e.error else None,
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sort_key(node_id: str) -> list[Any]:
    from taskfabric.server._views import node_sort_key

    return node_sort_key(node_id)


def print_detail(detail: m.ExecutionDetail, *, show_all: bool, no_values: bool) -> None:
    """`executions show` for an execution read from a server (the layout of the local one)."""

    rec = detail.execution
    shown_values = detail.display
    out.print(f"[bold]execution {rec.id}[/]  {phase_text(rec.phase)}")
    out.print(f"  workflow  {rec.workflow}")
    out.print(f"  project   {rec.project}/{rec.domain}   name {rec.name}")
    out.print(
        f"  started   {fmt_time(rec.started_at)}   duration "
        f"{fmt_duration(elapsed(rec.started_at, rec.finished_at, rec.phase))}"
    )
    if rec.owner:
        out.print(f"  owner     {rec.owner} (heartbeat {fmt_age(rec.heartbeat_at)})")
    for label, values, order in (
        ("inputs", shown_values.inputs if shown_values else {}, detail.input_names),
        ("outputs", shown_values.outputs if shown_values else {}, detail.output_names),
    ):
        if label in detail.omitted:
            out.print(f"  {label}   not shown: {detail.omitted[label]}", markup=False)
        if not values:
            continue
        out.print(f"  {label}")
        for k in [n for n in order if n in values] or sorted(values):
            out.print(f"    {k} = {_clip(values[k], 150)}", markup=False)
    if rec.error:
        e = rec.error
        where = f" (node {e.node_id})" if e.node_id else ""
        out.print(f"  [red]error[/]     {escape(f'{e.code}{where}: {e.message}')}", highlight=False)
    node_values = shown_values.nodes if shown_values else {}
    print_nodes(
        sorted(detail.nodes, key=lambda n: _sort_key(n.node_id)),
        attempts_of=lambda n: n.attempt_details,
        values_of=lambda n: _clip(node_values.get(n.node_id, ""), 80),
        show_all=show_all,
        no_values=no_values,
    )
    print_events(detail.events)


def print_json(model: Any) -> None:
    out.print_json(model.model_dump_json())


def print_launched(
    launched: m.Launched, output_format: str, *, local: bool, id_to_stdout: bool = True
) -> None:
    """The launch; `id_to_stdout=False` when stdout is kept for a later JSON document."""
    if output_format == "json":
        print_json(launched)
        return
    e = launched.execution
    what = "launched" if launched.created else "already launched"
    err.print(
        f"{what}: execution [bold]{e.id}[/] (name {e.name}) of {e.workflow} version "
        f"{e.workflow_version}: {phase_text(e.phase)}"
    )
    if local and e.phase == "QUEUED":
        err.print(
            f"  a server's workers run it (`taskfabric server`), or run it here: "
            f"`taskfabric executions resume {e.id}`"
        )
    if id_to_stdout:
        out.print(e.id, markup=False, highlight=False)


def print_ended(detail: m.ExecutionDetail, output_format: str) -> bool:
    """The end of an execution waited for; True if it succeeded."""
    e = detail.execution
    if output_format == "json":
        out.print_json(
            json.dumps(
                {
                    "execution": e.model_dump(),
                    "outputs": detail.outputs,
                    "error": e.error and e.error.model_dump(),
                }
            )
        )
    elif e.phase == "SUCCEEDED":
        err.print(f"[green]succeeded[/]: execution [bold]{e.id}[/]")
        values = detail.display.outputs if detail.display else {}
        for name in [n for n in detail.output_names if n in values] or sorted(values):
            out.print(f"{name} = {values[name]}", markup=False)
    else:
        node = f" in node {e.error.node_id}" if e.error and e.error.node_id else ""
        # escaped: a message may name a config section ("[engine] max_output_bytes")
        message = escape(f"{e.error.code}: {e.error.message}") if e.error else ""
        err.print(
            f"[bold red]{e.phase.lower()}[/]: execution [bold]{e.id}[/]{escape(node)}: {message}",
            highlight=False,
        )
    return e.phase == "SUCCEEDED"


def split_inputs(raw: tuple[str, ...]) -> dict[str, str]:
    """`--input name=value` options as {name: text}."""
    found: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise TaskfabricError(
                f"--input {item!r}: write NAME=VALUE, e.g. --input days=3 or "
                '--input \'tags=["a", "b"]\''
            )
        found[name.strip().replace("-", "_")] = value
    return found


def literal_inputs(
    interface: Any, raw: Mapping[str, str], *, what: str, ctx: Any = None
) -> dict[str, Any]:
    """Command-line texts as literals, by the types of `interface` (a TypedInterface)."""
    from taskfabric.server import InputError, text_to_literal
    from taskfabric.types import type_str

    declared = {p.name: p for p in interface.inputs}
    found = {}
    for name, text in raw.items():
        param = declared.get(name)
        if param is None:
            expected = ", ".join(f"{p.name}: {type_str(p.type)}" for p in interface.inputs)
            raise InputError(
                name, f"{what} has no such input; its inputs are: {expected or 'none'}"
            )
        found[name] = text_to_literal(text, param.type, name=name, ctx=ctx)
    return found


def upload_context(plane: ControlPlane) -> Any:
    """Where local files given as inputs are uploaded (a launch on the local store)."""
    from taskfabric.types import TransformContext

    engine = plane.engine
    tag = secrets.token_hex(6)
    return TransformContext(
        store=engine.store,
        raw_prefix=engine.store.uri("uploads", tag),
        work_dir=engine.work_root / "uploads" / tag,
    )
