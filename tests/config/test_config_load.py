"""Finding the config file, the defaults, and how paths and URLs are resolved."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from taskfabric.config import (
    BackendConfig,
    Config,
    ConfigError,
    find_config_file,
    load_config,
    user_config_file,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_order(cwd: Path, tmp_path: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", "")
    from_env = write(tmp_path / "env.toml", "")
    local = write(cwd / "taskfabric.toml", "")
    user = write(user_config_file(), "")
    env = {"TASKFABRIC_CONFIG": str(from_env)}

    assert find_config_file(explicit, cwd=cwd, env=env) == explicit
    assert find_config_file(cwd=cwd, env=env) == from_env
    assert find_config_file(cwd=cwd, env={}) == local
    local.unlink()
    assert find_config_file(cwd=cwd, env={}) == user
    user.unlink()
    assert find_config_file(cwd=cwd, env={}) is None


def test_user_config_file_follows_the_platform_config_dir(taskfabric_home: Path) -> None:
    # conftest points XDG_CONFIG_HOME into the test's own folder
    assert user_config_file() == taskfabric_home / "xdg_config_home" / "taskfabric" / "config.toml"


def test_relative_paths_are_taken_from_cwd(cwd: Path) -> None:
    found = write(cwd / "conf" / "tf.toml", "")
    assert find_config_file(Path("conf/tf.toml"), cwd=cwd, env={}) == found
    assert find_config_file(cwd=cwd, env={"TASKFABRIC_CONFIG": "conf/tf.toml"}) == found


def test_missing_explicit_file_is_an_error(cwd: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file nope\.toml \(given by --config\) does not"):
        load_config(Path("nope.toml"), cwd=cwd, env={})


def test_missing_file_from_env_is_an_error(cwd: Path) -> None:
    write(cwd / "taskfabric.toml", "")  # must not be used instead
    with pytest.raises(ConfigError, match=r"given by \$TASKFABRIC_CONFIG\) does not exist"):
        load_config(cwd=cwd, env={"TASKFABRIC_CONFIG": str(cwd / "gone.toml")})


def test_empty_env_var_counts_as_unset(cwd: Path) -> None:
    local = write(cwd / "taskfabric.toml", "")
    assert find_config_file(cwd=cwd, env={"TASKFABRIC_CONFIG": ""}) == local


def test_a_folder_is_not_a_config_file(cwd: Path) -> None:
    (cwd / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        find_config_file(Path("dir.toml"), cwd=cwd, env={})


def test_default_env_is_os_environ(taskfabric_home: Path) -> None:
    # conftest sets TASKFABRIC_CONFIG and TASKFABRIC_DATA_ROOT to the test's own folder
    config = load_config()
    assert config.source == taskfabric_home / "config.toml"
    assert config.data_root == taskfabric_home / "data"


# -- defaults and values ---------------------------------------------------------------------------


def test_no_file_gives_the_embedded_defaults(cwd: Path, taskfabric_home: Path) -> None:
    config = load_config(cwd=cwd, env={})
    assert config == Config()
    assert config.source is None
    assert config.project.name == "default"
    assert config.project.domain == "development"
    assert config.engine.parallelism == 8
    assert config.engine.heartbeat_seconds == 10.0
    assert config.logging.level == "warning"
    assert config.logging.format == "console"
    assert config.log_file is None
    assert config.storage.durable is False
    assert config.task_types == {"python": "local"}
    assert config.backends == {}
    data_root = taskfabric_home / "xdg_data_home" / "taskfabric"
    assert config.data_root == data_root
    assert config.metadata_url == f"sqlite:///{data_root}/taskfabric.db"


def test_full_file(cwd: Path) -> None:
    write(
        cwd / "taskfabric.toml",
        """
        [project]
        name = "flights"
        domain = "production"

        [storage]
        data_root = "/srv/tf"
        durable = true

        [metadata]
        url = "postgresql+psycopg://u:p@127.0.0.1:5432/tf"

        [engine]
        parallelism = 2
        heartbeat_seconds = 3  # an integer is a fine float

        [logging]
        level = "debug"
        format = "json"
        file = "/var/log/tf.jsonl"

        [task_types]
        spark = "big"

        [backends.big]
        driver = "spark"
        master = "local[2]"
        conf = { "spark.ui.enabled" = false }
        """.replace("\n        ", "\n"),
    )
    config = load_config(cwd=cwd, env={})
    assert config.source == cwd / "taskfabric.toml"
    assert (config.project.name, config.project.domain) == ("flights", "production")
    assert config.data_root == Path("/srv/tf")
    assert config.storage.durable is True
    assert config.metadata_url == "postgresql+psycopg://u:p@127.0.0.1:5432/tf"
    assert config.engine.parallelism == 2
    assert config.engine.heartbeat_seconds == 3.0
    assert isinstance(config.engine.heartbeat_seconds, float)
    assert (config.logging.level, config.logging.format) == ("debug", "json")
    assert config.log_file == Path("/var/log/tf.jsonl")
    assert config.task_types == {"python": "local", "spark": "big"}
    assert config.backends["big"] == BackendConfig(
        driver="spark", options={"master": "local[2]", "conf": {"spark.ui.enabled": False}}
    )
    assert config.backend_for_task_type("spark") == ("big", config.backends["big"])
    assert config.backend_for_task_type("python") == ("local", BackendConfig(driver="local"))
    assert config.backend_for_task_type("flink") is None


def test_task_types_may_override_the_default(cwd: Path) -> None:
    write(cwd / "taskfabric.toml", '[task_types]\npython = "batch"\n')
    assert load_config(cwd=cwd, env={}).task_types == {"python": "batch"}


def test_a_key_named_options_is_just_an_option(cwd: Path) -> None:
    write(cwd / "taskfabric.toml", '[backends.b]\ndriver = "x"\noptions = { a = 1 }\n')
    assert load_config(cwd=cwd, env={}).backends["b"].options == {"options": {"a": 1}}


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.engine.parallelism = 3


# -- paths -----------------------------------------------------------------------------------------


def test_relative_paths_are_taken_from_the_config_file_folder(cwd: Path, tmp_path: Path) -> None:
    source = write(
        tmp_path / "elsewhere" / "tf.toml",
        '[storage]\ndata_root = "data"\n[logging]\nfile = "logs/tf.jsonl"\n'
        '[metadata]\nurl = "sqlite:///meta/tf.db"\n',
    )
    config = load_config(source, cwd=cwd, env={})
    assert config.data_root == source.parent / "data"
    assert config.log_file == source.parent / "logs" / "tf.jsonl"
    assert config.metadata_url == f"sqlite:///{source.parent}/meta/tf.db"


def test_home_is_expanded(cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(cwd / "taskfabric.toml", '[storage]\ndata_root = "~/tf"\n[logging]\nfile = "~/tf.log"\n')
    config = load_config(cwd=cwd, env={})
    assert config.data_root == tmp_path / "home" / "tf"
    assert config.log_file == tmp_path / "home" / "tf.log"


def test_sqlite_memory_and_absolute_urls_are_kept(cwd: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:////abs/tf.db"):
        write(cwd / "taskfabric.toml", f'[metadata]\nurl = "{url}"\n')
        assert load_config(cwd=cwd, env={}).metadata_url == url


def test_empty_log_file_means_none(cwd: Path) -> None:
    write(cwd / "taskfabric.toml", '[logging]\nfile = ""\n')
    assert load_config(cwd=cwd, env={}).log_file is None


def test_data_root_env_var_overrides_the_file(cwd: Path) -> None:
    write(cwd / "taskfabric.toml", '[storage]\ndata_root = "/from/file"\n')
    config = load_config(cwd=cwd, env={"TASKFABRIC_DATA_ROOT": "rel/data"})
    assert config.data_root == cwd / "rel" / "data"
    assert config.metadata_url == f"sqlite:///{cwd}/rel/data/taskfabric.db"
    assert config.source == cwd / "taskfabric.toml"  # kept through the override
    assert load_config(cwd=cwd, env={"TASKFABRIC_DATA_ROOT": ""}).data_root == Path("/from/file")


def test_data_root_env_var_applies_to_the_defaults(cwd: Path) -> None:
    config = load_config(cwd=cwd, env={"TASKFABRIC_DATA_ROOT": "/tmp/x"})
    assert config.data_root == Path("/tmp/x")
