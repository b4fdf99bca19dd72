"""`[backends.<name>]` of driver `aws-batch`, and a task's resources as Batch's."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator

from taskfabric.core.v1 import tasks_pb2
from taskfabric.plugin_api import BackendSettings

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BYTES.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


class BatchSettings(BackendSettings):
    """Where attempts run as AWS Batch jobs, and with what."""

    #: The job queue every attempt is submitted to (a name or an ARN).
    job_queue: str = Field(min_length=1)
    #: The image of tasks that name none (`@task(container_image=...)`, `register --image`).
    image: str = ""
    #: The Python of the image that runs `taskfabric-execute`.
    python: str = "python3"
    #: vCPUs and memory of tasks whose `resources` say nothing (Batch needs both).
    vcpus: float = Field(default=1.0, gt=0)
    memory_mib: int = Field(default=2048, ge=4)
    #: The IAM role the jobs' containers run with (their S3 access, say): `jobRoleArn`.
    job_role_arn: str = ""
    #: Environment variables of every job (in its job definition: never secrets).
    env: dict[str, str] = {}
    #: Names of the engine's environment variables passed on to every job when set (for test
    #: set-ups; on AWS give the jobs a role instead of credentials).
    pass_env: list[str] = []
    #: The region and an endpoint of the Batch and CloudWatch Logs APIs; unset: boto3's
    #: (`$AWS_DEFAULT_REGION`, `$AWS_ENDPOINT_URL_BATCH`, ...).
    region: str | None = None
    endpoint_url: str | None = None
    #: CloudWatch Logs group of the jobs' output (Batch's default).
    log_group: str = "/aws/batch/job"
    #: A pool of `[pools]` for the Batch API: every attempt holds one of its slots while its
    #: job lives, each `describe_jobs` call takes a token of its rate, and a throttling answer
    #: pushes the pool back (nothing new is granted for a while) instead of failing anything.
    pool: str = ""
    #: Seconds between two rounds of `describe_jobs` (one call per 100 jobs).
    poll_seconds: float = Field(default=2.0, gt=0)
    #: Seconds between two reads of a running job's CloudWatch Logs stream into the attempt's
    #: log (what `executions logs --follow` prints); 0: read it only when the job ends. Each
    #: read is a GetLogEvents call per running job, and CloudWatch Logs answers about 25 a
    #: second per account and region: raise it when many jobs run at once.
    follow_logs_seconds: float = Field(default=10.0, ge=0)
    #: Tries of one API call, the first included, before a throttling error becomes pushback.
    api_attempts: int = Field(default=3, ge=1, le=20)
    #: How a job reaches the S3 blob store. "presigned": with URLs and upload policies the
    #: engine presigns for its attempt alone (its template, its inputs and the objects they
    #: name; its outputs, error document and raw-data folder), and no credentials: the job
    #: reaches no other project's data (docs/server.md, "Isolation"). "credentials": with
    #: boto3's credentials in the job (its job role, `pass_env`): the whole store, so not
    #: isolated, refused by a multi-tenant server.
    blob_access: Literal["presigned", "credentials"] = "presigned"
    #: Seconds a job's presigned access lasts when its task has no timeout (with one: the
    #: timeout and an hour, for the time a job waits in the queue); SigV4 allows 7 days.
    #: Presigned with temporary credentials (a role's), it ends when they do.
    grant_seconds: int = Field(default=86400, ge=60, le=7 * 24 * 3600)

    @field_validator("env", "pass_env")
    @classmethod
    def _check_env_names(cls, value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value


def vcpus_of(quantity: str, where: str) -> float:
    """Batch vCPUs of a CPU quantity ("2", "0.5", "500m"); Batch takes whole vCPUs on EC2,
    so a fraction is rounded up."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or match.group(2) not in (None, "m"):
        raise ValueError(
            f"{where}: cpu {quantity!r} is not a CPU quantity: write a number of CPUs ('2', "
            "'0.5') or millicpus ('500m')"
        )
    value = float(match.group(1)) / (1000 if match.group(2) == "m" else 1)
    return float(max(1, math.ceil(value)))


def memory_mib_of(quantity: str, where: str) -> int:
    """MiB of a memory quantity ("256Mi", "2Gi", "1G"), rounded up."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or match.group(2) == "m":
        raise ValueError(
            f"{where}: memory {quantity!r} is not a memory quantity: write bytes with a "
            "suffix, e.g. '256Mi', '2Gi', '500M'"
        )
    value = float(match.group(1)) * _BYTES[match.group(2) or ""]
    return max(4, math.ceil(value / 2**20))


def resources_of(template: tasks_pb2.TaskTemplate, settings: BatchSettings) -> list[dict[str, str]]:
    """The job's `resourceRequirements`: the task's requests (else its limits), else the
    backend's defaults."""
    where = f"task '{template.id.name}'"
    requests, limits = template.resources.requests, template.resources.limits
    cpu = requests.cpu or limits.cpu
    memory = requests.memory or limits.memory
    gpu = requests.gpu or limits.gpu
    vcpus = vcpus_of(cpu, where) if cpu else settings.vcpus
    memory_mib = memory_mib_of(memory, where) if memory else settings.memory_mib
    out = [
        {"type": "VCPU", "value": f"{vcpus:g}"},
        {"type": "MEMORY", "value": str(memory_mib)},
    ]
    if gpu:
        if not gpu.strip().isdigit():
            raise ValueError(f"{where}: gpu {gpu!r} is not a whole number of GPUs")
        out.append({"type": "GPU", "value": gpu.strip()})
    return out


__all__ = ["BatchSettings", "memory_mib_of", "resources_of", "vcpus_of"]
