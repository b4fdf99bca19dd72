"""Discovery and selection of plugins: entry points, errors, versions, hooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from taskfabric import task, workflow
from taskfabric.config import BackendConfig, Config, ConfigError, ProjectOverrides, StorageConfig
from taskfabric.engine import BackendNotConfiguredError, Engine
from taskfabric.plugin_api import BACKENDS_GROUP, HOOKS_GROUP
from taskfabric.plugins import PluginError, Plugins, use_plugins

Installer = Callable[..., Path]


@task
def inc(x: int) -> int:
    return x + 1


@workflow
def one(x: int) -> int:
    return inc(x=x)


def _engine(tmp_path: Path, plugins: Plugins, **config: object) -> Engine:
    return Engine(
        Config(storage=StorageConfig(data_root=tmp_path / "data"), **config), plugins=plugins
    )


def test_unknown_driver_lists_installed_ones_and_names_the_package(tmp_path: Path) -> None:
    plugins = Plugins(autoload=False)
    config = {"task_types": {"python": "big"}, "backends": {"big": BackendConfig(driver="spark")}}
    with (
        _engine(tmp_path, plugins, **config) as engine,
        pytest.raises(BackendNotConfiguredError) as info,
    ):
        engine.launch(one, {"x": 1})
    msg = str(info.value)
    assert "unknown backend driver 'spark'" in msg
    assert "installed drivers are local, sandbox, subprocess" in msg
    assert "pip install taskfabric-spark" in msg
    assert engine.metadata.list_executions() == []  # refused before anything ran


def test_a_backend_refusing_its_settings_is_a_clear_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A backend's constructor raising ValueError (settings that cannot work together, a blob
    store it cannot use) is the user's to fix: a BackendNotConfiguredError naming the backend
    and its driver, which the CLI prints without a traceback."""
    from taskfabric.plugin_api import Backend, BackendSettings

    class Picky(Backend[BackendSettings]):
        driver = "picky"

        def __init__(self, name: str, settings: BackendSettings, context: object) -> None:
            raise ValueError("the picky backend needs an object store: set [storage] data_root")

        def submit(self, attempt: object) -> None: ...

        def poll(self, attempt_id: str) -> object: ...

        def cancel(self, attempt_id: str) -> None: ...

    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "picky", Picky)
    config = {"task_types": {"python": "p"}, "backends": {"p": BackendConfig(driver="picky")}}
    with (
        _engine(tmp_path, plugins, **config) as engine,
        pytest.raises(BackendNotConfiguredError) as info,
    ):
        engine.launch(one, {"x": 1})
    assert str(info.value) == (
        "backend 'p' (driver picky): the picky backend needs an object store: set [storage] "
        "data_root"
    )
    assert engine.metadata.list_executions() == []  # refused before anything ran


def test_unknown_task_type_names_the_package(tmp_path: Path) -> None:
    @task(task_type="shell")
    def sh(x: int) -> int: ...

    @workflow
    def wf(x: int) -> int:
        return sh(x=x)

    with (
        _engine(tmp_path, Plugins(autoload=False)) as engine,
        pytest.raises(
            BackendNotConfiguredError,
            match=r"unknown task type 'shell'.*pip install taskfabric-shell",
        ),
    ):
        engine.launch(wf, {"x": 1})


def test_backend_settings_are_validated_by_the_backends_model(tmp_path: Path) -> None:
    cfg_file = tmp_path / "taskfabric.toml"
    cfg_file.write_text(
        '[task_types]\npython = "procs"\n\n[backends.procs]\ndriver = "subprocess"\n'
        "kill_grace = 3\n"
    )
    from taskfabric.config import load_config

    config = load_config(cfg_file)
    with (
        Engine(config, plugins=Plugins(autoload=False)) as engine,
        pytest.raises(ConfigError) as info,
    ):
        engine.launch(one, {"x": 1})
    msg = str(info.value)
    assert "taskfabric.toml:6: backends.procs.kill_grace" in msg
    assert "kill_grace_seconds" in msg  # the allowed keys are listed


def test_hook_plugin_that_fails_to_import_does_not_break_other_tasks(
    install_dist: Installer, tmp_path: Path
) -> None:
    install_dist(
        "taskfabric-broken",
        entry_points={HOOKS_GROUP: {"broken": "tf_broken.hooks"}},
        modules={"tf_broken": "", "tf_broken.hooks": "import not_a_module_anywhere\n"},
    )
    plugins = Plugins(autoload=True)
    with use_plugins(plugins), _engine(tmp_path, plugins) as engine:
        result = engine.launch(one, {"x": 1})
        assert result.phase == "SUCCEEDED"
    broken = [i for i in plugins.hook_infos if i.distribution == "taskfabric-broken"]
    assert broken and "ModuleNotFoundError" in broken[0].error
    assert "not_a_module_anywhere" in broken[0].error
    with pytest.raises(PluginError, match="plugins that failed to load: taskfabric-broken"):
        plugins.task_type("broken-type")


def test_a_plugin_that_fails_to_import_is_shown_by_its_entry_point_and_own_lines(
    install_dist: Installer,
) -> None:
    install_dist(
        "taskfabric-broken",
        entry_points={
            HOOKS_GROUP: {"broken": "tf_broken.hooks"},
            BACKENDS_GROUP: {"broken": "tf_broken.backend:Backend"},
        },
        modules={
            "tf_broken": "",
            "tf_broken.hooks": "from tf_broken import helpers\n",
            "tf_broken.helpers": "import os\nSETTING = os.environ['TF_BROKEN_UNSET']\n",
            "tf_broken.backend": "raise RuntimeError('no cluster config')\n",
        },
    )
    plugins = Plugins(autoload=True)
    plugins.load()
    (hook,) = [i for i in plugins.hook_infos if i.distribution == "taskfabric-broken"]
    assert hook.error == (
        "entry point broken = tf_broken.hooks failed to import: KeyError: 'TF_BROKEN_UNSET' "
        "(at tf_broken/helpers.py:2 <- tf_broken/hooks.py:1)"
    )
    with pytest.raises(PluginError) as info:
        plugins.driver(BACKENDS_GROUP, "broken")
    assert str(info.value) == (
        "the 'broken' driver of taskfabric-broken 1.0 (entry point tf_broken.backend:Backend) "
        "failed to load: RuntimeError: no cluster config (at tf_broken/backend.py:1)"
    )


def test_a_misspelt_hook_fails_its_module_loudly(install_dist: Installer) -> None:
    """docs/plugins/writing.md: a `hookimpl` named after no hook makes its module fail to
    load (named in `plugins list`), rather than being silently never called."""
    install_dist(
        "taskfabric-typo",
        entry_points={HOOKS_GROUP: {"typo": "tf_typo.hooks"}},
        modules={
            "tf_typo": "",
            "tf_typo.hooks": (
                "from taskfabric.plugin_api import hookimpl\n\n"
                "@hookimpl\ndef taskfabric_node_evnt(event):\n    pass\n"
            ),
        },
    )
    plugins = Plugins(autoload=True)
    plugins.load()
    (info,) = [i for i in plugins.hook_infos if i.distribution == "taskfabric-typo"]
    assert "unknown hook 'taskfabric_node_evnt'" in info.error
    assert not any("tf_typo" in str(p) for p in plugins.pm.get_plugins())
    # registered by hand (a test's fixture), the same: an error naming the hook
    bare = Plugins(autoload=False)
    with pytest.raises(Exception, match="unknown hook 'taskfabric_node_evnt'"):
        bare.register(__import__("tf_typo.hooks").hooks, name="typo")


def test_core_version_mismatch_is_a_clear_error(install_dist: Installer) -> None:
    install_dist(
        "taskfabric-future",
        requires_core=">=9.0",
        entry_points={BACKENDS_GROUP: {"future": "tf_future:Backend"}},
        modules={"tf_future": "Backend = object\n"},
    )
    plugins = Plugins(autoload=True)
    with pytest.raises(PluginError) as info:
        plugins.driver(BACKENDS_GROUP, "future")
    msg = str(info.value)
    assert "taskfabric-future 1.0 supports taskfabric >=9.0" in msg
    assert "taskfabric 0.1.0 is installed" in msg


def test_driver_claimed_by_two_distributions(install_dist: Installer) -> None:
    for dist in ("taskfabric-a", "taskfabric-b"):
        install_dist(
            dist,
            entry_points={BACKENDS_GROUP: {"twin": "tf_twin:Twin"}},
            modules={"tf_twin": "class Twin: ...\n"},
        )
    with pytest.raises(PluginError, match="provided by both taskfabric-a and taskfabric-b"):
        Plugins(autoload=True).driver(BACKENDS_GROUP, "twin")


def test_driver_from_an_entry_point_runs_tasks(install_dist: Installer, tmp_path: Path) -> None:
    install_dist(
        "taskfabric-inline",
        entry_points={BACKENDS_GROUP: {"inline": "tf_inline:InlineBackend"}},
        modules={
            "tf_inline": """
            from taskfabric.backends import LocalBackend

            class InlineBackend(LocalBackend):
                driver = "inline"
        """
        },
    )
    plugins = Plugins(autoload=True)
    config = {
        "task_types": {"python": "mine"},
        "backends": {"mine": BackendConfig(driver="inline")},
    }
    with use_plugins(plugins), _engine(tmp_path, plugins, **config) as engine:
        result = engine.launch(one, {"x": 41})
        assert result.phase == "SUCCEEDED"
        assert [a.backend for a in engine.metadata.attempts(result.execution_id)] == ["mine"]


def test_a_driver_that_is_not_a_backend_is_refused(install_dist: Installer, tmp_path: Path) -> None:
    install_dist(
        "taskfabric-odd",
        entry_points={BACKENDS_GROUP: {"odd": "tf_odd:Odd"}},
        modules={"tf_odd": "class Odd: ...\n"},
    )
    plugins = Plugins(autoload=True)
    config = {"task_types": {"python": "o"}, "backends": {"o": BackendConfig(driver="odd")}}
    with (
        _engine(tmp_path, plugins, **config) as engine,
        pytest.raises(
            BackendNotConfiguredError, match="not a subclass of taskfabric.plugin_api.Backend"
        ),
    ):
        engine.launch(one, {"x": 1})


def test_per_project_override_picks_another_backend(tmp_path: Path) -> None:
    plugins = Plugins(autoload=False)
    config = {
        "backends": {"procs": BackendConfig(driver="subprocess")},
        "projects": {"ml": ProjectOverrides(task_types={"python": "procs"})},
    }
    with use_plugins(plugins), _engine(tmp_path, plugins, **config) as engine:
        default = engine.launch(one, {"x": 1})
        ml = engine.launch(one, {"x": 1}, project="ml")
        assert default.phase == ml.phase == "SUCCEEDED", ml.error
        assert engine.metadata.attempts(default.execution_id)[0].backend == "local"
        assert engine.metadata.attempts(ml.execution_id)[0].backend == "procs"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    from taskfabric.plugin_api import hookimpl

    @hookimpl
    def taskfabric_execution_started(
        self, execution_id: str, workflow: str, project: str, domain: str
    ) -> None:
        self.calls.append(("started", workflow))

    @hookimpl
    def taskfabric_node_event(self, event: object) -> None:
        self.calls.append(("node", event.node_id, event.phase))  # type: ignore[attr-defined]

    @hookimpl
    def taskfabric_execution_finished(self, execution_id: str, phase: str, error: object) -> None:
        self.calls.append(("finished", phase))


def test_lifecycle_hooks_see_every_transition(tmp_path: Path) -> None:
    plugins = Plugins(autoload=False)
    recorder = Recorder()
    plugins.register(recorder, name="recorder")
    with use_plugins(plugins), _engine(tmp_path, plugins) as engine:
        engine.launch(one, {"x": 1})
    assert recorder.calls == [
        ("started", one.name),
        ("node", "n0", "QUEUED"),
        ("node", "n0", "RUNNING"),
        ("node", "n0", "SUCCEEDED"),
        ("finished", "SUCCEEDED"),
    ]


def test_a_failing_hook_does_not_fail_the_execution(tmp_path: Path) -> None:
    from taskfabric.plugin_api import hookimpl

    class Bad:
        @hookimpl
        def taskfabric_node_event(self, event: object) -> None:
            raise RuntimeError("plugin bug")

    plugins = Plugins(autoload=False)
    plugins.register(Bad(), name="bad")
    with use_plugins(plugins), _engine(tmp_path, plugins) as engine:
        assert engine.launch(one, {"x": 1}).phase == "SUCCEEDED"


def test_type_transformers_come_from_plugins_only_when_needed(install_dist: Installer) -> None:
    install_dist(
        "taskfabric-money",
        entry_points={HOOKS_GROUP: {"money": "tf_money"}},
        modules={
            "tf_money": """
            from taskfabric.core.v1 import types_pb2
            from taskfabric.plugin_api import hookimpl
            from taskfabric.types import TypeTransformer

            class Money:
                def __init__(self, cents: int) -> None:
                    self.cents = cents

            class MoneyTransformer(TypeTransformer):
                name = "money"
                python_types = (Money,)

                def get_literal_type(self, py_type, engine):
                    return types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)

                def to_literal(self, value, py_type, ctx, engine):
                    return types_pb2.Literal(integer=value.cents)

                def to_python(self, literal, py_type, ctx, engine):
                    return Money(literal.integer)

            @hookimpl
            def taskfabric_type_transformers():
                return [MoneyTransformer()]
        """
        },
    )
    import tf_money  # type: ignore[import-not-found]

    from taskfabric._wiring import _load_plugin_transformers
    from taskfabric.types import TypeEngine

    plugins = Plugins(autoload=True)
    engine = TypeEngine.with_builtins()
    engine.set_fallback(_load_plugin_transformers)
    with use_plugins(plugins):
        engine.literal_type(int)
        assert not plugins._loaded  # built-in types never load plugins
        lt = engine.literal_type(tf_money.Money)
        assert plugins._loaded
        assert lt.simple == 1
        lit = engine.to_literal(tf_money.Money(250), tf_money.Money)
        assert engine.to_python(lit, tf_money.Money).cents == 250


def test_plugins_check_reports_a_hook_plugin_that_fails_to_import(
    install_dist: Installer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from taskfabric.cli import cli

    install_dist(
        "taskfabric-broken",
        entry_points={HOOKS_GROUP: {"broken": "tf_broken.hooks"}},
        modules={"tf_broken": "", "tf_broken.hooks": "raise ImportError('needs libfoo')\n"},
    )
    config = tmp_path / "taskfabric.toml"
    config.write_text("[engine]\nparallelism = 2\n")
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(config))
    with use_plugins(Plugins(autoload=True)):
        result = CliRunner().invoke(cli, ["plugins", "check"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert (
        "FAIL plugin taskfabric-broken 1.0: entry point broken = tf_broken.hooks failed to "
        "import: ImportError: needs libfoo (at tf_broken/hooks.py:1)"
    ) in result.output
