"""Finding, reading and validating the config file."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import platformdirs
from pydantic import BaseModel, ValidationError

from taskfabric.config._errors import ConfigError, ConfigIssue, issues_from_validation_error
from taskfabric.config._locate import key_lines
from taskfabric.config._model import APP_NAME, Config, uri_scheme

CONFIG_ENV_VAR = "TASKFABRIC_CONFIG"
DATA_ROOT_ENV_VAR = "TASKFABRIC_DATA_ROOT"
CONFIG_FILE_NAME = "taskfabric.toml"
USER_CONFIG_FILE_NAME = "config.toml"

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")

ModelT = TypeVar("ModelT", bound=BaseModel)


def user_config_file() -> Path:
    """``<user config dir>/taskfabric/config.toml`` (e.g. ``~/.config/taskfabric/config.toml``)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / USER_CONFIG_FILE_NAME


def _absolute(path: Path, cwd: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else cwd / path


def _shown(path: Path, cwd: Path) -> str:
    """A path as shown in messages: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def find_config_file(
    path: Path | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """The config file to use, or ``None`` when there is none (the defaults then serve).

    In order: ``path`` (the ``--config`` option), ``$TASKFABRIC_CONFIG``, ``./taskfabric.toml``,
    then the user config file. A file named by ``path`` or the environment must exist.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if path is not None:
        explicit = _absolute(Path(path), cwd)
        if not explicit.is_file():
            raise ConfigError(
                f"config file {_shown(explicit, cwd)} (given by --config) does not exist; "
                "check the path or leave out --config to use the defaults"
            )
        return explicit
    from_env = env.get(CONFIG_ENV_VAR, "")
    if from_env:
        explicit = _absolute(Path(from_env), cwd)
        if not explicit.is_file():
            raise ConfigError(
                f"config file {_shown(explicit, cwd)} (given by ${CONFIG_ENV_VAR}) does not "
                f"exist; check the path or unset {CONFIG_ENV_VAR} to use the defaults"
            )
        return explicit
    for candidate in (cwd / CONFIG_FILE_NAME, user_config_file()):
        if candidate.is_file():
            return candidate
    return None


def _read(source: Path, shown: str) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{shown}: not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read the config file: {error.strerror}") from None


def _parse(text: str, shown: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_LINE.search(str(error))
        line = int(found.group(1)) if found else None
        if line is None and "end of document" in str(error):
            # an array, table or string left open: point at the last line that says anything
            said = [n for n, text_line in enumerate(text.splitlines(), 1) if text_line.strip()]
            line = said[-1] if said else 1
        issue = ConfigIssue(shown, line, None, f"invalid TOML: {error}")
        raise ConfigError(str(issue), [issue]) from None


def _read_config(source: Path, cwd: Path) -> Config:
    shown = _shown(source, cwd)
    text = _read(source, shown)
    data = _parse(text, shown)
    context = {"base_dir": source.parent, "from_file": True}
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as error:
        issues = issues_from_validation_error(error, root=Config, file=shown, lines=key_lines(text))
        raise ConfigError.from_issues(issues) from None
    config._source = source
    return config


def load_config(
    path: Path | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Find (see ``find_config_file``), read and validate the config.

    ``$TASKFABRIC_DATA_ROOT`` overrides ``storage.data_root``. ``env`` defaults to ``os.environ``
    and ``cwd`` to the working directory. Raises ``ConfigError`` naming the file, line and key.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    source = find_config_file(path, cwd=cwd, env=env)
    config = Config() if source is None else _read_config(source, cwd)
    data_root = env.get(DATA_ROOT_ENV_VAR, "")
    if data_root:
        scheme = uri_scheme(data_root)
        if scheme is not None and scheme != "file":
            # A blob store's URI: the blobs go there, the local folder stays the file's.
            update: dict[str, object] = {"blob_root": data_root}
        else:
            # A folder: everything goes there, the blobs too (whatever the file says).
            path = Path(data_root[len("file://") :] if scheme == "file" else data_root)
            update = {"data_root": _absolute(path, cwd), "blob_root": None}
        storage = config.storage.model_copy(update=update)
        config = config.model_copy(update={"storage": storage})
    return config


def validate_backend_options(config: Config, name: str, model: type[ModelT]) -> ModelT:
    """Validate backend ``name``'s options with the backend plugin's own pydantic model.

    Errors are reported like the core's: ``file:line: backends.<name>.<key>: message``.
    """
    options = config.backend(name).options
    try:
        return model.model_validate(options)
    except ValidationError as error:
        source = config.source
        lines = {}
        shown = None
        if source is not None:
            shown = _shown(source, Path.cwd())
            try:
                lines = key_lines(source.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                lines = {}
        issues = issues_from_validation_error(
            error, root=model, file=shown, lines=lines, prefix=("backends", name)
        )
        raise ConfigError.from_issues(issues) from None
