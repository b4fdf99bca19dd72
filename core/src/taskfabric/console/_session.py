"""Console sessions: an API token kept in a cookie, and the CSRF check of changing requests.

Signing in puts the token itself in an HttpOnly, SameSite=Strict cookie, so every request is
authenticated exactly as the command line's (a revoked or expired token ends the session at
its next request). A request to the API that carries the cookie and no Authorization header
gets the cookie's token as its bearer token; if it changes something (any method but GET,
HEAD, OPTIONS) it must also carry `X-CSRF-Token`, an HMAC of the token that only a page of
this origin can read (pages embed it; another site can neither read it nor send the header
without a CORS preflight, which this server never answers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import cookie_parser

from taskfabric.server._app import API_PREFIX

COOKIE = "tf_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def csrf_for(token: str) -> str:
    """The CSRF value of a session: derived from its token, so nothing is stored."""
    return hmac.new(token.encode(), b"taskfabric console csrf", hashlib.sha256).hexdigest()


def csrf_ok(token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_for(token), given or "")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def session_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    raw = _header(headers, b"cookie")
    if not raw:
        return None
    return cookie_parser(raw).get(COOKIE) or None


class SessionMiddleware:
    """Turns the console's cookie into the bearer token of API requests (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX + "/"):
            headers: list[tuple[bytes, bytes]] = list(scope["headers"])
            token = None if _header(headers, b"authorization") else session_token(headers)
            if token:
                given = _header(headers, CSRF_HEADER.encode())
                if scope["method"] not in SAFE_METHODS and not csrf_ok(token, given):
                    await _refuse(send)
                    return
                scope = dict(scope)
                scope["headers"] = [*headers, (b"authorization", f"Bearer {token}".encode())]
        await self.app(scope, receive, send)


async def _refuse(send: Send) -> None:
    body = json.dumps(
        {
            "detail": "this request comes with a console session but without its CSRF token: "
            f"send the page's csrf value in the {CSRF_HEADER} header (or use an "
            "Authorization: Bearer token instead of the cookie)"
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
