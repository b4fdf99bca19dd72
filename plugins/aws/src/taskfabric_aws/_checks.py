"""What `taskfabric plugins check` asks AWS Batch about the backend's queue."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from taskfabric.plugin_api import CheckResult

__all__ = ["check_queue"]


def check_queue(batch: Any, queue: str) -> CheckResult:
    """For `taskfabric plugins check`: the queue exists and is enabled, and so are its
    compute environments; missing credentials are said as such."""
    try:
        found = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    except botocore.exceptions.NoCredentialsError:
        return CheckResult(False, "no AWS credentials found (boto3's chain)")
    except Exception as exc:
        return CheckResult(False, f"cannot reach AWS Batch: {exc}")
    if not found:
        return CheckResult(False, f"no job queue '{queue}' in this account and region")
    q = found[0]
    if q.get("state") != "ENABLED" or q.get("status") not in ("VALID", None):
        return CheckResult(False, f"job queue '{queue}' is {q.get('state')}/{q.get('status')}")
    envs = [c["computeEnvironment"] for c in q.get("computeEnvironmentOrder", [])]
    if not envs:
        return CheckResult(False, f"job queue '{queue}' has no compute environment")
    described = batch.describe_compute_environments(computeEnvironments=envs)
    bad = [
        f"{c['computeEnvironmentName']} ({c.get('state')}/{c.get('status')})"
        for c in described["computeEnvironments"]
        if c.get("state") != "ENABLED" or c.get("status") not in ("VALID", None)
    ]
    if bad:
        return CheckResult(False, f"job queue '{queue}': compute environments {bad}")
    names = ", ".join(c["computeEnvironmentName"] for c in described["computeEnvironments"])
    return CheckResult(True, f"job queue '{queue}' is enabled, compute environments: {names}")
