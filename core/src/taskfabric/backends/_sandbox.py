"""The built-in `sandbox` backend: each attempt in a fresh Python process inside a bubblewrap
(`bwrap`) sandbox that sees only its own attempt.

What the attempt's process sees of the machine, at the same paths as on the host so every URI
stays valid:

- read-only: the system's programs and libraries (`/usr` and its links, a short list of
  `/etc` files), the Python that runs the task (its prefix and the folders on its `sys.path`),
  the task's code (`TaskAttempt.code_path`: a registered workflow's extracted bundle), each
  file, folder and dataframe its inputs name (only inside the blob store's `executions/` and
  `uploads/` folders), and the folders of the settings' `read_only`;
- read-write: its own folder `<attempt work folder>/sandbox/` (the task template and inputs the
  backend copies there, the outputs or error document the task writes, its scratch space) and
  its raw-data folder in the blob store (the files, folders and dataframes it returns);
- read-write too: the folders of the settings' `read_write` (a shared scratch volume);
- the socket of the engine's pool channel (`taskfabric.hold()`), when the attempt has one;
- its own `/proc` (new pid namespace: no other process, so no `/proc/PID/cmdline` naming the
  server's config), a minimal `/dev` and an empty `/tmp`; no network unless `network = true`;
  a user namespace in which it runs as uid 65534 with no capabilities.

Never the data root, the metadata database, the config file, the engine's log, another
attempt's folder or another execution's data. Its environment is built from nothing: `PATH`,
`HOME=/tmp`, `LANG`, `PYTHONPATH` (the code path), the pool channel's address and secret, and
the settings' `env`; no variable of the engine's own (no database URL, no token) is passed.

What the process leaves is checked on the host before the engine reads it: the outputs and
error documents must be regular files (read without following links), every blob an output
names must lie in the attempt's raw-data folder or be one of its inputs, and the raw-data
folder may hold only regular files and folders (no links, which a later reader on the host
would follow). Anything else fails the attempt.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from taskfabric.backends._cgroups import AttemptCgroup, CgroupBounds, Cgroups, cgroups
from taskfabric.backends._forkclient import ForkedProcess, ForkServer
from taskfabric.backends._leftovers import (
    check_output_folder,
    check_outputs,
    oversized_outputs,
    read_regular,
)
from taskfabric.backends._limits import (
    MIN_PROCESSES,
    AttemptLimits,
    LimitError,
    limit_error,
    limits_of,
    parse_bytes,
)
from taskfabric.backends._pids import starting_handle
from taskfabric.backends._process import PID_FILE, ProcessBackend, ProcessRun
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    BackendContext,
    BackendSettings,
    CheckResult,
    TaskAttempt,
)
from taskfabric.types import blob_uris

__all__ = ["SandboxBackend", "SandboxError", "SandboxSettings"]

log = get_logger("taskfabric.backends")

#: The folder of the attempt's work folder that the sandbox sees (read-write).
BOX = "sandbox"
#: The uid and gid the task runs as inside the sandbox's user namespace ("nobody").
SANDBOX_ID = "65534"
#: The processes of an attempt's cgroup that are the sandbox's own, beyond its `processes`:
#: bubblewrap's two (`fork_server = false`); none of the fork server's (the attempt's own
#: process is the first of its `processes`).
SANDBOX_PROCESSES = 2
#: Processes and threads of an attempt's cgroup when `processes` is not set.
DEFAULT_CGROUP_PIDS = 4096
#: Places the process (`sh`) in the cgroups whose `cgroup.procs` files come before `--`,
#: then runs the command after it: nothing of the attempt runs outside its cgroup.
_JOIN_CGROUP = (
    'for f do if [ "$f" = -- ]; then break; fi; echo $$ > "$f" || exit 125; shift; done; '
    'shift; exec "$@"'
)
#: The system folders that are links on a merged-/usr system, or folders of their own.
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The only files of /etc the sandbox sees: the dynamic loader's cache, time zones, names of
#: users and hosts, TLS authorities, Debian's alternatives (links to programs).
_ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/alternatives",
)


class SandboxError(Exception):
    """The sandbox cannot be set up as asked (its message says what to change)."""


class SandboxSettings(BackendSettings):
    """`[backends.<name>]` of driver `sandbox`."""

    #: Interpreter that runs the attempts; default: the engine's own. Its prefix and the
    #: folders on its `sys.path` are visible read-only.
    python: str = ""
    #: The bubblewrap program (Debian's package `bubblewrap`).
    bwrap: str = "bwrap"
    #: Environment variables of the task processes (nothing else of the engine's is passed).
    env: dict[str, str] = {}
    #: Give the tasks the host's network (they then reach what the host reaches, e.g. the
    #: database's port, though without its password); default: none at all.
    network: bool = False
    #: More host folders visible read-only at the same path (a JDK, reference data).
    read_only: list[str] = []
    #: Host folders the tasks may read and write, at the same path (a shared scratch
    #: volume): every attempt of every project run by this backend sees them.
    read_write: list[str] = []
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = 5.0
    #: Start attempts from a fork server (a pre-started Python with taskfabric imported that
    #: forks one child per attempt, which builds the same sandbox itself): milliseconds of
    #: CPU per attempt instead of about a second. False: each attempt runs `bwrap` and a
    #: fresh Python.
    fork_server: bool = True
    #: Bounds of each attempt; 0 or "": none. A task's own `limits` win: `memory`,
    #: `ephemeral_storage` (as `disk`), and `cpu` times its timeout (as `cpu_seconds`).
    #: CPU seconds of each of its processes (then SIGXCPU ends it).
    cpu_seconds: float = Field(default=0, ge=0)
    #: Memory each of its processes may allocate, e.g. "512Mi", "2Gi" (then MemoryError).
    memory: str = ""
    #: Processes and threads it may run at once (then a fork fails); at least 4.
    processes: int = Field(default=0, ge=0)
    #: The largest file it may write, and the size of its scratch folder, /tmp and /dev/shm
    #: (then in-memory file systems of that size), e.g. "1Gi".
    disk: str = ""
    #: CPUs it may use at once, e.g. 0.5 (a cgroup's CPU quota; needs cgroups); a task's
    #: own `limits` cpu wins.
    cpus: float = Field(default=0, ge=0)
    #: A cgroup per attempt, bounding the memory of all its processes together, its CPU
    #: quota and its processes: "auto" where the host allows it (else rlimits only, which
    #: the log and `taskfabric plugins check` say), "required" (the backend, and so the
    #: server, refuses to start without), "off".
    cgroups: Literal["auto", "required", "off"] = "auto"

    @field_validator("memory", "disk")
    @classmethod
    def _bytes(cls, value: str, info: ValidationInfo) -> str:
        if value:
            parse_bytes(value, str(info.field_name))
        return value

    @field_validator("processes")
    @classmethod
    def _enough_processes(cls, value: int) -> int:
        if 0 < value < MIN_PROCESSES:
            raise ValueError(
                f"processes = {value} is too few: an attempt needs at least {MIN_PROCESSES} "
                "(its own process and the threads of Python's standard library)"
            )
        return value


def _sized(size: int) -> list[str]:
    """bubblewrap's `--size` for the next `--tmpfs` (none: no bound)."""
    return ["--size", str(size)] if size else []


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


@functools.cache
def _python_paths(python: str) -> tuple[str, ...]:
    """The folders `python` runs from: its prefixes and `sys.path` (without the current
    folder), asked of the interpreter itself with an empty environment."""
    probe = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, *sys.path[1:]]))"
    out = subprocess.run(
        [python, "-E", "-s", "-c", probe],
        capture_output=True,
        text=True,
        env={"PATH": os.defpath},
        cwd="/",
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise SandboxError(f"cannot run {python}: {out.stderr.strip()[-500:]}")
    found: list[str] = []
    for entry in json.loads(out.stdout):
        if entry and os.path.isabs(entry) and os.path.exists(entry):
            found.append(os.path.realpath(entry))
    # The interpreter's own file may be a link out of its prefix (a venv's bin/python).
    found.append(os.path.dirname(os.path.realpath(shutil.which(python) or python)))
    return tuple(dict.fromkeys(found))


def _outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another of them, sorted."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(q != p and Path(p).is_relative_to(q) for q in unique)]


def _group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _is_socket(path: str) -> bool:
    return stat.S_ISSOCK(os.stat(path).st_mode)


class SandboxBackend(ProcessBackend[SandboxSettings]):
    """Runs each attempt as `python -m taskfabric.execute` inside a bubblewrap sandbox that
    sees only its attempt; see the module docstring."""

    driver = "sandbox"
    settings_model = SandboxSettings
    isolated = True

    def __init__(self, name: str, settings: SandboxSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.python = settings.python or sys.executable
        self._blob_root = self._store_root()
        self._fork_server: ForkServer | None = None
        self._fork_lock = threading.Lock()
        self._system_cache: dict[tuple[tuple[str, ...], int], list[str]] = {}
        self._attempt_cgroups: dict[str, AttemptCgroup] = {}
        self.cgroups: Cgroups | None = None
        if settings.cgroups != "off":
            found = cgroups()
            if found.available:
                self.cgroups = found
                found.sweep()
            elif settings.cgroups == "required":
                raise SandboxError(
                    f"backend '{name}' (driver sandbox) has cgroups = \"required\", but "
                    f"this host gives it none: {found.reason}. Run the server as root on a "
                    "host with cgroups, or in a delegated cgroup v2 subtree (systemd: "
                    'Delegate=yes), or set cgroups = "auto" to bound attempts by '
                    "per-process rlimits only"
                )
        log.info(
            "sandbox bounds",
            backend=name,
            bounds=self.cgroups.describe() if self.cgroups else self._no_cgroups(),
        )

    def _no_cgroups(self) -> str:
        if self.settings.cgroups == "off":
            return (
                "cgroups = off: each attempt is bounded by per-process rlimits only, not the "
                "memory of all its processes together nor its share of the cores"
            )
        return cgroups().describe()

    # -- what the sandbox sees ---------------------------------------------------------

    def _store_root(self) -> Path | None:
        """The blob store's folder on this machine, or None (not a store on local files)."""
        try:
            path = self.context.store.local_path(self.context.store.uri())
        except ValueError:
            return None
        return Path(os.path.realpath(path)) if path is not None else None

    def _forbidden(self) -> list[Path]:
        """Folders the sandbox must never see whole: the data root and the blob store."""
        found = [Path(os.path.realpath(self.context.data_root))]
        if self._blob_root is not None:
            found.append(self._blob_root)
        return found

    def _read_only_folder(self, path: str, what: str) -> str:
        real = os.path.realpath(path)
        for secret in self._forbidden():
            if _inside(secret, Path(real)):
                raise SandboxError(
                    f"backend '{self.name}': {what} {path} holds {secret}, the data root or "
                    "blob store of every execution; a sandbox may not see it: install the "
                    "task's Python and its packages outside the data root"
                )
        return real

    def _input_paths(self, attempt: TaskAttempt) -> list[str]:
        """The local files and folders that the attempt's inputs name: only inside the blob
        store's `executions/` and `uploads/` folders (resolved, links followed)."""
        if self._blob_root is None:
            return []
        allowed = (self._blob_root / "executions", self._blob_root / "uploads")
        paths: list[str] = []
        for uri in blob_uris(attempt.inputs):
            try:
                local = self.context.store.local_path(uri.split("#", 1)[0])
            except ValueError:
                local = None
            if local is None:
                raise SandboxError(f"an input names {uri}, which is not in this blob store")
            real = Path(os.path.realpath(local))
            if not any(_inside(real, a) and real != a for a in allowed):
                raise SandboxError(
                    f"an input names {uri}, outside the blob store's executions and uploads"
                )
            if real.exists():
                paths.append(str(real))
        return paths

    def _raw_folder(self, attempt: TaskAttempt) -> Path:
        try:
            raw = self.context.store.local_path(attempt.raw_prefix)
        except ValueError:
            raw = None
        if raw is None or self._blob_root is None:
            raise SandboxError(
                f"backend '{self.name}' (driver sandbox) needs a blob store on local files "
                "(file://); with an object store run tasks in containers or remote jobs"
            )
        return Path(raw)

    def box(self, attempt: TaskAttempt) -> Path:
        """The attempt's folder that its sandbox sees (read-write)."""
        return self.work_dir(attempt) / BOX

    def _system_args(self, read_only: Iterable[str], disk: int = 0) -> list[str]:
        """The namespaces, the system's folders and the Python's, read-only: the same for
        every attempt of one code bundle (kept, for the engine's life, per bundle and size)."""
        key = (tuple(read_only), disk)
        with self._fork_lock:
            found = self._system_cache.get(key)
        if found is None:
            found = self._make_system_args(key[0], disk)
            with self._fork_lock:
                if len(self._system_cache) > 256:
                    self._system_cache.clear()
                self._system_cache[key] = found
        return list(found)

    def _make_system_args(self, read_only: Iterable[str], disk: int) -> list[str]:
        args = ["--die-with-parent", "--unshare-all", "--unshare-user"]
        args += ["--uid", SANDBOX_ID, "--gid", SANDBOX_ID, "--cap-drop", "ALL"]
        if self.settings.network:
            args.append("--share-net")
        args += ["--ro-bind", "/usr", "/usr"]
        for folder in _SYSTEM_DIRS:
            if os.path.islink(folder):
                args += ["--symlink", os.readlink(folder), folder]
            elif os.path.isdir(folder):
                args += ["--ro-bind", folder, folder]
        for path in _ETC:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += [*_sized(disk), "--tmpfs", "/tmp"]
        folders = [
            self._read_only_folder(p, "the Python folder") for p in _python_paths(self.python)
        ]
        folders += [
            self._read_only_folder(p, "the read_only folder") for p in self.settings.read_only
        ]
        folders += [self._read_only_folder(p, "the code folder") for p in read_only]
        for path in _outermost(p for p in folders if not _inside(Path(p), Path("/usr"))):
            args += ["--ro-bind", path, path]
        return args

    def code_folders(self, attempt: TaskAttempt) -> tuple[str, ...]:
        """Where the task's code is imported from: the attempt's `code_path` (a registered
        bundle), else the folder its module is imported from (a local run of a file or a
        module that no installed distribution holds)."""
        if attempt.code_path:
            return attempt.code_path
        function = attempt.task.function
        if not function.source_file or not os.path.isabs(function.source_file):
            return ()
        source = Path(os.path.realpath(function.source_file))
        if any(_inside(source, Path(p)) for p in _python_paths(self.python)):
            return ()  # installed: visible with the Python's own folders
        depth = function.module.count(".") + (source.name == "__init__.py")
        return (str(source.parents[depth]),) if depth < len(source.parents) else ()

    def limits(self, attempt: TaskAttempt) -> AttemptLimits:
        """The attempt's bounds: the task's own `limits`, else the settings'."""
        s = self.settings
        try:
            return limits_of(
                attempt.task,
                backend=self.name,
                cpu_seconds=s.cpu_seconds,
                memory=s.memory,
                processes=s.processes,
                disk=s.disk,
                cpus=s.cpus,
            )
        except LimitError as exc:
            raise SandboxError(str(exc)) from exc

    def sandbox_args(self, attempt: TaskAttempt, box: Path, raw: Path) -> list[str]:
        """bubblewrap's arguments for the attempt: the namespaces and what is mounted."""
        disk = self.limits(attempt).disk
        args = self._system_args(self.code_folders(attempt), disk)
        for path in _outermost(self._input_paths(attempt)):
            args += ["--ro-bind", path, path]
        for path in self.settings.read_write:
            real = self._read_only_folder(path, "the read_write folder")
            args += ["--bind", real, real]
        args += ["--bind", str(box), str(box), "--bind", str(raw), str(raw)]
        if disk:  # the scratch folder, in memory and of that size
            args += [*_sized(disk), "--tmpfs", str(box / "scratch")]
        for value in attempt.env.values():  # the pool channel's socket
            if value.startswith("/") and os.path.exists(value) and _is_socket(value):
                args += ["--bind", value, value]
        args += ["--chdir", str(box / "scratch")]
        return args

    # -- the process ---------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
        }
        env.update(self.settings.env)
        return env

    def command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        raw = self._raw_folder(attempt)
        box = self.box(attempt)
        shutil.rmtree(box, ignore_errors=True)  # an earlier start's leftovers
        (box / "scratch").mkdir(parents=True)
        raw.mkdir(parents=True, exist_ok=True)
        # The sandbox gets its own copies of the template and inputs, and writes its outputs
        # or error document next to them; `gather` checks them and moves them into place.
        (box / "task.pb").write_bytes(attempt.task.SerializeToString(deterministic=True))
        (box / "inputs.pb").write_bytes(attempt.inputs.SerializeToString(deterministic=True))
        bounds = [] if self.settings.fork_server else self.limits(attempt).prlimit_args()
        with self._fork_lock:
            cgroup = self._attempt_cgroups.get(attempt.attempt_id)
        join = (
            ["/bin/sh", "-c", _JOIN_CGROUP, "taskfabric-cgroup", *cgroup.procs_files, "--"]
            if cgroup is not None and not self.settings.fork_server
            else []
        )
        return [
            *join,
            *(["prlimit", *bounds] if bounds else []),
            self.settings.bwrap,
            *self.sandbox_args(attempt, box, raw),
            "--",
            self.python, "-m", "taskfabric.execute",
            "--task-template", (box / "task.pb").as_uri(),
            "--inputs", (box / "inputs.pb").as_uri(),
            "--outputs", (box / "outputs.pb").as_uri(),
            "--error", (box / "error.pb").as_uri(),
            "--raw-prefix", attempt.raw_prefix,
            "--work-dir", str(box / "scratch"),
        ]  # fmt: skip

    def _make_cgroup(self, attempt: TaskAttempt) -> AttemptCgroup | None:
        """The attempt's own cgroup, its bounds written (None: no cgroups here)."""
        if self.cgroups is None:
            return None
        limits = self.limits(attempt)
        own = 0 if self.settings.fork_server else SANDBOX_PROCESSES
        pids = limits.processes + own if limits.processes else DEFAULT_CGROUP_PIDS
        bounds = CgroupBounds(
            memory=limits.memory, cpus=limits.cpus, cpu_weight=limits.cpu_weight, pids=pids
        )
        try:
            cgroup = self.cgroups.make(attempt.attempt_id, bounds)
        except OSError as exc:
            raise SandboxError(f"cannot make the attempt's cgroup: {exc}") from exc
        with self._fork_lock:
            self._attempt_cgroups[attempt.attempt_id] = cgroup
        return cgroup

    def _remove_cgroup(self, attempt: TaskAttempt) -> int:
        """Kill what is left of the attempt in its cgroup and remove it; how many of its
        processes the kernel had killed for the memory of them all."""
        with self._fork_lock:
            cgroup = self._attempt_cgroups.pop(attempt.attempt_id, None)
        if cgroup is None:
            return 0
        oom_kills = cgroup.oom_kills()
        cgroup.remove()
        return oom_kills

    def _start(self, attempt: TaskAttempt, work_dir: Path, log_path: Path) -> ProcessRun:
        cgroup = self._make_cgroup(attempt)
        try:
            return self._start_in(attempt, work_dir, log_path, cgroup)
        except BaseException:
            self._remove_cgroup(attempt)
            raise

    def _start_in(
        self, attempt: TaskAttempt, work_dir: Path, log_path: Path, cgroup: AttemptCgroup | None
    ) -> ProcessRun:
        if not self.settings.fork_server:
            return super()._start(attempt, work_dir, log_path)
        work_dir.mkdir(parents=True, exist_ok=True)
        command = self.command(attempt, "", work_dir)
        split = command.index("--")
        env = {**self.environment(), **attempt.env}
        if attempt.code_path:
            env["PYTHONPATH"] = os.pathsep.join(attempt.code_path)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if os.geteuid() == 0:  # the attempt runs as the host's SANDBOX_ID: its folders are its
            self._hand_over(attempt, command[1:split])
        request = {
            "host_id": int(SANDBOX_ID) if os.geteuid() == 0 else 0,
            "bwrap": command[1:split],
            "argv": command[split + 4 :],
            "env": env,
            "rlimits": self.limits(attempt).rlimits(),
            "cgroup": cgroup.procs_files if cgroup is not None else [],
        }
        pid_file = work_dir / PID_FILE
        pid_file.unlink(missing_ok=True)
        # As for a process started directly: provisional first, then the pid file (written
        # once the fork server says its pid) names the attempt's process.
        attempt.record_handle(starting_handle())
        with self._fork_lock:
            if self._fork_server is None:
                self._fork_server = ForkServer(self.python, self.environment())
            server = self._fork_server
        proc = server.start(request, log_path, pid_file)
        log.info("attempt handed to the sandbox fork server", attempt_id=attempt.attempt_id)
        return ProcessRun(attempt, proc, log_path)

    def _hand_over(self, attempt: TaskAttempt, args: list[str]) -> None:
        """Give the host's SANDBOX_ID user (which a fork-server attempt runs as when the
        engine is root) what the attempt writes: its own folder, scratch and raw-data folder,
        and the pool channel's socket (which a connection must be able to write to; it sits
        in a folder of the engine's own, and its peers prove themselves with a secret)."""
        box = self.box(attempt)
        ids = int(SANDBOX_ID)
        for folder in (box, box / "scratch", self._raw_folder(attempt)):
            os.chown(folder, ids, ids)
        for i, arg in enumerate(args[:-2]):
            if arg == "--bind" and _is_socket(args[i + 1]):
                os.chmod(args[i + 1], 0o777)

    def _signal(self, run: ProcessRun, sig: signal.Signals) -> None:
        if isinstance(run.proc, ForkedProcess):
            run.proc.send_signal(sig)
        else:
            super()._signal(run, sig)

    def close(self) -> None:
        super().close()
        with self._fork_lock:
            server, self._fork_server = self._fork_server, None
            left = list(self._attempt_cgroups.values())
            self._attempt_cgroups.clear()
        if server is not None:
            server.close()
        for cgroup in left:  # attempts whose end nobody waited for
            cgroup.remove()
        if self.cgroups is not None:
            self.cgroups.release()

    def _status(self, run: ProcessRun, code: int | None) -> AttemptStatus:
        # The cgroup goes first: whatever of the attempt is left is killed, and its counters
        # say whether the kernel killed one of its processes for the memory of them all.
        oom_killed = self._remove_cgroup(run.attempt) > 0
        status = super()._status(run, code)
        if status.phase is AttemptPhase.FAILED:
            with contextlib.suppress(SandboxError):
                limits = self.limits(run.attempt)
                reached = limit_error(limits, code, status.error, oom_killed=oom_killed)
                if reached is not None:
                    status.error = reached
        return status

    def launch_error(self, attempt: TaskAttempt, exc: Exception) -> AttemptStatus | None:
        if isinstance(exc, SandboxError):  # running it again would not help
            error = AttemptError("SandboxRefused", str(exc), kind="system", retryable=False)
            return AttemptStatus(AttemptPhase.FAILED, error=error)
        return None

    def after_kill(self, run: ProcessRun) -> None:
        """A cancel that lands while bubblewrap sets the sandbox up can end bubblewrap before
        its child took `--die-with-parent`: the child, still in the attempt's process group,
        would run on. Whatever of the group is left is killed, and the attempt's cgroup
        removed."""
        self._remove_cgroup(run.attempt)
        if isinstance(run.proc, ForkedProcess):
            return  # the fork server kills the attempt's process, and so its pid namespace
        for pid in _group_members(run.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    # -- what it leaves ------------------------------------------------------------------

    def gather(self, run: ProcessRun) -> AttemptError | None:
        attempt = run.attempt
        box = self.box(attempt)
        store = self.context.store
        try:
            raw = self._raw_folder(attempt)
        except SandboxError as exc:
            return AttemptError("SandboxRefused", str(exc), kind="system", retryable=False)
        refused = check_output_folder(raw)
        if refused is not None:
            return refused
        limit = self.context.max_output_bytes
        too_large = oversized_outputs(attempt, box / "outputs.pb", limit)
        if too_large is not None:
            return too_large
        outputs = read_regular(box / "outputs.pb", limit)
        if outputs is not None:
            refused = check_outputs(attempt, outputs)
            if refused is not None:
                return refused
            store.put_bytes(attempt.outputs_uri, outputs)
        error = read_regular(box / "error.pb")
        if error is not None:
            store.put_bytes(attempt.error_uri, error)
        return None

    def check(self) -> CheckResult:
        program = shutil.which(self.settings.bwrap)
        if program is None:
            return CheckResult(
                False,
                f"no '{self.settings.bwrap}' program: install bubblewrap "
                "(apt-get install bubblewrap)",
            )
        probe = "import taskfabric.execute, sys; print(sys.version.split()[0])"
        try:
            command = [program, *self._system_args(()), "--", self.python, "-c", probe]
            out = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=self.environment(),
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired, SandboxError) as exc:
            return CheckResult(False, f"cannot run {program}: {exc}")
        if out.returncode != 0:
            return CheckResult(
                False,
                f"{program} cannot run {self.python} in a sandbox: "
                f"{out.stderr.strip()[-500:]} (user namespaces must be allowed: "
                "sysctl kernel.unprivileged_userns_clone=1, or run as root)",
            )
        message = f"{program} runs {self.python} (Python {out.stdout.strip()}) in a sandbox"
        bounds = "; bounds: " + (self.cgroups.describe() if self.cgroups else self._no_cgroups())
        if not self.settings.fork_server:
            return CheckResult(
                True, message + " (fork_server = false: bwrap for each attempt)" + bounds
            )
        probe = (
            "from taskfabric.backends._forkserver import unmet_needs; "
            "print(*unmet_needs(), sep='\\n')"
        )
        try:
            needs = subprocess.run(
                [self.python, "-c", probe],
                capture_output=True,
                text=True,
                env=self.environment(),
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CheckResult(False, f"{message}; cannot ask what the fork server needs: {exc}")
        unmet = [line for line in needs.stdout.splitlines() if line.strip()]
        if needs.returncode != 0 or unmet:
            what = "; ".join(unmet) or needs.stderr.strip()[-500:]
            return CheckResult(
                False,
                f"{message}, but its fork server cannot run here: it needs {what}. Set "
                f"fork_server = false in [backends.{self.name}] to run each attempt through "
                "bwrap instead (about a second of CPU per attempt)",
            )
        return CheckResult(True, message + "; its fork server can run here" + bounds)
