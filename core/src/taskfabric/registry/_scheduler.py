"""The scheduler: launches the active launch plans' schedule slots, restart-safe.

Each tick, for every active plan with a schedule, the slots since the plan's recorded
progress (`last_slot`) are due. Each is launched under a name derived from the plan and the
slot (`nightly-20261127T010000Z`), and only then recorded. A crash between the two leaves the
slot unrecorded: the next tick launches it again under the same name, which the launcher
(`Engine.enqueue`) answers with the execution it already made. So a slot is never launched
twice and never lost, however many schedulers run and however often they restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from taskfabric.core.v1 import launch_plan_pb2
from taskfabric.logs import get_logger
from taskfabric.registry._launch import Launcher, execution_name
from taskfabric.registry._registry import ActiveLaunchPlan, Registry
from taskfabric.registry._schedule import due_slots

log = get_logger("taskfabric.scheduler")

_BIG = 1_000_000


class Scheduler:
    """Launches scheduled launch plans through `launcher` (e.g. `enqueue_launcher(engine)`).

    `grace` is how late (seconds) a slot may be and still count as on time: with
    `catch_up="none"`, slots later than that (missed while the scheduler was down) are left
    out.
    """

    def __init__(
        self,
        registry: Registry,
        launcher: Launcher,
        clock: Callable[[], float] = time.time,
        *,
        grace: float = 60.0,
    ) -> None:
        self.registry = registry
        self.launcher = launcher
        self.clock = clock
        self.grace = grace

    def tick(self, now: float | None = None) -> list[str]:
        """Launch every due slot of every active scheduled plan; the execution ids launched.

        One plan's failure (a missing workflow, a launcher error) is logged and does not stop
        the others; its slots stay unrecorded and are tried again next tick.
        """
        now = self.clock() if now is None else now
        launched: list[str] = []
        for state in self.registry.active_launch_plans():
            try:
                spec = self.registry.get_launch_plan(
                    state.project, state.domain, state.name, state.version
                )
                if spec.HasField("schedule"):
                    launched += self._tick_plan(state, spec, now)
            except Exception:
                log.exception(
                    "scheduled launch failed",
                    project=state.project,
                    domain=state.domain,
                    launch_plan=state.name,
                    version=state.version,
                )
        return launched

    def _slots(
        self, state: ActiveLaunchPlan, spec: launch_plan_pb2.LaunchPlanSpec, now: float
    ) -> tuple[list[float], float | None]:
        """The slots to launch and the newest due slot (recorded even when left out)."""
        schedule = spec.schedule
        newest = due_slots(
            schedule, anchor=state.activated_at, after=state.last_slot, until=now, limit=1
        )
        if not newest:
            return [], None
        policy = spec.catch_up
        if policy == launch_plan_pb2.CATCH_UP_POLICY_ALL:
            limit = max(1, spec.max_catch_up)
            slots = due_slots(
                schedule, anchor=state.activated_at, after=state.last_slot, until=now, limit=limit
            )
        elif policy == launch_plan_pb2.CATCH_UP_POLICY_NONE:
            slots = due_slots(
                schedule,
                anchor=state.activated_at,
                after=max(state.last_slot, now - self.grace),
                until=now,
                limit=_BIG,
            )
        else:  # latest, and the default
            slots = newest
        return slots, newest[-1]

    def _tick_plan(
        self, state: ActiveLaunchPlan, spec: launch_plan_pb2.LaunchPlanSpec, now: float
    ) -> list[str]:
        slots, newest = self._slots(state, spec, now)
        if newest is None:
            return []
        launched: list[str] = []
        for slot in slots:
            name = execution_name(state.name, slot)
            if spec.concurrency == launch_plan_pb2.CONCURRENCY_POLICY_SKIP and (
                self.registry.plan_is_running(state.project, state.domain, state.name, besides=name)
            ):
                log.info(
                    "scheduled slot skipped: an earlier execution is still running",
                    project=state.project,
                    domain=state.domain,
                    launch_plan=state.name,
                    execution=name,
                )
                self.registry.record_slot(state, slot)
                continue
            request = self.registry.prepare_launch(
                state.project,
                state.domain,
                state.name,
                version=state.version,
                execution_name=name,
                scheduled_at=slot,
            )
            launched.append(self.launcher(request))
            # Recorded after the launch: a crash in between re-launches the same name.
            self.registry.record_slot(state, slot)
        if not slots:
            log.info(
                "missed slots left out by the catch-up policy",
                project=state.project,
                domain=state.domain,
                launch_plan=state.name,
                up_to=execution_name(state.name, newest),
            )
        # Slots the catch-up policy left out are handled too.
        self.registry.record_slot(state, newest)
        if launched:
            log.info(
                "scheduled launches",
                project=state.project,
                domain=state.domain,
                launch_plan=state.name,
                executions=launched,
            )
        return launched

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick every `interval` seconds until `stop` is set; errors are logged, not raised."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            stop.wait(interval)
