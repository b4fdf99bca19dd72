"""An attempt's presigned access to the S3 store (what an aws-batch job gets in place of
credentials), against moto's S3: the task side reads its own inputs and writes its own
outputs through its grants, holding no credential, and nothing else is granted.

What moto checks, and what it does not (moto 5.2, server mode, measured): moto without
authentication (the default) serves a presigned URL without verifying its signature or its
expiry (a URL whose key was edited reads the other key), takes a POST upload without
checking its policy's conditions, and answers an unsigned ListObjects or PutObject; it does
refuse an unsigned GET of a private object (403). moto with authentication on
(`INITIAL_NO_AUTH_ACTION_COUNT`) answers every presigned request with a 500 (it looks only
at the Authorization header). So the tests below check what is granted (each URL's key and
expiry, each policy's conditions, decoded from the documents the job gets) and what S3 itself
refuses a job that has no credentials (the unsigned GET); that S3 enforces a signature's key,
method and expiry, and a policy's conditions, is AWS's part and not tested here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from conftest import client

from taskfabric.storage import BlobNotFoundError
from taskfabric_aws import S3BlobStore, S3StoreError
from taskfabric_aws._granted import GrantedStore
from taskfabric_aws._grants import AttemptBlobs, grant_seconds, grants_document
from taskfabric_aws._s3 import GRANTS_ENV, split_uri

SECONDS = 900
#: The engine's credentials here (moto takes any): the secret must never reach a job.
KEY_ID, SECRET = "AKIATFGRANTSKEYID017", "tf-grants-secret-never-handed-out-0123456789"


@pytest.fixture
def store(moto_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch) -> S3BlobStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return S3BlobStore.from_root(s3_root, {"endpoint_url": moto_endpoint})


def _no_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """This process as a job: no credential anywhere boto3 would look."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _alpha(store: S3BlobStore) -> tuple[AttemptBlobs, dict[str, bytes]]:
    """Alpha's attempt: a template, an inputs document, a file and a folder its inputs name."""
    attempt = store.uri("executions", "alpha-1", "nodes", "n0")
    objects = {
        f"{attempt}/task-1.pb": b"template",
        f"{attempt}/inputs.pb": b"inputs",
        store.uri("uploads", "alpha", "data.csv"): b"a,b\n1,2\n",
        store.uri("uploads", "alpha", "folder", "one.txt"): b"one",
        store.uri("uploads", "alpha", "folder", "sub", "two.txt"): b"two",
    }
    for uri, data in objects.items():
        store.put_bytes(uri, data)
    blobs = AttemptBlobs(
        reads=(
            f"{attempt}/task-1.pb",
            f"{attempt}/inputs.pb",
            store.uri("uploads", "alpha", "data.csv"),
            store.uri("uploads", "alpha", "folder"),
            store.uri("uploads", "alpha", "gone.csv"),  # named by the inputs, deleted since
        ),
        writes=(f"{attempt}/outputs-1.pb", f"{attempt}/error-1.pb"),
        write_prefix=f"{attempt}/raw-1",
    )
    return blobs, objects


def _policy(post: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(post["fields"]["policy"]))
    return decoded


def test_an_attempt_reads_and_writes_its_own_blobs_only_with_no_credentials(
    store: S3BlobStore,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blobs, objects = _alpha(store)
    secret_uri = store.uri("uploads", "beta", "secret.txt")
    store.put_bytes(secret_uri, b"beta's secret")
    document = grants_document(store, [blobs], SECONDS)
    # The grants hold signatures, and the key id they name (as every presigned URL does),
    # never the secret.
    assert SECRET.encode() not in document and KEY_ID.encode() in document
    grants_uri = store.uri("executions", "alpha-1", "nodes", "n0", "grants-1.json")
    store.put_bytes(grants_uri, document)
    url = store.presign_get(grants_uri, SECONDS)

    # What was granted: a GET of exactly each object the attempt reads, for SECONDS; a POST
    # of exactly its outputs and error documents, and of keys under its raw-data folder.
    grants = json.loads(document)
    assert sorted(grants["get"]) == sorted(u for u in objects)
    assert grants["absent"] == [store.uri("uploads", "alpha", "gone.csv")]
    for uri, get in grants["get"].items():
        parts = urlsplit(get)
        query = parse_qs(parts.query)
        assert parts.path == f"/{store.bucket}/{split_uri(uri)[1]}", get
        assert query["X-Amz-Expires"] == [str(SECONDS)]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    policies = {uri: _policy(post) for uri, post in grants["post"].items()}
    outputs, error = blobs.writes
    raw_key = split_uri(blobs.write_prefix)[1] + "/"
    assert sorted(policies) == sorted([outputs, error, blobs.write_prefix + "/"])
    assert {"key": split_uri(outputs)[1]} in policies[outputs]["conditions"]
    assert {"key": split_uri(error)[1]} in policies[error]["conditions"]
    assert ["starts-with", "$key", raw_key] in policies[blobs.write_prefix + "/"]["conditions"]
    for policy in policies.values():
        assert {"bucket": store.bucket} in policy["conditions"]
        expires = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ"))
        assert expires - time.mktime(time.gmtime()) <= SECONDS + 5

    # The job's side: no credentials, only the grants' URL.
    _no_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv(GRANTS_ENV, url)
    task_store = S3BlobStore.from_uri(blobs.reads[0])
    assert isinstance(task_store, GrantedStore)
    assert task_store.get_bytes(blobs.reads[1]) == b"inputs"
    task_store.get_file(blobs.reads[2], tmp_path / "data.csv")
    assert (tmp_path / "data.csv").read_bytes() == b"a,b\n1,2\n"
    task_store.get_dir(blobs.reads[3], tmp_path / "folder")
    assert (tmp_path / "folder" / "sub" / "two.txt").read_bytes() == b"two"
    assert task_store.exists(blobs.reads[3]) and not task_store.exists(blobs.reads[4])
    with pytest.raises(BlobNotFoundError):
        task_store.get_bytes(blobs.reads[4])
    task_store.put_bytes(outputs, b"outputs")
    big = tmp_path / "big.bin"
    big.write_bytes(b"0123456789abcdef" * (3 << 16))  # 3 MiB, streamed in one POST
    task_store.put_file(big, f"{blobs.write_prefix}/files/big.bin")
    assert task_store.exists(f"{blobs.write_prefix}/files")

    # Refused before any request: another project's blob, a listing, a write outside.
    with pytest.raises(S3StoreError, match="access to its own blobs only"):
        task_store.get_bytes(secret_uri)
    with pytest.raises(S3StoreError, match="access to its own blobs only"):
        list(task_store.list(store.uri("uploads", "beta")))
    # (A listing shows what was granted under it, never asking S3.)
    assert list(task_store.list(store.uri("uploads"))) == sorted(
        u for u in objects if "/uploads/" in u
    )
    with pytest.raises(S3StoreError, match="access to its own blobs only"):
        task_store.put_bytes(store.uri("uploads", "beta", "secret.txt"), b"overwritten")
    with pytest.raises(S3StoreError, match="delete none"):
        task_store.delete(outputs)

    # And S3 itself refuses a request the job would make on its own, unsigned (the only such
    # refusal moto enforces: see the module's docstring).
    http = urllib3.PoolManager()
    answer = http.request("GET", f"{moto_endpoint}/{store.bucket}/{split_uri(secret_uri)[1]}")
    assert answer.status == 403, answer.data

    # The engine reads what the job wrote, with its SHA-256 (sent as the policy allows).
    monkeypatch.delenv(GRANTS_ENV)
    assert store.get_bytes(outputs) == b"outputs"
    s3 = client("s3", moto_endpoint)
    head = s3.head_object(Bucket=store.bucket, Key=raw_key + "files/big.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert store.get_bytes(secret_uri) == b"beta's secret"  # never overwritten


def test_grants_last_the_timeout_and_an_hour_at_most_seven_days() -> None:
    assert grant_seconds(600, 86400) == 600 + 3600
    assert grant_seconds(0, 86400) == 86400
    assert grant_seconds(30 * 86400, 86400) == 7 * 86400
    assert grant_seconds(0, 30 * 86400) == 7 * 86400


def test_expired_or_unreadable_grants_say_so(
    store: S3BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    gone = store.presign_get(store.uri("no", "grants.json"), SECONDS)
    with pytest.raises(S3StoreError, match="cannot read the attempt's grants") as raised:
        GrantedStore.from_url(gone, store.bucket)
    assert "X-Amz-Signature" not in str(raised.value)
    assert "may have expired" in str(raised.value)
