"""Services: the `[backends.<name>]` settings of the `http` driver, their secrets, redaction.

```toml
[backends.http.services.geo]
base_url = "https://geo.example.com/v2"
pools = ["geo-api"]                       # held by every call ([pools.geo-api] declares it)
auth = { env = "GEO_TOKEN" }              # Authorization: Bearer <token>, read when sending
timeout = 10
```

A token is read from the environment or a file of the process that sends the request, each
time; it is never part of a task's config, the metadata database or a log line, and error
messages replace it with `***`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskfabric.config import Config
from taskfabric.plugin_api import BackendSettings
from taskfabric_http._errors import HttpConfigError

__all__ = [
    "AuthConfig",
    "HttpSettings",
    "Redactor",
    "ServiceConfig",
    "resolve_service",
    "services_of_config",
]

DRIVER = "http"


class AuthConfig(BaseModel):
    """A header that carries a secret token: `<header>: <scheme> <token>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The environment variable holding the token ...
    env: str | None = None
    #: ... or a file holding it (a mounted secret); surrounding whitespace is dropped.
    file: Path | None = None
    header: str = "Authorization"
    #: Written before the token with a space; "" sends the token alone (e.g. `X-Api-Key`).
    scheme: str = "Bearer"

    @model_validator(mode="after")
    def _one_source(self) -> AuthConfig:
        if (self.env is None) == (self.file is None):
            raise ValueError(
                'give the token\'s source: exactly one of env = "VAR" or file = "/path"'
            )
        return self

    def token(self, service: str) -> str:
        """The token, read now; HttpConfigError says where it was looked for."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise HttpConfigError(
                    f"service '{service}': auth token: the environment variable {self.env} "
                    "is not set in the process that sends the request: set it there (or use "
                    "auth.file)"
                )
            return value.strip()
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise HttpConfigError(
                f"service '{service}': auth token: cannot read {self.file}: {exc.strerror}"
            ) from None
        if not value:
            raise HttpConfigError(f"service '{service}': auth token: {self.file} is empty")
        return value


class ServiceConfig(BaseModel):
    """One external service (`[backends.<name>.services.<service>]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    #: Resource pools every call to the service holds (declared in `[pools.<name>]`).
    pools: list[str] = Field(default_factory=list)
    auth: AuthConfig | None = None
    #: Headers sent with every request (not secrets: use `auth` for those).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Seconds to wait for a response (and to connect).
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    #: Tries after a 5xx answer or a connection error, with exponential backoff.
    retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=30.0, ge=0)
    #: Statuses that mean "slow down". 503 counts too when it carries Retry-After.
    throttle_statuses: list[int] = Field(default_factory=lambda: [429])
    #: A regular expression: an error response whose body matches it is throttling too
    #: (for services that say so with a 400 or 403, e.g. "rateLimitExceeded").
    throttle_match: str | None = None
    #: Pause after a throttling answer without Retry-After.
    throttle_seconds: float = Field(default=1.0, ge=0)
    #: The most seconds one call may spend throttled before it fails with HttpThrottled.
    max_throttle: float = Field(default=600.0, ge=0)
    #: The header carrying an idempotency key on requests that change things (POST, PUT,
    #: PATCH, DELETE); unset: the service takes none.
    idempotency_header: str | None = None
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"base_url {url!r} is not an http:// or https:// URL")
        return url.rstrip("/")

    @field_validator("throttle_match")
    @classmethod
    def _check_regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"throttle_match {pattern!r} is not a regular expression: {exc}"
                ) from None
        return pattern

    @field_validator("throttle_statuses")
    @classmethod
    def _check_statuses(cls, statuses: list[int]) -> list[int]:
        bad = [s for s in statuses if not 400 <= s <= 599]
        if bad:
            raise ValueError(f"throttle_statuses must be 4xx or 5xx, got {bad}")
        return statuses


class HttpSettings(BackendSettings):
    """The keys of a `[backends.<name>]` table with `driver = "http"`."""

    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    #: Attempts run at once by this backend (calls, and jobs being polled); default: the
    #: engine's parallelism.
    workers: int | None = Field(default=None, ge=1)


def resolve_service(services: dict[str, ServiceConfig], name: str, who: str) -> ServiceConfig:
    found = services.get(name)
    if found is None:
        known = ", ".join(sorted(services)) or "none"
        raise HttpConfigError(
            f"{who}: service '{name}' is not declared: add [backends.http.services.{name}] "
            f"with its base_url to the config file (declared services: {known})"
        )
    return found


def services_of_config(config: Config) -> dict[str, ServiceConfig]:
    """The services of every backend of `config` with driver "http"."""
    found: dict[str, ServiceConfig] = {}
    for name, backend in sorted(config.backends.items()):
        if backend.driver != DRIVER:
            continue
        try:
            settings = HttpSettings.model_validate(backend.options)
        except Exception as exc:
            raise HttpConfigError(f"[backends.{name}] of {config.source}: {exc}") from None
        found.update(settings.services)
    return found


class Redactor:
    """Replaces secrets in text with `***`."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self.secrets:
            self.secrets.append(secret)

    def __call__(self, text: Any) -> str:
        out = str(text)
        for secret in self.secrets:
            out = out.replace(secret, "***")
        return out
