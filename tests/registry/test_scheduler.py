"""The scheduler: cron in a time zone across DST changes, fixed rates, restart safety,
catch-up and concurrency policies, activation moving the schedule. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_helpers import Clock, Crash, RecordingLauncher, flows_package, utc

from taskfabric.metadata import MetadataStore
from taskfabric.registry import Registry, Scheduler, execution_name
from taskfabric.storage import LocalBlobStore

P, D = "acme", "production"


def _plan(registry: Registry, tmp_path: Path, version: str = "v1", **kwargs: object) -> None:
    """Register the `hourly` launch plan (with these settings) as `version` and activate it."""
    pkg = flows_package(tmp_path / version, **kwargs)
    registry.register(pkg, project=P, domain=D, version=version)
    registry.activate(P, D, "hourly", version)


def _slots(launcher: RecordingLauncher) -> list[float]:
    return [r.scheduled_at for r in launcher.created]  # type: ignore[misc]


def test_execution_names_derive_from_the_plan_and_the_utc_slot() -> None:
    assert execution_name("nightly", utc(2026, 11, 27, 1)) == "nightly-20261127T010000Z"


@pytest.mark.parametrize("ticking", ["hourly", "once"])
def test_cron_in_a_time_zone_when_clocks_go_forward(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path, ticking: str
) -> None:
    # Paris, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    clock.now = utc(2026, 3, 27, 12)
    _plan(registry, tmp_path, schedule='Cron("30 2 * * *", tz="Europe/Paris")')
    scheduler = Scheduler(registry, launcher, clock)
    end = utc(2026, 3, 31)
    while clock.now < end:
        clock.advance(3600 if ticking == "hourly" else end - clock.now)
        scheduler.tick()
    assert _slots(launcher) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, right after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    assert launcher.names[0] == "hourly-20260328T013000Z"


@pytest.mark.parametrize("ticking", ["hourly", "once"])
def test_cron_in_a_time_zone_when_clocks_go_back(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path, ticking: str
) -> None:
    # Paris, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-03:00 happens twice.
    clock.now = utc(2026, 10, 23, 12)
    _plan(registry, tmp_path, schedule='Cron("30 2 * * *", tz="Europe/Paris")')
    scheduler = Scheduler(registry, launcher, clock)
    end = utc(2026, 10, 27)
    while clock.now < end:
        clock.advance(3600 if ticking == "hourly" else end - clock.now)
        scheduler.tick()
    assert _slots(launcher) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two 02:30s: once only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_an_hourly_cron_runs_every_real_hour_when_clocks_go_back(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    clock.now = utc(2026, 10, 24, 21, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *", tz="Europe/Paris")')
    scheduler = Scheduler(registry, launcher, clock)
    for _ in range(6):
        clock.advance(3600)
        scheduler.tick()
    assert _slots(launcher) == [utc(2026, 10, 24, 22) + 3600 * i for i in range(6)]
    # 02:00 CEST and 02:00 CET: both hours run, under distinct names
    assert "hourly-20261025T000000Z" in launcher.names
    assert "hourly-20261025T010000Z" in launcher.names


def test_fixed_rate_counts_from_activation(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    t0 = clock.now = 1_800_000_123.0
    _plan(registry, tmp_path, schedule="FixedRate(timedelta(minutes=5))", catch_up="all")
    scheduler = Scheduler(registry, launcher, clock)
    assert scheduler.tick(t0 + 299) == []
    assert len(scheduler.tick(t0 + 300)) == 1
    assert scheduler.tick(t0 + 301) == []
    assert len(scheduler.tick(t0 + 1000)) == 2
    assert _slots(launcher) == [t0 + 300, t0 + 600, t0 + 900]
    assert {r.launch_plan for r in launcher.created} == {"hourly:v1"}
    assert {r.inputs.literals["n"].integer for r in launcher.created} == {3}


def test_a_restart_after_a_crash_between_launch_and_record_launches_nothing_twice(
    registry: Registry,
    metadata: MetadataStore,
    launcher: RecordingLauncher,
    clock: Clock,
    tmp_path: Path,
) -> None:
    clock.now = utc(2026, 6, 1, 10, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *", tz="UTC")', catch_up="all")
    # down from 10:30 to 15:10: five slots (11:00 ... 15:00) are due
    clock.now = utc(2026, 6, 1, 15, 10)
    launcher.crash_after = 3  # dies after launching 13:00, before recording it
    with pytest.raises(Crash):
        Scheduler(registry, launcher, clock).tick()
    assert len(launcher.created) == 3
    # a new process: a new registry and scheduler on the same database
    fresh = Registry(metadata, LocalBlobStore(tmp_path / "blobs"), clock=clock)
    launched = Scheduler(fresh, launcher, clock).tick()
    assert len(launched) == 3  # 13:00 again (the same execution), 14:00, 15:00
    assert launcher.names == [
        execution_name("hourly", utc(2026, 6, 1, h)) for h in (11, 12, 13, 14, 15)
    ]
    assert Scheduler(fresh, launcher, clock).tick() == []
    assert launcher.calls == 6  # 5 executions created, one launch answered by its existing one


def test_a_crashed_slot_is_not_skipped_for_being_its_own_running_execution(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    clock.now = utc(2026, 6, 1, 10, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *")', concurrency="skip", catch_up="latest")
    clock.now = utc(2026, 6, 1, 11, 0, 5)
    launcher.crash_after = 1
    with pytest.raises(Crash):
        Scheduler(registry, launcher, clock).tick()
    (again,) = Scheduler(registry, launcher, clock).tick()
    assert launcher.names == ["hourly-20260601T110000Z"] and launcher.calls == 2
    assert registry.active_launch_plans()[0].last_slot == utc(2026, 6, 1, 11)


@pytest.mark.parametrize(
    ("catch_up", "on_time", "late"),
    [
        ("all", [13, 14, 15], [13, 14, 15]),  # max_catch_up=3: the latest three
        ("latest", [15], [15]),
        ("none", [15], []),  # 15:00 is on time at 15:00:30, missed at 15:10
    ],
)
def test_catch_up_policies_after_downtime(
    registry: Registry,
    launcher: RecordingLauncher,
    clock: Clock,
    tmp_path: Path,
    catch_up: str,
    on_time: list[int],
    late: list[int],
) -> None:
    back = ((utc(2026, 6, 1, 15, 0, 30), on_time), (utc(2026, 6, 1, 15, 10), late))
    for back_at, expected in back:
        clock.now = utc(2026, 6, 1, 10, 30)
        _plan(
            registry,
            tmp_path,
            version=f"v{int(back_at)}",
            schedule='Cron("0 * * * *")',
            catch_up=catch_up,
            max_catch_up=3,
        )
        launcher.created.clear()
        Scheduler(registry, launcher, clock, grace=60).tick(back_at)
        assert _slots(launcher) == [utc(2026, 6, 1, h) for h in expected]
        # whatever was left out is not launched later: the next launch is the next slot
        launcher.created.clear()
        Scheduler(registry, launcher, clock, grace=60).tick(utc(2026, 6, 1, 16, 0, 5))
        assert _slots(launcher) == [utc(2026, 6, 1, 16)]
        registry.deactivate(P, D, "hourly")
        for name in {r.name for r in launcher.created}:
            launcher.set_phase(name, "SUCCEEDED")
        from taskfabric.metadata._schema import executions

        with registry.engine.begin() as conn:
            conn.execute(executions.delete())


@pytest.mark.parametrize("concurrency", ["skip", "allow", "queue"])
def test_concurrency_policy(
    registry: Registry,
    launcher: RecordingLauncher,
    clock: Clock,
    tmp_path: Path,
    concurrency: str,
) -> None:
    clock.now = utc(2026, 6, 1, 10, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *")', concurrency=concurrency)
    scheduler = Scheduler(registry, launcher, clock)
    assert len(scheduler.tick(utc(2026, 6, 1, 11, 0, 5))) == 1
    twelve = scheduler.tick(utc(2026, 6, 1, 12, 0, 5))  # 11:00 is still QUEUED
    launcher.set_phase("hourly-20260601T110000Z", "RUNNING")
    launcher.set_phase("hourly-20260601T120000Z", "SUCCEEDED")
    thirteen = scheduler.tick(utc(2026, 6, 1, 13, 0, 5))  # 11:00 is still RUNNING
    launcher.set_phase("hourly-20260601T110000Z", "FAILED")
    launcher.set_phase("hourly-20260601T130000Z", "SUCCEEDED")
    assert len(scheduler.tick(utc(2026, 6, 1, 14, 0, 5))) == 1  # nothing runs any more
    hours = [int(n[-7:-5]) for n in launcher.names]
    if concurrency == "skip":
        assert twelve == [] and thirteen == [] and hours == [11, 14]
    else:
        assert len(twelve) == 1 and len(thirteen) == 1 and hours == [11, 12, 13, 14]


def test_activating_another_version_moves_the_schedule(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    clock.now = utc(2026, 6, 1, 10, 10)
    _plan(registry, tmp_path, "v1", schedule='Cron("0 * * * *")')
    registry.register(
        flows_package(tmp_path / "v2", schedule='Cron("30 * * * *")'),
        project=P,
        domain=D,
        version="v2",
    )
    scheduler = Scheduler(registry, launcher, clock)
    scheduler.tick(utc(2026, 6, 1, 11, 5))
    clock.now = utc(2026, 6, 1, 11, 10)
    state = registry.activate(P, D, "hourly", "v2")
    assert [s.version for s in registry.active_launch_plans()] == ["v2"]
    scheduler.tick(utc(2026, 6, 1, 12, 45))
    assert [(r.name, r.launch_plan) for r in launcher.created] == [
        ("hourly-20260601T110000Z", "hourly:v1"),
        ("hourly-20260601T113000Z", "hourly:v2"),
        ("hourly-20260601T123000Z", "hourly:v2"),
    ]
    # activating the active version again keeps its progress; another name is unaffected
    clock.now = utc(2026, 6, 1, 12, 50)
    again = registry.activate(P, D, "hourly", "v2")
    assert again.activated_at == state.activated_at and again.last_slot == utc(2026, 6, 1, 12, 30)
    assert registry.deactivate(P, D, "hourly") and not registry.deactivate(P, D, "hourly")
    assert scheduler.tick(utc(2026, 6, 1, 15)) == []
    assert registry.get_launch_plan(P, D, "hourly").id.version == "v2"  # latest, none active


def test_a_broken_plan_does_not_stop_the_others(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    clock.now = utc(2026, 6, 1, 10, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *")')
    registry.register(flows_package(tmp_path / "other"), project="other", domain=D, version="v1")
    registry.activate("other", D, "hourly", "v1")
    calls: list[str] = []

    def flaky(request: object) -> str:
        calls.append(request.project)  # type: ignore[attr-defined]
        if request.project == P:  # type: ignore[attr-defined]
            raise RuntimeError("engine unreachable")
        return launcher(request)  # type: ignore[arg-type]

    scheduler = Scheduler(registry, flaky, clock)
    assert len(scheduler.tick(utc(2026, 6, 1, 11, 0, 5))) == 1
    # the failed slot stays due and is launched once the launcher works again
    scheduler.launcher = launcher
    assert len(scheduler.tick(utc(2026, 6, 1, 11, 0, 6))) == 1
    assert sorted(r.project for r in launcher.created) == [P, "other"]


def test_run_forever_ticks_until_stopped(
    registry: Registry, launcher: RecordingLauncher, clock: Clock, tmp_path: Path
) -> None:
    import threading

    clock.now = utc(2026, 6, 1, 10, 30)
    _plan(registry, tmp_path, schedule='Cron("0 * * * *")')
    clock.now = utc(2026, 6, 1, 11, 0, 1)
    stop = threading.Event()
    scheduler = Scheduler(registry, launcher, clock)
    thread = threading.Thread(target=scheduler.run_forever, args=(stop, 0.01))
    thread.start()
    try:
        for _ in range(500):
            if launcher.created:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and launcher.names == ["hourly-20260601T110000Z"]
