"""What `taskfabric plugins check` asks AWS Batch about the backend's queue, and the words of
its answers: what is wrong, where (the endpoint, the region, the setting) and what to do."""

from __future__ import annotations

import re
from typing import Any

import botocore.exceptions

from taskfabric.plugin_api import CheckResult

__all__ = ["AUTH_CODES", "CREDENTIAL_PLACES", "batch_failure", "check_queue"]

#: Error codes of AWS's JSON APIs (and S3's) that say the credentials were refused.
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "ExpiredToken",
        "AccessDeniedException",
        "AccessDenied",
        "InvalidAccessKeyId",
        "403",
    }
)
#: Where boto3 finds credentials, the only places taskfabric takes them from.
CREDENTIAL_PLACES = (
    "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, $AWS_PROFILE with ~/.aws/credentials, or "
    "an instance or task role"
)


def _code_and_message(exc: botocore.exceptions.ClientError) -> tuple[str, str]:
    """The error's code and message; from an XML body where a JSON API answered with one (as
    an IAM-checking front does: botocore then gives the HTTP status as the code)."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", "") or exc)
    if message.lstrip().startswith("<"):
        inner_code = re.search(r"<Code>([^<]*)</Code>", message)
        inner_message = re.search(r"<Message>([^<]*)</Message>", message)
        code = inner_code.group(1) if inner_code else code
        message = inner_message.group(1) if inner_message else message
    return code, message


def _where(batch: Any) -> str:
    return f"{batch.meta.endpoint_url} (region {batch.meta.region_name})"


def batch_failure(batch: Any, section: str, exc: Exception, permissions: str) -> str:
    """What a failed call of `batch` means for the user of `[backends.<name>]` (`section`):
    no credentials, credentials refused, no connection, or Batch's own words."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return (
            "no AWS credentials found: give the engine some the way boto3 reads them "
            f"({CREDENTIAL_PLACES})"
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        code, message = _code_and_message(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in AUTH_CODES or status == 403:
            return (
                f"AWS Batch at {_where(batch)} refused the credentials boto3 found ({code}: "
                f"{message}): fix them ({CREDENTIAL_PLACES}) or grant them {permissions}"
            )
        return f"AWS Batch at {_where(batch)} answered {code}: {message}"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return (
            f"cannot reach AWS Batch at {_where(batch)}: {exc}; check endpoint_url and region "
            f"in {section} (unset: $AWS_ENDPOINT_URL_BATCH, $AWS_DEFAULT_REGION) and the network"
        )
    return f"AWS Batch at {_where(batch)}: {exc}"


def check_queue(batch: Any, queue: str, section: str) -> CheckResult:
    """For `taskfabric plugins check`: the credentials are accepted, the queue exists and is
    enabled, and so are its compute environments."""
    try:
        found = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    except Exception as exc:
        return CheckResult(
            False,
            batch_failure(
                batch, section, exc, "batch:DescribeJobQueues and batch:DescribeComputeEnvironments"
            ),
        )
    if not found:
        try:
            names = sorted(q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"])
        except Exception:
            names = []
        there = f"the queues there: {', '.join(names)}" if names else "there are none there"
        return CheckResult(
            False,
            f"no job queue '{queue}' at {_where(batch)} ({there}): fix job_queue in {section}, "
            "or create the queue",
        )
    q = found[0]
    if q.get("state") != "ENABLED" or q.get("status") not in ("VALID", None):
        return CheckResult(
            False,
            f"job queue '{queue}' is {q.get('state')}/{q.get('status')}"
            + (f" ({q['statusReason']})" if q.get("statusReason") else "")
            + ": enable it (aws batch update-job-queue --state ENABLED) or fix its "
            "compute environments",
        )
    envs = [c["computeEnvironment"] for c in q.get("computeEnvironmentOrder", [])]
    if not envs:
        return CheckResult(False, f"job queue '{queue}' has no compute environment: give it one")
    try:
        described = batch.describe_compute_environments(computeEnvironments=envs)
    except Exception as exc:
        return CheckResult(
            False, batch_failure(batch, section, exc, "batch:DescribeComputeEnvironments")
        )
    bad = [
        f"{c['computeEnvironmentName']} ({c.get('state')}/{c.get('status')})"
        for c in described["computeEnvironments"]
        if c.get("state") != "ENABLED" or c.get("status") not in ("VALID", None)
    ]
    if bad:
        return CheckResult(
            False,
            f"job queue '{queue}': compute environments {', '.join(bad)}: enable them or fix "
            "them (aws batch describe-compute-environments says why)",
        )
    listed = ", ".join(c["computeEnvironmentName"] for c in described["computeEnvironments"])
    return CheckResult(
        True, f"job queue '{queue}' is enabled at {_where(batch)}, compute environments: {listed}"
    )
