"""A multi-tenant server's engine process runs many executions at once (issue 21): with
`workers = 1` and `executions_per_worker = 4`, one long-lived engine process claims and runs
every execution (their tasks in sandboxes), and SIGTERM leaves none behind; two such servers
on one database share the work, and one killed with `kill -9` is taken over by the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from server_helpers import ServerProcess, wait_until, write_flows

from taskfabric.config import load_config
from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package
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
    process runs an execution; the other resumes it, and only the map items not recorded as
    succeeded run again."""
    steps = tmp_path / "steps"
    steps.mkdir()
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
        wait_until(lambda: not Path(f"/proc/{engine_pid}").exists(), 60, "its engine to stop")
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
        assert done and sorted(ran_after) == sorted(set(range(10)) - done)
        assert survivor.stop() == 0
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
