"""The `s3` blob store: `[storage] data_root = "s3://bucket/prefix"`.

Objects are written whole (S3 makes a PUT or a completed multipart upload visible at once, and
never a part of one), so every write is atomic; a writer killed mid-upload leaves an incomplete
multipart upload that no reader sees (a bucket lifecycle rule `AbortIncompleteMultipartUpload`
reclaims it). Files stream in parts of `part_size_mib` through s3transfer, `concurrency` parts
at a time, so memory stays bounded whatever the file's size. Each object carries the SHA-256 of
its data in its metadata (`x-amz-meta-sha256`, computed from the bytes while they are read:
an ETag is not a content hash for multipart objects), and downloads are checked against it.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskfabric.storage import BlobNotFoundError, BlobStore
from taskfabric_aws._checks import CREDENTIAL_PLACES
from taskfabric_aws._s3names import GRANTS_ENV, S3StoreError, _quote_key, split_uri

__all__ = ["GRANTS_ENV", "S3BlobStore", "S3Settings", "S3StoreError", "split_uri"]

_MIB = 1 << 20
#: Keys users may try to put credentials under: they are refused with the way that works.
_CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key", "secret_key"}
)
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
#: S3's codes for refused credentials or permissions.
_REFUSED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


class S3Settings(BaseModel):
    """`[storage] options` when the blob root is an `s3://` URI. Credentials are never read
    from here: boto3's chain finds them (environment, `~/.aws`, an instance or task role)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: An S3-compatible endpoint (`http://127.0.0.1:9000`); unset: AWS's own, or
    #: `$AWS_ENDPOINT_URL_S3` / `$AWS_ENDPOINT_URL` when set.
    endpoint_url: str | None = None
    #: The bucket's region; unset: boto3's (`$AWS_DEFAULT_REGION`, `~/.aws/config`).
    region: str | None = None
    #: Size of the parts of multipart uploads and ranged downloads (S3's minimum is 5).
    part_size_mib: int = Field(default=8, ge=5, le=5120)
    #: Parts moving at once per file.
    concurrency: int = Field(default=4, ge=1, le=64)
    #: Tries of one request, the first included, backing off exponentially on throttling
    #: (`SlowDown`, 503) and transient errors (botocore's standard retry mode).
    max_attempts: int = Field(default=10, ge=1, le=50)
    #: "standard" backs off per request; "adaptive" also slows the client down when throttled.
    retry_mode: Literal["standard", "adaptive"] = "standard"
    #: "path" for S3-compatible stores that need `endpoint/bucket/key` addressing.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: `[storage] durable`: S3 is durable once a write returns, so it changes nothing here.
    durable: bool = False


def _settings(options: Mapping[str, Any]) -> S3Settings:
    creds = sorted(k for k in options if k.lower() in _CREDENTIAL_KEYS)
    if creds:
        raise ValueError(
            f"{', '.join(creds)}: credentials are never read from the config file; boto3 finds "
            "them in its usual places ($AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, $AWS_PROFILE "
            "and ~/.aws/credentials, an instance or task role)"
        )
    try:
        return S3Settings.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        known = ", ".join(S3Settings.model_fields)
        raise ValueError(f"{problems} (the s3 store's options are {known})") from None


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_MIB):
            digest.update(chunk)
    return digest.hexdigest()


class S3BlobStore(BlobStore):
    """Blobs as objects of an S3 bucket under a prefix, addressed by `s3://bucket/key` URIs.

    Any bucket's URIs are served (the root only decides where `uri(...)` names new keys), with
    the one client and its credentials.
    """

    scheme: ClassVar[str] = "s3"  # type: ignore[misc]

    def __init__(self, root_uri: str, settings: S3Settings | None = None) -> None:
        self.settings = settings or S3Settings()
        self.bucket, prefix = split_uri(root_uri.rstrip("/") + "/")
        self.prefix = prefix.strip("/")
        config = botocore.config.Config(
            retries={
                "mode": self.settings.retry_mode,
                "total_max_attempts": self.settings.max_attempts,
            },
            max_pool_connections=max(10, 2 * self.settings.concurrency),
            s3={"addressing_style": self.settings.addressing_style},
        )
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3",
            endpoint_url=self.settings.endpoint_url,
            region_name=self.settings.region,
            config=config,
        )
        self._session, self._config = session, config
        self._signer_client: Any = None
        part = self.settings.part_size_mib * _MIB
        self.transfer_config = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=self.settings.concurrency,
            # Downloaded chunks waiting to be written: at most this many of 256 KiB.
            max_io_queue=16,
            use_threads=True,
        )

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client talks to (AWS's or `endpoint_url`)."""
        return str(self.client.meta.endpoint_url)

    @classmethod
    def from_uri(cls, uri: str) -> BlobStore:
        """The store of `taskfabric-execute` in a job: with `$TASKFABRIC_S3_GRANTS` set (an
        attempt that runs apart, with no credentials), the store of its presigned grants;
        else a client of boto3's credentials."""
        bucket, _ = split_uri(uri)
        grants = os.environ.get(GRANTS_ENV, "")
        if grants:
            from taskfabric_aws._granted import GrantedStore

            return GrantedStore.from_url(grants, bucket)
        return cls(f"s3://{bucket}")

    @classmethod
    def from_root(cls, root_uri: str, options: Mapping[str, Any]) -> S3BlobStore:
        split_uri(root_uri)  # a ValueError names what is wrong with it
        return cls(root_uri, _settings(options))

    # -- keys ------------------------------------------------------------------------------

    def uri(self, *parts: str) -> str:
        key = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        return f"s3://{self.bucket}/{_quote_key(key)}"

    def _uri_of(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{_quote_key(key)}"

    # -- presigning (an attempt's scoped access, see _grants.py) ---------------------------

    @property
    def _signer(self) -> Any:
        """A client that presigns with SigV4 (botocore may still presign with SigV2, which
        new regions refuse), made on first use."""
        if self._signer_client is None:
            self._signer_client = self._session.client(
                "s3",
                endpoint_url=self.settings.endpoint_url,
                region_name=self.settings.region,
                config=self._config.merge(botocore.config.Config(signature_version="s3v4")),
            )
        return self._signer_client

    def presign_get(self, uri: str, seconds: int) -> str:
        """A URL that GETs the object at `uri` for `seconds`, without credentials."""
        bucket, key = split_uri(uri)
        try:
            url: str = self._signer.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            )
        except Exception as exc:
            raise self._failure(exc, "presign a read of", uri) from exc
        return url

    def presign_post(
        self, bucket: str, key: str, *, folder: bool, seconds: int
    ) -> tuple[str, dict[str, str]]:
        """A POST policy (URL and form fields) that uploads, for `seconds`, one object at
        `key`, or with `folder` any object whose key starts with `key`; with its SHA-256 in
        `x-amz-meta-sha256` and at most 5 GiB (S3's limit of one POST)."""
        conditions: list[Any] = [
            ["starts-with", "$x-amz-meta-sha256", ""],
            ["content-length-range", 0, 5 << 30],
        ]
        try:
            post = self._signer.generate_presigned_post(
                bucket,
                key + "${filename}" if folder else key,
                Conditions=conditions,
                ExpiresIn=seconds,
            )
        except Exception as exc:
            raise self._failure(exc, "presign a write of", self._uri_of(bucket, key)) from exc
        return str(post["url"]), {str(k): str(v) for k, v in post["fields"].items()}

    # -- errors ----------------------------------------------------------------------------

    def _failure(self, exc: Exception, action: str, uri: str) -> Exception:
        """What to raise for an error of boto3: BlobNotFoundError, or an S3StoreError that
        says what failed and what to do."""
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return S3StoreError(
                f"cannot {action} {uri}: no AWS credentials found; give them the way boto3 "
                f"reads them ({CREDENTIAL_PLACES})"
            )
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _NOT_FOUND:
                return BlobNotFoundError(uri)
            if code == "NoSuchBucket":
                return S3StoreError(
                    f"cannot {action} {uri}: the bucket does not exist at {self.endpoint_url}; "
                    "create it or fix [storage] data_root"
                )
            if code in _REFUSED:
                return S3StoreError(
                    f"cannot {action} {uri}: S3 at {self.endpoint_url} refused it ({code}: "
                    f"{error.get('Message', '')}); check the credentials boto3 finds "
                    f"({CREDENTIAL_PLACES}) and the bucket's policy"
                )
            return S3StoreError(f"cannot {action} {uri}: {code}: {error.get('Message', exc)}")
        if isinstance(
            exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
        ):
            return S3StoreError(
                f"cannot {action} {uri}: cannot reach S3 at {self.endpoint_url}: {exc}; check "
                "endpoint_url and region in [storage] options (unset: $AWS_ENDPOINT_URL_S3, "
                "$AWS_DEFAULT_REGION) and the network"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return S3StoreError(f"cannot {action} {uri}: {exc}")
        return exc

    # -- checking --------------------------------------------------------------------------

    def check(self) -> str:
        """For `taskfabric plugins check`: the bucket exists and these credentials may use
        it (HeadBucket), and a probe blob under the prefix is written, read back and
        deleted. Raises S3StoreError saying which failed and what to do."""
        where = f"s3://{self.bucket}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise S3StoreError(
                    f"the bucket of [storage] data_root, {where}, does not exist at "
                    f"{self.endpoint_url}: create it (aws s3 mb {where}) or fix data_root"
                ) from exc
            raise self._failure(exc, "reach the bucket", where) from exc
        except Exception as exc:
            raise self._failure(exc, "reach the bucket", where) from exc
        try:
            checked = super().check()
        except S3StoreError as exc:
            raise S3StoreError(
                f"the bucket {where} exists but cannot be used: {exc} (the credentials need "
                "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket on it)"
            ) from exc
        return f"bucket {where} at {self.endpoint_url}: {checked}"

    # -- bytes -----------------------------------------------------------------------------

    def put_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = split_uri(uri)
        metadata = {"sha256": hashlib.sha256(data).hexdigest()}
        try:
            if len(data) <= self.transfer_config.multipart_threshold:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)
            else:
                import io

                self.client.upload_fileobj(
                    io.BytesIO(data),
                    bucket,
                    key,
                    ExtraArgs={"Metadata": metadata},
                    Config=self.transfer_config,
                )
        except Exception as exc:
            raise self._failure(exc, "write", uri) from exc

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = split_uri(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            data: bytes = response["Body"].read()
        except Exception as exc:
            raise self._failure(exc, "read", uri) from exc
        expected = response.get("Metadata", {}).get("sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise S3StoreError(f"{uri}: the data read does not match its SHA-256 ({expected})")
        return data

    def exists(self, uri: str) -> bool:
        bucket, key = split_uri(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            failure = self._failure(exc, "look up", uri)
            if not isinstance(failure, BlobNotFoundError):
                raise failure from exc
        return self._any_under(bucket, key)

    def size(self, uri: str) -> int | None:
        """The object's bytes from one HEAD request, without reading it (the engine bounds
        what it reads of an attempt's outputs by it: `[engine] max_output_bytes`)."""
        bucket, key = split_uri(uri)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise self._failure(exc, "look up", uri) from exc
        return int(head["ContentLength"])

    def _any_under(self, bucket: str, key: str) -> bool:
        prefix = key.rstrip("/") + "/" if key else ""
        try:
            page = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            raise self._failure(exc, "list", self._uri_of(bucket, prefix)) from exc
        return int(page.get("KeyCount", 0)) > 0

    # -- files -----------------------------------------------------------------------------

    def put_file(self, local_path: Path, uri: str) -> None:
        bucket, key = split_uri(uri)
        metadata = {"sha256": _sha256_of_file(local_path)}
        try:
            self.client.upload_file(
                str(local_path),
                bucket,
                key,
                ExtraArgs={"Metadata": metadata},
                Config=self.transfer_config,
            )
        except Exception as exc:
            raise self._failure(exc, "write", uri) from exc

    def get_file(self, uri: str, local_path: Path) -> None:
        bucket, key = split_uri(uri)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise self._failure(exc, "read", uri) from exc
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{local_path.name}.", suffix=".tmp", dir=local_path.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._download(bucket, key, head, tmp, uri)
            os.replace(tmp, local_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _download(self, bucket: str, key: str, head: Any, target: Path, uri: str) -> None:
        """Download into `target` and check the data against the object's SHA-256. A writer
        replacing the object meanwhile can mix the parts of two versions: that shows as a
        mismatch with a new ETag, and the download starts again."""
        for _ in range(5):
            etag = head["ETag"]
            try:
                self.client.download_file(bucket, key, str(target), Config=self.transfer_config)
            except Exception as exc:
                raise self._failure(exc, "read", uri) from exc
            expected = head.get("Metadata", {}).get("sha256")
            if not expected or _sha256_of_file(target) == expected:
                return
            try:
                head = self.client.head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                raise self._failure(exc, "read", uri) from exc
            if head["ETag"] == etag:
                raise S3StoreError(f"{uri}: the data read does not match its SHA-256 ({expected})")
        raise S3StoreError(f"cannot read {uri}: it was replaced during each of 5 downloads")

    # -- listing and deleting --------------------------------------------------------------

    def _keys_under(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield str(item["Key"])
        except Exception as exc:
            raise self._failure(exc, "list", self._uri_of(bucket, prefix)) from exc

    def list(self, prefix_uri: str) -> Iterator[str]:
        bucket, key = split_uri(prefix_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        found = False
        # S3 lists keys in UTF-8 byte order, which is the sorted order of their URIs.
        for child in self._keys_under(bucket, prefix):
            found = True
            yield self._uri_of(bucket, child)
        if not found and key.strip("/"):
            try:
                self.client.head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                failure = self._failure(exc, "look up", prefix_uri)
                if isinstance(failure, BlobNotFoundError):
                    return
                raise failure from exc
            yield self._uri_of(bucket, key)

    def delete(self, uri: str) -> None:
        bucket, key = split_uri(uri)
        try:
            if key.strip("/"):
                self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            failure = self._failure(exc, "delete", uri)
            if not isinstance(failure, BlobNotFoundError):
                raise failure from exc
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        batch: builtins.list[dict[str, str]] = []
        for child in self._keys_under(bucket, prefix):
            batch.append({"Key": child})
            if len(batch) == 1000:  # DeleteObjects takes at most 1,000 keys
                self._delete_batch(bucket, batch, uri)
                batch = []
        if batch:
            self._delete_batch(bucket, batch, uri)

    def _delete_batch(self, bucket: str, batch: builtins.list[dict[str, str]], uri: str) -> None:
        try:
            response = self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
            )
        except Exception as exc:
            raise self._failure(exc, "delete", uri) from exc
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise S3StoreError(
                f"cannot delete {len(errors)} objects under {uri}: e.g. {first.get('Key')}: "
                f"{first.get('Code')}: {first.get('Message')}"
            )
