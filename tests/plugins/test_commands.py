"""Plugins add commands to the command line as entry points of the `taskfabric.commands`
group: listed by `taskfabric --help` from the distributions' metadata, a plugin's command
module imported only to show its help line or to run it. Each refusal says what is wrong and
how to fix it. The distributions here are real `*.dist-info` folders on sys.path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli
from taskfabric.plugins import PluginError, Plugins, use_plugins
from tests.plugins.conftest import Installer

HELLO = '''
import click

@click.command()
@click.argument("name")
def hello(name: str) -> None:
    """Say hello (a plugin's command)."""
    click.echo(f"hello {name}")

not_a_command = 42
'''


@pytest.fixture(autouse=True)
def plugins() -> Iterator[Plugins]:
    plugins = Plugins()
    with use_plugins(plugins):
        yield plugins


def _install_hello(install_dist: Installer, dist: str = "tf-hello", **kwargs: str) -> None:
    install_dist(
        dist,
        entry_points={"taskfabric.commands": {"hello": f"{dist.replace('-', '_')}_cmd:hello"}},
        modules={f"{dist.replace('-', '_')}_cmd": HELLO},
        **kwargs,
    )


def test_a_plugin_command_runs_and_is_listed_with_its_help(install_dist: Installer) -> None:
    _install_hello(install_dist)
    result = CliRunner().invoke(cli, ["hello", "world"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert "hello" in listed.output and "Say hello (a plugin's command)." in listed.output
    assert "executions" in listed.output  # the built-in commands are still there


def test_an_unknown_command_is_still_refused() -> None:
    result = CliRunner().invoke(cli, ["hello", "world"])
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.output


def test_a_plugin_cannot_replace_a_built_in_command(install_dist: Installer) -> None:
    install_dist(
        "tf-fake-run",
        entry_points={"taskfabric.commands": {"run": "tf_fake_run_cmd:hello"}},
        modules={"tf_fake_run_cmd": HELLO},
    )
    listed = CliRunner().invoke(cli, ["--help"])
    assert "(also claimed by tf-fake-run 1.0)" in listed.output
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0 and "Compile and run a workflow" in result.output


def test_two_plugins_cannot_add_one_command(install_dist: Installer) -> None:
    _install_hello(install_dist, "tf-one")
    _install_hello(install_dist, "tf-two")
    result = CliRunner().invoke(cli, ["hello", "x"])
    assert result.exit_code == 1
    assert "the command 'hello' is added by both tf-one 1.0 and tf-two 1.0: uninstall one" in (
        result.output
    )
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0
    assert "(added by both tf-one 1.0 and tf-two 1.0: uninstall one)" in listed.output


def test_a_command_that_fails_to_import_names_its_plugin(install_dist: Installer) -> None:
    install_dist(
        "tf-broken",
        entry_points={"taskfabric.commands": {"broken": "tf_broken_cmd:hello"}},
        modules={"tf_broken_cmd": "import os\nSETTING = os.environ['TF_NO_SUCH_SETTING']\n"},
    )
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert "(tf-broken 1.0: failed to load, KeyError" in " ".join(listed.output.split())
    result = CliRunner().invoke(cli, ["broken"])
    assert result.exit_code == 1
    assert "tf-broken 1.0" in result.output and "tf_broken_cmd:hello" in result.output
    assert "KeyError" in result.output and "tf_broken_cmd.py:2" in result.output


def test_an_entry_point_that_is_not_a_command_is_refused(install_dist: Installer) -> None:
    install_dist(
        "tf-odd",
        entry_points={"taskfabric.commands": {"odd": "tf_odd_cmd:not_a_command"}},
        modules={"tf_odd_cmd": HELLO},
    )
    result = CliRunner().invoke(cli, ["odd"])
    assert result.exit_code == 1
    assert "tf-odd 1.0 declares the command 'odd' as tf_odd_cmd:not_a_command, which is 42" in (
        " ".join(result.output.split())
    )
    assert "point the entry point of the taskfabric.commands group at a click command" in (
        " ".join(result.output.split())
    )


def test_a_command_of_a_plugin_made_for_another_core_is_refused(install_dist: Installer) -> None:
    _install_hello(install_dist, "tf-old", requires_core=">=0.0.1,<0.1")
    result = CliRunner().invoke(cli, ["hello", "x"])
    assert result.exit_code == 1
    assert "plugin tf-old 1.0 supports taskfabric <0.1,>=0.0.1, but taskfabric 0.1.0" in " ".join(
        result.output.split()
    )


def test_the_retired_hook_says_how_to_declare_a_command(plugins: Plugins) -> None:
    from taskfabric.plugin_api import hookimpl

    class Old:
        @hookimpl
        def taskfabric_cli_commands(self) -> list[object]:
            return []

    with pytest.raises(PluginError, match="entry point of the `taskfabric.commands` group"):
        plugins.register(Old(), name="tf-old-hook")


def test_built_in_commands_do_not_load_plugins(plugins: Plugins) -> None:
    CliRunner().invoke(cli, ["plugins", "--help"])
    assert not plugins._loaded


def test_plugins_check_and_list_report_the_commands(
    install_dist: Installer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _install_hello(install_dist)
    install_dist(
        "tf-fake-run",
        entry_points={"taskfabric.commands": {"run": "tf_fake_run_cmd:hello"}},
        modules={"tf_fake_run_cmd": HELLO},
    )
    install_dist(
        "tf-odd",
        entry_points={"taskfabric.commands": {"odd": "tf_odd_cmd:not_a_command"}},
        modules={"tf_odd_cmd": HELLO},
    )
    checked = CliRunner().invoke(cli, ["plugins", "check"])
    text = " ".join(checked.output.split())
    assert checked.exit_code == 1, checked.output
    assert "ok command hello of tf-hello 1.0: loads" in text
    assert "FAIL command run of tf-fake-run 1.0: a built-in command has this name" in text
    assert "FAIL command odd of tf-odd 1.0: tf_odd_cmd:not_a_command is 42, not a click" in text
    listed = CliRunner().invoke(cli, ["plugins", "list", "-o", "json"])
    rows = {
        row["name"]: row
        for row in json.loads(listed.output)["drivers"]
        if row["group"] == "taskfabric.commands"
    }
    assert rows["hello"]["distribution"] == "tf-hello" and rows["hello"]["state"] == "ok"
