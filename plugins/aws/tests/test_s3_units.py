"""Parts of the s3 store that need no S3: URIs, keys and settings."""

from __future__ import annotations

import pytest

from taskfabric.storage import PackStore
from taskfabric_aws import S3BlobStore
from taskfabric_aws._s3 import split_uri


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_uris_round_trip_to_keys() -> None:
    store = S3BlobStore("s3://bucket/some/prefix/")
    assert store.uri("a", "b.txt") == "s3://bucket/some/prefix/a/b.txt"
    # '#' marks a packed record's offset in the engine's URIs, '%' escapes: both escaped.
    odd = store.uri("x#1", "50%", "q?")
    assert odd == "s3://bucket/some/prefix/x%231/50%25/q%3F"
    assert split_uri(odd) == ("bucket", "some/prefix/x#1/50%/q?")
    assert S3BlobStore("s3://bucket").uri("k") == "s3://bucket/k"


def test_bad_uris_say_what_to_write() -> None:
    with pytest.raises(ValueError, match="names no bucket"):
        S3BlobStore.from_root("s3:///prefix", {})
    with pytest.raises(ValueError, match="not an s3:// URI"):
        split_uri("file:///tmp/x")


def test_the_engine_writes_plain_blobs_on_s3() -> None:
    """S3 has no local files: the engine's documents are blobs of their own, never packed."""
    store = S3BlobStore("s3://bucket/p")
    assert store.local_path(store.uri("x")) is None
    assert PackStore(store)._local is False


def test_options_are_validated_with_the_known_keys() -> None:
    store = S3BlobStore.from_root(
        "s3://bucket/p",
        {"endpoint_url": "http://127.0.0.1:1", "part_size_mib": 16, "durable": True},
    )
    assert store.endpoint_url == "http://127.0.0.1:1"
    assert store.transfer_config.multipart_chunksize == 16 << 20
    with pytest.raises(ValueError, match=r"bucket_name: Extra inputs.*options are endpoint_url"):
        S3BlobStore.from_root("s3://bucket/p", {"bucket_name": "x"})
