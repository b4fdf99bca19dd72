"""The console's static files, served from memory: each read once at start, with its gzip
form and an ETag. Their URL holds a digest of them all (`ASSETS_URL`), so a browser keeps
them for a year without asking again; one that asks anyway (a reload) with the ETag gets a
304, and one that accepts gzip gets the compressed bytes (the modules shrink about 4 times).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    content_type: str


def load(folder: Path) -> dict[str, Asset]:
    """Every file of `folder` (not its sub-folders) by name."""
    found = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        kind = kind or "application/octet-stream"
        if kind.startswith("text/"):
            kind += "; charset=utf-8"
        found[path.name] = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
            content_type=kind,
        )
    return found


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class Assets:
    """A mounted ASGI app: GET and HEAD of one file by name, 404 for anything else."""

    def __init__(self, folder: Path) -> None:
        self.files = load(folder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        name = str(scope["path"]).rpartition("/")[2]
        asset = self.files.get(name) if scope["method"] in ("GET", "HEAD") else None
        if asset is None:
            await _answer(send, 404, [(b"content-type", b"text/plain")], b"not found")
            return
        headers = [
            (b"cache-control", b"public, max-age=31536000, immutable"),
            (b"etag", asset.etag.encode()),
            (b"vary", b"Accept-Encoding"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if asset.etag in [t.strip() for t in _header(scope, b"if-none-match").split(",")]:
            await _answer(send, 304, headers, b"")
            return
        body = asset.body
        if "gzip" in _header(scope, b"accept-encoding"):
            body = asset.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-type", asset.content_type.encode()))
        await _answer(send, 200, headers, b"" if scope["method"] == "HEAD" else body, len(body))


async def _answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, size: int = -1
) -> None:
    length = len(body) if size < 0 else size
    headers = [*headers, (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
