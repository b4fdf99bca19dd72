"""`taskfabric pools [list] | show NAME`"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import click
from rich.table import Table

from taskfabric.cli._common import err, fail, fmt_duration, out, state, user_errors

#: Holders and waiters shown per pool by the list; `pools show` shows them all.
LIST_LIMIT = 10

_OUTPUT = click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)


def _status(names: list[str] | None) -> tuple[list[Any], float]:
    from taskfabric.metadata import MetadataStore
    from taskfabric.pools import PoolManager, specs_from_config

    config = state().config
    specs = specs_from_config(config)
    if not specs:
        where = config.source or "the config file"
        fail(f"no pools configured: declare one under [pools.<name>] in {where}")
    for name in names or ():
        if name not in specs:
            fail(f"no pool named '{name}'; configured pools: {', '.join(specs)}")
    store = MetadataStore(config.metadata_url)
    manager = None
    try:
        manager = PoolManager(store.engine, specs, owner=f"{socket.gethostname()}:{os.getpid()}")
        return manager.status(names), time.time()
    finally:
        if manager is not None:
            manager.close()
        store.close()


def _rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    if rate < 1:
        return f"{rate * 60:g}/min"
    return f"{rate:g}/s"


def _holder_json(h: Any, now: float) -> dict[str, Any]:
    return {
        "execution_id": h.holder.execution_id,
        "node_id": h.holder.node_id,
        "attempt": h.holder.attempt,
        "project": h.holder.project,
        "domain": h.holder.domain,
        "weight": h.weight,
        "token": h.token,
        "owner": h.owner,
        "acquired_at": h.acquired_at,
        "expires_at": h.expires_at,
        "age_seconds": max(0.0, now - h.acquired_at),
        "expires_in_seconds": h.expires_at - now,
    }


def _waiter_json(w: Any, now: float) -> dict[str, Any]:
    return {
        "position": w.position,
        "execution_id": w.holder.execution_id,
        "node_id": w.holder.node_id,
        "attempt": w.holder.attempt,
        "project": w.holder.project,
        "domain": w.holder.domain,
        "weight": w.weight,
        "priority": w.priority,
        "owner": w.owner,
        "enqueued_at": w.enqueued_at,
        "waiting_seconds": max(0.0, now - w.enqueued_at),
        "skips": w.skips,
        "reserving": w.reserving,
    }


def _pool_json(status: Any, now: float) -> dict[str, Any]:
    spec = status.spec
    return {
        "name": spec.name,
        "slots": spec.slots,
        "in_use": status.in_use,
        "rate_per_second": spec.rate,
        "burst": spec.bucket if spec.rate is not None else None,
        "tokens": status.tokens,
        "paused_until": status.paused_until,
        "lease_ttl": spec.lease_ttl,
        "project_caps": dict(spec.project_caps),
        "domain_caps": dict(spec.domain_caps),
        "project_weights": dict(spec.project_weights),
        "holders": [_holder_json(h, now) for h in status.holders],
        "waiters": [_waiter_json(w, now) for w in status.waiters],
    }


def _state_text(status: Any, now: float) -> str:
    if status.paused_until is not None:
        return f"[yellow]paused {fmt_duration(status.paused_until - now)}[/]"
    if status.in_use >= status.spec.slots:
        return "[bold]full[/]"
    return "[green]ok[/]"


def _summary(statuses: list[Any], now: float) -> Table:
    table = Table(box=None, header_style="bold", title_justify="left")
    for col in ("POOL", "IN USE", "RATE", "TOKENS", "TTL", "HOLDERS", "WAITERS", "STATE"):
        table.add_column(col)
    for s in statuses:
        spec = s.spec
        table.add_row(
            spec.name,
            f"{s.in_use}/{spec.slots}",
            _rate(spec.rate) + (f" burst {spec.bucket}" if spec.rate is not None else ""),
            "-" if s.tokens is None else f"{s.tokens:.1f}",
            fmt_duration(spec.lease_ttl),
            str(len(s.holders)),
            str(len(s.waiters)),
            _state_text(s, now),
        )
    return table


def _holders(status: Any, now: float, limit: int | None) -> Table:
    table = Table(box=None, header_style="bold", title=f"{status.spec.name}: holders")
    table.title_justify = "left"
    for col in ("EXECUTION", "NODE", "ATTEMPT", "PROJECT/DOMAIN", "SLOTS", "AGE", "EXPIRES IN"):
        table.add_column(col)
    table.add_column("OWNER")
    shown = status.holders if limit is None else status.holders[:limit]
    for h in shown:
        left = h.expires_at - now
        table.add_row(
            h.holder.execution_id,
            h.holder.node_id,
            str(h.holder.attempt),
            f"{h.holder.project}/{h.holder.domain}",
            str(h.weight),
            fmt_duration(max(0.0, now - h.acquired_at)),
            fmt_duration(left) if left >= 0 else f"[red]expired {fmt_duration(-left)} ago[/]",
            h.owner,
        )
    if len(shown) < len(status.holders):
        table.add_row(f"… {len(status.holders) - len(shown)} more", *[""] * 7)
    return table


def _waiters(status: Any, now: float, limit: int | None) -> Table:
    table = Table(box=None, header_style="bold", title=f"{status.spec.name}: waiters, in order")
    table.title_justify = "left"
    for col in ("#", "EXECUTION", "NODE", "ATTEMPT", "PROJECT/DOMAIN", "SLOTS", "PRIORITY"):
        table.add_column(col)
    table.add_column("WAITING")
    table.add_column("NOTE")
    shown = status.waiters if limit is None else status.waiters[:limit]
    for w in shown:
        table.add_row(
            str(w.position),
            w.holder.execution_id,
            w.holder.node_id,
            str(w.holder.attempt),
            f"{w.holder.project}/{w.holder.domain}",
            str(w.weight),
            str(w.priority),
            fmt_duration(max(0.0, now - w.enqueued_at)),
            "reserving" if w.reserving else (f"skipped {w.skips}x" if w.skips else ""),
        )
    if len(shown) < len(status.waiters):
        table.add_row("", f"… {len(status.waiters) - len(shown)} more", *[""] * 7)
    return table


def _limits(status: Any) -> str:
    spec = status.spec
    parts = []
    for label, caps in (("project caps", spec.project_caps), ("domain caps", spec.domain_caps)):
        if caps:
            parts.append(label + ": " + ", ".join(f"{k}={v}" for k, v in sorted(caps.items())))
    if spec.project_weights:
        weights = ", ".join(f"{k}={v:g}" for k, v in sorted(spec.project_weights.items()))
        parts.append("project weights: " + weights)
    return "; ".join(parts)


def _print_details(status: Any, now: float, limit: int | None) -> None:
    limits = _limits(status)
    if limits:
        out.print(f"[bold]{status.spec.name}[/] {limits}")
    if status.holders:
        out.print(_holders(status, now, limit))
    if status.waiters:
        out.print(_waiters(status, now, limit))


@click.group(invoke_without_command=True)
@_OUTPUT
@click.pass_context
def pools(ctx: click.Context, output_format: str) -> None:
    """Resource pools: capacity, rate, holders and waiters (alone: the same as `pools list`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_pools, output_format=output_format)


@pools.command("list")
@_OUTPUT
def list_pools(output_format: str) -> None:
    """Every pool: capacity, rate, in use, holders with age and expiry, waiters in order."""
    with user_errors():
        statuses, now = _status(None)
    if output_format == "json":
        out.print_json(json.dumps([_pool_json(s, now) for s in statuses]))
        return
    out.print(_summary(statuses, now))
    for status in statuses:
        if status.holders or status.waiters:
            out.print()
            _print_details(status, now, LIST_LIMIT)


@pools.command("show")
@click.argument("name")
@_OUTPUT
def show_pool(name: str, output_format: str) -> None:
    """One pool with every holder and waiter."""
    with user_errors():
        statuses, now = _status([name])
    status = statuses[0]
    if output_format == "json":
        out.print_json(json.dumps(_pool_json(status, now)))
        return
    out.print(_summary(statuses, now))
    out.print()
    _print_details(status, now, None)
    if not status.holders and not status.waiters:
        err.print(f"nobody holds or waits for '{name}'")
