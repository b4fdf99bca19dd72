"""The task configs: `HttpRequest` (one call) and `HttpJob` (a long-running remote job)."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from google.protobuf import message
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from taskfabric.plugin_api import TaskConfig
from taskfabric_http import http_pb2
from taskfabric_http._paths import parse_source
from taskfabric_http._template import Placeholder, placeholders

__all__ = ["Call", "HttpJob", "HttpRequest", "default_sources"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_UNSUPPORTED_OUTPUTS = ("File", "Directory", "DataFrame")


def _method(method: str) -> str:
    upper = method.upper()
    if upper not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    return upper


def _outputs(value: Any) -> Any:
    """`outputs="$.x"` is the source of the single output `o0`."""
    return {"o0": value} if isinstance(value, str) else value


def _check_sources(outputs: dict[str, str]) -> dict[str, str]:
    for name, source in outputs.items():
        try:
            parse_source(source)
        except ValueError as exc:
            raise ValueError(f"output '{name}': {exc}") from None
    return outputs


#: Output name -> source, as both task configs take it: a str alone is the source of `o0`;
#: every source is checked when the config is made.
Outputs = Annotated[dict[str, str], BeforeValidator(_outputs), AfterValidator(_check_sources)]


def _check_json_path(path: str, what: str) -> str:
    if not path.startswith("$"):
        raise ValueError(f"{what} {path!r} is not a JSON path: write e.g. '$.id'")
    parse_source(path)
    return path


class Call(BaseModel):
    """One request: a method, a URL template under the service's base_url, headers and query
    parameters (templates) and a JSON body template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    #: A JSON template; None: no body. `"{inputs.x}"` alone is replaced by the value itself.
    body: Any = None

    @field_validator("method")
    @classmethod
    def _check_method(cls, method: str) -> str:
        return _method(method)

    @model_validator(mode="after")
    def _parse_templates(self) -> Call:
        list(self.placeholders())  # a TemplateError (a ValueError) names the template
        return self

    def placeholders(self) -> list[Placeholder]:
        return [
            *placeholders(self.url),
            *placeholders(self.headers),
            *placeholders(self.params),
            *placeholders(self.body),
        ]

    def to_msg(self) -> http_pb2.Request:
        return http_pb2.Request(
            method=self.method,
            url=self.url,
            headers=self.headers,
            params=self.params,
            body_json=None if self.body is None else json.dumps(self.body, sort_keys=True),
        )

    @classmethod
    def from_msg(cls, msg: http_pb2.Request) -> Call:
        return cls(
            method=msg.method or "GET",
            url=msg.url,
            headers=dict(msg.headers),
            params=dict(msg.params),
            body=json.loads(msg.body_json) if msg.HasField("body_json") else None,
        )


def default_sources(outputs: dict[str, str], names: list[str]) -> dict[str, str]:
    """Each output's source: as configured; unset, the whole JSON body for a single output
    and `$.NAME` for each of several."""
    if outputs or not names:
        return dict(outputs)
    if names == ["o0"]:
        return {"o0": "$"}
    return {name: f"$.{name}" for name in names}


def _check_interface(
    who: str,
    interface: Any,
    calls: dict[str, Call],
    outputs: dict[str, str],
    *,
    job_placeholders_in: tuple[str, ...],
) -> None:
    inputs: dict[str, Any] = interface.inputs
    declared: dict[str, Any] = interface.outputs
    problems: list[str] = []
    for where, call in calls.items():
        for ph in call.placeholders():
            if ph.kind == "inputs" and ph.name not in inputs:
                known = ", ".join(inputs) or "none"
                problems.append(f"{where}: {ph} names no input of the task; its inputs: {known}")
            if ph.kind == "job" and where not in job_placeholders_in:
                problems.append(
                    f"{where}: {ph} has no value there (the job's id is known after submit)"
                )
            if ph.kind == "job" and ph.name != "id":
                problems.append(f"{where}: {ph}: the only job placeholder is {{job.id}}")
    for name in outputs:
        if name not in declared:
            known = ", ".join(declared) or "none (the function returns None)"
            problems.append(f"outputs: '{name}' is not an output of the task; its outputs: {known}")
    sources = default_sources(outputs, list(declared))
    for name, out in declared.items():
        type_name = getattr(out.py_type, "__name__", str(out.py_type))
        if type_name in _UNSUPPORTED_OUTPUTS:
            problems.append(
                f"output '{name}' is a {type_name}, which a response cannot be mapped to: "
                "return the URL as a str and fetch it in a Python task"
            )
        elif name not in sources:
            problems.append(
                f"output '{name}' has no source: add it to outputs, e.g. "
                f'outputs={{"{name}": "$.{name}"}}'
            )
    if len(problems) == 1:
        raise ValueError(f"{who}: {problems[0]}")
    if problems:
        raise ValueError(f"{who}:" + "".join(f"\n  - {p}" for p in problems))


class HttpRequest(TaskConfig):
    """The `http` task type: one request to a declared service; the response's JSON (or
    status, text, headers) mapped to the task's typed outputs."""

    task_type: ClassVar[str] = "http"
    proto_message: ClassVar[type[message.Message] | None] = http_pb2.HttpRequestConfig

    #: A service of the config file (`[backends.http.services.NAME]`).
    service: str
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    #: Output name -> source ("$.a.b", "status", "text", "header:NAME"); a str: of `o0`.
    outputs: Outputs = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _check_method(cls, method: str) -> str:
        return _method(method)

    @model_validator(mode="after")
    def _parse_templates(self) -> HttpRequest:
        self.call()
        return self

    def call(self) -> Call:
        return Call(
            method=self.method,
            url=self.url,
            headers=self.headers,
            params=self.params,
            body=self.body,
        )

    def check_interface(self, interface: Any) -> None:
        _check_interface("HttpRequest", interface, {"request": self.call()}, self.outputs,
                         job_placeholders_in=())  # fmt: skip

    def to_proto(self) -> message.Message:
        return http_pb2.HttpRequestConfig(
            service=self.service, request=self.call().to_msg(), outputs=self.outputs
        )

    @classmethod
    def from_proto(cls, msg: message.Message) -> TaskConfig:
        assert isinstance(msg, http_pb2.HttpRequestConfig)
        call = Call.from_msg(msg.request)
        return cls(service=msg.service, outputs=dict(msg.outputs), **call.model_dump())


class HttpJob(TaskConfig):
    """The `http-job` task type: a remote job submitted with one request, polled at its
    status URL until it ends, its result fetched; cancelled with a request on abort."""

    task_type: ClassVar[str] = "http-job"
    proto_message: ClassVar[type[message.Message] | None] = http_pb2.HttpJobConfig

    service: str
    submit: Call
    #: JSON path of the job's id in the submit response: `{job.id}` in the other requests.
    job_id: str = "$.id"
    status: Call
    #: JSON path of the job's state in the status response.
    state: str = "$.state"
    succeeded: list[str] = Field(default_factory=lambda: ["succeeded"])
    failed: list[str] = Field(default_factory=lambda: ["failed"])
    result: Call | None = None
    cancel: Call | None = None
    poll_seconds: float = Field(default=5.0, gt=0)
    outputs: Outputs = Field(default_factory=dict)
    #: JSON path of the failure message in the status response of a failed job.
    error: str | None = None

    @field_validator("job_id", "state", "error")
    @classmethod
    def _json_paths(cls, path: str | None) -> str | None:
        return None if path is None else _check_json_path(path, "path")

    @model_validator(mode="after")
    def _states(self) -> HttpJob:
        both = set(self.succeeded) & set(self.failed)
        if both:
            raise ValueError(f"states {sorted(both)} are both succeeded and failed")
        if not self.succeeded:
            raise ValueError("succeeded names no state: the job could never succeed")
        return self

    def calls(self) -> dict[str, Call]:
        calls = {"submit": self.submit, "status": self.status}
        if self.result is not None:
            calls["result"] = self.result
        if self.cancel is not None:
            calls["cancel"] = self.cancel
        return calls

    def check_interface(self, interface: Any) -> None:
        _check_interface("HttpJob", interface, self.calls(), self.outputs,
                         job_placeholders_in=("status", "result", "cancel"))  # fmt: skip

    def to_proto(self) -> message.Message:
        return http_pb2.HttpJobConfig(
            service=self.service,
            submit=self.submit.to_msg(),
            job_id=self.job_id,
            status=self.status.to_msg(),
            state=self.state,
            succeeded=self.succeeded,
            failed=self.failed,
            result=None if self.result is None else self.result.to_msg(),
            cancel=None if self.cancel is None else self.cancel.to_msg(),
            poll_seconds=self.poll_seconds,
            outputs=self.outputs,
            error=self.error,
        )

    @classmethod
    def from_proto(cls, msg: message.Message) -> TaskConfig:
        assert isinstance(msg, http_pb2.HttpJobConfig)
        return cls(
            service=msg.service,
            submit=Call.from_msg(msg.submit),
            job_id=msg.job_id,
            status=Call.from_msg(msg.status),
            state=msg.state,
            succeeded=list(msg.succeeded),
            failed=list(msg.failed),
            result=Call.from_msg(msg.result) if msg.HasField("result") else None,
            cancel=Call.from_msg(msg.cancel) if msg.HasField("cancel") else None,
            poll_seconds=msg.poll_seconds,
            outputs=dict(msg.outputs),
            error=msg.error if msg.HasField("error") else None,
        )
