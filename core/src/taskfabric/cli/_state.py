"""What the `taskfabric` group's options leave for its commands: the config, read and the
logging set up on first use. Light on purpose: `taskfabric --help` imports it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskfabric.config import Config


@dataclass
class CliState:
    config_path: Path | None
    log_level: str | None
    log_format: str | None
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from taskfabric.config import load_config
            from taskfabric.logs import configure_logging

            self._config = load_config(self.config_path)
            cfg = self._config.logging
            configure_logging(
                level=self.log_level or cfg.level,
                fmt=self.log_format or cfg.format,  # type: ignore[arg-type]
                file=self._config.log_file,
            )
        return self._config
