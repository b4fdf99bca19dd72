"""The engine's side of the sandbox's fork server (`_forkserver`): start it, hand it an
attempt, follow the attempt's process."""

from __future__ import annotations

import array
import contextlib
import json
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from taskfabric.backends._forkserver import decode_status, write_request
from taskfabric.backends._pids import ProcessIdentity
from taskfabric.logs import get_logger

__all__ = ["ForkServer", "ForkedProcess"]

log = get_logger("taskfabric.backends")


class ForkedProcess:
    """An attempt run by the fork server: `wait()` and `send_signal()` like a `Popen`, over
    the attempt's control socket. `pid` is the host pid of the attempt's process (pid 1 of
    its pid namespace; 0 until the fork server has said it); it is written to `pid_file` as
    `_pids.wrap` would."""

    def __init__(self, sock: socket.socket, pid_file: Path) -> None:
        self._sock = sock
        self._pid_file = pid_file
        self._lock = threading.Lock()
        self._buffer = b""
        self.pid = 0
        self.returncode: int | None = None

    def _line(self) -> str | None:
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def wait(self) -> int:
        """Block until the attempt ends: its exit status (negative: killed by that signal).
        A socket that closes without one means the fork server died: SIGKILL."""
        while self.returncode is None:
            line = self._line()
            if line is None:
                self.returncode = -signal.SIGKILL
            elif line.startswith("pid "):
                self.pid = int(line.split()[1])
                identity = ProcessIdentity.of(self.pid)
                if identity is not None:
                    with contextlib.suppress(OSError):
                        self._pid_file.write_text(
                            f"{identity.pid} {identity.start} {identity.boot}\n"
                        )
            else:
                self.returncode = decode_status(line)
        with self._lock:
            self._sock.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """SIGTERM, or SIGKILL for any other signal, to the attempt's processes."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.send(b"T" if sig == signal.SIGTERM else b"K")


class ForkServer:
    """One `python -m taskfabric.execute --fork-server FD` process, started on first use (and
    again when it has died), with the sandbox's scrubbed environment."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = env
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _ensure(self) -> socket.socket:
        if self._control is not None and self._proc is not None and self._proc.poll() is None:
            return self._control
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    self.python,
                    "-s",
                    "-m",
                    "taskfabric.execute",
                    "--fork-server",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                env=self.env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._control = ours
        log.info("sandbox fork server started", pid=self._proc.pid)
        return ours

    def start(self, request: dict[str, Any], log_path: Path, pid_file: Path) -> ForkedProcess:
        """Hand the fork server one attempt: `request` holds its `bwrap` arguments, its
        `taskfabric-execute` arguments (`argv`) and its environment. It goes to the attempt's
        process on a socket of its own, which the fork server only passes on."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        send, receive = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with log_path.open("wb") as out:
                fds = array.array("i", [theirs.fileno(), receive.fileno(), out.fileno()])
                message = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
                with self._lock:
                    try:
                        self._ensure().sendmsg([b"a"], message)
                    except OSError:  # it died since: once more with a new one
                        self._stop()
                        self._ensure().sendmsg([b"a"], message)
        except BaseException:
            ours.close()
            send.close()
            raise
        finally:
            theirs.close()
            receive.close()
        process = ForkedProcess(ours, pid_file)
        # The attempt's process reads the request once it runs: a long one (more than the
        # socket's buffer holds) is sent by a thread, which may wait for it.
        if len(json.dumps(request)) < 65536:
            self._send(send, request)
        else:
            threading.Thread(
                target=self._send, args=(send, request), name="taskfabric-fork-request", daemon=True
            ).start()
        return process

    @staticmethod
    def _send(sock: socket.socket, request: dict[str, Any]) -> None:
        with sock, contextlib.suppress(OSError):
            write_request(sock, request)

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Close the control socket: the fork server exits once its running attempts have
        ended (an attempt whose control socket closes is killed)."""
        with self._lock:
            self._stop()
