"""`taskfabric server` end to end, on SQLite and PostgreSQL: the issue's "done when".

Real server processes on 127.0.0.1 with engine workers; everything goes through the HTTP API
with tokens, as a remote user would.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from server_helpers import Site, wait_until, write_flows

from taskfabric.registry import build_package, execution_name
from taskfabric.server import Client, ServerError

ENDED = ("SUCCEEDED", "FAILED", "ABORTED")
# How long a wait may take before the test calls it a hang. Not a margin: nothing is judged by
# how fast it happened (a busy 2-core machine may be slow), only by what happened, in order.
HANG = 300


def _ended(c: Client, ids: list[str]) -> bool:
    return all(c.execution(i, values=False).execution.phase in ENDED for i in ids)


def test_versions_schedule_restart_and_project_isolation(site: Site, tmp_path: Path) -> None:
    server = site.server(workers=2)
    token = site.token(["shop"], "admin", "shop-admin")
    admin = Client(server.url, token)
    other = Client(server.url, site.token(["bank"], "admin", "bank-admin"))

    # Two versions of one workflow, registered by a client that built them where the code is.
    v1 = admin.register(
        build_package(write_flows(tmp_path / "v1", 2), project="shop", domain="prod", version="v1")
    )
    v2 = admin.register(
        build_package(write_flows(tmp_path / "v2", 10), project="shop", domain="prod", version="v2")
    )
    assert not v1.unchanged and not v2.unchanged
    wf = next(e.name for e in v1.entities if e.kind == "workflow" and e.name.endswith("price"))
    assert admin.workflow("shop", "prod", wf).versions == ["v2", "v1"]

    # Both versions at once, with different inputs.
    a = admin.launch("shop", "prod", workflow=wf, version="v1", inputs={"x": 3}, name="a")
    b = admin.launch("shop", "prod", workflow=wf, version="v2", inputs={"x": 4}, name="b")
    assert a.created and b.created
    again = admin.launch("shop", "prod", workflow=wf, version="v1", inputs={"x": 3}, name="a")
    assert not again.created and again.execution.id == a.execution.id
    ids = [a.execution.id, b.execution.id]
    wait_until(lambda: _ended(admin, ids), HANG, "both versions")
    assert admin.execution("a").outputs == {"o0": 6}  # 3 * 2, version 1's code
    assert admin.execution("b").outputs == {"o0": 40}  # 4 * 10, version 2's code

    # Another project's token sees nothing of "shop" and cannot launch there.
    assert other.executions() == [] and other.executions(project="shop") == []
    assert [p.name for p in other.projects()] == ["bank"]
    for call in (
        lambda: other.execution(a.execution.id),
        lambda: other.workflow("shop", "prod", wf),
        lambda: other.entities("shop", "prod"),
        lambda: other.launch("shop", "prod", workflow=wf, inputs={"x": 1}),
        lambda: other.cancel(a.execution.id),
        lambda: other.relaunch(a.execution.id),
        lambda: other.launch_plans("shop", "prod"),
        lambda: other.activate("shop", "prod", "tick", "v1"),
        lambda: other.node_data(a.execution.id, "n0"),
    ):
        with pytest.raises(ServerError) as caught:
            call()
        assert caught.value.status == 404, caught.value
    other.register(
        build_package(
            write_flows(tmp_path / "bank", 3), project="bank", domain="prod", version="v1"
        )
    )
    mine = other.launch("bank", "prod", workflow=wf, inputs={"x": 5}, name="a")
    assert mine.created and mine.execution.id != a.execution.id  # names are per project
    assert {e.project for e in admin.executions()} == {"shop"}
    with pytest.raises(ServerError) as caught:
        admin.execution(mine.execution.id)
    assert caught.value.status == 404

    # A fixed-rate launch plan (every second, catch up everything), killed mid-schedule.
    activated = admin.activate("shop", "prod", "tick", "v1")
    assert activated.changed
    plan = admin.launch_plan("shop", "prod", "tick")
    assert plan.active_version == "v1" and plan.next_slot is not None

    def scheduled() -> list[str]:
        return [e.id for e in admin.executions(launch_plan="tick", limit=1000)]

    wait_until(lambda: len(scheduled()) >= 2, HANG, "two scheduled executions")
    server.kill9()
    down_at = time.time()
    time.sleep(2.5)  # slots come due while no scheduler runs
    restarted = site.server(workers=2)
    admin = Client(restarted.url, token)
    # The restarted scheduler catches up the slots that came due while it was down. Deactivate
    # as soon as it has: every slot makes a run that the workers must finish below, so the
    # fewer the better on a busy machine.
    wait_until(
        lambda: any((e.scheduled_at or 0) > down_at for e in admin.executions(launch_plan="tick")),
        HANG,
        "a slot after the restart",
    )
    admin.deactivate("shop", "prod", "tick")
    runs = admin.executions(launch_plan="tick", limit=1000)
    slots = sorted(e.scheduled_at or 0 for e in runs)
    state_anchor = plan.activated_at
    assert state_anchor is not None
    expected = [state_anchor + k for k in range(1, len(slots) + 1)]
    assert slots == pytest.approx(expected, abs=1e-3), "a missed or repeated slot"
    assert sorted(e.name for e in runs) == sorted(execution_name("tick", s) for s in slots)
    assert any(s < down_at < t for s, t in zip(slots, slots[1:], strict=False))
    # Every scheduled run (those interrupted by the kill too) finishes on the new server.
    wait_until(lambda: _ended(admin, [e.id for e in runs]), HANG, "the scheduled runs")
    assert {admin.execution(e.id, values=False).execution.phase for e in runs} == {"SUCCEEDED"}
    assert restarted.stop() == 0


def test_a_worker_killed_mid_execution_is_replaced(site: Site, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    server = site.server(workers=1, env={"STEP_LOG": str(log), "STEP_SECONDS": "0.3"})
    c = Client(server.url, site.token(["*"], "launcher"))
    Client(server.url, site.token(["shop"], "admin")).register(
        build_package(write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1")
    )
    launched = c.launch("shop", "prod", workflow="srvflows.fanout", inputs={"n": 10})
    ref = launched.execution.id
    wait_until(lambda: log.exists() and len(log.read_text().split()) >= 4, HANG, "four steps")
    owner = c.execution(ref, values=False).execution.owner
    pid = int(owner.rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: _gone(pid), HANG, "the killed worker to die")
    ran_before = log.read_text().split()
    done = {
        int(n.node_id.split("[")[1].rstrip("]"))
        for n in c.execution(ref, values=False).nodes
        if n.kind == "map_item" and n.phase == "SUCCEEDED"
    }
    wait_until(lambda: _ended(c, [ref]), HANG, "the execution to finish")
    detail = c.execution(ref, events=True)
    assert detail.execution.phase == "SUCCEEDED", detail.execution.error
    assert detail.outputs == {"o0": sum(range(1, 11))}
    # A new engine process took over, and ran exactly the items not recorded as succeeded.
    assert any(
        e.message.startswith("resumed by") and not e.message.endswith(f":{pid}")
        for e in detail.events
    )
    ran_after = [int(x) for x in log.read_text().split()[len(ran_before) :]]
    assert done and sorted(ran_after) == sorted(set(range(10)) - done)
    assert server.stop() == 0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
