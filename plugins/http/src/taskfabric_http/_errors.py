"""The errors of taskfabric-http. Their class names become the attempt's error code."""

from __future__ import annotations

from taskfabric import templates

__all__ = [
    "HttpClientError",
    "HttpConfigError",
    "HttpConnectError",
    "HttpError",
    "HttpJobFailed",
    "HttpResponseError",
    "HttpServerError",
    "HttpThrottled",
    "TemplateError",
]


class HttpError(Exception):
    """Base of every error of taskfabric-http."""


class HttpConfigError(HttpError, ValueError):
    """A service or task is configured wrongly (unknown service, missing secret, bad URL)."""


class TemplateError(HttpConfigError, templates.TemplateError):
    """A request template is invalid (unknown placeholder, unbalanced brace)."""


class HttpClientError(HttpError):
    """The service refused the request with a 4xx status other than a throttling one: the
    request is wrong (bad input, missing permission), so it is a task error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpServerError(HttpError):
    """The service answered 5xx on every try."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpConnectError(HttpError):
    """The service could not be reached (connection refused, timeout) on every try."""


class HttpThrottled(HttpError):
    """The service kept throttling the request for longer than the service's `max_throttle`."""


class HttpResponseError(HttpError):
    """The response does not hold what the task's outputs are read from."""


class HttpJobFailed(HttpError):
    """The remote job ended in a failed state."""
