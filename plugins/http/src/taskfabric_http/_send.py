"""Sending one request to a service: auth, timeouts, throttling and retries.

- A throttling answer (a `throttle_statuses` status, 503 with Retry-After, a body matching
  `throttle_match`) pauses the service's pools for Retry-After seconds (or
  `throttle_seconds`), waits as long and sends again: it is not a failure. A call throttled
  for longer than `max_throttle` in all fails with HttpThrottled.
- 5xx and connection errors are sent again after an exponential backoff, `retries` times,
  then fail with HttpServerError / HttpConnectError (retryable: the task's retries apply).
- Any other 4xx fails at once with HttpClientError and an excerpt of the response body.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from taskfabric.logs import get_logger
from taskfabric_http._errors import (
    HttpClientError,
    HttpConfigError,
    HttpConnectError,
    HttpError,
    HttpServerError,
    HttpThrottled,
)
from taskfabric_http._settings import Redactor, ServiceConfig

__all__ = ["Caller", "Cancelled", "OutgoingRequest", "make_client", "retry_after"]

log = get_logger("taskfabric.http")

EXCERPT = 500
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Cancelled(HttpError):
    """The attempt was cancelled while a request waited or was being sent."""


@dataclass
class OutgoingRequest:
    method: str
    url: str  # relative to the service's base_url, or absolute under it
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    has_body: bool = False
    idempotency_key: str | None = None


def make_client(service: ServiceConfig) -> httpx.Client:
    timeout = httpx.Timeout(service.timeout, connect=service.connect_timeout)
    return httpx.Client(
        timeout=timeout,
        verify=service.verify_tls,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        follow_redirects=False,
    )


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds of a Retry-After header (delta seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def excerpt(response: httpx.Response, redact: Redactor) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body
        text = repr(response.content[:EXCERPT])
    text = " ".join(text.split())
    if len(text) > EXCERPT:
        text = text[:EXCERPT] + "..."
    return redact(text) if text else "(empty body)"


class Caller:
    """Sends requests to one service for one attempt (or one helper call)."""

    def __init__(
        self,
        name: str,
        service: ServiceConfig,
        client: httpx.Client,
        *,
        who: str,
        on_pushback: Callable[[float], None] | None = None,
        cancelled: threading.Event | None = None,
        take_tokens: Callable[[], float] | None = None,
        prepaid: int = 1,
        pause_left: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self.client = client
        self.who = who  # "task 'geocode'": the start of every error message
        self.on_pushback = on_pushback
        self.cancelled = cancelled or threading.Event()
        # The rate of the service's pools counts requests: the grant of the lease this caller
        # runs under paid for `prepaid` of them; every other one (a retry, a job's status
        # poll) takes its tokens first and waits as long as the pools say.
        self.take_tokens = take_tokens
        self._prepaid = prepaid
        # A call the grant paid for still waits out a pushback recorded after the grant (a
        # 429 that another attempt got meanwhile): the service asked everyone to wait.
        self.pause_left = pause_left
        self.redact = Redactor()
        self._throttle_match = (
            re.compile(service.throttle_match) if service.throttle_match else None
        )
        #: What this caller saw, for logs and tests.
        self.throttled_seconds = 0.0
        self.rate_waited_seconds = 0.0
        self.tries = 0

    # -- building ---------------------------------------------------------------------------

    def url(self, url: str) -> str:
        base = self.service.base_url
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
            if url != base and not url.startswith(base + "/") and not url.startswith(base + "?"):
                raise HttpConfigError(
                    f"{self.who}: URL {self.redact(url)!r} is not under the base_url {base!r} "
                    f"of service '{self.name}': requests only go to their service (so its "
                    "token goes nowhere else); use a path relative to the base_url"
                )
            return url
        return f"{base}/{url.lstrip('/')}" if url else base

    def headers(self, extra: Mapping[str, str], idempotency_key: str | None) -> dict[str, str]:
        headers = {**self.service.headers, **extra}
        auth = self.service.auth
        if auth is not None:
            token = auth.token(self.name)
            self.redact.add(token)
            headers[auth.header] = f"{auth.scheme} {token}" if auth.scheme else token
        if idempotency_key is not None and self.service.idempotency_header:
            headers[self.service.idempotency_header] = idempotency_key
        return headers

    # -- sending ----------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        if self.cancelled.wait(seconds):
            raise Cancelled(f"{self.who}: cancelled")

    def _pay(self, shown: str) -> None:
        """Take this request's rate tokens (unless the grant paid) and wait until they hold."""
        if self.take_tokens is None:
            return
        if self._prepaid > 0:
            self._prepaid -= 1
            wait = self.pause_left() if self.pause_left is not None else 0.0
            if wait > 0:
                log.debug(
                    "http request waits out its pool's pushback",
                    service=self.name,
                    request=shown,
                    wait_s=wait,
                )
                self.throttled_seconds += wait
                self._wait(wait)
            return
        wait = self.take_tokens()
        if wait > 0:
            log.debug(
                "http request waits for its pool rate",
                service=self.name,
                request=shown,
                wait_s=wait,
            )
            self.rate_waited_seconds += wait
            self._wait(wait)

    def _throttle_seconds(self, response: httpx.Response) -> float | None:
        """Seconds to pause when the answer is throttling, else None."""
        status = response.status_code
        after = retry_after(response)
        if status in self.service.throttle_statuses:
            return after if after is not None else self.service.throttle_seconds
        if status == 503 and after is not None:
            return after
        if self._throttle_match is not None and status >= 400:
            try:
                body = response.text
            except Exception:
                body = ""
            if self._throttle_match.search(body):
                return after if after is not None else self.service.throttle_seconds
        return None

    def send(self, request: OutgoingRequest, *, what: str = "request") -> httpx.Response:
        """The response to `request`: a 2xx or 3xx, after the policy of the module docstring."""
        method = request.method.upper()
        url = self.url(request.url)
        shown = f"{method} {self.redact(url)}"
        failures = 0
        while True:
            if self.cancelled.is_set():
                raise Cancelled(f"{self.who}: cancelled before {what} {shown}")
            self._pay(shown)
            headers = self.headers(request.headers, request.idempotency_key)
            self.tries += 1
            try:
                response = self.client.request(
                    method,
                    url,
                    headers=headers,
                    params=request.params or None,
                    json=request.json if request.has_body else None,
                )
            except httpx.TransportError as exc:
                failures += 1
                reason = self.redact(f"{type(exc).__name__}: {exc}")
                if failures > self.service.retries:
                    raise HttpConnectError(
                        f"{self.who}: {what} {shown} to service '{self.name}' failed "
                        f"{failures} time(s), last with {reason}: check that the service is "
                        "up and its base_url and timeouts are right"
                    ) from None
                delay = self._backoff(failures)
                log.info(
                    "http request failed, will retry",
                    service=self.name,
                    request=shown,
                    error=reason,
                    delay_s=delay,
                )
                self._wait(delay)
                continue
            pause = self._throttle_seconds(response)
            if pause is not None:
                pause = min(pause, self.service.max_throttle)
                if self.throttled_seconds + pause > self.service.max_throttle:
                    raise HttpThrottled(
                        f"{self.who}: {what} {shown}: service '{self.name}' kept throttling "
                        f"(HTTP {response.status_code}) for {self.throttled_seconds:.0f}s, "
                        f"more than its max_throttle of {self.service.max_throttle:g}s: lower "
                        f"the rate of its pool(s) {', '.join(self.service.pools) or '(none)'}"
                    )
                self.throttled_seconds += pause
                if self.on_pushback is not None:
                    self.on_pushback(pause)  # first: other calls are about to go out
                log.info(
                    "http service throttled, pool paused",
                    service=self.name,
                    request=shown,
                    status=response.status_code,
                    pause_s=pause,
                    pools=self.service.pools,
                )
                self._wait(pause)
                continue
            status = response.status_code
            if status >= 500:
                failures += 1
                if failures > self.service.retries:
                    raise HttpServerError(
                        f"{self.who}: {what} {shown}: service '{self.name}' answered "
                        f"{status} {response.reason_phrase} {failures} time(s): "
                        f"{excerpt(response, self.redact)}",
                        status,
                    )
                delay = self._backoff(failures)
                log.info(
                    "http server error, will retry",
                    service=self.name,
                    request=shown,
                    status=status,
                    delay_s=delay,
                )
                self._wait(delay)
                continue
            if status >= 400:
                raise HttpClientError(
                    f"{self.who}: {what} {shown}: service '{self.name}' answered {status} "
                    f"{response.reason_phrase}: {excerpt(response, self.redact)}",
                    status,
                )
            return response

    def _backoff(self, failures: int) -> float:
        return float(min(self.service.backoff * 2 ** (failures - 1), self.service.max_backoff))
