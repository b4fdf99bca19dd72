"""`taskfabric flink stop EXECUTION_ID`: ask an execution's streaming Flink jobs to stop with a
savepoint (the plugin's command: entry point `flink` of the `taskfabric.commands` group)."""

from __future__ import annotations

import click

from taskfabric_flink._streaming import request_stop


@click.group(name="flink", help="Flink tasks: stop streaming jobs with a savepoint.")
def flink() -> None:
    pass


@flink.command(name="stop")
@click.argument("execution_id")
def stop(execution_id: str) -> None:
    """Stop EXECUTION_ID's streaming jobs (tasks running `run_until_stopped()`) with a
    savepoint: each task records it as its state and returns it; the next run of the task
    starts from it."""
    from taskfabric.config import load_config

    root = click.get_current_context().find_root()
    config = load_config(root.params.get("config_path"))
    marker = request_stop(config.data_root, execution_id)
    click.echo(f"stop requested for execution {execution_id} ({marker})")
