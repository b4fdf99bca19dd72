"""The `http` and `http-job` task types. What an attempt does is in `_runs`, imported on the
first run: every run loads the task types of the installed plugins, and only a run that has an
HTTP task needs httpx."""

from __future__ import annotations

from typing import Any, ClassVar

from taskfabric.plugin_api import TaskCall, TaskConfig, TaskType
from taskfabric_http._config import HttpJob, HttpRequest

__all__ = ["HttpJobTaskType", "HttpTaskType"]


class HttpTaskType(TaskType):
    """Sends one request to a declared service; maps its response to the outputs."""

    name: ClassVar[str] = "http"
    config_model: ClassVar[type[TaskConfig] | None] = HttpRequest
    default_backend: ClassVar[str] = "http"
    description: ClassVar[str] = "one HTTP request to a declared service, typed outputs"

    def run(self, call: TaskCall) -> Any:
        from taskfabric_http._runs import run_request

        return run_request(call)


class HttpJobTaskType(TaskType):
    """Submits a remote job, polls it until it ends, fetches its result; cancels it when
    the attempt is cancelled."""

    name: ClassVar[str] = "http-job"
    config_model: ClassVar[type[TaskConfig] | None] = HttpJob
    default_backend: ClassVar[str] = "http"
    description: ClassVar[str] = "a long-running remote job: submit, poll, fetch, cancel"

    def run(self, call: TaskCall) -> Any:
        from taskfabric_http._runs import run_job

        return run_job(call)
