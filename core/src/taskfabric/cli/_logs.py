"""`taskfabric executions logs ID [NODE] [--attempt N] [--follow]`: what tasks printed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from taskfabric.cli._common import err, fail, state, user_errors
from taskfabric.cli._remote import remote_client
from taskfabric.cli._show import node_sort_key
from taskfabric.errors import TaskfabricError

if TYPE_CHECKING:  # the server's models are imported by the fetches, not to start the CLI
    from taskfabric.server import _models as m

#: Seconds between two reads of a log that is being followed.
FOLLOW_EVERY = 0.5

Fetch = Callable[[str, int | None, int], "m.TaskLog"]


@dataclass
class _Source:
    """Where logs come from: this machine's engine or a server."""

    fetch: Fetch
    #: (node_id, name, latest attempt, its phase, it has a log) of every attempted task node.
    attempted: list[tuple[str, str, int, str, bool]]


@contextmanager
def _source(ref: str) -> Iterator[_Source]:

    with user_errors():
        client = remote_client()
    if client is not None:
        with client, user_errors():
            detail = client.execution(ref, values=False)
            execution_id = detail.execution.id
            found = [
                (
                    n.node_id,
                    n.name,
                    n.attempt_details[-1].attempt,
                    n.attempt_details[-1].phase,
                    _has_log(n.attempt_details[-1].phase, n.attempt_details[-1].log_links),
                )
                for n in detail.nodes
                if n.attempt_details
            ]

            def remote(node: str, attempt: int | None, offset: int) -> m.TaskLog:
                return client.task_log(execution_id, node, attempt=attempt, offset=offset)

            yield _Source(remote, sorted(found, key=lambda t: node_sort_key(t[0])))
        return
    from taskfabric.engine import Engine
    from taskfabric.server._views import task_log

    with user_errors(), Engine(state().config) as engine:
        rec = engine.find_execution(ref)
        names = {n.node_id: n.name for n in engine.metadata.nodes(rec.id)}
        latest: dict[str, Any] = {}
        for a in engine.metadata.attempts(rec.id):
            latest[a.node_id] = a  # attempts come in order
        found = [
            (
                a.node_id,
                names.get(a.node_id, ""),
                a.attempt,
                a.phase,
                _has_log(a.phase, a.log_links),
            )
            for a in latest.values()
        ]

        def local(node: str, attempt: int | None, offset: int) -> m.TaskLog:
            return task_log(engine, rec, node, attempt, offset)

        yield _Source(local, sorted(found, key=lambda t: node_sort_key(t[0])))


def _has_log(phase: str, links: list[dict[str, str]]) -> bool:
    return phase == "RUNNING" or any(link.get("name") == "log" for link in links)


def _node_id(source: _Source, node: str) -> str:
    """`node` as a node id: an id, or the name of exactly one attempted node."""
    ids = [t[0] for t in source.attempted]
    if node in ids:
        return node
    named = [t[0] for t in source.attempted if t[1] == node or t[1].endswith("." + node)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise TaskfabricError(
            f"'{node}' names several nodes ({', '.join(named[:8])}): give a node id"
        )
    return node  # the fetch says what is wrong with it


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_attempt(source: _Source, node: str, attempt: int | None, follow: bool) -> None:
    offset = 0
    while True:
        piece = source.fetch(node, attempt, offset)
        _write(piece.text)
        offset = piece.next_offset
        if piece.complete:
            return
        if piece.next_offset > piece.offset:
            continue  # more is there already
        if not follow:
            if piece.phase == "RUNNING":
                err.print(
                    f"(attempt {piece.attempt} of {node} is still running: --follow keeps reading)",
                    style="dim",
                    highlight=False,
                )
            return
        attempt = piece.attempt  # a retry starting meanwhile is another attempt
        time.sleep(FOLLOW_EVERY)


@click.command("logs")
@click.argument("execution")
@click.argument("node", required=False)
@click.option("--attempt", type=click.IntRange(min=1), default=None, help="Attempt number.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the attempt ends.")
def logs(execution: str, node: str | None, attempt: int | None, follow: bool) -> None:
    """What a task printed (stdout and stderr), one attempt: the latest unless --attempt.

    Without NODE, the latest attempt of every task that printed something, each under a
    `==> NODE (NAME) attempt N PHASE <==` line. NODE is a node id (`n1[3]` for a map item)
    or a task's name. Logs are kept per attempt in the blob store (their last 1 MiB)."""
    with _source(execution) as source, user_errors():
        if node is None:
            if follow or attempt is not None:
                fail(
                    "--follow and --attempt need a NODE (`taskfabric executions show` lists them)",
                    2,
                )
            shown = [t for t in source.attempted if t[4]]
            if not shown:
                err.print(f"no task of execution {execution} has printed anything")
                return
            for node_id, name, number, phase, _ in shown:
                _write(f"==> {node_id} ({name}) attempt {number} {phase} <==\n")
                _print_attempt(source, node_id, number, follow=False)
            return
        _print_attempt(source, _node_id(source, node), attempt, follow)


__all__ = ["logs"]
