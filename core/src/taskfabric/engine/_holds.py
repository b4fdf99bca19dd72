"""The engine's side of `taskfabric.hold()`: pool slots that a running task takes around a
block of its own code, through the attempt's own engine (see taskfabric/sdk/_hold.py).

One `HoldService` per engine, made when the first attempt starts on an engine with pools. It
keeps these leases with a `PoolManager` of its own owner name (``host:pid/holds``), so that
the execution loop's polls never pick up a block's grant; it renews them from one thread,
and drops them when their block ends, when their attempt ends, or when the task process
that held them through the socket dies (its connection closes).

Attempts in the engine's process reach it through `AttemptHolds` directly (registered by
attempt id; the task's thread is bound to its attempt id by `execute_task`). Attempts that run
as processes get the socket's path and a secret of their own in their environment; with
``[engine] hold_listen`` set, also the TCP address where the engine offers the same channel
(for tasks away from its host: a batch job, a pod on another node). The secret is the only
credential on either: compared in constant time, forgotten when the attempt ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import os
import secrets
import select
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from taskfabric.logs import get_logger
from taskfabric.plugin_api import TaskAttempt
from taskfabric.sdk._hold import (
    ADDRESS_ENV,
    SOCKET_ENV,
    TOKEN_ENV,
    HoldError,
    HoldTimeout,
    register_attempt,
    split_address,
    unregister_attempt,
)

log = get_logger("taskfabric.pools")

# taskfabric.pools.PoolManager and Lease (loaded only when pools are configured)
PoolManager = Any
Lease = Any

_AF_UNIX_MAX = 100  # bytes of a Unix socket path that every platform accepts
_FIRST_LINE_SECONDS = 30.0  # a connection that sends no request in this time is dropped
_MAX_LINE = 64 * 1024  # bytes of one request line


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class AttemptHolds:
    """The holds of one attempt; the channel its in-process code uses."""

    def __init__(self, service: HoldService, attempt: TaskAttempt) -> None:
        self.service = service
        self.attempt = attempt
        self.secret = secrets.token_urlsafe(24)
        self.held: dict[tuple[str, str, int], Lease] = {}
        self.connections: set[socket.socket] = set()
        self.ended = threading.Event()
        # Held while a lease leaves `held` and is released in the pools: the attempt's end
        # (`HoldService.detach`) waits for a release in flight, so that once the attempt has
        # ended its slots are back, whoever released them.
        self.releasing = threading.Lock()
        self._numbers = itertools.count(1)

    def holder(self) -> Any:
        from taskfabric.pools import Holder

        a = self.attempt
        node = f"{a.node_id}~hold{next(self._numbers)}"
        return Holder(a.execution_id, node, a.attempt, a.project, a.domain)

    # -- the HoldChannel protocol (in-process attempts) -----------------------------------

    def acquire(self, weights: Mapping[str, int], timeout: float | None) -> Any:
        return self.service.acquire(self, weights, timeout)

    def release(self, handle: Any) -> None:
        self.service.release(self, handle)

    def pushback(self, handle: Any, seconds: float) -> float:
        return self.service.pushback(handle, seconds)

    def take_tokens(self, handle: Any, weight: int) -> float:
        return self.service.take_tokens(handle, weight)


class HoldService:
    """Pool holds of the attempts of one engine process."""

    def __init__(
        self,
        make_manager: Callable[[str], PoolManager],
        work_root: Path,
        listen: str | None = None,
        advertise: str | None = None,
    ) -> None:
        """`listen` (``host:port``) offers the channel on TCP too, dialled by tasks at
        `advertise` (``host`` or ``host:port``; default `listen`): ``[engine] hold_listen``
        and ``hold_advertise``."""
        self._make_manager = make_manager
        self._work_root = work_root
        self._listen = listen
        self._advertise = advertise or listen
        self._tcp: _TcpServer | None = None
        self._manager: PoolManager = None
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._granted: dict[tuple[str, str, int], Lease] = {}
        self._attempts: dict[str, AttemptHolds] = {}
        self._by_secret: dict[bytes, AttemptHolds] = {}  # by the secret's digest
        self._server: _Server | None = None
        self._socket_dir: Path | None = None
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def manager(self) -> PoolManager:
        with self._lock:
            if self._manager is None:
                from taskfabric.pools._owners import process_owner

                self._manager = self._make_manager(f"{process_owner()}/holds")
                self._unsubscribe = self._manager.on_grant(self._notify)
            return self._manager

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- attempts -------------------------------------------------------------------------

    def attach(self, attempt: TaskAttempt) -> dict[str, str]:
        """Let `attempt` hold pools; the environment its process needs for that."""
        holds = AttemptHolds(self, attempt)
        path = self._serve()
        address = self._serve_tcp()
        with self._lock:
            self._attempts[attempt.attempt_id] = holds
            self._by_secret[_digest(holds.secret)] = holds
        register_attempt(attempt.attempt_id, holds)
        env = {SOCKET_ENV: str(path), TOKEN_ENV: holds.secret}
        if address is not None:
            env[ADDRESS_ENV] = address
        return env

    def detach(self, attempt_id: str) -> None:
        """The attempt ended: release everything it still holds or waits for."""
        unregister_attempt(attempt_id)
        with self._lock:
            holds = self._attempts.pop(attempt_id, None)
            if holds is None:
                return
            self._by_secret.pop(_digest(holds.secret), None)
            holds.ended.set()
            connections = list(holds.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with holds.releasing:  # after any release in flight (a closed connection's)
            with self._lock:
                leases = list(holds.held.values())
                holds.held.clear()
            if leases:
                log.info(
                    "attempt ended holding pools: released",
                    attempt_id=attempt_id,
                    leases=len(leases),
                )
                self._stash(self.manager.release_many(leases))
        self._notify()  # its waiting blocks give up

    # -- holding --------------------------------------------------------------------------

    def _stash(self, leases: list[Lease]) -> None:
        if leases:
            with self._wake:
                for lease in leases:
                    self._granted[lease.holder.key] = lease
                self._wake.notify_all()

    def acquire(
        self,
        holds: AttemptHolds,
        weights: Mapping[str, int],
        timeout: float | None,
        gone: Callable[[], bool] | None = None,
    ) -> Lease | None:
        """Wait for a lease on `weights` for `holds`' attempt. None when `gone()` says the
        asker left (its connection closed)."""
        from taskfabric.pools import PoolError

        manager = self.manager
        a = holds.attempt
        who = f"taskfabric.hold() in task node {a.node_id} of execution {a.execution_id}"
        if holds.ended.is_set():
            raise HoldError(f"{who}: the attempt has ended")
        try:
            checked = manager.validate_request(
                dict(weights), project=a.project, domain=a.domain, who=who
            )
        except PoolError as exc:
            raise HoldError(str(exc)) from None
        holder = holds.holder()
        deadline = None if timeout is None else time.monotonic() + timeout
        lease = manager.request(holder, checked)
        delay, checked_at = 0.01, time.monotonic()
        while lease is None:
            with self._wake:
                lease = self._granted.pop(holder.key, None)
                if lease is None:
                    self._wake.wait(delay)
                    lease = self._granted.pop(holder.key, None)
            if lease is not None:
                break
            self._stash(manager.poll(execution_id=a.execution_id))
            lease = self._take(holder)
            if lease is not None:
                break
            now = time.monotonic()
            left = holds.ended.is_set() or (gone is not None and gone())
            if left or (deadline is not None and now >= deadline):
                where = {} if left else manager.waiting_position(holder)
                self._stash(manager.cancel(holder))
                lease = self._take(holder)
                if lease is not None:
                    self._release_lease(lease)
                if holds.ended.is_set():
                    raise HoldError(f"{who}: the attempt ended while it waited for its pools")
                if left:
                    return None
                shown = ", ".join(f"{p} (position {n})" for p, n in sorted(where.items()))
                raise HoldTimeout(
                    f"{who}: pool(s) {', '.join(sorted(checked))} not granted within "
                    f"{timeout:g}s; still waiting in {shown or 'the queue'}"
                )
            if now - checked_at >= manager.renew_interval:
                checked_at = now  # dropped while this process stalled: ask again
                if manager.missing([holder]):
                    lease = manager.request(holder, checked)
            delay = min(delay * 2, 0.2)
        with self._lock:
            if holds.ended.is_set():
                ended = True
            else:
                ended = False
                holds.held[holder.key] = lease
        if ended:
            self._release_lease(lease)
            raise HoldError(f"{who}: the attempt ended while it waited for its pools")
        self._start_renewer()
        log.debug(
            "pool hold granted",
            node_id=a.node_id,
            attempt=a.attempt,
            pools=dict(lease.weights),
            token=lease.token,
            granted_at=lease.acquired_at,
        )
        return lease

    def _take(self, holder: Any) -> Lease | None:
        with self._wake:
            return self._granted.pop(holder.key, None)

    def _release_lease(self, lease: Lease) -> None:
        self._stash(self.manager.release(lease))

    def release(self, holds: AttemptHolds, lease: Lease) -> None:
        with holds.releasing:
            with self._lock:
                mine = holds.held.pop(lease.holder.key, None)
            if mine is not None:
                self._release_lease(mine)

    def pushback(self, lease: Lease, seconds: float) -> float:
        until = 0.0
        for pool in sorted(lease.weights):
            until = max(until, float(self.manager.pushback(pool, seconds, holder=lease.holder)))
        log.info("pool pushback from a task", pools=sorted(lease.weights), seconds=seconds)
        return until

    def take_tokens(self, lease: Lease, weight: int) -> float:
        weights = dict(lease.weights) if weight < 0 else dict.fromkeys(lease.weights, weight)
        return float(self.manager.take_tokens(weights))

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="taskfabric-pool-holds", daemon=True
                )
                self._renewer.start()

    def _renew_loop(self) -> None:
        manager = self.manager
        while not self._closed.wait(manager.renew_interval):
            with self._lock:
                held = [
                    (h, key, lease)
                    for h in self._attempts.values()
                    for key, lease in h.held.items()
                ]
            if not held:
                continue
            try:
                renewed = manager.renew_many([lease for _, _, lease in held])
            except Exception:
                log.exception("renewing the pool holds of tasks failed; trying again")
                continue
            with self._lock:
                for (holds, key, _), new in zip(held, renewed, strict=True):
                    if key not in holds.held:
                        continue
                    if new is None:
                        log.warning(
                            "a task's pool hold expired (the engine stalled past its TTL)",
                            node_id=holds.attempt.node_id,
                        )
                        del holds.held[key]
                    else:
                        holds.held[key] = new

    # -- the socket -----------------------------------------------------------------------

    def _serve(self) -> Path:
        with self._lock:
            if self._server is not None:
                return Path(self._server.server_address)  # type: ignore[arg-type]
            folder = self._work_root / "pools"
            # pid and a random part: engines of one process (or a reused pid) never share one
            path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
            if len(str(path).encode()) > _AF_UNIX_MAX:
                folder = Path(tempfile.mkdtemp(prefix="tf-pools-"))
                path = folder / "engine.sock"
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            _remove_dead_sockets(folder)
            self._server = _Server(str(path), self)
            self._socket_dir = folder
            threading.Thread(
                target=self._server.serve_forever,
                name="taskfabric-pool-channel",
                daemon=True,
            ).start()
            return path

    def _serve_tcp(self) -> str | None:
        """Offer the channel on `listen` too (once); the address tasks dial, None when not
        configured or when the engine cannot listen there (logged: those tasks' `hold()`
        then says that it cannot reach the engine)."""
        if self._listen is None:
            return None
        with self._lock:
            if self._tcp is None:
                try:
                    self._tcp = _TcpServer(split_address(self._listen), self)
                except OSError as exc:
                    log.error(
                        "cannot offer the pool channel on [engine] hold_listen: tasks away "
                        "from this host cannot use taskfabric.hold(); free the port or pick "
                        "another (port 0 takes any free one)",
                        hold_listen=self._listen,
                        error=str(exc),
                    )
                    return None
                threading.Thread(
                    target=self._tcp.serve_forever,
                    name="taskfabric-pool-channel-tcp",
                    daemon=True,
                ).start()
                log.info(
                    "pool channel offered on TCP",
                    listen=self._listen,
                    port=self._tcp.server_address[1],
                    advertise=self._advertise,
                )
            port = int(self._tcp.server_address[1])
        # `hold_advertise` is a host:port, or a host alone that takes the port listened on
        # (which port 0 in `hold_listen` picked)
        advertise = str(self._advertise)
        host, _, given = advertise.rpartition(":")
        if not (host and given.isdigit() and (not host.startswith("[") or host.endswith("]"))):
            host, given = advertise, "0"
        return f"{host}:{int(given) or port}"

    def connected(self, holds: AttemptHolds, conn: socket.socket) -> None:
        """A task process's connection serves `holds` (closed when the attempt ends)."""
        with self._lock:
            holds.connections.add(conn)

    def disconnected(self, holds: AttemptHolds, conn: socket.socket) -> None:
        with self._lock:
            holds.connections.discard(conn)

    def holds_of_secret(self, secret: str) -> AttemptHolds | None:
        """The running attempt whose secret this is (looked up by its digest, then compared
        in constant time), None for any other string."""
        with self._lock:
            holds = self._by_secret.get(_digest(secret))
        if holds is None or not hmac.compare_digest(holds.secret.encode(), secret.encode()):
            return None
        return holds

    def close(self) -> None:
        self._closed.set()
        for attempt_id in list(self._attempts):
            self.detach(attempt_id)
        if self._tcp is not None:
            self._tcp.shutdown()
            self._tcp.server_close()
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            with contextlib.suppress(OSError):
                os.unlink(str(server.server_address))
            if self._socket_dir is not None and self._socket_dir.name.startswith("tf-pools-"):
                shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._manager is not None:
            self._manager.close()


def _remove_dead_sockets(folder: Path) -> None:
    """Remove the sockets that engines killed before they could close them left behind."""
    from taskfabric.pools._owners import owner_is_dead, process_owner

    host = process_owner().rpartition(":")[0]
    for path in folder.glob("*-*.sock"):
        pid = path.name.split("-", 1)[0]
        if pid.isdigit() and owner_is_dead(f"{host}:{pid}"):
            with contextlib.suppress(OSError):
                path.unlink()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: HoldService) -> None:
        self.service = service
        super().__init__(path, _Handler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: HoldService) -> None:
        self.service = service
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, peer = super().get_request()
        # a task host that vanishes (no FIN, no RST) is noticed within minutes, its holds
        # then released, rather than held until the attempt ends
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
            if hasattr(socket, name):
                conn.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        return conn, peer


class _Handler(socketserver.StreamRequestHandler):
    """One connection: one held block of a task process."""

    server: _Server | _TcpServer

    def _send(self, message: Mapping[str, Any]) -> None:
        self.wfile.write(json.dumps(message).encode() + b"\n")
        self.wfile.flush()

    def _gone(self) -> bool:
        """The task process closed its end (it died, or gave up waiting)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    def handle(self) -> None:
        service = self.server.service
        self.connection.settimeout(_FIRST_LINE_SECONDS)
        try:
            line = self.rfile.readline(_MAX_LINE)
            first = json.loads(line) if line else {}
            if not isinstance(first, dict):
                first = {}
        except (OSError, ValueError):
            first = {}
        self.connection.settimeout(None)
        holds = service.holds_of_secret(str(first.get("token", "")))
        if first.get("op") != "hold" or holds is None:
            self._send(
                {
                    "ok": False,
                    "kind": "refused",
                    "error": "the engine refused the pool request: unknown attempt (it ended) "
                    "or not a hold request",
                },
            )
            return
        service.connected(holds, self.connection)
        lease = None
        try:
            try:
                weights = {str(k): int(v) for k, v in dict(first.get("pools") or {}).items()}
                timeout = first.get("timeout")
                lease = service.acquire(
                    holds, weights, None if timeout is None else float(timeout), self._gone
                )
            except HoldTimeout as exc:
                self._send({"ok": False, "kind": "timeout", "error": str(exc)})
                return
            except (HoldError, TypeError, ValueError) as exc:
                self._send({"ok": False, "kind": "invalid", "error": str(exc)})
                return
            if lease is None:
                return  # the task process went away while it waited
            self._send({"ok": True, "pools": dict(lease.weights)})
            self._serve_ops(service, holds, lease)
        except OSError:
            pass  # the connection broke: the lease goes below
        finally:
            service.disconnected(holds, self.connection)
            if lease is not None:
                service.release(holds, lease)

    def _serve_ops(self, service: HoldService, holds: AttemptHolds, lease: Lease) -> None:
        while line := self.rfile.readline(_MAX_LINE + 1):
            if len(line) > _MAX_LINE:
                # the task's code sent more than any request takes: it is not buffered (this
                # process serves every project's tasks), and the hold ends
                self._send(
                    {
                        "ok": False,
                        "kind": "invalid",
                        "error": f"a request line longer than {_MAX_LINE} bytes: the hold ends",
                    }
                )
                return
            try:
                message = json.loads(line)
                op = message.get("op")
                if op == "release":
                    service.release(holds, lease)
                    self._send({"ok": True})
                    return
                if holds.ended.is_set() or lease.holder.key not in holds.held:
                    self._send({"ok": False, "kind": "ended", "error": "the hold has ended"})
                    return
                if op == "pushback":
                    until = service.pushback(lease, float(message["seconds"]))
                    self._send({"ok": True, "until": until})
                elif op == "take_tokens":
                    wait = service.take_tokens(lease, int(message.get("weight", -1)))
                    self._send({"ok": True, "wait": wait})
                else:
                    self._send({"ok": False, "kind": "invalid", "error": f"unknown op {op!r}"})
            except (KeyError, TypeError, ValueError) as exc:
                self._send({"ok": False, "kind": "invalid", "error": f"bad request: {exc}"})
