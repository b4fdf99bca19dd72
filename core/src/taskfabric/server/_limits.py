"""Limits on what one request may make the server hold: its body, and a launch's inputs.

Each limit is a `[server]` setting, and a request over one answers 413 with a message that
names the limit and the setting, so that an operator knows what to raise and a user what to
shrink. Bodies are limited while they are read (a missing or false Content-Length does not get
past), by route: uploads (`max_upload_bytes`), registrations (`max_package_bytes`), everything
else (`max_request_bytes`). A launch's inputs are checked as JSON before they are converted
(`max_input_string_length`, `max_input_items`) and as literals after (`max_input_bytes`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskfabric.config import Config
from taskfabric.errors import TaskfabricError

_SCOPED = re.compile(r"^/api/v1/projects/[^/]+/domains/[^/]+/(uploads|registrations)$")


class LimitError(TaskfabricError):
    """A launch's inputs go over a `[server]` limit; `input` names the input."""

    def __init__(self, message: str, *, input: str = "") -> None:
        super().__init__(message)
        self.input = input


def _body_limit(config: Config, method: str, path: str) -> tuple[int, str, str]:
    """(bytes, setting, what) of the body of a request to `path`."""
    server = config.server
    found = _SCOPED.match(path) if method == "POST" else None
    if found and found.group(1) == "uploads":
        return server.max_upload_bytes, "max_upload_bytes", "upload"
    if found:
        return server.max_package_bytes, "max_package_bytes", "registration package"
    return server.max_request_bytes, "max_request_bytes", "request body"


def too_large(what: str, size: int | None, limit: int, setting: str) -> str:
    told = f"is {size} bytes" if size is not None else "goes over the limit"
    return (
        f"the {what} {told}; the server takes at most {limit} bytes ([server] {setting}): "
        "send less, or ask the server's operator to raise the setting"
    )


class BodyLimit:
    """ASGI middleware: answers 413 to a body over its route's limit, before reading it when
    Content-Length says so, else as soon as the bytes read go over."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting, what = _body_limit(self.config, scope["method"], scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(send, too_large(what, int(length), limit, setting))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Routes re-raise HTTPException; the app answers it as JSON.
                    raise HTTPException(413, too_large(what, None, limit, setting))
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    # The body is not read: the client must not reuse this connection for another request.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_input_values(config: Config, values: Mapping[str, Any]) -> None:
    """Refuse JSON inputs holding a string or a list or map over the `[server]` limits."""
    server = config.server
    for name, value in values.items():
        stack: list[tuple[Any, str]] = [(value, "")]
        while stack:
            item, where = stack.pop()
            at = f" at {where}" if where else ""
            if isinstance(item, str) and len(item) > server.max_input_string_length:
                raise LimitError(
                    f"input '{name}': a string of {len(item)} characters{at}; the server takes "
                    f"at most {server.max_input_string_length} ([server] "
                    "max_input_string_length): pass large data as an uploaded file",
                    input=name,
                )
            if isinstance(item, list | dict) and len(item) > server.max_input_items:
                kind = "a list" if isinstance(item, list) else "a map"
                raise LimitError(
                    f"input '{name}': {kind} of {len(item)} items{at}; the server takes at most "
                    f"{server.max_input_items} ([server] max_input_items): pass large data as "
                    "an uploaded file or dataframe",
                    input=name,
                )
            if isinstance(item, list):
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
            elif isinstance(item, dict):
                stack.extend((v, f"{where}[{k!r}]") for k, v in item.items())


def check_input_size(config: Config, size: int) -> None:
    """Refuse inputs whose literals add up to more than `[server] max_input_bytes`."""
    limit = config.server.max_input_bytes
    if size > limit:
        raise LimitError(
            f"the inputs are {size} bytes as stored; the server takes at most {limit} "
            "([server] max_input_bytes): pass large data as uploaded files or dataframes"
        )


__all__ = ["BodyLimit", "LimitError", "check_input_size", "check_input_values", "too_large"]
