"""Plugins add commands to the command line through the `taskfabric_cli_commands` hook."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import click
import pytest
from click.testing import CliRunner

from taskfabric.cli import cli
from taskfabric.plugin_api import hookimpl
from taskfabric.plugins import Plugins, use_plugins


@click.command()
@click.argument("name")
def hello(name: str) -> None:
    """Say hello (a plugin's command)."""
    click.echo(f"hello {name}")


@click.command(name="run")
def fake_run() -> None:
    """Takes a built-in name."""


class Commands:
    def __init__(self, *commands: click.Command) -> None:
        self.commands = commands

    @hookimpl
    def taskfabric_cli_commands(self) -> Sequence[click.Command]:
        return list(self.commands)


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    with use_plugins(plugins):
        yield plugins


def test_a_plugin_command_runs_and_is_listed(plugins: Plugins) -> None:
    plugins.register(Commands(hello), name="tf-hello")
    result = CliRunner().invoke(cli, ["hello", "world"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    listed = CliRunner().invoke(cli, ["--help"])
    assert "hello" in listed.output and "Say hello" in listed.output
    assert "executions" in listed.output  # the built-in commands are still there


def test_an_unknown_command_is_still_refused(plugins: Plugins) -> None:
    result = CliRunner().invoke(cli, ["hello", "world"])
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.output


def test_a_plugin_command_cannot_take_a_built_in_name(plugins: Plugins) -> None:
    plugins.register(Commands(fake_run), name="tf-fake-run")
    result = CliRunner().invoke(cli, ["nothing-such"])
    assert result.exit_code == 1
    assert "plugin tf-fake-run adds the command 'run', which is a built-in command" in result.output


def test_two_plugins_cannot_add_one_command(plugins: Plugins) -> None:
    plugins.register(Commands(hello), name="tf-one")
    plugins.register(Commands(hello), name="tf-two")
    result = CliRunner().invoke(cli, ["hello", "x"])
    assert result.exit_code == 1
    assert "the command 'hello' is added by both" in result.output
    assert "tf-one" in result.output and "tf-two" in result.output


def test_built_in_commands_do_not_load_plugins(plugins: Plugins) -> None:
    CliRunner().invoke(cli, ["plugins", "--help"])
    assert not plugins._loaded
