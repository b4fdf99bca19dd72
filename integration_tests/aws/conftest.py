"""Fixtures of the AWS integration tests: one moto server for the run (the real S3, Batch,
IAM and CloudWatch Logs APIs on 127.0.0.1), fake credentials for it, and a bucket."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from taskfabric_aws.testing import FAKE_CREDENTIALS, MotoMissing, moto_server

BUCKET = "taskfabric-it"
#: The tasks the tests run: a folder of their own, which the Batch jobs' image holds too.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
if str(TASKS_DIR) not in sys.path:
    sys.path.insert(0, str(TASKS_DIR))


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # boto3 reads nothing of the user's: fake credentials for moto, no ~/.aws files.
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(taskfabric_home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(taskfabric_home / "aws-credentials"))
    return taskfabric_home


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
            yield endpoint
    except MotoMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the AWS suite needs moto's server under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def moto_auth_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server that checks each request's credentials against its IAM, which knows no
    keys: every request is refused, as AWS refuses wrong or revoked credentials."""
    folder = tmp_path_factory.mktemp("moto-auth")
    try:
        with moto_server(folder, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
            yield endpoint
    except MotoMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the AWS suite needs moto's server under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def closed_endpoint() -> Iterator[str]:
    """An endpoint on 127.0.0.1 where nothing listens (a bound socket that accepts nothing:
    every connection is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="session")
def bucket(moto_endpoint: str) -> str:
    client("s3", moto_endpoint).create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def s3_root(bucket: str) -> str:
    """A fresh, empty prefix of the bucket."""
    return f"s3://{bucket}/{uuid.uuid4().hex[:12]}"
