"""Control groups of sandboxed attempts: one cgroup per attempt, made before any of its code
runs, that bounds the memory of all its processes together (and their swap), its share of
the cores (a CPU quota and weight) and how many processes and threads it runs; removed when
it ends.

Detected once per process, in this order:

- cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`): `memory.max`, `memory.swap.max`,
  `cpu.max`, `cpu.weight`, `pids.max`, in a subtree of this process's own cgroup (a
  delegated one under systemd, `Delegate=yes`, or the root when run as root):
  `<own>/taskfabric/...`. A cgroup with processes may not give its children controllers:
  an engine alone in its cgroup moves into a leaf `<own>/taskfabric-engine` first; an
  engine in such a leaf (moved there, started from there, or put there by systemd's
  `DelegateSubgroup=taskfabric-engine`) whose parent gives them uses `<parent>/taskfabric`;
  an engine whose cgroup holds other processes uses none (only this process is ever moved);
- cgroup v1 (hierarchies `memory`, `cpu`, `pids` under `/sys/fs/cgroup`):
  `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`, `cpu.cfs_quota_us`, `cpu.shares`,
  `pids.max`, in each hierarchy below this process's own cgroup there;
- else none: the sandbox then bounds attempts by per-process rlimits only (`_limits`).

Layout: `<parent>/taskfabric/<pid>-<start>/<attempt>`, one folder per engine process (its
pid and start time, so that the next start finds those of an engine that was killed and
removes them: `sweep`) and one per attempt.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from taskfabric.backends._pids import ProcessIdentity
from taskfabric.logs import get_logger

__all__ = ["AttemptCgroup", "CgroupBounds", "Cgroups", "cgroups"]

log = get_logger("taskfabric.backends")

ROOT = Path("/sys/fs/cgroup")
#: The folder, below the parent cgroup, of every engine process's cgroups.
FOLDER = "taskfabric"
#: The leaf a cgroup v2 engine moves itself into (see the module docstring).
ENGINE_LEAF = "taskfabric-engine"
#: The cgroup v1 hierarchies used (cpu may be mounted as `cpu,cpuacct`).
V1_CONTROLLERS = ("memory", "cpu", "pids")
#: The period of a CPU quota, in microseconds.
CPU_PERIOD = 100_000
#: How long `remove` waits for the killed processes of an attempt's cgroup to be gone (a
#: bound: SIGKILL ends a process at once unless it is stuck in the kernel).
REMOVE_SECONDS = 10.0

_ENGINE_DIR = re.compile(r"^(?P<pid>[0-9]+)-(?P<start>[0-9]+)$")


@dataclass(frozen=True)
class CgroupBounds:
    """What one attempt's cgroup bounds (0: not bounded)."""

    #: Bytes of memory of all its processes together (and no swap beyond it).
    memory: int = 0
    #: CPUs it may use at once (a quota: 0.5 is half a core).
    cpus: float = 0.0
    #: CPUs its share of contended cores stands for (a weight: 1 is the kernel's default).
    cpu_weight: float = 0.0
    #: Processes and threads at once.
    pids: int = 0


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy ("" for v2; "memory", "cpu"... for v1)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                found[name] = path
    return found


def _counter(path: Path, key: str) -> int:
    """The value of `key` in a flat-keyed cgroup file (`memory.events`, `oom_control`)."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def _pids_of(folder: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    return []


def _kill_and_remove(folder: Path, deadline: float) -> bool:
    """Remove cgroup `folder`: at once when it is empty (an attempt that ended); else SIGKILL
    what runs in it, remove the cgroups below it, and try again until `deadline`."""
    pause = threading.Event()
    while True:
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            pass  # EBUSY: processes in it (or just forked, or not yet gone), or cgroups below
        pids = _pids_of(folder)
        kill_file = folder / "cgroup.kill"  # v2, Linux 5.14: every process at once
        if pids and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            with contextlib.suppress(OSError):
                for child in [p for p in folder.iterdir() if p.is_dir()]:
                    _kill_and_remove(child, deadline)
        if time.monotonic() > deadline:
            log.warning("cgroup not removed: its processes did not end", cgroup=str(folder))
            return False
        pause.wait(0.005)


class AttemptCgroup:
    """One attempt's cgroup: a folder per hierarchy (one for v2)."""

    def __init__(self, version: int, folders: dict[str, Path], bounds: CgroupBounds) -> None:
        self.version = version
        #: controller ("" for v2) -> folder.
        self.folders = folders
        self.bounds = bounds

    @property
    def procs_files(self) -> list[str]:
        """The `cgroup.procs` files to write a process's pid to, to place it in the cgroup."""
        return [str(f / "cgroup.procs") for f in self.folders.values()]

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for reaching its memory bound."""
        if self.version == 2:
            return _counter(self.folders[""] / "memory.events", "oom_kill")
        folder = self.folders.get("memory")
        return _counter(folder / "memory.oom_control", "oom_kill") if folder else 0

    def remove(self) -> bool:
        """Kill whatever of the attempt still runs, and remove its cgroup."""
        deadline = time.monotonic() + REMOVE_SECONDS
        return all(_kill_and_remove(f, deadline) for f in self.folders.values())


class Cgroups:
    """The cgroups this machine lets this process make (`cgroups()`: detected once)."""

    def __init__(self, version: int, parents: dict[str, Path], reason: str) -> None:
        #: 2, 1, or 0 (none usable: `reason` says why).
        self.version = version
        #: controller ("" for v2) -> the folder that holds the engines' folders.
        self.parents = parents
        self.reason = reason
        self._lock = threading.Lock()
        self._engine_dir = ("", 0)
        self._swept_by = 0

    @property
    def engine_dir(self) -> str:
        """This engine process's folder name: its pid and start time (asked again in a
        process forked from the one that detected the cgroups)."""
        name, pid = self._engine_dir
        if pid != os.getpid():
            pid = os.getpid()
            identity = ProcessIdentity.of(pid)
            name = f"{pid}-{identity.start if identity else 0}"
            self._engine_dir = (name, pid)
        return name

    @property
    def available(self) -> bool:
        return self.version != 0

    def describe(self) -> str:
        """Which bounds are in force, for `plugins check` and the log."""
        if not self.available:
            return (
                f"no cgroup ({self.reason}): each attempt is bounded by per-process rlimits "
                "only, not the memory of all its processes together nor its share of the cores"
            )
        where = ", ".join(sorted({str(p) for p in self.parents.values()}))
        return (
            f"cgroup v{self.version} per attempt under {where}: memory of all its processes "
            "together, CPU quota and processes bounded"
        )

    def sweep(self) -> int:
        """Remove the cgroups that engine processes no longer running left (an engine that
        was killed): kill what runs in them. Once per process; returns how many."""
        with self._lock:
            if self._swept_by == os.getpid():
                return 0
            self._swept_by = os.getpid()
        removed = 0
        deadline = time.monotonic() + REMOVE_SECONDS
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                for folder in parent.iterdir():
                    match = _ENGINE_DIR.match(folder.name)
                    if match is None or not folder.is_dir() or folder.name == self.engine_dir:
                        continue
                    pid, start = int(match["pid"]), int(match["start"])
                    alive = ProcessIdentity.of(pid)
                    if alive is not None and alive.start == start:
                        continue  # another engine process's, running
                    if _kill_and_remove(folder, deadline):
                        removed += 1
        if removed:
            log.info("removed the cgroups of engine processes that ended", count=removed)
        return removed

    def make(self, attempt_id: str, bounds: CgroupBounds) -> AttemptCgroup:
        """A new cgroup for one attempt, its bounds written (OSError when it cannot be)."""
        if not self.available:
            raise OSError(f"no cgroup: {self.reason}")
        self.sweep()
        digest = hashlib.sha256(attempt_id.encode()).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", attempt_id)[:40] + "-" + digest
        folders: dict[str, Path] = {}
        try:
            for controller, parent in self.parents.items():
                folders[controller] = self._make_folder(parent / self.engine_dir, name)
            cgroup = AttemptCgroup(self.version, folders, bounds)
            self._bound(cgroup)
        except OSError:
            for folder in folders.values():
                _kill_and_remove(folder, time.monotonic() + REMOVE_SECONDS)
            raise
        return cgroup

    def _make_folder(self, engine: Path, name: str) -> Path:
        """`engine/name`, made with the folders above it. An engine process that closes
        removes its empty folders (`release`), which may race with another's making them
        (the folder of all engines is shared on cgroup v1): tried again, a few times."""
        for tries in range(1, 6):
            try:
                if self.version == 2 and not engine.is_dir():
                    engine.parent.mkdir(exist_ok=True)
                    engine.mkdir(exist_ok=True)
                    _write(engine / "cgroup.subtree_control", "+memory +cpu +pids")
                folder = engine / name
                folder.mkdir(parents=True, exist_ok=True)
                return folder
            except FileNotFoundError:
                if tries == 5:
                    raise
        raise AssertionError("unreachable")

    def _bound(self, cgroup: AttemptCgroup) -> None:
        b = cgroup.bounds
        quota = int(b.cpus * CPU_PERIOD) if b.cpus else 0
        if self.version == 2:
            folder = cgroup.folders[""]
            if b.memory:
                _write(folder / "memory.max", str(b.memory))
                with contextlib.suppress(FileNotFoundError):  # no swap accounting
                    _write(folder / "memory.swap.max", "0")
            if quota:
                _write(folder / "cpu.max", f"{max(quota, 1000)} {CPU_PERIOD}")
            if b.cpu_weight:
                weight = min(10_000, max(1, round(b.cpu_weight * 100)))
                _write(folder / "cpu.weight", str(weight))
            if b.pids:
                _write(folder / "pids.max", str(b.pids))
            return
        if b.memory:
            memory = cgroup.folders["memory"]
            _write(memory / "memory.limit_in_bytes", str(b.memory))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting
                _write(memory / "memory.memsw.limit_in_bytes", str(b.memory))
        if quota:
            cpu = cgroup.folders["cpu"]
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD))
            _write(cpu / "cpu.cfs_quota_us", str(max(quota, 1000)))
        if b.cpu_weight:
            shares = max(2, round(b.cpu_weight * 1024))
            _write(cgroup.folders["cpu"] / "cpu.shares", str(shares))
        if b.pids:
            _write(cgroup.folders["pids"] / "pids.max", str(b.pids))

    def release(self) -> None:
        """Remove this engine process's folders when no attempt's cgroup is left in them
        (and, on cgroup v1, the folder of all engines when it is empty): nothing is left in
        the cgroup of whoever started the engine."""
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                (parent / self.engine_dir).rmdir()
            if self.version == 1:
                with contextlib.suppress(OSError):
                    parent.rmdir()


def _usable(folder: Path) -> str:
    """'' when this process may make cgroups in `folder`, else why not."""
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError as exc:
        return f"cannot make a cgroup in {folder}: {exc.strerror or exc}"
    return ""


def _controls(folder: Path, needed: set[str]) -> bool:
    """Whether cgroup `folder` gives its children the `needed` controllers."""
    return needed <= set((folder / "cgroup.subtree_control").read_text().split())


def _detect_v2(root: Path) -> Cgroups:
    needed = {"memory", "cpu", "pids"}
    available = set((root / "cgroup.controllers").read_text().split())
    if not needed <= available:
        missing = ", ".join(sorted(needed - available))
        return Cgroups(0, {}, f"cgroup v2 without the {missing} controller(s)")
    own = root / _own_cgroups().get("", "/").lstrip("/")
    if not needed <= set((own / "cgroup.controllers").read_text().split()):
        return Cgroups(
            0,
            {},
            f"cgroup v2: {own} was not delegated the memory, cpu and pids controllers "
            "(systemd: Delegate=yes in the server's unit)",
        )
    if own == root:
        base = root
    elif own.name == ENGINE_LEAF and _controls(own.parent, needed):
        # The engine in the leaf of a delegated cgroup (systemd's DelegateSubgroup= of that
        # name, or the leaf an engine of this server moved itself into): its attempts go
        # beside it. (Never into the parent of any other cgroup: a slice not delegated.)
        base = own.parent
    elif [p for p in _pids_of(own) if p != os.getpid()]:
        return Cgroups(
            0,
            {},
            f"cgroup v2: {own} holds other processes than this engine, and a cgroup with "
            "processes may not give its children controllers: run the server in a cgroup of "
            "its own (systemd: Delegate=yes and DelegateSubgroup=taskfabric-engine)",
        )
    else:
        # Only this process: it moves into a leaf, so that its cgroup may have children
        # with controllers (the processes it starts, workers among them, start there).
        leaf = own / ENGINE_LEAF
        try:
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", str(os.getpid()))
        except OSError as exc:
            return Cgroups(0, {}, f"cgroup v2: cannot move the engine into {leaf}: {exc}")
        base = own
    try:
        if not _controls(base, needed):
            _write(base / "cgroup.subtree_control", "+memory +cpu +pids")
    except OSError as exc:
        return Cgroups(0, {}, f"cgroup v2: cannot enable controllers under {base}: {exc}")
    parent = base / FOLDER
    reason = _usable(parent)
    if reason:
        return Cgroups(0, {}, reason)
    try:
        _write(parent / "cgroup.subtree_control", "+memory +cpu +pids")
    except OSError as exc:
        return Cgroups(0, {}, f"cgroup v2: cannot enable controllers under {parent}: {exc}")
    return Cgroups(2, {"": parent}, "")


def _detect_v1(root: Path) -> Cgroups:
    own = _own_cgroups()
    parents: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        mount = next(
            (root / n for n in (controller, f"{controller},cpuacct") if (root / n).is_dir()),
            None,
        )
        if mount is None or controller not in own:
            return Cgroups(0, {}, f"no cgroup v1 hierarchy of the {controller} controller")
        parents[controller] = mount / own[controller].lstrip("/") / FOLDER
    for parent in parents.values():
        reason = _usable(parent)
        if reason:
            return Cgroups(0, {}, reason)
    return Cgroups(1, parents, "")


@functools.cache
def cgroups(root: Path = ROOT) -> Cgroups:
    """What this process may do with cgroups (detected once)."""
    try:
        if (root / "cgroup.controllers").exists():
            found = _detect_v2(root)
        elif (root / "memory").is_dir():
            found = _detect_v1(root)
        else:
            found = Cgroups(0, {}, f"no cgroup file system at {root}")
    except (OSError, ValueError) as exc:
        found = Cgroups(0, {}, f"cannot read {root}: {exc}")
    log.info("sandbox cgroups", bounds=found.describe())
    return found
