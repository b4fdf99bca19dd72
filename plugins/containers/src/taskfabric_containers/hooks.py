"""The hook module of taskfabric-containers (entry point `containers` in `taskfabric.hooks`):
the `taskfabric images` command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskfabric.plugin_api import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def taskfabric_cli_commands() -> Sequence[click.Command]:
    from taskfabric_containers._cli import images

    return [images]
