"""A page's first API answers, asked in-process and carried inside its HTML.

A page's module draws everything from the HTTP API, and the calls it makes first are known
when its HTML is asked for. The page's handler makes those GET calls itself, through the
same ASGI application (the same routes, token check, serialization and errors as a call
from the browser), and writes each 200 answer into the HTML as JSON under the URL the
module would fetch. `lib.js`'s `api()` takes an answer from there the first time it would
fetch that URL, so the page draws without one more round trip after its HTML; any other
call (a later refresh, an answer that was not 200, a URL not foreseen) is fetched as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The id of the <script type="application/json"> element that holds the answers.
ELEMENT_ID = "tf-initial"
#: Request headers passed on to the in-process calls: who is asking, and for which host.
_PASSED = frozenset({b"host", b"cookie", b"authorization", b"user-agent"})


def segment(text: str) -> str:
    """A path segment as JavaScript's encodeURIComponent writes it (lib.js's `seg`)."""
    return quote(text, safe="!~*'()")


def url(path: str, params: Iterable[tuple[str, Any]] = ()) -> str:
    """`/api/v1` + `path` + a query as lib.js's `query()` writes it (URLSearchParams: empty
    and None values left out, lists repeated, spaces as '+')."""
    pairs = []
    for key, value in params:
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if v is None or v == "":
                continue
            text = ("true" if v else "false") if isinstance(v, bool) else str(v)
            pairs.append(f"{quote_plus(key, safe='*')}={quote_plus(text, safe='*')}")
    return "/api/v1" + path + ("?" + "&".join(pairs) if pairs else "")


async def get(app: ASGIApp, request: Request, target: str) -> bytes | None:
    """The body of GET `target` (a path with its query) through `app`, asked as `request`'s
    sender; None unless the answer is a 200 of JSON."""
    path, _, query = target.partition("?")
    headers = [(k, v) for k, v in request.scope["headers"] if k in _PASSED]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": request.url.scheme,
        "path": unquote(path),
        "raw_path": path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": [*headers, (b"accept", b"application/json")],
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
        "state": dict(request.scope.get("state") or {}),
    }
    done = asyncio.Event()
    status = 0
    json_body = False
    parts: list[bytes] = []
    asked = False

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, json_body
        if message["type"] == "http.response.start":
            status = int(message["status"])
            kinds = [v for k, v in message.get("headers", []) if k.lower() == b"content-type"]
            json_body = bool(kinds) and kinds[0].startswith(b"application/json")
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # The API answered its 500 and logged the failure (then Starlette re-raises it): the
        # page's module asks again and shows that answer.
        return None
    finally:
        done.set()
    return b"".join(parts) if status == 200 and json_body else None


async def answers(app: ASGIApp, request: Request, targets: Iterable[str]) -> dict[str, bytes]:
    """The 200 answers of GET `targets`, asked at the same time, by URL."""
    wanted = list(dict.fromkeys(targets))
    found = await asyncio.gather(*(get(app, request, t) for t in wanted))
    return {t: body for t, body in zip(wanted, found, strict=True) if body is not None}


def script(found: dict[str, bytes]) -> str:
    """The element that carries `found` in a page: JSON of {URL: answer}. A '<' only ever
    appears inside a JSON string, where \\u003c means the same, so nothing in an answer can
    close the element."""
    import json

    body = b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in found.items()) + b"}"
    text = body.replace(b"<", b"\\u003c").decode("utf-8")
    return f'<script type="application/json" id="{ELEMENT_ID}">{text}</script>'
