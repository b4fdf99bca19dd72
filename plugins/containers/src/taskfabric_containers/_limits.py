"""A task's resources as container limits, in Kubernetes quantity syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskfabric.core.v1 import tasks_pb2

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


class LimitError(ValueError):
    """A resource quantity this backend cannot turn into a limit."""


def cpu_nanos(quantity: str, where: str) -> int:
    """CPUs as billionths of a CPU: "2" -> 2e9, "500m" -> 5e8, "0.5" -> 5e8."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or match.group(2) not in (None, "m"):
        raise LimitError(
            f"{where}: cpu {quantity!r} is not a CPU quantity: write a number of CPUs "
            "('2', '0.5') or millicpus ('500m')"
        )
    value = float(match.group(1))
    nanos = int(value * (10**6 if match.group(2) == "m" else 10**9))
    if nanos < 10**7:
        raise LimitError(f"{where}: cpu {quantity!r} is below the smallest limit, '10m'")
    return nanos


def memory_bytes(quantity: str, where: str) -> int:
    """Bytes of "256Mi", "1G", "1.5Gi", "1048576"."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or match.group(2) == "m":
        raise LimitError(
            f"{where}: memory {quantity!r} is not a memory quantity: write bytes with a "
            "suffix, e.g. '256Mi', '2Gi', '500M'"
        )
    value = int(float(match.group(1)) * _FACTORS[match.group(2) or ""])
    if value < 6 * 2**20:
        raise LimitError(f"{where}: memory {quantity!r} is below the smallest limit, '6Mi'")
    return value


def describe_bytes(value: int) -> str:
    """'256 MiB', '1.5 GiB', '512 KiB'."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= factor:
            amount = value / factor
            return f"{amount:g} {unit}" if amount != int(amount) else f"{int(amount)} {unit}"
    return f"{value} B"


@dataclass(frozen=True)
class Limits:
    nano_cpus: int = 0
    memory: int = 0


def limits_of(
    template: tasks_pb2.TaskTemplate, default_cpu: str, default_memory: str, where: str
) -> Limits:
    """The container limits of an attempt: the task's `limits`, else the backend's defaults.

    Requests are scheduling hints for cluster backends; one machine enforces only limits.
    """
    spec = template.resources.limits
    if spec.gpu:
        raise LimitError(
            f"{where}: limits gpu={spec.gpu!r}, but this backend gives containers no GPUs: "
            "run the task on a backend with GPUs, or drop the gpu limit"
        )
    cpu = spec.cpu or default_cpu
    memory = spec.memory or default_memory
    return Limits(
        nano_cpus=cpu_nanos(cpu, where) if cpu else 0,
        memory=memory_bytes(memory, where) if memory else 0,
    )


__all__ = ["LimitError", "Limits", "cpu_nanos", "describe_bytes", "limits_of", "memory_bytes"]
