"""A multi-tenant server's engine process runs many executions at once (issue 21): with
`workers = 1` and `executions_per_worker = 4`, one long-lived engine process claims and runs
every execution (their tasks in sandboxes), and SIGTERM leaves none behind; two such servers
on one database share the work, and one killed with `kill -9` is taken over by the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from server_helpers import ServerProcess, wait_until, write_flows

from taskfabric.config import load_config
from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package, execution_name
from taskfabric.server import Client, TokenStore


def test_one_engine_process_runs_every_execution(tmp_path: Path) -> None:
    config_path = tmp_path / "taskfabric.toml"
    config_path.write_text(
        "[server]\nworkers = 1\nexecutions_per_worker = 4\nscheduler = false\n\n"
        '[task_types]\npython = "box"\n\n[backends.box]\ndriver = "sandbox"\n'
    )
    metadata = MetadataStore(load_config(config_path).metadata_url)
    token = TokenStore(metadata).create(projects=["shop"], role="admin", name="shop")[1]
    metadata.close()
    server = ServerProcess(config_path, tmp_path / "server.log", workers=1, env={}).start()
    try:
        client = Client(server.url, token)
        package = build_package(
            write_flows(tmp_path / "src", 3), project="shop", domain="prod", version="v1"
        )
        client.register(package)
        ids = [
            client.launch("shop", "prod", workflow="srvflows.price", inputs={"x": x}).execution.id
            for x in range(6)
        ]
        ended = {i: client.wait(i, timeout=300, poll=0.2) for i in ids}
        assert {e.phase for e in ended.values()} == {"SUCCEEDED"}, server.tail()
        assert [client.execution(i).outputs for i in ids] == [{"o0": 3 * x} for x in range(6)]
        starters = set()
        for i in ids:
            events = client.execution(i, values=False, events=True).events
            starters |= {e.message for e in events if e.message.startswith("started by ")}
        # one engine process (not the server's own, not one per execution) started them all
        assert len(starters) == 1, starters
        assert server.proc is not None and not starters.pop().endswith(f":{server.proc.pid}")
    finally:
        assert server.stop() == 0


def test_two_servers_share_the_work_and_one_killed_is_taken_over(
    tmp_path: Path, postgres_schema: Callable[[str], str]
) -> None:
    """Two multi-tenant servers on one PostgreSQL database: `kill -9` the one whose engine
    process runs an execution; the other resumes it: no map item is lost, and none recorded as
    succeeded runs again."""
    steps = tmp_path / "steps"
    steps.mkdir()
    steps.chmod(0o777)  # the sandboxed tasks write there (as user 65534 under root)
    log = steps / "steps.log"
    config_path = tmp_path / "taskfabric.toml"
    config_path.write_text(
        "[server]\nworkers = 1\nexecutions_per_worker = 4\nscheduler = false\n\n"
        '[task_types]\npython = "box"\n\n[backends.box]\ndriver = "sandbox"\n'
        f'read_write = ["{steps}"]\n'
        f'env = {{ STEP_LOG = "{log}", STEP_SECONDS = "0.3" }}\n\n'
        f'[metadata]\nurl = "{postgres_schema("tf_two_servers")}"\n'
    )
    metadata = MetadataStore(load_config(config_path).metadata_url)
    token = TokenStore(metadata).create(projects=["shop"], role="admin", name="shop")[1]
    metadata.close()
    servers = [
        ServerProcess(config_path, tmp_path / f"server-{i}.log", workers=1, env={}).start()
        for i in range(2)
    ]
    try:
        client = Client(servers[0].url, token)
        client.register(
            build_package(
                write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1"
            )
        )
        ref = client.launch(
            "shop", "prod", workflow="srvflows.fanout", inputs={"n": 10}
        ).execution.id
        wait_until(lambda: log.exists() and len(log.read_text().split()) >= 4, 300, "four steps")
        engine_pid = int(client.execution(ref, values=False).execution.owner.rpartition(":")[2])
        parent = int(Path(f"/proc/{engine_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        (victim,) = [s for s in servers if s.proc is not None and s.proc.pid == parent]
        (survivor,) = [s for s in servers if s is not victim]
        victim.kill9()
        client = Client(survivor.url, token)
        wait_until(lambda: _gone(engine_pid), 120, "its engine process to stop")
        ran_before = log.read_text().split()
        done = {
            int(n.node_id.split("[")[1].rstrip("]"))
            for n in client.execution(ref, values=False).nodes
            if n.kind == "map_item" and n.phase == "SUCCEEDED"
        }
        ended = client.wait(ref, timeout=300, poll=0.2)
        detail = client.execution(ref, events=True)
        assert ended.phase == "SUCCEEDED", (detail.execution.error, survivor.tail())
        assert detail.outputs == {"o0": sum(range(1, 11))}
        resumed = [e.message for e in detail.events if e.message.startswith("resumed by")]
        assert resumed and not any(m.endswith(f":{engine_pid}") for m in resumed), resumed
        ran_after = [int(x) for x in log.read_text().split()[len(ran_before) :]]
        # Nothing lost, and nothing recorded as succeeded ran again. (An item whose sandbox
        # had ended unrecorded is read back by re-attach instead of running again; one that
        # was cut off runs again.)
        assert {int(x) for x in ran_before} | set(ran_after) == set(range(10))
        assert not done & set(ran_after), (done, ran_after)
        assert len(ran_after) == len(set(ran_after)), ran_after
        assert survivor.stop() == 0
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


def _gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaps counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_two_schedulers_one_killed_no_slot_doubled_or_lost(
    tmp_path: Path, postgres_schema: Callable[[str], str]
) -> None:
    """Both servers on one PostgreSQL database run the scheduler of the same every-second
    launch plan; `kill -9` one: the other goes on launching its slots, and every slot from
    the activation to the last one is launched exactly once (one execution, named after it)."""
    config_path = tmp_path / "taskfabric.toml"
    config_path.write_text(
        "[server]\nworkers = 1\nexecutions_per_worker = 4\nscheduler = true\n\n"
        '[task_types]\npython = "box"\n\n[backends.box]\ndriver = "sandbox"\n\n'
        f'[metadata]\nurl = "{postgres_schema("tf_two_schedulers")}"\n'
    )
    metadata = MetadataStore(load_config(config_path).metadata_url)
    token = TokenStore(metadata).create(projects=["shop"], role="admin", name="shop")[1]
    metadata.close()
    servers = [
        ServerProcess(config_path, tmp_path / f"server-{i}.log", workers=1, env={}).start()
        for i in range(2)
    ]
    victim, survivor = servers
    try:
        client = Client(survivor.url, token)
        client.register(
            build_package(
                write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1"
            )
        )
        client.activate("shop", "prod", "tick", "v1")
        plan = client.launch_plan("shop", "prod", "tick")
        anchor = plan.activated_at
        assert anchor is not None

        def slots() -> list[float]:
            runs = client.executions(launch_plan="tick", limit=1000)
            return sorted(e.scheduled_at or 0 for e in runs)

        wait_until(lambda: len(slots()) >= 3, 300, "three scheduled executions")
        victim.kill9()
        killed_at = time.time()
        # the survivor alone launches the slots after the kill
        wait_until(lambda: any(s > killed_at + 2 for s in slots()), 300, "slots after the kill")
        client.deactivate("shop", "prod", "tick")
        runs = client.executions(launch_plan="tick", limit=1000)
        found = sorted(e.scheduled_at or 0 for e in runs)
        expected = [anchor + k for k in range(1, len(found) + 1)]
        assert found == pytest.approx(expected, abs=1e-3), "a missed or repeated slot"
        names = [e.name for e in runs]
        assert len(names) == len(set(names)), "a slot launched twice"
        assert sorted(names) == sorted(execution_name("tick", s) for s in found)
        assert survivor.stop() == 0
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
