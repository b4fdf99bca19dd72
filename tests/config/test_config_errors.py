"""Config errors name the file, the line and the key, and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from taskfabric.config import ConfigError, ConfigIssue, load_config, validate_backend_options


def error_for(folder: Path, text: str) -> ConfigError:
    (folder / "taskfabric.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(cwd=folder, env={})
    return caught.value


def test_the_documented_example(tmp_path: Path) -> None:
    text = "\n" * 10 + "[engine]\nparallelism = 0\n"
    assert str(error_for(tmp_path, text)) == (
        "taskfabric.toml:12: engine.parallelism: Input should be greater than or equal to 1 (got 0)"
    )


def test_issue_fields(tmp_path: Path) -> None:
    error = error_for(tmp_path, "[engine]\nheartbeat_seconds = -1.5\n")
    assert error.issues == (
        ConfigIssue(
            "taskfabric.toml",
            2,
            "engine.heartbeat_seconds",
            "Input should be greater than 0 (got -1.5)",
        ),
    )


def test_unknown_key_lists_allowed_keys_and_suggests(tmp_path: Path) -> None:
    message = str(error_for(tmp_path, "[engine]\nparallelism = 2\nparalelism = 3\n"))
    assert message == (
        "taskfabric.toml:3: engine.paralelism: unknown key; allowed keys in [engine]: "
        "commit_seconds, heartbeat_seconds, hold_advertise, hold_listen, max_output_bytes, "
        "parallelism. "
        "Did you mean 'parallelism'?"
    )


def test_unknown_section_at_the_top_level(tmp_path: Path) -> None:
    message = str(error_for(tmp_path, 'title = "x"\n\n[engin]\nparallelism = 2\n'))
    assert message.startswith("2 problems in the config file:\n")
    assert "  taskfabric.toml:1: title: unknown key; allowed keys at the top level: " in message
    assert (
        "  taskfabric.toml:3: engin: unknown key; allowed keys at the top level: backends, "
        "engine, logging, metadata, pools, project, projects, server, storage, task_types. "
        "Did you mean 'engine'?"
    ) in message
    assert "title: unknown key" in message.splitlines()[1]  # sorted by line


def test_no_suggestion_when_nothing_is_close(tmp_path: Path) -> None:
    message = str(error_for(tmp_path, "[logging]\nzzz = 1\n"))
    assert message.endswith("allowed keys in [logging]: file, format, level")


def test_dotted_keys_are_located(tmp_path: Path) -> None:
    message = str(error_for(tmp_path, "# settings\n\nengine.parallelism = -3\n"))
    assert message.startswith("taskfabric.toml:3: engine.parallelism: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[engine]\nparallelism = "8"\n', "2: engine.parallelism: Input should be a valid integer"),
        ("[engine]\nparallelism = 1.5\n", "2: engine.parallelism: Input should be a valid integer"),
        (
            '[storage]\ndurable = "yes"\n',
            '2: storage.durable: Input should be a valid boolean (got "yes")',
        ),
        ("[storage]\ndata_root = 3\n", "2: storage.data_root: "),
        (
            '[logging]\nlevel = "verbose"\n',
            "2: logging.level: Input should be 'debug', 'info', 'warning' or 'error' "
            '(got "verbose")',
        ),
        (
            "[logging]\nformat = true\n",
            "2: logging.format: Input should be 'console' or 'json' (got true)",
        ),
        ('[project]\nname = ""\n', "2: project.name: String should have at least 1 character"),
        ("project = 3\n", "1: project: Input should be a table (got 3)"),
        (
            "[task_types]\npython = 1\n",
            "2: task_types.python: Input should be a valid string (got 1)",
        ),
        ("[metadata]\nurl = 'nope'\n", "2: metadata.url: not a valid SQLAlchemy URL"),
        ("[backends]\nspark = 3\n", "2: backends.spark: Input should be a table (got 3)"),
        ('[backends.spark]\nmaster = "x"\n', "1: backends.spark.driver: required key is missing"),
        (
            '[backends."a.b"]\ndriver = ["x"]\n',
            '2: backends."a.b".driver: Input should be a valid string (got the array ["x"])',
        ),
        (
            '[task_types]\nspark = { backend = "sp", "a b" = [1, true] }\n',
            "2: task_types.spark: Input should be a valid string "
            '(got the table { backend = "sp", "a b" = [1, true] })',
        ),
        (
            "[engine]\nparallelism = { n = " + "1" * 80 + " }\n",
            "2: engine.parallelism: Input should be a valid integer "
            "(got the table { n = " + "1" * 51 + "...)",
        ),
    ],
)
def test_wrong_values(tmp_path: Path, text: str, expected: str) -> None:
    assert str(error_for(tmp_path, text)).startswith("taskfabric.toml:" + expected)


def test_invalid_toml_keeps_tomllibs_line(tmp_path: Path) -> None:
    error = error_for(tmp_path, "[engine]\nparallelism = 2\nheartbeat_seconds = \n")
    assert str(error) == ("taskfabric.toml:3: invalid TOML: Invalid value (at line 3, column 21)")
    assert error.issues[0].line == 3


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[engine]\nparallelism = 2\nextra = [1,\n  2,\n\n", 4),  # an array left open
        ('[storage]\ndata_root = "/tmp', 2),  # a string left open, no newline at the end
        ("parallelism = {", 1),
    ],
)
def test_invalid_toml_at_the_end_of_the_file_names_its_last_line(
    tmp_path: Path, text: str, line: int
) -> None:
    error = error_for(tmp_path, text)
    assert str(error).startswith(f"taskfabric.toml:{line}: invalid TOML: "), str(error)
    assert error.issues[0].line == line


def test_file_outside_cwd_is_shown_in_full(tmp_path: Path) -> None:
    source = tmp_path / "conf" / "tf.toml"
    source.parent.mkdir()
    source.write_text("[engine]\nparallelism = 0\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ConfigError, match=rf"^{source}:2: engine\.parallelism: "):
        load_config(source, cwd=elsewhere, env={})


def test_file_in_a_subfolder_is_shown_relative(tmp_path: Path) -> None:
    source = tmp_path / "conf" / "tf.toml"
    source.parent.mkdir()
    source.write_text("[engine]\nparallelism = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^conf/tf\.toml:2: "):
        load_config(source, cwd=tmp_path, env={})


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "taskfabric.toml").write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match=r"^taskfabric\.toml: not UTF-8 text"):
        load_config(cwd=tmp_path, env={})


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "taskfabric.toml").write_text("", encoding="utf-8")

    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError, match=r"^taskfabric\.toml: cannot read the config file: Perm"):
        load_config(cwd=tmp_path, env={})


class SparkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    master: str = "local[*]"
    executors: int = Field(default=1, ge=1)


def test_backend_options_are_validated_by_the_plugin_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taskfabric.toml").write_text(
        '[backends.big]\ndriver = "spark"\nmaster = "local[2]"\n\nexecutors = 0\nmastr = "x"\n',
        encoding="utf-8",
    )
    config = load_config(env={})
    with pytest.raises(ConfigError) as caught:
        validate_backend_options(config, "big", SparkOptions)
    assert str(caught.value).splitlines()[1:] == [
        "  taskfabric.toml:5: backends.big.executors: "
        "Input should be greater than or equal to 1 (got 0)",
        "  taskfabric.toml:6: backends.big.mastr: unknown key; allowed keys in [backends.big]: "
        "executors, master. Did you mean 'master'?",
    ]
    (tmp_path / "taskfabric.toml").write_text(
        '[backends.big]\ndriver = "spark"\nexecutors = 4\n', encoding="utf-8"
    )
    options = validate_backend_options(load_config(env={}), "big", SparkOptions)
    assert options == SparkOptions(executors=4)


def test_backend_options_of_a_backend_without_a_table() -> None:
    from taskfabric.config import Config

    assert validate_backend_options(Config(), "local", SparkOptions) == SparkOptions()
