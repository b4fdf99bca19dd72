"""What one attempt of an `http` or `http-job` task does (imported on its first run: it
imports httpx)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskfabric.logs import get_logger
from taskfabric.plugin_api import TaskCall
from taskfabric_http._backend import Session, session_of
from taskfabric_http._config import Call, HttpJob, HttpRequest
from taskfabric_http._errors import HttpConfigError, HttpJobFailed
from taskfabric_http._keys import KeyBook, KeyRecord
from taskfabric_http._paths import PathError, parse_source
from taskfabric_http._responses import map_outputs, read_path
from taskfabric_http._send import UNSAFE_METHODS, Caller, Cancelled, OutgoingRequest
from taskfabric_http._template import Placeholder, render, render_json

__all__ = ["run_job", "run_request"]

log = get_logger("taskfabric.http")


@contextmanager
def _attempt(call: TaskCall, type_name: str) -> Iterator[Session]:
    """The attempt's session on its `http` backend, marked done and forgotten at the end; a
    call on another backend is refused with how to fix the config."""
    session = session_of(call.attempt_id)
    if session is None:
        raise HttpConfigError(
            f"task '{call.task.short_name}' has task type '{type_name}', which runs on a "
            f'backend with driver "http" (it holds the service\'s pools and reports its '
            f"throttling), but [task_types] maps '{type_name}' to another backend: remove "
            f'that line, or map it to a backend with driver = "http"'
        )
    try:
        yield session
    finally:
        session.done.set()
        session.backend.forget(session)


def _request(c: Call, inputs: dict[str, Any], job_id: str | None = None) -> OutgoingRequest:
    def lookup(ph: Placeholder) -> Any:
        return job_id if ph.kind == "job" else inputs[ph.name]

    return OutgoingRequest(
        method=c.method,
        url=render(c.url, lookup, encode=True),
        headers={k: render(v, lookup) for k, v in c.headers.items()},
        params={k: render(v, lookup) for k, v in c.params.items()},
        json=render_json(c.body, lookup),
        has_body=c.body is not None,
    )


def _keyed(session: Session, caller: Caller, request: OutgoingRequest) -> bool:
    return bool(caller.service.idempotency_header) and request.method in UNSAFE_METHODS


def run_request(call: TaskCall) -> Any:
    """One attempt of an `http` task: send the request, map the response."""
    config = call.config
    who = f"task '{call.task.short_name}'"
    if not isinstance(config, HttpRequest):
        raise HttpConfigError(
            f"{who} has task type 'http' but no HttpRequest config: declare it with "
            '@task(config=HttpRequest(service="...", url="..."))'
        )
    with _attempt(call, "http") as session:
        caller = session.caller(config.service, who, call.cancelled)
        request = _request(config.call(), dict(call.inputs))
        book: KeyBook | None = None
        record: KeyRecord | None = None
        if _keyed(session, caller, request):
            book = session.keybook("request")
            record = book.claim(call.attempt_id, session.live_attempts() - {call.attempt_id})
            request.idempotency_key = record.key
            record.state = "sending"
            book.save(record)
        try:
            response = caller.send(request)
        except Exception:
            if book is not None and record is not None:
                record.state = "failed"
                book.save(record)
            raise
        if book is not None and record is not None:
            record.state = "succeeded"
            book.save(record)
        return map_outputs(response, call.task, config.outputs, who, caller.redact)


def run_job(call: TaskCall) -> Any:
    """One attempt of an `http-job` task: submit, poll, fetch; cancel the job if cancelled."""
    config = call.config
    who = f"task '{call.task.short_name}'"
    if not isinstance(config, HttpJob):
        raise HttpConfigError(
            f"{who} has task type 'http-job' but no HttpJob config: declare it with "
            "@task(config=HttpJob(service=..., submit=Call(...), status=Call(...)))"
        )
    with _attempt(call, "http-job") as session:
        return _Job(config, call, session, who).run()


class _Job:
    def __init__(self, config: HttpJob, call: TaskCall, session: Session, who: str) -> None:
        self.config = config
        self.call = call
        self.inputs = dict(call.inputs)
        self.who = who
        self.caller = session.caller(config.service, who, call.cancelled)
        self.book = session.keybook("job")
        live = session.live_attempts() - {call.attempt_id}
        self.record = self.book.claim(call.attempt_id, live)
        self.log = log.bind(service=config.service, attempt_id=call.attempt_id)

    def _finish(self, state: str) -> None:
        self.record.state = state
        self.book.save(self.record)

    def run(self) -> Any:
        try:
            job_id = self._submit()
            response = self._wait_until_done(job_id)
            if self.config.result is not None:
                response = self.caller.send(
                    _request(self.config.result, self.inputs, job_id), what="result"
                )
            outputs = map_outputs(
                response, self.call.task, self.config.outputs, self.who, self.caller.redact
            )
        except Cancelled:
            self._cancel_remote()
            raise
        except HttpJobFailed:
            self._finish("failed")
            raise
        except Exception:
            # The job may run on, but this attempt gave up on it: the next one starts afresh.
            if self.record.job_id is not None and self.call.cancelled.is_set():
                self._cancel_remote()
            else:
                self._finish("failed")
            raise
        self._finish("succeeded")
        return outputs

    def _submit(self) -> str:
        record = self.record
        if record.job_id is not None:
            self.log.info("re-attached to the job of an earlier attempt", job_id=record.job_id)
            return record.job_id
        request = _request(self.config.submit, self.inputs)
        request.idempotency_key = record.key
        resent = record.state == "sending"
        record.state = "sending"
        self.book.save(record)  # the key is durable before anything happens remotely
        response = self.caller.send(request, what="submit")
        job_id = read_path(response, self.config.job_id, self.who, "the job id", self.caller.redact)
        if job_id is None or isinstance(job_id, dict | list) or job_id == "":
            raise HttpJobFailed(
                f"{self.who}: the submit response's {self.config.job_id} is {job_id!r}, not a "
                "job id"
            )
        record.job_id = str(job_id)
        record.state = "running"
        self.book.save(record)
        self.log.info("job submitted", job_id=record.job_id, resent_key=resent)
        return record.job_id

    def _wait_until_done(self, job_id: str) -> Any:
        config = self.config
        while True:
            response = self.caller.send(_request(config.status, self.inputs, job_id), what="status")
            state = read_path(response, config.state, self.who, "the job state", self.caller.redact)
            if state in config.succeeded:
                self.log.info("job succeeded", job_id=job_id, state=state)
                return response
            if state in config.failed:
                raise HttpJobFailed(self._failure(job_id, state, response))
            if self.call.cancelled.wait(config.poll_seconds):
                raise Cancelled(f"{self.who}: cancelled while job {job_id} ran")

    def _failure(self, job_id: str, state: Any, response: Any) -> str:
        message = ""
        if self.config.error is not None:
            try:
                body = response.json()
                message = str(parse_source(self.config.error).read(body, 0, "", {}))
            except (ValueError, PathError):
                message = ""
        detail = f": {self.caller.redact(message)[:500]}" if message else ""
        return (
            f"{self.who}: job {job_id} of service '{self.config.service}' ended in state "
            f"{state!r}{detail}"
        )

    def _learn_job_id(self, caller: Caller) -> str | None:
        """Cancelled while the submit was being sent or retried: the service may have made
        the job without this attempt hearing its id. Where the service takes idempotency
        keys, the submit is sent again with the same key, which answers with that job (or
        makes it, to be cancelled at once) rather than a second one."""
        record = self.record
        if record.state != "sending" or not caller.service.idempotency_header:
            return None
        request = _request(self.config.submit, self.inputs)
        request.idempotency_key = record.key
        try:
            response = caller.send(request, what="submit (to cancel it)")
            job_id = read_path(response, self.config.job_id, self.who, "the job id", caller.redact)
        except Exception as exc:
            self.log.warning(
                "cancelled during submit; the job id could not be learnt",
                error=caller.redact(str(exc)),
            )
            return None
        if job_id is None or isinstance(job_id, dict | list) or job_id == "":
            return None
        record.job_id = str(job_id)
        self.book.save(record)
        return record.job_id

    def _cancel_remote(self) -> None:
        """Stop the remote job (abort, timeout); the attempt's own cancel flag is set, so
        the request is sent by a caller of its own."""
        job_id = self.record.job_id
        cancel = self.config.cancel
        caller = Caller(
            self.caller.name,
            self.caller.service,
            self.caller.client,
            who=self.who,
            on_pushback=self.caller.on_pushback,
            cancelled=threading.Event(),
            take_tokens=self.caller.take_tokens,
            prepaid=0,  # the attempt's grant paid for its submit
        )
        if job_id is None and cancel is not None:
            job_id = self._learn_job_id(caller)
        if job_id is None or cancel is None:
            self._finish("cancelled")
            return
        try:
            caller.send(_request(cancel, self.inputs, job_id), what="cancel")
            self.log.info("job cancelled", job_id=job_id)
        except Exception as exc:
            self.log.warning("job cancel failed", job_id=job_id, error=caller.redact(str(exc)))
        self._finish("cancelled")
