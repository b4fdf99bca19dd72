"""One watch of the backend's pods per namespace: list, then watch from the list's version
until the server ends the watch (`resync_seconds`), then list again. The list is the periodic
resync (a missed event is caught by the next one); `410 Gone` lists again at once. No pod is
polled on its own."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from taskfabric.logs import get_logger
from taskfabric_kubernetes._api import KubeApi, KubeApiError

log = get_logger("taskfabric.kubernetes")

#: Called with ("ADDED" | "MODIFIED" | "DELETED", pod) for every change, and with
#: ("LISTED", pod) for every pod of a (re)list.
PodHandler = Callable[[str, dict[str, Any]], None]
#: Called after each (re)list with the namespace, the names of the pods it found and when
#: (time.monotonic()) the list was asked for.
ListHandler = Callable[[str, set[str], float], None]


class NamespaceWatch:
    """Follows the pods of one namespace that match a selector, on a thread of its own."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        selector: str,
        resync_seconds: float,
        on_pod: PodHandler,
        on_list: ListHandler,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.resync_seconds = max(1, int(resync_seconds))
        self.on_pod = on_pod
        self.on_list = on_list
        self._stop = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()
        #: Set once the first list has been handled: events from then on are seen.
        self.listed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"taskfabric-kubernetes-watch-{namespace}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # Nothing may end this thread while the watch is on: its namespace's pods would
        # never be seen to end, and their attempts would wait for ever.
        while not self._stop.is_set():
            try:
                self._follow()
            except BaseException as exc:
                with contextlib.suppress(BaseException):
                    log.warning("pod watch failed", namespace=self.namespace, error=f"{exc!r}")
                self._stop.wait(1.0)

    def _follow(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                self.listed.set()
                failures = 0
                while not self._stop.is_set() and version:
                    version = self._watch(version)
            except KubeApiError as exc:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning(
                    "pod watch failed; listing again",
                    namespace=self.namespace,
                    error=str(exc),
                    failures=failures,
                )
                self._stop.wait(min(30.0, 0.5 * 2**failures))
            except Exception as exc:  # a dropped connection while reading the stream
                if self._stop.is_set():
                    return
                failures += 1
                log.warning(
                    "pod watch broke; listing again",
                    namespace=self.namespace,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._stop.wait(min(30.0, 0.5 * 2**failures))

    def _list(self) -> str:
        started = time.monotonic()
        pods, version = self.api.list_pods(self.namespace, self.selector)
        for pod in pods:
            self.on_pod("LISTED", pod)
        self.on_list(self.namespace, {p["metadata"]["name"] for p in pods}, started)
        return version

    def _watch(self, version: str) -> str:
        """Follow events from `version`; the version to go on from, or "" to list again."""
        response, events = self.api.watch_pods(
            self.namespace, self.selector, version, self.resync_seconds
        )
        with self._lock:
            self._response = response
        if self._stop.is_set():
            response.close()
            return ""
        try:
            for event in events:
                kind = event.get("type", "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone: the version is too old; anything else: start over too.
                    log.info("pod watch restarts", namespace=self.namespace, status=obj)
                    return ""
                new_version = obj.get("metadata", {}).get("resourceVersion", "")
                if new_version:
                    version = new_version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_pod(kind, obj)
        finally:
            with self._lock:
                self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()
        # The server ended the watch (its timeout): list again, the periodic resync.
        return ""

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.close()
        self._thread.join(timeout=5)


__all__ = ["NamespaceWatch"]
