"""The `s3` blob store against moto's S3: the core's blob store conformance suite, streaming
with bounded memory, retries on throttling, clear errors."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import client
from throttling import throttling_proxy

from taskfabric.storage import BlobStore
from taskfabric.testing import BlobStoreConformance
from taskfabric_aws import S3BlobStore, S3StoreError

#: Files of the streaming checks span 3 parts of the smallest size S3 takes (5 MiB).
PART_MIB = 5


class TestS3StoreConformance(BlobStoreConformance):
    large_file_bytes = 2 * PART_MIB * (1 << 20) + 12345

    @pytest.fixture
    def blob_store(self, moto_endpoint: str, s3_root: str) -> Iterator[BlobStore]:
        yield S3BlobStore.from_root(
            s3_root, {"endpoint_url": moto_endpoint, "part_size_mib": PART_MIB}
        )

    @pytest.fixture(autouse=True)
    def _endpoint_for_from_uri(self, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
        # from_uri is what taskfabric-execute uses elsewhere: it reads the endpoint from the
        # environment, as boto3 does.
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)


def test_large_files_stream_in_parts_with_bounded_memory(
    moto_endpoint: str, s3_root: str, tmp_path: Path
) -> None:
    store = S3BlobStore.from_root(
        s3_root, {"endpoint_url": moto_endpoint, "part_size_mib": PART_MIB, "concurrency": 2}
    )
    size = 48 << 20
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as fh:
        for i in range(size >> 20):
            block = hashlib.sha256(str(i).encode()).digest() * (1 << 15)  # 1 MiB
            fh.write(block)
            digest.update(block)
    uri = store.uri("big.bin")
    tracemalloc.start()
    try:
        store.put_file(source, uri)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.get_file(uri, tmp_path / "copy.bin")
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hashlib.sha256((tmp_path / "copy.bin").read_bytes()).hexdigest() == digest.hexdigest()
    bucket, key = uri[len("s3://") :].split("/", 1)
    s3 = client("s3", moto_endpoint)
    part = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)
    assert part["PartsCount"] == -(-size // (PART_MIB << 20))  # a multipart object
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"] == digest.hexdigest()  # the data's hash, not the ETag
    # Parts in flight (2 x 5 MiB) and the download's queue of chunks, never the whole file.
    print(f"peak traced memory: upload {upload_peak >> 20} MiB, download {download_peak >> 20} MiB")
    assert upload_peak < size // 2, upload_peak
    assert download_peak < size // 2, download_peak


def test_throttling_is_retried_with_backoff(moto_endpoint: str, s3_root: str) -> None:
    with throttling_proxy(moto_endpoint, throttle=2) as proxy:
        options = {"endpoint_url": proxy.endpoint, "addressing_style": "path"}
        store = S3BlobStore.from_root(s3_root, options)
        uri = store.uri("after-throttling")
        store.put_bytes(uri, b"made it")  # two 503 SlowDown answers, then moto's
        assert proxy.seen == ["PUT"] * 3
        assert store.get_bytes(uri) == b"made it"
        # With fewer tries than throttled answers, the error says what happened.
        proxy.restart(throttle=10)
        impatient = S3BlobStore.from_root(s3_root, {**options, "max_attempts": 2})
        with pytest.raises(S3StoreError, match="SlowDown"):
            impatient.put_bytes(uri, b"never")
        assert proxy.seen == ["PUT"] * 2


def test_a_missing_bucket_says_so(moto_endpoint: str) -> None:
    store = S3BlobStore.from_root("s3://no-such-bucket-here/p", {"endpoint_url": moto_endpoint})
    with pytest.raises(S3StoreError, match=r"the bucket does not exist at http://127\.0\.0\.1"):
        store.put_bytes(store.uri("x"), b"x")


def test_missing_credentials_say_where_boto3_looks(
    moto_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # No instance metadata service here: do not wait for one.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3BlobStore.from_root(s3_root, {"endpoint_url": moto_endpoint})
    with pytest.raises(S3StoreError, match=r"no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        store.get_bytes(store.uri("x"))


def test_credentials_in_the_options_are_refused() -> None:
    with pytest.raises(ValueError, match="never read from the config file"):
        S3BlobStore.from_root("s3://b/p", {"aws_secret_access_key": "shh"})
    with pytest.raises(ValueError, match=r"part_size_mib.*the s3 store's options are"):
        S3BlobStore.from_root("s3://b/p", {"part_size_mib": 1})


def test_an_unreachable_endpoint_and_refused_credentials_say_what_to_fix(
    closed_endpoint: str, moto_auth_endpoint: str, s3_root: str
) -> None:
    store = S3BlobStore.from_root(s3_root, {"endpoint_url": closed_endpoint, "max_attempts": 1})
    with pytest.raises(S3StoreError) as unreachable:
        store.put_bytes(store.uri("x"), b"x")
    assert f"cannot reach S3 at {closed_endpoint}: Could not connect" in str(unreachable.value)
    assert "check endpoint_url and region in [storage] options" in str(unreachable.value)
    # moto checking the credentials against its IAM, which knows none: refused.
    refused = S3BlobStore.from_root(s3_root, {"endpoint_url": moto_auth_endpoint})
    with pytest.raises(S3StoreError) as caught:
        refused.put_bytes(refused.uri("x"), b"x")
    assert f"S3 at {moto_auth_endpoint} refused it (InvalidAccessKeyId:" in str(caught.value)
    assert "check the credentials boto3 finds ($AWS_ACCESS_KEY_ID" in str(caught.value)
    with pytest.raises(S3StoreError, match=r"S3 at .* refused it \(403"):
        refused.check()


def test_size_is_one_head_request(moto_endpoint: str, s3_root: str) -> None:
    """The engine bounds what it reads of an attempt's outputs (`[engine] max_output_bytes`)
    by the object's size, told by a HEAD request without reading the object."""
    store = S3BlobStore.from_root(s3_root, {"endpoint_url": moto_endpoint})
    uri = store.uri("sized", "outputs.pb")
    store.put_bytes(uri, b"y" * 4321)
    assert store.size(uri) == 4321
