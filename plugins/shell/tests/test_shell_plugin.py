"""The plugin as installed: its entry point loads, and without it a workflow that uses shell
tasks fails before anything runs, saying which distribution to install."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest

from taskfabric import task, workflow
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import BackendNotConfiguredError, Engine
from taskfabric.plugin_api import HOOKS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_shell import Shell, ShellTaskType


def test_the_installed_entry_point_provides_the_shell_task_type() -> None:
    dist = md.distribution("taskfabric-shell")
    [ep] = [ep for ep in dist.entry_points if ep.group == HOOKS_GROUP]
    assert (ep.name, ep.value) == ("shell", "taskfabric_shell.hooks")
    plugins = Plugins()  # autoload: exactly what a user's process loads
    with use_plugins(plugins):
        assert isinstance(plugins.task_type("shell"), ShellTaskType)
    [info] = [i for i in plugins.hook_infos if i.distribution == "taskfabric-shell"]
    assert info.error == ""
    assert info.requires_core == "<0.2,>=0.1"


def test_without_the_plugin_nothing_runs_and_the_error_says_what_to_install(
    bare_plugins: Plugins, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"

    @task
    def first() -> int:
        ran.write_text("yes")
        return 1

    @task(config=Shell(script="echo {inputs.x} > {outputs.o0}"))
    def echo(x: int) -> int: ...

    @workflow
    def wf() -> int:
        return echo(x=first())

    with Engine(
        Config(storage=StorageConfig(data_root=tmp_path / "data")), plugins=bare_plugins
    ) as engine:
        with pytest.raises(BackendNotConfiguredError) as info:
            engine.launch(wf, {})
        assert engine.metadata.list_executions() == []
    text = str(info.value)
    assert "unknown task type 'shell'" in text
    assert "`pip install taskfabric-shell` provides it" in text
    assert "echo" in text  # names the task
    assert not ran.exists()
