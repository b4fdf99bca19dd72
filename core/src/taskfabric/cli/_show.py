"""The node table and event list of `executions show`, for the local store and a server alike.

Nodes and attempts are duck-typed: the metadata store's records and the API's models carry
the same fields (node_id, name, kind, phase, attempts, cache_status, started_at,
finished_at, error, message, parent_id; attempt, phase, error).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.table import Table

from taskfabric.cli._common import elapsed, fmt_duration, fmt_time, out, phase_text


def node_sort_key(node_id: str) -> list[Any]:
    """Node ids in their natural order: n2 before n10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", node_id)]


def print_nodes(
    nodes: Iterable[Any],
    *,
    attempts_of: Callable[[Any], Sequence[Any]],
    values_of: Callable[[Any], str],
    show_all: bool,
    no_values: bool,
) -> None:
    """The node table (map items folded into their map unless `show_all` or failing), then
    the failed attempts and last traceback of each failed node."""
    items: dict[str, list[Any]] = {}
    shown: list[Any] = []
    for n in nodes:
        if n.kind == "map_item":
            items.setdefault(n.parent_id, []).append(n)
            if show_all or n.phase in ("FAILED", "TIMED_OUT", "RETRYING"):
                shown.append(n)
        else:
            shown.append(n)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NODE", "NAME", "KIND", "PHASE", "ATTEMPTS", "CACHE", "WAITED", "DURATION"):
        table.add_column(col, no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    for n in shown:
        detail = n.message
        if n.error and n.phase != "SUCCEEDED":
            detail = f"{n.error.get('code', '')}: {n.error.get('message', '')}"
        elif n.kind == "map" and n.node_id in items:
            counts = Counter(i.phase for i in items[n.node_id])
            detail = f"{len(items[n.node_id])} items: " + ", ".join(
                f"{v} {k.lower()}" for k, v in sorted(counts.items())
            )
        elif not no_values and n.phase == "SUCCEEDED" and n.kind != "map_item":
            vals = values_of(n)
            detail = f"→ {vals}" if vals else detail
        waited, ran = waited_and_ran(n, attempts_of(n) if n.kind in _ATTEMPTED else [])
        table.add_row(
            n.node_id,
            n.name,
            n.kind,
            phase_text(n.phase),
            str(n.attempts or ""),
            n.cache_status if n.cache_status != "disabled" else "",
            fmt_duration(waited) if waited and waited >= 0.001 else "",
            fmt_duration(ran),
            detail,
        )
    out.print()
    out.print(table)
    for n in shown:
        failed = [a for a in attempts_of(n) if a.error]
        if n.phase in ("FAILED", "TIMED_OUT") and failed:
            out.print(f"\n[bold red]{n.node_id} ({n.name})[/] attempts:")
            for a in failed:
                problem = a.error or {}
                out.print(
                    f"  #{a.attempt} {a.phase} {problem.get('code', '')}: "
                    f"{problem.get('message', '')}",
                    markup=False,
                )
                for link in _log_links(a):
                    out.print(f"      log {link}", markup=False, highlight=False)
            last = failed[-1].error or {}
            if last.get("traceback"):
                out.print(str(last["traceback"]).rstrip(), markup=False, highlight=False)
    _print_logs([n for n in shown if n.phase not in ("FAILED", "TIMED_OUT")], attempts_of)


_ATTEMPTED = ("task", "map_item")


def waited_and_ran(
    node: Any, attempts: Sequence[Any], now: float | None = None
) -> tuple[float | None, float | None]:
    """A node's time before its first attempt started (a map's concurrency slot, a resource
    pool, the engine's parallelism) and its time from then on (to its end, or to now while
    it runs). Nodes without attempts (maps, sub-workflows, cache hits) only ran."""
    starts = (getattr(a, "started_at", None) for a in attempts)
    first = next((at for at in starts if at is not None), None)
    if first is None or node.started_at is None:
        return None, elapsed(node.started_at, node.finished_at, node.phase, now)
    return max(0.0, first - node.started_at), elapsed(first, node.finished_at, node.phase, now)


def _log_links(attempt: Any) -> list[str]:
    """`name: uri` of each log link of an attempt (a backend's driver log, job page, ...)."""
    links = getattr(attempt, "log_links", None) or []
    return [f"{link.get('name', 'log')}: {link.get('uri', '')}" for link in links]


def _print_logs(nodes: Sequence[Any], attempts_of: Callable[[Any], Sequence[Any]]) -> None:
    """The log links of each node's latest attempt (failed nodes list theirs above)."""
    rows = []
    for n in nodes:
        attempts = attempts_of(n) if n.kind in {"task", "map_item"} else []
        if attempts:
            rows += [f"  {n.node_id} #{attempts[-1].attempt} {x}" for x in _log_links(attempts[-1])]
    if rows:
        out.print("\n[bold]logs[/]")
        for row in rows:
            out.print(row, markup=False, highlight=False)


def print_events(events: Sequence[Any]) -> None:
    if not events:
        return
    out.print("\n[bold]events[/]")
    for ev in events:
        node = ev.node_id or "(execution)"
        out.print(
            f"  {fmt_time(ev.at)}  {node:<16} #{ev.attempt}  {ev.phase:<10} {ev.message}",
            markup=False,
        )
