"""Test kit: moto's server (the S3, Batch, IAM and CloudWatch Logs APIs) in a process of its
own on 127.0.0.1, on a port the system picks, and the settings that talk to it.

`python -m taskfabric_aws.testing PORT_FILE` is that process: it serves until SIGTERM, having
written its port to PORT_FILE once it accepts connections. moto comes with the `testing` extra
(`pip install 'taskfabric-aws[testing]'`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

#: Credentials and region for moto (it accepts any): never real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoMissing(RuntimeError):
    """moto's server could not be started."""


@contextlib.contextmanager
def moto_server(
    folder: Path, *, env: Mapping[str, str] | None = None, start_timeout: float = 60.0
) -> Iterator[str]:
    """Run moto's server in a process of its own with `env` added to this one's; yield its
    endpoint (`http://127.0.0.1:PORT`); stop it at the end. Its log is `folder/moto.log`."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "moto.port"
    port_file.unlink(missing_ok=True)
    with (folder / "moto.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskfabric_aws.testing", str(port_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **FAKE_CREDENTIALS, **(env or {})},
            cwd=folder,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MotoMissing(
                    f"moto's server did not start (exit {proc.returncode}); see "
                    f"{folder / 'moto.log'}; install it with `pip install 'moto[server]'`"
                )
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def configure_moto(endpoint: str, settings: Mapping[str, object]) -> None:
    """Change a running moto server's settings (`{"batch": {"use_docker": False}}`)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=json.dumps(settings).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _name_log_streams_while_jobs_run() -> None:
    """AWS Batch names a job's CloudWatch Logs stream (`container.logStreamName`) once its
    container runs, and the awslogs driver fills it as the job writes; moto names it, and
    writes the container's output to it, only when the job has ended. Have moto name (and
    create) it when the container starts, as AWS does, so that a test can follow a running
    job's stream: lines put to it meanwhile come first, the container's own at the end."""
    from moto.batch import models

    start_attempt = models.Job._start_attempt

    def _start_attempt(self: models.Job) -> None:
        self.log_stream_name = self._stream_name
        self._log_backend.ensure_log_group(self._log_group)
        self._log_backend.ensure_log_stream(self._log_group, self.log_stream_name)
        start_attempt(self)

    models.Job._start_attempt = _start_attempt  # type: ignore[method-assign]


def _serve(port_file: Path) -> None:
    from moto.server import ThreadedMotoServer

    _name_log_streams_while_jobs_run()

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    # moto tells the Batch containers it starts where it listens through MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


def create_batch_queue(endpoint: str, name: str) -> str:
    """An enabled job queue `name` on an UNMANAGED compute environment of its own (moto runs
    its jobs itself), with the IAM role such an environment needs; returns the queue's ARN."""
    import boto3

    kwargs = {
        "endpoint_url": endpoint,
        "region_name": FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    iam = boto3.client("iam", **kwargs)
    role = iam.create_role(RoleName=f"{name}-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", **kwargs)
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"{name}-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    queue = batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    return str(queue["jobQueueArn"])


__all__ = ["FAKE_CREDENTIALS", "MotoMissing", "configure_moto", "create_batch_queue", "moto_server"]


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    _serve(Path(sys.argv[1]))
