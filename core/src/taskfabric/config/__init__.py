"""The taskfabric config file: one TOML file validated by pydantic.

``load_config()`` finds the file (``--config``, ``$TASKFABRIC_CONFIG``, ``./taskfabric.toml``, the
user config file), validates it and returns a frozen ``Config``; with no file the embedded defaults
serve. Every error is a ``ConfigError`` whose message names the file, line and key.
"""

from taskfabric.config._errors import ConfigError, ConfigIssue
from taskfabric.config._load import (
    CONFIG_ENV_VAR,
    CONFIG_FILE_NAME,
    DATA_ROOT_ENV_VAR,
    find_config_file,
    load_config,
    user_config_file,
    validate_backend_options,
)
from taskfabric.config._model import (
    DEFAULT_TASK_TYPES,
    BackendConfig,
    Config,
    EngineConfig,
    LoggingConfig,
    MetadataConfig,
    PoolConfig,
    ProjectConfig,
    ProjectOverrides,
    StorageConfig,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_FILE_NAME",
    "DATA_ROOT_ENV_VAR",
    "DEFAULT_TASK_TYPES",
    "BackendConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "EngineConfig",
    "LoggingConfig",
    "MetadataConfig",
    "PoolConfig",
    "ProjectConfig",
    "ProjectOverrides",
    "StorageConfig",
    "find_config_file",
    "load_config",
    "user_config_file",
    "validate_backend_options",
]
