"""Progress of a run on stderr.

On a terminal: a live line with node counts by phase and what is running now, replaced at
the end by a summary (nodes, durations, cache hits, pool waits). Piped (a CI log, a file):
one line per node start and end, with its duration, then the same summary.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from taskfabric.cli._common import fmt_duration

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
_ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "SKIPPED", "ABORTED")
_ATTEMPTED = ("task", "map_item")


@dataclass
class _Node:
    name: str
    kind: str
    started: float | None = None  # first RUNNING
    ended: float | None = None
    pool_wait_since: float | None = None
    pool_waited: float = 0.0
    cache_hit: bool = False

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


class RunProgress:
    """Collects node events; renders them with rich.Live on a terminal, as lines otherwise."""

    def __init__(self, console: Console, workflow: str, *, clock: Any = time.monotonic) -> None:
        self.console = console
        self.workflow = workflow
        self.clock = clock
        self.phases: dict[str, str] = {}
        self.nodes: dict[str, _Node] = {}
        self.running: dict[str, float] = {}
        self.execution_id = ""
        self.started = clock()
        self.phase = ""
        self.lines = not console.is_terminal
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> RunProgress:
        if not self.lines:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=8, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        if self.phase:
            self.print_summary()

    def started_execution(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.console.print(
            f"execution [bold]{execution_id}[/] of {self.workflow} started", highlight=False
        )

    def finish(self, phase: str) -> None:
        """The execution ended: the summary is printed when the display closes."""
        self.phase = phase

    def __call__(self, event: NodeEvent) -> None:
        now = self.clock()
        node = self.nodes.get(event.node_id)
        if node is None:
            node = self.nodes[event.node_id] = _Node(event.name, event.kind)
        before = self.phases.get(event.node_id)
        self.phases[event.node_id] = event.phase
        if event.phase == "QUEUED" and event.message.startswith("waiting for"):
            if node.pool_wait_since is None:
                node.pool_wait_since = now
        elif node.pool_wait_since is not None:
            node.pool_waited += now - node.pool_wait_since
            node.pool_wait_since = None
        if event.phase == "RUNNING":
            if event.kind in _ATTEMPTED:
                self.running[event.node_id] = now
            if node.started is None:
                node.started = now
                if self.lines:
                    self._line(event, "start", "")
            elif self.lines and event.kind in _ATTEMPTED and before == "RETRYING":
                self._line(event, "retry", f"attempt {event.attempt}")
        else:
            self.running.pop(event.node_id, None)
        if event.phase in _ENDED and node.ended is None:
            node.ended = now
            if node.started is None:
                node.started = now  # served from the cache, or skipped: it never ran
            node.cache_hit = event.cache_status == "hit"
            if self.lines:
                how = event.phase.lower()
                if node.cache_hit:
                    how += " (cache hit)"
                self._line(event, "end", f"{how} {fmt_duration(node.duration)}")
        if event.phase in ("FAILED", "TIMED_OUT") or (
            event.phase == "RETRYING" and event.kind in _ATTEMPTED
        ):
            self.console.print(
                Text.assemble(
                    (f"{event.phase.lower()}: ", _STYLE.get(event.phase, "")),
                    f"{event.name} ({event.node_id}) {event.message}",
                )
            )
        if self._live is not None and now - self._last > 0.1:
            self._last = now
            self._live.update(self._render())

    def _line(self, event: NodeEvent, what: str, detail: str) -> None:
        elapsed = self.clock() - self.started
        text = f"[{elapsed:7.2f}s] {what:<5} {event.node_id} {event.name} {detail}".rstrip()
        # Piped, the line is plain text, written as is: rich's rendering of it (no markup,
        # no highlighting, soft wrap: nothing changes but `:name:` read as an emoji) cost
        # a tenth of a chain of 100's whole `taskfabric run` (two lines a node).
        self.console.file.write(text + "\n")

    def summary(self) -> str:
        """Nodes by phase, cache hits, pool waits, the time taken and the slowest nodes."""
        counts = Counter(self.phases.values())
        parts = [f"{len(self.phases)} nodes"]
        parts += [f"{counts[p]} {p.lower()}" for p in _ORDER if counts.get(p)]
        hits = sum(1 for n in self.nodes.values() if n.cache_hit)
        waited = [n for n in self.nodes.values() if n.pool_waited > 0]
        text = f"{self.phase.lower() or 'ended'} in {fmt_duration(self.clock() - self.started)}: "
        text += ", ".join(parts)
        text += f"; {hits} cache hit{'s' if hits != 1 else ''}"
        if waited:
            total = sum(n.pool_waited for n in waited)
            text += f"; {len(waited)} waited for pools ({fmt_duration(total)} in all)"
        ran = sorted(
            (
                (n.duration, node_id, n.name)
                for node_id, n in self.nodes.items()
                if n.kind in _ATTEMPTED and n.duration is not None and not n.cache_hit
            ),
            reverse=True,
        )
        if ran:
            text += "\nslowest: " + ", ".join(
                f"{name} ({node_id}) {fmt_duration(d)}" for d, node_id, name in ran[:3]
            )
        return text

    def print_summary(self) -> None:
        self.console.print(self.summary(), markup=False, highlight=False)

    def _render(self) -> RenderableType:
        counts = Counter(self.phases.values())
        parts: list[Any] = [f"{self.workflow} {self.execution_id}  "]
        for phase in _ORDER:
            if counts.get(phase):
                parts.append((f"{phase.lower()} {counts[phase]}  ", _STYLE.get(phase, "")))
        elapsed = self.clock() - self.started
        parts.append((f"{elapsed:.1f}s", "dim"))
        lines: list[RenderableType] = [Text.assemble(*parts)]
        now = self.clock()
        for node_id, since in list(self.running.items())[:6]:
            name = self.nodes[node_id].name if node_id in self.nodes else node_id
            lines.append(Text(f"  ▸ {name} ({node_id}) {now - since:.1f}s", style="cyan"))
        if len(self.running) > 6:
            lines.append(Text(f"  … and {len(self.running) - 6} more running", style="dim"))
        return Group(*lines)
