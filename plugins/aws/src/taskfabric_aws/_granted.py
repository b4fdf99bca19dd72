"""The blob store of an attempt that runs apart with no credentials: its presigned grants.

`taskfabric-execute` in an AWS Batch job gets `$TASKFABRIC_S3_GRANTS`, a presigned GET URL of
the grants document the engine wrote for its attempt (see _grants.py). `GrantedStore` reads
that document and serves the task's reads (GET with the URL granted for that object) and
writes (POST with the policy granted for that key or its folder) over plain HTTPS. A blob
that no grant names is refused here with what the attempt may reach; S3 would refuse it
too, since the job holds no credential that could sign a request of its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import urllib3

from taskfabric.storage import BlobNotFoundError, BlobStore
from taskfabric_aws._s3names import GRANTS_ENV, S3StoreError, _quote_key, split_uri

__all__ = ["GrantedStore"]

_MIB = 1 << 20
_TRIES = 5
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


def _s3_error(body: bytes) -> str:
    found = dict(_XML_FIELD.findall(body[:4096].decode("utf-8", "replace")))
    return ": ".join(v for v in (found.get("Code"), found.get("Message")) if v)


class _Chain(io.RawIOBase):
    """The bytes of several readers, one after the other (a form's head, a file, its tail)."""

    def __init__(self, *parts: IO[bytes]) -> None:
        self._parts = list(parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._parts:
            data = self._parts[0].read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            self._parts.pop(0)
        return 0


class GrantedStore(BlobStore):
    """The blobs one attempt was granted, read and written through presigned requests."""

    scheme: ClassVar[str] = "s3"  # type: ignore[misc]

    def __init__(self, grants: dict[str, Any], bucket: str, http: urllib3.PoolManager) -> None:
        if grants.get("version") != 1:
            raise S3StoreError(
                f"the attempt's grants document has version {grants.get('version')!r}, which "
                "this taskfabric-aws does not read: install the engine's version in the image"
            )
        self.bucket = bucket
        self._get: dict[str, str] = dict(grants.get("get", {}))
        self._absent: list[str] = list(grants.get("absent", []))
        self._post: dict[str, dict[str, Any]] = dict(grants.get("post", {}))
        self._expires = int(grants.get("expires", 0))
        self._written: set[str] = set()
        self._http = http

    @classmethod
    def from_url(cls, url: str, bucket: str) -> GrantedStore:
        """The store of the grants document at the presigned `url`."""
        http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=30, read=300), maxsize=4
        )
        response = _request(http, "GET", url, what="read the attempt's grants")
        if response.status != 200:
            raise S3StoreError(
                f"cannot read the attempt's grants (${GRANTS_ENV}): HTTP "
                f"{response.status} {_s3_error(response.data)}; they may have expired (the "
                "job waited longer than its task's timeout and an hour in the queue)"
            )
        return cls(json.loads(response.data), bucket, http)

    # -- what was granted ------------------------------------------------------------------

    def _refused(self, action: str, uri: str) -> S3StoreError:
        return S3StoreError(
            f"cannot {action} {uri}: this attempt runs with access to its own blobs only (the "
            "task template, its inputs and the files they name; its outputs and raw-data "
            "folder), and this is not one of them. Pass the blob to the task as an input "
            "(a File, Directory or DataFrame) to let it read it"
        )

    def _read_url(self, uri: str) -> str:
        url = self._get.get(uri)
        if url is not None:
            return url
        if uri in self._written:
            raise self._refused("read back", uri)
        if self._is_absent(uri):
            raise BlobNotFoundError(uri)
        raise self._refused("read", uri)

    def _policy(self, uri: str) -> dict[str, Any]:
        policy = self._post.get(uri)
        if policy is not None:
            return policy
        for prefix, folder_policy in self._post.items():
            if prefix.endswith("/") and uri.startswith(prefix):
                return folder_policy
        raise self._refused("write", uri)

    # -- the store -------------------------------------------------------------------------

    def uri(self, *parts: str) -> str:
        key = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return f"s3://{self.bucket}/{_quote_key(key)}"

    def get_bytes(self, uri: str) -> bytes:
        response = self._get_response(uri, preload=True)
        data: bytes = response.data
        expected = response.headers.get("x-amz-meta-sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise S3StoreError(f"{uri}: the data read does not match its SHA-256 ({expected})")
        return data

    def get_file(self, uri: str, local_path: Path) -> None:
        response = self._get_response(uri, preload=False)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{local_path.name}.", suffix=".tmp", dir=local_path.parent
        )
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in response.stream(_MIB):
                    digest.update(chunk)
                    out.write(chunk)
            expected = response.headers.get("x-amz-meta-sha256")
            if expected and digest.hexdigest() != expected:
                raise S3StoreError(f"{uri}: the data read does not match its SHA-256 ({expected})")
            os.replace(tmp_name, local_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        finally:
            response.release_conn()

    def _get_response(self, uri: str, *, preload: bool) -> urllib3.BaseHTTPResponse:
        url = self._read_url(uri)
        response = _request(self._http, "GET", url, what=f"read {uri}", preload=preload)
        if response.status == 200:
            return response
        body = response.data if preload else response.read(4096)
        if response.status == 404:
            raise BlobNotFoundError(uri)
        raise S3StoreError(self._failed("read", uri, response.status, body))

    def _failed(self, action: str, uri: str, status: int, body: bytes) -> str:
        message = f"cannot {action} {uri}: S3 answered HTTP {status} {_s3_error(body)}".rstrip()
        if status == 403 and time.time() >= self._expires:
            message += "; the attempt's grants have expired (they last its timeout and an hour)"
        return message

    def exists(self, uri: str) -> bool:
        if uri in self._get or uri in self._written:
            return True
        under = uri.rstrip("/") + "/"
        if any(k.startswith(under) for k in (*self._get, *self._written)):
            return True
        if self._is_absent(uri):
            return False
        self._policy(uri)  # a blob this attempt may write, and has not: absent
        return False

    def list(self, prefix_uri: str) -> Iterator[str]:
        """The granted (and written) blobs under `prefix_uri`: S3 is never asked (a job may
        list nothing); refused where nothing of it was granted."""
        base = prefix_uri.rstrip("/")
        under = base + "/"
        known = {*self._get, *self._written}
        found = sorted(k for k in known if k == prefix_uri or k.startswith(under))
        if not (found or base in known or self._is_absent(base) or self._may_write(under)):
            raise self._refused("list", prefix_uri)
        yield from found

    def _is_absent(self, uri: str) -> bool:
        return any(uri == a or uri.startswith(a.rstrip("/") + "/") for a in self._absent)

    def _may_write(self, under: str) -> bool:
        """Whether this attempt may write a blob under the folder `under` (ends with /)."""
        return any(
            k.startswith(under) or (k.endswith("/") and under.startswith(k)) for k in self._post
        )

    def put_bytes(self, uri: str, data: bytes) -> None:
        self._upload(uri, lambda: io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def put_file(self, local_path: Path, uri: str) -> None:
        digest = hashlib.sha256()
        with local_path.open("rb") as fh:
            while chunk := fh.read(_MIB):
                digest.update(chunk)
        size = local_path.stat().st_size
        self._upload(uri, lambda: local_path.open("rb"), size, digest.hexdigest())

    def _upload(self, uri: str, open_data: Any, size: int, sha256: str) -> None:
        """POST the data with the policy granted for `uri` (S3's browser-form upload: the
        fields, then the file, last)."""
        policy = self._policy(uri)
        _, key = split_uri(uri)
        fields = {**policy["fields"], "key": key, "x-amz-meta-sha256": sha256}
        boundary = secrets.token_hex(16)
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        for attempt in range(_TRIES):
            data = open_data()
            try:
                body = io.BufferedReader(_Chain(io.BytesIO(head), data, io.BytesIO(tail)), _MIB)
                response = _request(
                    self._http, "POST", policy["url"], what=f"write {uri}", body=body,
                    headers=headers, tries=1,
                )  # fmt: skip
            finally:
                data.close()
            if response.status in (200, 201, 204):
                self._written.add(uri)
                return
            if response.status not in _RETRY_STATUS or attempt == _TRIES - 1:
                raise S3StoreError(self._failed("write", uri, response.status, response.data))
            time.sleep(min(8.0, 0.5 * 2**attempt))

    def delete(self, uri: str) -> None:
        raise S3StoreError(
            f"cannot delete {uri}: an attempt that runs apart may write its own blobs but "
            "delete none (the engine removes what an execution leaves)"
        )


def _request(
    http: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    what: str,
    preload: bool = True,
    body: Any = None,
    headers: dict[str, str] | None = None,
    tries: int = _TRIES,
) -> urllib3.BaseHTTPResponse:
    """One request, tried again on a connection error or a 5xx (backing off); the last
    answer is returned whatever its status."""
    for attempt in range(tries):
        try:
            response = http.request(
                method, url, body=body, headers=headers, preload_content=preload, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            if attempt == tries - 1:
                # Said without the URL's query: never the signature.
                host, _, query = url.partition("?")
                said = str(exc).replace(query, "...") if query else str(exc)
                raise S3StoreError(f"cannot {what}: cannot reach {host}: {said}") from None
        else:
            if response.status not in _RETRY_STATUS or attempt == tries - 1:
                return response
            response.drain_conn()
        time.sleep(min(8.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")
