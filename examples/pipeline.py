"""Weather-station report: the example workflow the README runs.

Several typed tasks, a fan-out over stations (map_task), a record type, a file output,
retries and a conditional:

    taskfabric run examples/pipeline.py:pipeline --stations 12 --alert-above-c 31.5
"""

from __future__ import annotations

import csv
import hashlib
import random
import statistics
from dataclasses import dataclass
from typing import NamedTuple

from taskfabric import File, Retry, conditional, map_task, task, workflow


@dataclass
class StationStats:
    """Summary of one station's readings."""

    station: str
    readings: int
    mean_c: float
    max_c: float


class Report(NamedTuple):
    table: File
    hottest: StationStats
    verdict: str


@task
def list_stations(region: str, count: int) -> list[str]:
    """The stations of a region."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [f"{region}-{i:03d}" for i in range(count)]


@task(retries=Retry(retries=2, backoff=0.1))
def fetch_readings(station: str, days: int) -> list[float]:
    """Hourly temperatures of a station (deterministic stand-in for a sensor API)."""
    seed = int.from_bytes(hashlib.sha256(station.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    base = rng.uniform(5.0, 25.0)
    return [round(base + rng.gauss(0, 4.0), 2) for _ in range(days * 24)]


@task
def summarize(station: str, readings: list[float]) -> StationStats:
    """Mean and maximum of one station's readings."""
    return StationStats(
        station=station,
        readings=len(readings),
        mean_c=round(statistics.fmean(readings), 2),
        max_c=max(readings),
    )


@task
def write_table(stats: list[StationStats]) -> File:
    """A CSV table of every station, hottest first."""
    out = File.new("stations.csv")
    with open(out.path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["station", "readings", "mean_c", "max_c"])
        for s in sorted(stats, key=lambda s: s.max_c, reverse=True):
            writer.writerow([s.station, s.readings, s.mean_c, s.max_c])
    return out


@task
def hottest(stats: list[StationStats]) -> StationStats:
    return max(stats, key=lambda s: s.max_c)


@task
def peak(station: StationStats) -> float:
    return station.max_c


@task
def heat_alert(station: StationStats, threshold_c: float) -> str:
    return f"ALERT: {station.station} reached {station.max_c} °C (threshold {threshold_c} °C)"


@task
def all_clear(station: StationStats, threshold_c: float) -> str:
    return f"ok: hottest was {station.station} at {station.max_c} °C (threshold {threshold_c} °C)"


@workflow
def pipeline(
    region: str = "north", stations: int = 8, days: int = 7, alert_above_c: float = 35.0
) -> Report:
    """Summarise every station of a region and flag a heat alert."""
    names = list_stations(region=region, count=stations)
    readings = map_task(fetch_readings, concurrency=4)(station=names, days=days)
    stats = map_task(summarize)(station=names, readings=readings)
    table = write_table(stats=stats)
    top = hottest(stats=stats)
    verdict = (
        conditional("heat")
        .if_(peak(station=top) > alert_above_c)
        .then(heat_alert(station=top, threshold_c=alert_above_c))
        .else_()
        .then(all_clear(station=top, threshold_c=alert_above_c))
    )
    return Report(table=table, hottest=top, verdict=verdict)
