"""The command line with a server configured (`[server] url`, a token file) and without one:
the same commands, the same output."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from server_helpers import ServerProcess, wait_until, write_flows

from taskfabric.cli import cli
from taskfabric.registry import build_package
from taskfabric.server import Client


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def configs(tmp_path: Path) -> Iterator[tuple[Path, Path, ServerProcess]]:
    """A local config, a server on it, and a client config that names the server."""
    local = tmp_path / "local.toml"
    local.write_text(
        '[project]\nname = "shop"\ndomain = "prod"\n\n[server]\nsingle_tenant = true\n'
    )
    code, token, err = invoke(
        local, "tokens", "create", "--project", "shop", "--role", "admin", "--name", "cli"
    )
    assert code == 0 and "shown only now" in err
    (tmp_path / "token").write_text(token)
    server = ServerProcess(
        local, tmp_path / "server.log", workers=1, env={"STEP_SECONDS": "0.2"}
    ).start()
    remote = tmp_path / "remote.toml"
    remote.write_text(
        f'[project]\nname = "shop"\ndomain = "prod"\n\n[server]\nurl = "{server.url}"\n'
        'token_file = "token"\n'
    )
    Client(server.url, token.strip()).register(
        build_package(write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1")
    )
    yield local, remote, server
    server.stop()


def _masked(text: str) -> str:
    """`executions list` without its relative times, nor the padding of its columns (the
    widest relative time sets a column's width: "9ms ago" in one run, "10ms ago" in the other)."""
    return re.sub(r" +", " ", re.sub(r"\d+(\.\d+)?(ms|s|m\d\ds) ago", "AGO", text))


def test_the_same_commands_on_a_server_and_locally(
    configs: tuple[Path, Path, ServerProcess],
) -> None:
    local, remote, server = configs
    code, out, err = invoke(
        remote, "launch", "srvflows.price", "-i", "x=3", "--name", "r1", "--wait"
    )
    assert code == 0, err
    assert "launched: execution" in err and "succeeded" in err and out.endswith("o0 = 6\n")
    code, out, err = invoke(remote, "launch", "srvflows.price", "-i", "x=3", "--name", "r1")
    assert code == 0 and "already launched" in err
    code, _, err = invoke(remote, "launch", "srvflows.price", "-i", "x=three")
    assert code == 2 and "input 'x'" in err and "int" in err
    code, _, err = invoke(remote, "launch", "srvflows.price", "-i", "y=1")
    assert code == 2 and "no such input" in err and "x: int" in err
    for args in (
        ("executions", "list"),
        ("executions", "show", "r1"),
        ("executions", "show", "r1", "--events"),
    ):
        remote_run, local_run = invoke(remote, *args), invoke(local, *args)
        assert remote_run[0] == local_run[0] == 0
        assert _masked(remote_run[1]) == _masked(local_run[1]), args
    code, out, _ = invoke(remote, "executions", "show", "r1", "-o", "json")
    assert json.loads(out)["outputs"] == {"o0": 6}
    # What the task printed, kept by the server's worker, read through the API
    for args in (("executions", "logs", "r1"), ("executions", "logs", "r1", "n0")):
        remote_run, local_run = invoke(remote, *args), invoke(local, *args)
        assert remote_run[0] == local_run[0] == 0
        assert remote_run[1] == local_run[1] and "scaling 3 by 2\n" in remote_run[1], args
    code, _, err = invoke(remote, "executions", "logs", "r1", "n0", "--attempt", "2")
    assert code == 2 and "has no attempt 2; it has 1" in err

    # cancel, recover, relaunch through the server
    code, out, err = invoke(remote, "launch", "srvflows.fanout", "-i", "n=12", "--name", "long")
    assert code == 0, err
    c = Client(server.url, (remote.parent / "token").read_text().strip())
    wait_until(lambda: c.execution("long", values=False).execution.phase == "RUNNING", 30)
    code, _, err = invoke(remote, "executions", "cancel", "long")
    assert code == 0 and "cancel requested" in err
    wait_until(lambda: c.execution("long", values=False).execution.phase == "ABORTED", 30)
    code, _, err = invoke(remote, "executions", "recover", "long")
    assert code == 0 and "QUEUED again" in err and "resume it here" not in err
    wait_until(lambda: c.execution("long", values=False).execution.phase == "SUCCEEDED", 60)
    code, out, err = invoke(remote, "executions", "relaunch", "r1", "--name", "r2", "-o", "json")
    assert code == 0 and json.loads(out)["execution"]["name"] == "r2"
    code, _, err = invoke(remote, "executions", "recover", "r1")
    assert code == 2 and "SUCCEEDED: nothing to recover" in err
    code, out, _ = invoke(remote, "tokens", "list", "-o", "json")
    assert [t["name"] for t in json.loads(out)] == ["cli"]
    code, viewer, err = invoke(
        remote, "tokens", "create", "--project", "shop", "--role", "viewer", "--name", "dash"
    )
    assert code == 0 and Client(server.url, viewer.strip()).whoami().role == "viewer"
    made = next(t for t in c.tokens() if t.name == "dash")
    assert invoke(remote, "tokens", "revoke", made.id)[0] == 0
    assert [t.name for t in c.tokens()] == ["cli"]


def test_launch_and_recover_locally(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text('[project]\nname = "shop"\ndomain = "prod"\n')
    src = write_flows(tmp_path / "src", 3, module="cliflows")
    code, _, err = invoke(local, "register", str(src), "--version", "v1")
    assert code == 0, err
    try:
        code, out, err = invoke(local, "launch", "cliflows.price", "-i", "x=5", "--wait")
        assert code == 0, err
        assert out.endswith("o0 = 15\n") and "succeeded" in err
        code, out, err = invoke(local, "launch", "cliflows.price", "-i", "x=1", "--name", "q")
        assert code == 0 and "executions resume" in err
        code, _, err = invoke(local, "executions", "cancel", "q")
        assert code == 0 and "ABORTED" in err
        code, _, err = invoke(local, "executions", "recover", "q")
        assert code == 0 and "QUEUED again" in err and "executions resume" in err
        code, out, err = invoke(local, "executions", "resume", "q")
        assert code == 0, err
        code, out, _ = invoke(local, "executions", "show", "q", "-o", "json")
        assert json.loads(out)["outputs"] == {"o0": 3}
    finally:
        sys.modules.pop("cliflows", None)


def test_register_goes_through_the_server_when_one_is_configured(
    configs: tuple[Path, Path, ServerProcess], tmp_path: Path
) -> None:
    local, remote, server = configs
    v2 = write_flows(tmp_path / "src2", 5)
    code, _, err = invoke(remote, "register", str(v2), "--version", "v2")
    assert code == 0, err
    assert "registered shop/prod version v2" in err
    code, _, err = invoke(remote, "register", str(v2), "--version", "v2")
    assert code == 0 and "nothing new" in err
    code, _, err = invoke(
        remote, "register", str(write_flows(tmp_path / "src3", 7)), "--version", "v2"
    )
    assert code == 1 and "registration refused" in err
    # launch plans are activated and deactivated through the server too
    code, _, err = invoke(remote, "launchplans", "activate", "tick", "--version", "v2")
    assert code == 0 and "version v2 is active" in err, err
    code, _, err = invoke(remote, "launchplans", "activate", "tick", "--version", "v2")
    assert code == 0 and "already active" in err
    code, _, err = invoke(remote, "launchplans", "deactivate", "tick")
    assert code == 0 and "tick deactivated" in err
    # the server recorded it: the local store it runs on has both versions
    code, out, _ = invoke(local, "entities", "list", "-o", "json")
    versions = {e["version"] for e in json.loads(out) if e["name"] == "srvflows.price"}
    assert versions == {"v1", "v2"}


def test_listing_commands_read_the_server_not_the_local_store(
    configs: tuple[Path, Path, ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, remote, _ = configs
    code, local_entities, _ = invoke(local, "entities", "list", "-o", "json")
    assert code == 0
    code, local_plans, _ = invoke(local, "launchplans", "list", "-o", "json")
    assert code == 0 and [p["name"] for p in json.loads(local_plans)] == ["tick"]
    # From here on this process's own store is empty: only the server knows the entities.
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "empty"))
    code, _, err = invoke(local, "entities", "list")
    assert code == 0 and "nothing registered in shop/prod" in err
    code, remote_entities, err = invoke(remote, "entities", "list", "-o", "json")
    assert code == 0, err
    assert json.loads(remote_entities) == json.loads(local_entities)
    assert {e["kind"] for e in json.loads(remote_entities)} == {"task", "workflow", "launch_plan"}
    code, remote_plans, err = invoke(remote, "launchplans", "list", "-o", "json")
    assert code == 0, err
    assert json.loads(remote_plans) == json.loads(local_plans)
    code, table, _ = invoke(remote, "launchplans", "list")
    assert code == 0 and "tick" in table and "v1 (1)" in table
    code, table, _ = invoke(
        remote, "entities", "list", "--kind", "workflow", "--name", "srvflows.price"
    )
    assert code == 0 and "srvflows.price" in table and "v1" in table


def test_an_error_read_from_a_server_is_printed_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A message naming a config section ("[engine] max_output_bytes") or a map item's node
    ("n1[3]") was read as markup by the terminal printer, which dropped those words."""
    from taskfabric.cli._remote import print_detail, print_ended
    from taskfabric.server import _models as m

    error = m.ExecutionError(
        kind="user",
        code="OutputsTooLarge",
        message="more than 1024 bytes ([engine] max_output_bytes)",
        node_id="n1[3]",
    )
    execution = m.Execution(
        id="e1",
        project="p",
        domain="d",
        name="e1",
        workflow="wf",
        workflow_version="v1",
        phase="FAILED",
        created_at=0.0,
        error=error,
    )
    detail = m.ExecutionDetail(
        execution=execution, input_names=[], output_names=[], nodes=[], events=[]
    )
    print_ended(detail, "text")
    print_detail(detail, show_all=False, no_values=False)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "in node n1[3]: OutputsTooLarge: more than 1024 bytes ([engine] max_output_bytes)" in (
        text
    ), text
    assert "(node n1[3]): more than 1024 bytes ([engine] max_output_bytes)" in text, text
