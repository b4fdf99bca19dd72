"""Schedule slots: the instants at which a schedule launches, as UTC epoch seconds.

Cron expressions are read in the plan's time zone, on its wall clock:

- When clocks go forward, a wall time that does not exist that day (02:30 in Paris on the
  last Sunday of March) runs at the first instant after the gap (03:00 summer time).
- When clocks go back, a wall time that happens twice runs once, at its first occurrence,
  unless the hour field has a `*` (`0 * * * *`, `*/15 * * * *`, `0 */2 * * *`): those run
  at every real occurrence, so an hourly plan runs every hour, 25 of them that day.

A fixed rate runs every `interval` after its anchor (the activation of the plan version).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from taskfabric.core.v1 import launch_plan_pb2


def _aware(ts: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz)


def _repeated_wall_time(slot: datetime, tz: ZoneInfo) -> bool:
    """Whether `slot` is the second occurrence of a wall time (clocks went back)."""
    wall = slot.replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return False
    return slot.timestamp() == second.timestamp() and first.timestamp() != second.timestamp()


class _Cron:
    def __init__(self, cron: launch_plan_pb2.CronSchedule) -> None:
        self.expression = cron.expression
        self.tz = ZoneInfo(cron.time_zone or "UTC")
        fields = cron.expression.split()
        self.every_hour = len(fields) > 1 and "*" in fields[1]

    def _keep(self, slot: datetime) -> bool:
        return self.every_hour or not _repeated_wall_time(slot, self.tz)

    def backward(self, until: float) -> Iterator[float]:
        """Slots <= until, newest first."""
        from croniter import croniter

        # Slots fall on whole minutes: starting one second after `until` includes `until`.
        it = croniter(self.expression, _aware(math.floor(until) + 1, self.tz))
        last = math.inf
        stalls = 0
        while True:
            slot: datetime = it.get_prev(datetime)
            ts = slot.timestamp()
            if ts >= last:
                stalls += 1
                if stalls > 3:  # never trust an iterator that stops moving: restart below
                    it = croniter(self.expression, _aware(last, self.tz))
                    stalls = 0
                continue
            stalls = 0
            last = ts
            if self._keep(slot):
                yield ts

    def forward(self, after: float) -> Iterator[float]:
        """Slots > after, oldest first."""
        from croniter import croniter

        it = croniter(self.expression, _aware(after, self.tz))
        last = after
        stalls = 0
        while True:
            slot: datetime = it.get_next(datetime)
            ts = slot.timestamp()
            if ts <= last:
                stalls += 1
                if stalls > 3:
                    it = croniter(self.expression, _aware(last, self.tz))
                    stalls = 0
                continue
            stalls = 0
            last = ts
            if self._keep(slot):
                yield ts


def due_slots(
    schedule: launch_plan_pb2.Schedule,
    *,
    anchor: float,
    after: float,
    until: float,
    limit: int,
) -> list[float]:
    """The newest `limit` slots s with after < s <= until, oldest first."""
    if limit <= 0 or until <= after:
        return []
    kind = schedule.WhichOneof("kind")
    if kind == "fixed_rate":
        interval = schedule.fixed_rate.interval.ToTimedelta().total_seconds()
        first = max(1, math.floor((after - anchor) / interval) + 1)
        last = math.floor((until - anchor) / interval)
        return [anchor + k * interval for k in range(max(first, last - limit + 1), last + 1)]
    if kind == "cron":
        slots: list[float] = []
        for ts in _Cron(schedule.cron).backward(until):
            if ts <= after or len(slots) >= limit:
                break
            slots.append(ts)
        return slots[::-1]
    return []


def next_slot(schedule: launch_plan_pb2.Schedule, *, anchor: float, after: float) -> float | None:
    """The first slot after `after`, or None for no schedule."""
    kind = schedule.WhichOneof("kind")
    if kind == "fixed_rate":
        interval = schedule.fixed_rate.interval.ToTimedelta().total_seconds()
        return anchor + max(1, math.floor((after - anchor) / interval) + 1) * interval
    if kind == "cron":
        return next(_Cron(schedule.cron).forward(after))
    return None


def describe_schedule(schedule: launch_plan_pb2.Schedule) -> str:
    kind = schedule.WhichOneof("kind")
    if kind == "cron":
        return f"cron '{schedule.cron.expression}' ({schedule.cron.time_zone or 'UTC'})"
    if kind == "fixed_rate":
        return f"every {schedule.fixed_rate.interval.ToTimedelta()}"
    return "none"
