"""The sandbox backend's fork server: one pre-started Python, with taskfabric imported, that
forks one child per attempt; the child builds the attempt's sandbox itself (the namespaces and
mounts that bubblewrap would make, from the same `bwrap` arguments) and runs the attempt.

Starting a fresh Python for every attempt costs about a second of CPU (mostly imports); a
fork costs milliseconds. What keeps it safe:

- The server process (`python -m taskfabric.execute --fork-server FD`) is started by the
  engine with the sandbox's scrubbed environment and no argument but its socket: it never
  holds a credential, a config or any tenant's data, and it never reads an attempt's
  request. It only receives, on its control socket, a one-byte message carrying three file
  descriptors (the attempt's control socket, the socket its request comes on, its log
  file), and clones the attempt's process into a new user and pid namespace, handing it the
  last two. Run as root, it then writes the id maps of that user namespace (only a process
  of the parent namespace may): its root is the host's root, its user 65534 the host's
  65534.
- The cloned process, pid 1 of its own pid namespace, reads the attempt's request (the
  `bwrap` arguments and the `taskfabric-execute` command line), joins the attempt's cgroup
  when the request names one (`_cgroups`: made by the engine), enters new mount, IPC, UTS,
  cgroup and network (unless `--share-net`) namespaces, builds its own `/proc`, root (a
  fresh tmpfs with only the folders of the arguments), `/dev`, `/tmp` and `/dev/shm`, and
  runs the attempt as uid 65534 with no capabilities and `no_new_privs`. No attempt is run
  twice in one process; no process outlives its attempt (nor the fork server).
- The fork server watches each attempt's control socket: a `T` sends SIGTERM to the
  attempt, a `K` SIGKILL, and an end of file (the engine closed it, or died) SIGKILL; it
  writes the attempt's exit status there when it ends. (One process per attempt: a
  supervising process between the two, a second copy of the fork server's Python, cost
  about a third of an attempt's CPU.)

The server exits when its control socket has closed (the engine stopped or died) and its
attempts have ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import io
import json
import os
import platform
import resource
import select
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ATTEMPT_SETUP_FAILED",
    "decode_status",
    "main",
    "read_request",
    "unmet_needs",
    "write_request",
]

#: The exit code of an attempt whose sandbox could not be built (its log says why).
ATTEMPT_SETUP_FAILED = 125
#: The host user (and group) an attempt runs as when the fork server runs as root, and its
#: user inside its namespace ("nobody"; the sandbox backend's SANDBOX_ID).
ATTEMPT_ID = 65534

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "clone": 56, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "capset": 91, "clone": 220, "mount_setattr": 442},
}
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: statvfs flags that a read-only remount must keep (the kernel refuses to clear locked ones).
_KEPT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


def _load_libc(loader: type[ctypes.CDLL]) -> ctypes.CDLL:
    """libc, by glibc's soname, else the process's own symbols (libc is among them).

    Not `ctypes.util.find_library("c")`: it runs `ldconfig -p` in a subprocess, twice 5 ms
    (more under load) of every `taskfabric run`, which imports this module."""
    try:
        return loader("libc.so.6", use_errno=True)
    except OSError:
        return loader(None, use_errno=True)


_libc = _load_libc(ctypes.CDLL)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype or ''} on {target}",
    )


def _syscall(name: str, *args: Any) -> int:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(f"the fork server does not know the system calls of {platform.machine()}")
    result: int = _libc.syscall(ctypes.c_long(numbers[name]), *args)
    return result


def _prctl(option: int, arg: int = 0) -> int:
    result: int = _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)
    return result


# -- what it needs of the machine ----------------------------------------------------------


def unmet_needs() -> list[str]:
    """What this machine lacks for the fork server (empty: nothing): an architecture whose
    system call numbers it knows, `pidfd_open`, and user namespaces (with the mount, pid,
    IPC, UTS, cgroup and network namespaces an attempt gets), tried in a child process."""
    found: list[str] = []
    if platform.machine() not in _SYSCALLS:
        found.append(
            f"the architecture {platform.machine()} (the fork server knows the system calls "
            f"of {' and '.join(sorted(_SYSCALLS))} only)"
        )
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        found.append(f"pidfd_open (Linux 5.3 or later, Python 3.9 or later): {exc}")
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            most = int(fh.read())
    except (OSError, ValueError):
        most = -1
    if most == 0:
        found.append("user namespaces: sysctl user.max_user_namespaces is 0")
    pid = os.fork()
    if pid == 0:
        flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        os._exit(0 if _libc.unshare(flags | CLONE_NEWCGROUP | CLONE_NEWNET) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if status != 0 and most != 0:
        found.append(
            "user namespaces: this user may not create them (Debian: sysctl "
            "kernel.unprivileged_userns_clone=1; Ubuntu 24.04: sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0, or run as root)"
        )
    return found


# -- the protocol between the engine and a child -------------------------------------------


def write_request(sock: socket.socket, request: dict[str, Any]) -> None:
    """Send an attempt's request (length-prefixed JSON) on its socket."""
    data = json.dumps(request).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("the engine closed the attempt's socket")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_request(sock: socket.socket) -> dict[str, Any]:
    (size,) = struct.unpack("!I", _read_exact(sock, 4))
    request: dict[str, Any] = json.loads(_read_exact(sock, size))
    return request


def decode_status(text: str) -> int:
    """The exit status a child wrote ('exit N' / 'signal N') as Popen's returncode."""
    kind, _, value = text.strip().partition(" ")
    return -int(value) if kind == "signal" else int(value)


# -- building the attempt's root ---------------------------------------------------------


def _kept_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in _KEPT_FLAGS if flags & st)


def _mount_points() -> list[str]:
    """The mount points of this mount namespace (from mountinfo)."""
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4].encode().decode("unicode_escape") for line in fh]


def _inside(point: str, folder: str) -> bool:
    return point == folder or point.startswith(folder.rstrip("/") + "/")


def _folders(path: str, made: set[str]) -> None:
    """`os.makedirs(path, exist_ok=True)` in the attempt's root, which this process alone
    builds: the folders it made (or found) are kept in `made`, so each is looked at once."""
    if path in made:
        return
    parent = os.path.dirname(path)
    if parent != path:
        _folders(parent, made)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
    made.add(path)


def _make_target(target: str, source: str, made: set[str] | None = None) -> None:
    made = set() if made is None else made
    if os.path.isdir(source):
        _folders(target, made)
    else:
        _folders(os.path.dirname(target), made)
        with contextlib.suppress(FileExistsError):
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
            os.close(os.open(target, flags, 0o644))


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _has_mount_setattr() -> bool:
    """Whether the kernel has `mount_setattr` (Linux 5.12): asked with an argument it
    refuses (EINVAL, EBADF...), which an older kernel answers ENOSYS."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return False
    result = _libc.syscall(
        ctypes.c_long(numbers["mount_setattr"]),
        ctypes.c_int(-1),
        ctypes.c_char_p(b""),
        ctypes.c_uint(0),
        None,
        ctypes.c_size_t(0),
    )
    return bool(result == 0 or ctypes.get_errno() != errno.ENOSYS)


class _Kernel:
    #: Whether read-only binds are made read-only with their mounts below in one
    #: `mount_setattr` call each (Linux 5.12); else each is remounted, and the mounts below
    #: them once all are made (`_read_only_below`, which reads mountinfo). Asked by the
    #: fork server once.
    mount_setattr = False


def _set_attributes(point: str, attributes: int, *, recursive: bool) -> None:
    """Set mount attributes (none cleared: flags the kernel locked stay) on the mount at
    `point`, and with `recursive` on every mount below it."""
    attr = _MountAttr(attributes, 0, 0, 0)
    _call(
        _syscall(
            "mount_setattr",
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(point.encode()),
            ctypes.c_uint(AT_RECURSIVE if recursive else 0),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"mount_setattr {point}",
    )


def _remount(point: str, *, read_only: bool) -> None:
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | _kept_flags(point)
    _mount(None, point, None, flags | (MS_RDONLY if read_only else 0))


def _bind(source: str, target: str, *, read_only: bool, made: set[str] | None = None) -> None:
    """Bind `source` (with the mounts below it) on `target`, nosuid and nodev, and, when
    `read_only`, read-only with every mount below it (with `mount_setattr`; else `target`
    itself is remounted here, and the mounts below it by `_read_only_below` once all are
    made). `made`: the folders of the root made so far (`_folders`)."""
    made = set() if made is None else made
    _make_target(target, source, made)
    if target in made:  # what was made below it is hidden now
        inside = target.rstrip("/") + "/"
        made.difference_update([p for p in made if p.startswith(inside)])
    _mount(source, target, None, MS_BIND | MS_REC)
    if _Kernel.mount_setattr:
        attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
        attributes |= MOUNT_ATTR_RDONLY if read_only else 0
        _set_attributes(target, attributes, recursive=read_only)
    else:
        _remount(target, read_only=read_only)


def _read_only_below(base: str, targets: dict[str, bool]) -> None:
    """Remount read-only every mount point below a read-only bind's target (the mounts the
    recursive bind brought along), unless a later target nearer to it says otherwise:
    `targets` maps each mount target made (all inside `base`) to whether it is a read-only
    bind. One read of mountinfo for all, instead of one per bind (a read costs a fraction
    of a millisecond, and a sandbox has a few dozen binds)."""
    inside = base.rstrip("/") + "/"
    for point in _mount_points():
        if point in targets or not point.startswith(inside):
            continue  # a target itself (mounted as its operation says), or the host's
        nearest = max((t for t in targets if _inside(point, t)), key=len, default=None)
        if nearest is not None and targets[nearest]:
            _remount(point, read_only=True)


def _dev(target: str, shm: int, made: set[str]) -> None:
    _folders(target, made)
    # Owned by the attempt's user, like the rest of its namespace: kept tiny.
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m")
    for name in _DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _make_target(f"{target}/{name}", f"/dev/{name}", made)
            _mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(link, f"{target}/{name}")
    os.symlink("/proc/self/fd/1", f"{target}/stdout")
    os.symlink("/proc/self/fd/2", f"{target}/stderr")
    os.makedirs(f"{target}/shm")
    bound = f",size={shm}" if shm else ""
    _mount("tmpfs", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + bound)


class _Plan:
    """What the `bwrap` arguments ask for (the subset `SandboxBackend` writes)."""

    def __init__(self, args: Sequence[str]) -> None:
        #: (operation, source, destination, tmpfs size in bytes or 0).
        self.ops: list[tuple[str, str, str, int]] = []
        self.links: list[tuple[str, str]] = []
        self.share_net = False
        self.chdir = "/"
        self.uid = 65534
        self.gid = 65534
        i = 0
        flags_only = {"--die-with-parent", "--unshare-all", "--unshare-user"}
        size = 0  # `--size N` applies to the next `--tmpfs`
        while i < len(args):
            arg = args[i]
            if arg in flags_only:
                i += 1
            elif arg == "--share-net":
                self.share_net = True
                i += 1
            elif arg == "--size":
                size = int(args[i + 1])
                if size <= 0:
                    raise ValueError(f"--size {args[i + 1]}: a positive number of bytes")
                i += 2
            elif arg in ("--uid", "--gid", "--cap-drop", "--chdir", "--proc", "--dev", "--tmpfs"):
                value = args[i + 1]
                if arg == "--uid":
                    self.uid = int(value)
                elif arg == "--gid":
                    self.gid = int(value)
                elif arg == "--cap-drop" and value != "ALL":
                    raise ValueError(f"--cap-drop {value}: only ALL is supported")
                elif arg == "--chdir":
                    self.chdir = value
                elif arg != "--cap-drop":
                    self.ops.append((arg, "", value, size if arg == "--tmpfs" else 0))
                    size = 0 if arg == "--tmpfs" else size
                i += 2
            elif arg in ("--ro-bind", "--bind"):
                self.ops.append((arg, args[i + 1], args[i + 2], 0))
                i += 3
            elif arg == "--symlink":
                self.links.append((args[i + 1], args[i + 2]))
                i += 3
            else:
                raise ValueError(f"unsupported sandbox argument {arg!r}")


def _build_root(plan: _Plan, base: str) -> None:
    """Mount the attempt's root on `base` (an empty folder of the host) and enter it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    # /dev/shm is bounded as /tmp is (bubblewrap has no such option: its /dev is unbounded).
    shm = next((n for op, _, dest, n in plan.ops if op == "--tmpfs" and dest == "/tmp"), 0)
    targets: dict[str, bool] = {base: False}  # mount target -> a read-only bind
    made = {base}  # the folders of the new root made (or found) so far
    for op, source, dest, size in plan.ops:
        target = base + dest
        targets[target] = op == "--ro-bind"
        if op == "--ro-bind":
            _bind(source, target, read_only=True, made=made)
        elif op == "--bind":
            _bind(source, target, read_only=False, made=made)
        elif op == "--proc":
            _folders(target, made)
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif op == "--dev":
            _dev(target, shm, made)
        elif op == "--tmpfs":
            _folders(target, made)
            bound = f",size={size}" if size else ""
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + bound)
    if not _Kernel.mount_setattr:
        _read_only_below(base, targets)
    for link, path in plan.links:  # last: no later path goes through a link of the host's
        _folders(os.path.dirname(base + path), made)
        os.symlink(link, base + path)
    old = base + "/.oldroot"
    os.mkdir(old)
    _call(_syscall("pivot_root", base.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _call(_libc.umount2(b"/.oldroot", MNT_DETACH), "umount the host's root")
    os.rmdir("/.oldroot")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _loopback_up() -> None:
    """Bring up `lo` in the attempt's network namespace (127.0.0.1 works, nothing else)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, request))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def _drop_privileges(uid: int, gid: int) -> None:
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0:
            break  # past the last capability the kernel knows
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    # Root of the namespace until here (when the engine is root): now the attempt's user.
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # effective, permitted, inheritable: all empty
    _call(_syscall("capset", ctypes.c_char_p(header), data), "capset")
    _call(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


# -- the processes ---------------------------------------------------------------------


def _run_attempt(
    request: dict[str, Any],
    plan: _Plan,
    log_fd: int,
    base: str,
    execute: Callable[[list[str]], int],
) -> int:
    """In the attempt's process (pid 1 of its pid namespace), once in its cgroup and
    namespaces: build its root, drop its privileges, then run it."""
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    try:
        _build_root(plan, base)
        if not plan.share_net:
            _loopback_up()
        _drop_privileges(plan.uid, plan.gid)
        os.chdir(plan.chdir)
    except Exception as exc:
        print(f"taskfabric sandbox: cannot set up the attempt's sandbox: {exc}", file=sys.stderr)
        return ATTEMPT_SETUP_FAILED
    # pid 1 of a namespace gets no signal it has no handler for: SIGTERM ends it as it
    # would end any process (the task may install its own handler).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    # The same for the soft CPU limit's SIGXCPU (the hard one, seconds later, is SIGKILL).
    signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
    # The attempt's bounds (`_limits`), lowered here, where it has no capability to raise
    # them; RLIMIT_NPROC counts the processes of its own user namespace only.
    for which, soft, hard in request.get("rlimits", ()):
        resource.setrlimit(which, (soft, hard))
    os.environ.clear()
    os.environ.update(request["env"])
    # As `python -m taskfabric.execute` started in the attempt's folder: that folder first
    # (not the fork server's "/"), then the task's code.
    if sys.path and sys.path[0] == "/":
        sys.path[0] = plan.chdir
    sys.path[1:1] = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.argv = ["taskfabric-execute", *request["argv"]]
    return execute(request["argv"])


#: The namespaces the attempt's process is cloned into: a user namespace (whose root it is
#: until it drops its privileges) and a pid namespace (of which it is pid 1). It makes the
#: others itself, from inside, once it has read its request and joined its cgroup.
_CLONE_FLAGS = CLONE_NEWUSER | CLONE_NEWPID
#: The fd numbers the cloned child moves its own to (all others are closed).
_REQUEST_FD, _LOG_FD, _MAPPED_FD = 3, 4, 5

_pythonapi = ctypes.pythonapi
# Called with the GIL held (a PyDLL), as `os.fork` calls fork().
_pylibc = _load_libc(ctypes.PyDLL)


def _clone(flags: int) -> int:
    """fork() into new namespaces (`clone` with no stack of its own: the child continues on
    a copy of the caller's), wrapped as `os.fork` wraps fork(): the interpreter's fork
    hooks run before, and in the parent or the child after."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(f"the fork server does not know the system calls of {platform.machine()}")
    _pythonapi.PyOS_BeforeFork()
    pid: int = _pylibc.syscall(
        ctypes.c_long(numbers["clone"]),
        ctypes.c_ulong(flags | signal.SIGCHLD),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
    )
    if pid == 0:
        _pythonapi.PyOS_AfterFork_Child()
    else:
        err = ctypes.get_errno()
        _pythonapi.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def _map_ids(pid: int) -> None:
    """In the fork server (root, in the parent user namespace), right after cloning the
    attempt's process `pid`: map its namespace's root to the host's (to build its root from
    folders that only root may open) and its user to the host's ATTEMPT_ID (which it runs
    as: the kernel counts no process of root's against RLIMIT_NPROC, and nothing of the
    host should be root's to it). Only a process of the parent namespace may write them."""
    for kind in ("uid", "gid"):
        _write(f"/proc/{pid}/{kind}_map", f"0 0 1\n{ATTEMPT_ID} {ATTEMPT_ID} 1\n")


def _enter(request: dict[str, Any], plan: _Plan, root: bool) -> None:
    """In the cloned process, root of its new user namespace: into the attempt's cgroup and
    the rest of its namespaces."""
    if root:
        # The fork server mapped its ids (`_map_ids`): host root is root here, ATTEMPT_ID
        # the attempt's user; none of root's supplementary groups is kept.
        if plan.uid != ATTEMPT_ID or plan.gid != ATTEMPT_ID:
            raise OSError(
                f"a fork server run as root runs attempts as {ATTEMPT_ID}, not as "
                f"{plan.uid}:{plan.gid}"
            )
        if int(request.get("host_id", ATTEMPT_ID)) != ATTEMPT_ID:
            raise OSError(f"a fork server run as root runs attempts as host user {ATTEMPT_ID}")
        os.setgroups([])
    else:  # its own user, mapped to the attempt's inside (only that one may be)
        uid, gid = os.getuid(), os.getgid()
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{plan.uid} {uid} 1\n")
        _write("/proc/self/gid_map", f"{plan.gid} {gid} 1\n")
    # Into the attempt's cgroup (bounds on the memory of all its processes together, on its
    # CPU and processes) before anything of the attempt runs: its processes are forked from
    # this one, and the cgroup namespace made below has this cgroup as its root. "0": the
    # writing process.
    for procs in request.get("cgroup", ()):
        _write(procs, "0")
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    _call(_libc.unshare(flags | (0 if plan.share_net else CLONE_NEWNET)), "unshare")


def _attempt(base: str, execute: Callable[[list[str]], int], root: bool) -> int:
    """The cloned attempt's process, pid 1 of its pid namespace: its fds are the request's
    socket, its log and (root) the pipe on which the fork server says its ids are mapped."""
    if root:
        mapped = os.read(_MAPPED_FD, 1)
        os.close(_MAPPED_FD)
        if mapped != b"1":
            os.write(_LOG_FD, b"taskfabric sandbox: the fork server could not map its ids\n")
            return ATTEMPT_SETUP_FAILED
    os.setsid()
    sock = socket.socket(fileno=_REQUEST_FD)
    request = read_request(sock)
    sock.close()
    plan = _Plan(request["bwrap"])
    try:
        _enter(request, plan, root)
    except OSError as exc:
        os.write(_LOG_FD, f"taskfabric sandbox: cannot set up the attempt: {exc}\n".encode())
        return ATTEMPT_SETUP_FAILED
    return _run_attempt(request, plan, _LOG_FD, base, execute)


def _child(fds: Sequence[int], base: str, execute: Callable[[list[str]], int], root: bool) -> None:
    """In the cloned process: never returns."""
    code = ATTEMPT_SETUP_FAILED
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # ends with the fork server
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Its own fds to 3, 4 (and 5), every other one of the fork server's closed.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]
        for target, fd in zip((_REQUEST_FD, _LOG_FD, _MAPPED_FD), moved, strict=False):
            os.dup2(fd, target)
        os.closerange(3 + len(fds), max(os.sysconf("SC_OPEN_MAX"), 17 + len(fds)))
        code = _attempt(base, execute, root)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        with contextlib.suppress(Exception):
            print(f"taskfabric sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


class _Running:
    """An attempt's process, as the fork server follows it."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        #: The attempt's control socket (None: the engine closed it).
        self.control: socket.socket | None = control

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)  # not reaped yet: the pid is still this process's

    def ended(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        if os.WIFSIGNALED(status):
            report = f"signal {os.WTERMSIG(status)}"
        else:
            report = f"exit {os.WEXITSTATUS(status)}"
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.sendall(report.encode() + b"\n")
            self.control.close()
            self.control = None


def _start(
    fds: list[int], base: str, execute: Callable[[list[str]], int], root: bool
) -> _Running | None:
    """Clone one attempt's process for the fds of a hand-over (its control socket, its
    request's socket, its log file); the fork server keeps only the control socket."""
    control = socket.socket(fileno=fds[0])
    child_fds = fds[1:3]
    mapped_r = mapped_w = -1
    if root:
        mapped_r, mapped_w = os.pipe()
        child_fds.append(mapped_r)
    try:
        try:
            pid = _clone(_CLONE_FLAGS)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.write(fds[2], f"taskfabric sandbox: cannot start the attempt: {exc}\n".encode())
                control.sendall(f"exit {ATTEMPT_SETUP_FAILED}\n".encode())
            control.close()
            return None
        if pid == 0:
            control.close()
            if mapped_w >= 0:
                os.close(mapped_w)
            _child(child_fds, base, execute, root)
        running = _Running(pid, control)
        with contextlib.suppress(OSError):
            control.sendall(f"pid {pid}\n".encode())
        if root:
            try:
                _map_ids(pid)
                os.write(mapped_w, b"1")
            except OSError:
                pass  # the child reads an end of file: its attempt fails, says why
        return running
    finally:
        for fd in (*child_fds, mapped_w):
            if fd >= 0:
                os.close(fd)


def serve(
    control: socket.socket, preload: Callable[[], None], execute: Callable[[list[str]], int]
) -> None:
    """Clone one attempt's process per message on `control`, and follow them, until it has
    closed and every attempt has ended."""
    preload()
    # What the imports made stays in the permanent generation: no collection, here or in a
    # child, walks (and so writes to, making the child copy) those objects' pages.
    gc.collect()
    gc.freeze()
    _Kernel.mount_setattr = _has_mount_setattr()
    base = tempfile.mkdtemp(prefix="taskfabric-sandbox-")
    os.chmod(base, 0o755)
    root = os.geteuid() == 0
    running: dict[int, _Running] = {}  # by pidfd
    by_control: dict[int, _Running] = {}  # by control socket fd
    accepting = True
    try:
        while accepting or running:
            watched = [*running, *by_control] + ([control.fileno()] if accepting else [])
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd in running:
                    one = running.pop(fd)
                    if one.control is not None:
                        by_control.pop(one.control.fileno(), None)
                    one.ended()
                elif fd in by_control:
                    one = by_control[fd]
                    assert one.control is not None
                    data = b""
                    with contextlib.suppress(OSError):
                        data = one.control.recv(16)
                    for letter in data.decode(errors="replace") or "K":
                        one.signal(signal.SIGTERM if letter == "T" else signal.SIGKILL)
                    if not data:  # the engine closed it, or died: nobody waits for the result
                        by_control.pop(fd)
                        one.control.close()
                        one.control = None
                elif fd == control.fileno():
                    fds = _receive(control)
                    if fds is None:
                        accepting = False
                    elif fds:
                        one_started = _start(fds, base, execute, root)
                        if one_started is not None:
                            running[one_started.pidfd] = one_started
                            assert one_started.control is not None
                            by_control[one_started.control.fileno()] = one_started
    finally:
        for one in running.values():
            one.signal(signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.rmdir(base)


def _receive(control: socket.socket) -> list[int] | None:
    """The fds of one hand-over on the control socket ([] for a malformed one; None: it
    closed)."""
    try:
        msg, ancdata, _, _ = control.recvmsg(1, socket.CMSG_SPACE(3 * 4))
    except InterruptedError:
        return []
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
    if not msg or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None if not msg else []
    return fds


def main(fd: int, preload: Callable[[], None], execute: Callable[[list[str]], int]) -> int:
    """Serve the control socket `fd` (`taskfabric-execute --fork-server FD`): `preload`
    imports what every attempt needs; `execute` runs one attempt's `taskfabric-execute`
    arguments in its process."""
    control = socket.socket(fileno=fd)
    os.chdir("/")
    serve(control, preload, execute)
    return 0
