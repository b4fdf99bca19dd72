"""The sandbox's bounds on one attempt: CPU time, memory, processes and disk, from the
backend's settings or the task's own `limits`, applied as resource limits (rlimits) of the
attempt's processes and sizes of its in-memory folders; and the error of an attempt that
reached one, naming the limit and how to raise it.

The rlimits hold in the attempt's own user namespace, where the task has no capability to
raise them: `RLIMIT_CPU` (CPU seconds, per process: SIGXCPU, then SIGKILL), `RLIMIT_DATA`
(memory a process may allocate: `MemoryError`), `RLIMIT_NPROC` (processes and threads of the
attempt at once, counted in its user namespace: a fork fails), `RLIMIT_FSIZE` (the largest
file it may write: `File too large`); `disk` also sizes the attempt's scratch folder, `/tmp`
and `/dev/shm`, which are then in-memory file systems of that size (`No space left`).
Where the host allows cgroups (`_cgroups`), `memory`, `processes` and `cpus` also bound the
attempt's cgroup: all its processes together, and its CPU quota.
"""

from __future__ import annotations

import re
import resource
import signal
from dataclasses import dataclass, field

from taskfabric.core.v1 import tasks_pb2
from taskfabric.plugin_api import AttemptError

__all__ = ["AttemptLimits", "LimitError", "limit_error", "limits_of", "parse_bytes"]

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m)?$")
#: The fewest processes an attempt may be given: its own, and the threads that
#: `taskfabric-execute` and Python's standard library start.
MIN_PROCESSES = 4
#: The smallest memory bound (below it Python cannot start).
MIN_MEMORY = 32 * 2**20
#: Seconds between the soft CPU limit (SIGXCPU) and the hard one (SIGKILL).
_CPU_GRACE = 2


class LimitError(ValueError):
    """A bound that cannot be applied as written (its message says what to write)."""


def parse_bytes(quantity: str, what: str) -> int:
    """Bytes of "256Mi", "1G", "1.5Gi", "1048576" (Kubernetes quantities)."""
    match = _QUANTITY.match(quantity.strip())
    if match is None:
        raise LimitError(
            f"{what} {quantity!r} is not an amount of bytes: write e.g. '256Mi', '2Gi', '500M'"
        )
    return int(float(match.group(1)) * _FACTORS[match.group(2) or ""])


def _cpus(quantity: str, what: str) -> float:
    match = _CPU.match(quantity.strip())
    if match is None:
        raise LimitError(f"{what} {quantity!r} is not a number of CPUs: write '2', '0.5', '500m'")
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def describe_bytes(value: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= factor:
            amount = value / factor
            return f"{amount:g} {unit}"
    return f"{value} B"


@dataclass(frozen=True)
class AttemptLimits:
    """One attempt's bounds (0: none), and where each came from (for the error message)."""

    cpu_seconds: int = 0
    memory: int = 0
    processes: int = 0
    disk: int = 0
    #: CPUs it may use at once (a cgroup's CPU quota, where cgroups are in force).
    cpus: float = 0.0
    #: CPUs its share of contended cores stands for (a cgroup's CPU weight: 1 CPU is the
    #: kernel's default weight); 0: the default.
    cpu_weight: float = 0.0
    #: bound -> how a user raises it (a setting, or the task's `limits`).
    raise_with: dict[str, str] = field(default_factory=dict)

    def rlimits(self) -> list[tuple[int, int, int]]:
        """(resource, soft, hard) to set in the attempt's process; no core files ever."""
        found = [(resource.RLIMIT_CORE, 0, 0)]
        if self.cpu_seconds:
            found.append((resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + _CPU_GRACE))
        if self.memory:
            found.append((resource.RLIMIT_DATA, self.memory, self.memory))
        if self.processes:
            found.append((resource.RLIMIT_NPROC, self.processes, self.processes))
        if self.disk:
            found.append((resource.RLIMIT_FSIZE, self.disk, self.disk))
        return found

    def prlimit_args(self) -> list[str]:
        """The same as `prlimit(1)` options (util-linux), for a process started by command."""
        names = {
            resource.RLIMIT_CORE: "core",
            resource.RLIMIT_CPU: "cpu",
            resource.RLIMIT_DATA: "data",
            resource.RLIMIT_NPROC: "nproc",
            resource.RLIMIT_FSIZE: "fsize",
        }
        return [f"--{names[r]}={soft}:{hard}" for r, soft, hard in self.rlimits()]


def limits_of(
    template: tasks_pb2.TaskTemplate,
    *,
    backend: str,
    cpu_seconds: float,
    memory: str,
    processes: int,
    disk: str,
    cpus: float = 0.0,
) -> AttemptLimits:
    """The bounds of an attempt of `template`: the task's own `limits` (memory, ephemeral
    storage as disk, CPUs as its CPU quota and, times its timeout, as CPU seconds; its
    `requests` cpu, else its quota, as its CPU weight) win over the backend's settings."""
    section = f"[backends.{backend}]"
    spec = template.resources.limits
    where = f"task '{template.id.name}'"
    raise_with: dict[str, str] = {}
    seconds = 0
    quota = _cpus(spec.cpu, f"{where}: limits cpu") if spec.cpu else cpus
    asked = template.resources.requests.cpu
    weight = _cpus(asked, f"{where}: requests cpu") if asked else quota
    if spec.cpu and template.timeout.ToSeconds() > 0:
        seconds = int(_cpus(spec.cpu, f"{where}: limits cpu") * template.timeout.ToSeconds())
        seconds = max(1, seconds)
        raise_with["cpu"] = (
            f"the task's limits cpu={spec.cpu!r} times its timeout: give it more CPUs or time "
            "with @task(limits=Resources(cpu=...), timeout=...)"
        )
    elif cpu_seconds:
        seconds = max(1, int(cpu_seconds))
        raise_with["cpu"] = f"{section} cpu_seconds: raise it there"
    mem = 0
    if spec.memory:
        mem = parse_bytes(spec.memory, f"{where}: limits memory")
        raise_with["memory"] = (
            f"the task's limits memory={spec.memory!r}: give it more with "
            "@task(limits=Resources(memory=...))"
        )
    elif memory:
        mem = parse_bytes(memory, f"{section} memory")
        raise_with["memory"] = (
            f"{section} memory: raise it there, or give the task its own with "
            "@task(limits=Resources(memory=...))"
        )
    if mem and mem < MIN_MEMORY:
        raise LimitError(f"{where}: a memory limit of {describe_bytes(mem)} is below 32 MiB")
    size = 0
    if spec.ephemeral_storage:
        size = parse_bytes(spec.ephemeral_storage, f"{where}: limits ephemeral_storage")
        raise_with["disk"] = (
            f"the task's limits ephemeral_storage={spec.ephemeral_storage!r}: give it more "
            "with @task(limits=Resources(ephemeral_storage=...))"
        )
    elif disk:
        size = parse_bytes(disk, f"{section} disk")
        raise_with["disk"] = (
            f"{section} disk: raise it there, or give the task its own with "
            "@task(limits=Resources(ephemeral_storage=...))"
        )
    if processes:
        raise_with["processes"] = f"{section} processes: raise it there"
    return AttemptLimits(
        cpu_seconds=seconds,
        memory=mem,
        processes=processes,
        disk=size,
        cpus=quota,
        cpu_weight=weight,
        raise_with=raise_with,
    )


def limit_error(
    limits: AttemptLimits,
    code: int | None,
    error: AttemptError | None,
    *,
    oom_killed: bool = False,
) -> AttemptError | None:
    """The error of an attempt that ended (`code`: its exit status, negative for a signal;
    `error`: what it reported) because it reached one of `limits`; None when it did not.
    `oom_killed`: the kernel killed one of its processes for the memory of its cgroup (all
    its processes together)."""
    killed_by = 0
    if code is not None and code < 0:
        killed_by = -code
    elif code is not None and code > 128:  # through a launcher (bwrap) that exits 128 + N
        killed_by = code - 128
    text = f"{error.code}: {error.message}" if error is not None else ""
    if limits.memory and oom_killed:
        return _reached(
            "MemoryLimit",
            f"the task reached its memory limit, {describe_bytes(limits.memory)} for all its "
            "processes together (the kernel killed one of them)",
            limits.raise_with["memory"],
            text,
        )
    if limits.cpu_seconds and killed_by == signal.SIGXCPU:
        return _reached(
            "CpuTimeLimit",
            f"the task used its {limits.cpu_seconds} s of CPU time (per process)",
            limits.raise_with["cpu"],
            text,
        )
    if error is None:
        return None
    if limits.memory and (error.code == "MemoryError" or "Cannot allocate memory" in text):
        return _reached(
            "MemoryLimit",
            f"the task reached its memory limit, {describe_bytes(limits.memory)} per process",
            limits.raise_with["memory"],
            text,
        )
    if limits.processes and (
        "Resource temporarily unavailable" in text or "can't start new thread" in text
    ):
        return _reached(
            "ProcessLimit",
            f"the task reached its limit of {limits.processes} processes and threads at once",
            limits.raise_with["processes"],
            text,
        )
    if limits.disk and ("File too large" in text or "No space left on device" in text):
        return _reached(
            "DiskLimit",
            f"the task reached its disk limit, {describe_bytes(limits.disk)} (the largest file "
            "it may write, and the size of its scratch folder, /tmp and /dev/shm each)",
            limits.raise_with["disk"],
            text,
        )
    return None


def _reached(code: str, what: str, how: str, text: str) -> AttemptError:
    message = f"{what}; {how}"
    if text:
        message += f" (the task's error: {text[:500]})"
    return AttemptError(code, message, kind="user", retryable=False)
