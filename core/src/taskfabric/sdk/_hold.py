"""`with taskfabric.hold("geo-api") as lease:` — resource pool slots around a block of code
inside a running task, taken by the attempt's own engine.

The task's code never opens the metadata database: it asks the engine that runs the attempt.
An attempt that runs in the engine's process (a worker thread) reaches it directly; one that
runs as a process of its own (the `subprocess` backend, spark-submit, containers) reaches it
through a Unix socket the engine offers, with a secret of the attempt's own passed in its
environment (``TASKFABRIC_POOLS_SOCKET``, ``TASKFABRIC_POOLS_TOKEN``); one that runs away from
the engine's host (a batch job, a pod on another node), where that socket cannot be seen,
through the same channel on TCP when the engine offers it (``[engine] hold_listen``: its
address in ``TASKFABRIC_POOLS_ADDRESS``). Both speak JSON lines:

    -> {"op": "hold", "token": SECRET, "pools": {"geo-api": 1}, "timeout": 30}
    <- {"ok": true, "pools": {"geo-api": 1}}          (or {"ok": false, "error": ..., "kind": ...})
    -> {"op": "pushback", "seconds": 2}               <- {"ok": true, "until": EPOCH}
    -> {"op": "take_tokens", "weight": 1}             <- {"ok": true, "wait": SECONDS}
    -> {"op": "release"}                              <- {"ok": true}

One connection per block; the engine releases the lease when the block ends, when the
connection closes (the task process died), or when the attempt ends.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from taskfabric.errors import TaskfabricError

__all__ = [
    "ADDRESS_ENV",
    "SOCKET_ENV",
    "TOKEN_ENV",
    "HoldError",
    "HoldTimeout",
    "PoolHold",
    "TaskPools",
    "bind_attempt",
    "bind_attempt_in_context",
    "hold",
    "register_attempt",
    "split_address",
    "task_pools",
    "unregister_attempt",
]

SOCKET_ENV = "TASKFABRIC_POOLS_SOCKET"
TOKEN_ENV = "TASKFABRIC_POOLS_TOKEN"
ADDRESS_ENV = "TASKFABRIC_POOLS_ADDRESS"

_NOT_IN_TASK = (
    "taskfabric.hold() works only inside a running task, whose engine has resource pools "
    "([pools.NAME] in its config file): it asks that engine for the slots. Here there is "
    "none: this code is not running as a task (plain Python: run it through `taskfabric run`), "
    "or the engine that runs it has no pools configured, or it runs in a thread the task "
    "started (call taskfabric.task_pools() in the task's own thread and use its .hold() from "
    "the other threads)"
)


class HoldError(TaskfabricError, ValueError):
    """Pool slots cannot be held here: not inside a task, an unknown pool, a weight the pool
    can never grant, or the attempt ended."""


class HoldTimeout(HoldError):
    """The pools were not granted within the timeout."""


class HoldChannel(Protocol):
    """How a task reaches its engine's pools (the engine's in-process side, or the socket)."""

    def acquire(self, weights: Mapping[str, int], timeout: float | None) -> Any:
        """Block until granted; a handle for the other calls. HoldError / HoldTimeout."""

    def release(self, handle: Any) -> None: ...

    def pushback(self, handle: Any, seconds: float) -> float: ...

    def take_tokens(self, handle: Any, weight: int) -> float: ...


@dataclass
class PoolHold:
    """The slots held by one `hold()` block."""

    pools: Mapping[str, int]
    _channel: HoldChannel
    _handle: Any

    def pushback(self, seconds: float) -> None:
        """The service behind these pools throttled (an HTTP 429 with Retry-After): they grant
        nothing new for `seconds`, across every engine; the block keeps its slots."""
        if not (seconds >= 0):
            raise HoldError(f"pushback seconds must be >= 0, got {seconds!r}")
        self._channel.pushback(self._handle, float(seconds))

    def take_tokens(self, weight: int | None = None) -> float:
        """Rate tokens for one more call made in this block (the grant paid for the first):
        the seconds to wait before making it so that the pools' rates hold. `weight=0` takes
        nothing and says how long a pause (a pushback) still lasts."""
        return float(self._channel.take_tokens(self._handle, -1 if weight is None else weight))


class TaskPools:
    """The pools of one running attempt, usable from any thread of the task."""

    def __init__(self, channel: HoldChannel) -> None:
        self._channel = channel

    @contextmanager
    def hold(
        self, *pools: str, weight: int = 1, timeout: float | None = None
    ) -> Iterator[PoolHold]:
        """Hold `weight` slots of each of `pools` for the block (see `taskfabric.hold`)."""
        if not pools:
            raise HoldError("taskfabric.hold() needs at least one pool name")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise HoldError(f"taskfabric.hold(): weight must be an integer >= 1, got {weight!r}")
        if timeout is not None and not timeout >= 0:
            raise HoldError(f"taskfabric.hold(): timeout must be >= 0 seconds, got {timeout!r}")
        weights = dict.fromkeys(pools, weight)
        handle = self._channel.acquire(weights, timeout)
        try:
            yield PoolHold(weights, self._channel, handle)
        finally:
            self._channel.release(handle)


# -- finding the attempt's channel ------------------------------------------------------------

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskfabric_attempt", default=None
)
_in_process: dict[str, HoldChannel] = {}
_lock = threading.Lock()


def register_attempt(attempt_id: str, channel: HoldChannel) -> None:
    """The engine: attempts `attempt_id` that run in this process reach the pools by
    `channel`."""
    with _lock:
        _in_process[attempt_id] = channel


def unregister_attempt(attempt_id: str) -> None:
    with _lock:
        _in_process.pop(attempt_id, None)


class bind_attempt:
    """The code run in this block (this thread) is attempt `attempt_id`'s. (A class, not a
    generator: one per attempt, on the local backend's hot path.)"""

    __slots__ = ("_attempt_id", "_token")

    def __init__(self, attempt_id: str) -> None:
        self._attempt_id = attempt_id

    def __enter__(self) -> None:
        self._token = _current.set(self._attempt_id)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def bind_attempt_in_context(attempt_id: str) -> None:
    """`bind_attempt` for the rest of the current context, which the caller made for the
    attempt (`contextvars.copy_context().run(...)`: it ends with the attempt, so there is
    no token to reset)."""
    _current.set(attempt_id)


def task_pools() -> TaskPools:
    """The pools of the attempt running this code. Raises HoldError outside a task."""
    attempt_id = _current.get()
    if attempt_id is not None:
        with _lock:
            channel = _in_process.get(attempt_id)
        if channel is not None:
            return TaskPools(channel)
    path, token = os.environ.get(SOCKET_ENV, ""), os.environ.get(TOKEN_ENV, "")
    address = os.environ.get(ADDRESS_ENV, "")
    if (path or address) and token:
        return TaskPools(_SocketChannel(path, address, token))
    raise HoldError(_NOT_IN_TASK)


def hold(
    *pools: str, weight: int = 1, timeout: float | None = None
) -> AbstractContextManager[PoolHold]:
    """Hold `weight` slots of each of `pools` for the duration of a `with` block, inside a
    running task:

        with taskfabric.hold("geo-api", timeout=60) as lease:
            answer = call_the_service()     # lease.pushback(seconds) when it throttles;
                                            # time.sleep(lease.take_tokens()) before each
                                            # further call in the block

    The request waits in the pools' queues, fairly, with every engine's attempts, until
    granted (all pools at once), and is taken and renewed by the engine that runs the
    attempt. Raises HoldTimeout after `timeout` seconds (default: no limit), HoldError
    outside a running task or for a pool the engine does not have or a weight it could
    never grant."""
    return task_pools().hold(*pools, weight=weight, timeout=timeout)


# -- the socket channel (attempts that run as processes of their own) --------------------------


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as ``(host, port)``; ValueError when it is not one."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port)


#: Seconds to reach the engine over TCP, and to get its first answer line started: beyond
#: that, the engine is out of reach (a firewall drops the packets).
_CONNECT_TIMEOUT = 30.0


def _connect(path: str, address: str) -> socket.socket:
    """A connection to the engine's channel: its Unix socket when this host sees it, else its
    TCP address. HoldError saying what was tried and what to do when neither answers."""
    unix_error: OSError | None = None
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            unix_error = exc
    if address:
        try:
            sock = socket.create_connection(split_address(address), timeout=_CONNECT_TIMEOUT)
            sock.settimeout(None)  # a hold may wait for its pools as long as it likes
            return sock
        except (OSError, ValueError) as exc:
            tried = f"the Unix socket {path} ({unix_error}), " if path else ""
            raise HoldError(
                f"cannot reach the engine's pool channel: {tried}"
                f"the TCP address {address} ({ADDRESS_ENV}): {exc}. Either the engine that "
                "started this task has stopped, or this task's network cannot reach that "
                "address: check the engine's `[engine] hold_advertise` (the address tasks dial) "
                "and that its firewall lets the task's host reach `hold_listen`"
            ) from None
    raise HoldError(
        f"cannot reach the engine's pool channel at {path}: {unix_error}. "
        "Either the engine that started this task has stopped, or the task runs away from the "
        "engine's host (a batch job, a pod on another node), where the engine's Unix "
        "socket cannot be seen: there, have the engine offer the channel over TCP too "
        "(`[engine] hold_listen` and `hold_advertise` in its config, see docs/pools.md), or "
        "let the backend hold the pool for the whole attempt instead (a backend setting "
        "such as `pool`, through Backend.pool_requests)"
    )


class _Connection:
    def __init__(self, path: str, address: str) -> None:
        self.sock = _connect(path, address)
        self.file = self.sock.makefile("rwb")
        self.lock = threading.Lock()

    def ask(self, message: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.file.write(json.dumps(message).encode() + b"\n")
            self.file.flush()
            line = self.file.readline()
        if not line:
            raise HoldError(
                "the engine closed the pool channel (the attempt ended, or the engine stopped)"
            )
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            error = str(answer.get("error", "pool request refused"))
            raise HoldTimeout(error) if answer.get("kind") == "timeout" else HoldError(error)
        return answer

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class _SocketChannel:
    """Reaches the engine through its Unix socket, else its TCP address: one connection per
    held block."""

    def __init__(self, path: str, address: str, token: str) -> None:
        self.path = path
        self.address = address
        self.token = token

    def acquire(self, weights: Mapping[str, int], timeout: float | None) -> _Connection:
        conn = _Connection(self.path, self.address)
        try:
            conn.ask(
                {"op": "hold", "token": self.token, "pools": dict(weights), "timeout": timeout}
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def release(self, handle: _Connection) -> None:
        try:
            handle.ask({"op": "release"})
        except (HoldError, OSError):
            pass  # the engine released it already (the attempt ended) or is gone
        finally:
            handle.close()

    def pushback(self, handle: _Connection, seconds: float) -> float:
        return float(handle.ask({"op": "pushback", "seconds": seconds})["until"])

    def take_tokens(self, handle: _Connection, weight: int) -> float:
        return float(handle.ask({"op": "take_tokens", "weight": weight})["wait"])
