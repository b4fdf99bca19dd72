"""Live progress of a run: node counts by phase and what is running now."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from taskfabric.plugin_api import NodeEvent

_ORDER = ["SUCCEEDED", "RUNNING", "QUEUED", "RETRYING", "FAILED", "TIMED_OUT", "SKIPPED", "ABORTED"]
_STYLE = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "ABORTED": "magenta",
}


class RunProgress:
    """Collects node events and renders them with rich.Live (only on a terminal)."""

    def __init__(self, console: Console, workflow: str) -> None:
        self.console = console
        self.workflow = workflow
        self.phases: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.running: dict[str, float] = {}
        self.execution_id = ""
        self.started = time.monotonic()
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=8, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def started_execution(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.console.print(
            f"execution [bold]{execution_id}[/] of {self.workflow} started", highlight=False
        )

    def __call__(self, event: NodeEvent) -> None:
        self.phases[event.node_id] = event.phase
        self.names[event.node_id] = event.name
        if event.phase == "RUNNING" and event.kind in ("task", "map_item"):
            self.running[event.node_id] = time.monotonic()
        else:
            self.running.pop(event.node_id, None)
        if event.phase in ("FAILED", "TIMED_OUT") or (
            event.phase == "RETRYING" and event.kind in ("task", "map_item")
        ):
            self.console.print(
                Text.assemble(
                    (f"{event.phase.lower()}: ", _STYLE.get(event.phase, "")),
                    f"{event.name} ({event.node_id}) {event.message}",
                )
            )
        now = time.monotonic()
        if self._live is not None and now - self._last > 0.1:
            self._last = now
            self._live.update(self._render())

    def _render(self) -> RenderableType:
        counts = Counter(self.phases.values())
        parts: list[Any] = [f"{self.workflow} {self.execution_id}  "]
        for phase in _ORDER:
            if counts.get(phase):
                parts.append((f"{phase.lower()} {counts[phase]}  ", _STYLE.get(phase, "")))
        elapsed = time.monotonic() - self.started
        parts.append((f"{elapsed:.1f}s", "dim"))
        lines: list[RenderableType] = [Text.assemble(*parts)]
        now = time.monotonic()
        for node_id, since in list(self.running.items())[:6]:
            lines.append(
                Text(
                    f"  ▸ {self.names.get(node_id, node_id)} ({node_id}) {now - since:.1f}s",
                    style="cyan",
                )
            )
        if len(self.running) > 6:
            lines.append(Text(f"  … and {len(self.running) - 6} more running", style="dim"))
        return Group(*lines)
