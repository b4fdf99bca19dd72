"""What a pod's state means for its attempt: running, ended with an exit code, or failed for a
reason of the cluster's (image, scheduling, eviction), as clear task errors."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from taskfabric.plugin_api import AttemptError
from taskfabric_kubernetes._pods import TASK_CONTAINER

#: Waiting reasons that never resolve by themselves: the attempt fails at once.
_IMAGE_NOW = {"ErrImageNeverPull", "InvalidImageName"}
#: Waiting reasons that may resolve (a registry that comes back): fail after the grace.
_IMAGE_LATER = {"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"}
#: Waiting reasons of a pod whose container cannot be made as specified.
_CONFIG_NOW = {"CreateContainerConfigError", "CreateContainerError"}


@dataclass(frozen=True)
class PodState:
    """A pod as its attempt sees it. `ended`: the task's container terminated (`exit_code`,
    `reason`, `message`); `error`: the pod failed for a reason of the cluster's."""

    running: bool = False
    ended: bool = False
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    error: AttemptError | None = None

    @property
    def pending(self) -> bool:
        return not self.running and not self.ended and self.error is None


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _task_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == TASK_CONTAINER:
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def assess(
    pod: dict[str, Any],
    now: float,
    *,
    unschedulable_seconds: float,
    image_pull_seconds: float,
    image: str = "",
) -> PodState:
    """The state of an attempt's pod (a Pod as a dict, the API's JSON form) at time `now`."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    name = meta.get("name", "?")
    where = f"pod {meta.get('namespace', '?')}/{name}"
    phase = status.get("phase", "Pending")
    created = _parse_time(meta.get("creationTimestamp")) or now
    if phase == "Failed" and status.get("reason") == "Evicted":
        return PodState(
            error=AttemptError(
                "PodEvicted",
                f"{where} was evicted by its node: {status.get('message', '')}".rstrip(": "),
                kind="system",
                retryable=True,
            )
        )
    task = _task_status(pod)
    state = task.get("state") or {}
    terminated = state.get("terminated")
    if terminated:
        return PodState(
            ended=True,
            exit_code=int(terminated.get("exitCode", 0)),
            reason=str(terminated.get("reason", "")),
            message=str(terminated.get("message", "")),
        )
    if phase in ("Succeeded", "Failed"):
        # Ended without a terminated container: the pod failed before it ran (a deadline).
        reason = status.get("reason", "") or phase
        return PodState(
            error=AttemptError(
                f"Pod{reason}" if reason != "Failed" else "PodFailed",
                f"{where} ended {phase} before its task ran: {status.get('message', reason)}",
                kind="system",
                retryable=reason != "DeadlineExceeded",
            )
        )
    if "running" in state or (phase == "Running" and "waiting" not in state):
        return PodState(running=True)
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason", ""))
    message = str(waiting.get("message", ""))
    shown = image or task.get("image", "")
    if reason in _IMAGE_NOW or (reason in _IMAGE_LATER and now - created >= image_pull_seconds):
        waited = "" if reason in _IMAGE_NOW else f" for {now - created:.0f}s"
        return PodState(
            error=AttemptError(
                "ImagePullFailed",
                f"{where} cannot get image {shown!r} ({reason}{waited}): {message}. Build and "
                "load or push the image, fix its name, or check the registry and the pod's "
                "imagePullSecrets",
                kind="user",
                retryable=False,
            )
        )
    if reason in _CONFIG_NOW:
        return PodState(
            error=AttemptError(
                reason,
                f"{where} cannot start its container ({reason}): {message}. Check the "
                "Secrets and ConfigMaps it names (secret_env, secret_volumes, the pod template)",
                kind="user",
                retryable=False,
            )
        )
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
            and now - created >= unschedulable_seconds
        ):
            return PodState(
                error=AttemptError(
                    "Unschedulable",
                    f"{where} could not be scheduled for {now - created:.0f}s: "
                    f"{str(condition.get('message', '')).rstrip('. ')}. Ask for fewer resources "
                    "(@task(requests=...)), fix the node selector or tolerations, or add nodes",
                    kind="system",
                    retryable=True,
                )
            )
    return PodState()


def has_deadline(pod: dict[str, Any]) -> bool:
    """Whether a pending pod may fail by waiting alone (scheduling, image pulls): such pods
    are assessed again as time passes, not only when the watch brings a change."""
    status = pod.get("status", {})
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return True
    waiting = ((_task_status(pod).get("state") or {}).get("waiting")) or {}
    return waiting.get("reason") in _IMAGE_LATER


__all__ = ["PodState", "assess", "has_deadline"]
