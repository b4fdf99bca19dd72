"""The few Kubernetes API calls the backend makes, through the official `kubernetes` client,
with pods as plain dicts (the API's JSON form) and a count of the calls made."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from taskfabric_kubernetes._settings import KubernetesSettings


class KubeApiError(Exception):
    """An API call failed: `status` is the HTTP status (0: no answer), `message` the API
    server's own words."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.message = message
        self.reason = reason


def _error(exc: Exception) -> KubeApiError:
    if isinstance(exc, ApiException):
        message = str(exc.reason or "")
        reason = ""
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message") or message)
            reason = str(body.get("reason") or "")
        except (ValueError, AttributeError):
            pass
        return KubeApiError(int(exc.status or 0), message, reason)
    return KubeApiError(0, f"{type(exc).__name__}: {exc}")


def load_configuration(settings: KubernetesSettings) -> tuple[client.Configuration, str]:
    """The client configuration of the settings' kubeconfig and context, and a description
    of where it came from (for messages)."""
    cfg = client.Configuration()
    path = settings.kubeconfig or os.environ.get("KUBECONFIG", "")
    if not path and Path("~/.kube/config").expanduser().is_file():
        path = str(Path("~/.kube/config").expanduser())
    try:
        if path:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=settings.context or None, client_configuration=cfg
            )
            where = f"kubeconfig {path}"
            where += f", context {settings.context}" if settings.context else ""
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            where = "the in-cluster service account"
    except Exception as exc:
        tried = f"kubeconfig {path!r}" if path else "$KUBECONFIG, ~/.kube/config and in-cluster"
        raise ValueError(
            f"cannot load the Kubernetes client configuration ({tried}"
            + (f", context {settings.context!r}" if settings.context else "")
            + f"): {exc}. Set kubeconfig and context in the backend's settings"
        ) from exc
    return cfg, where


class KubeApi:
    """Pods of one cluster. Thread-safe; every call is counted in `calls`."""

    def __init__(self, settings: KubernetesSettings, pool_size: int) -> None:
        cfg, self.where = load_configuration(settings)
        cfg.connection_pool_maxsize = pool_size
        self.server = str(cfg.host)
        self.timeout = settings.api_timeout
        self.client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.client)
        self._lock = threading.Lock()
        self.calls = 0

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def _json(self, response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data or b"{}")
        return data

    def version(self) -> str:
        self._count()
        try:
            info = client.VersionApi(self.client).get_code(_request_timeout=self.timeout)
        except Exception as exc:
            raise _error(exc) from exc
        return str(info.git_version)

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        self._count()
        try:
            response = self.core.create_namespaced_pod(
                namespace, cast(Any, pod), _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            raise _error(exc) from exc
        return self._json(response)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None when it does not exist."""
        self._count()
        try:
            response = self.core.read_namespaced_pod(
                name, namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            error = _error(exc)
            if error.status == 404:
                return None
            raise error from exc
        return self._json(response)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> bool:
        """Delete the pod; False when it was not there."""
        self._count()
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=grace_seconds,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            error = _error(exc)
            if error.status == 404:
                return False
            raise error from exc
        return True

    def put_secret(self, namespace: str, secret: dict[str, Any]) -> None:
        """Create the Secret, or replace the one of its name (an earlier engine's)."""
        self._count()
        name = secret["metadata"]["name"]
        try:
            self.core.create_namespaced_secret(
                namespace, cast(Any, secret), _preload_content=False, _request_timeout=self.timeout
            )
            return
        except Exception as exc:
            error = _error(exc)
            if error.status != 409:
                raise error from exc
        self._count()
        try:
            self.core.replace_namespaced_secret(
                name,
                namespace,
                cast(Any, secret),
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            raise _error(exc) from exc

    def own_secret(self, namespace: str, name: str, pod: dict[str, Any]) -> None:
        """Make `pod` the Secret's owner: the cluster deletes the Secret with the pod."""
        self._count()
        meta = pod.get("metadata", {})
        owner = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
        }
        try:
            self.core.patch_namespaced_secret(
                name,
                namespace,
                cast(Any, {"metadata": {"ownerReferences": [owner]}}),
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            raise _error(exc) from exc

    def delete_secret(self, namespace: str, name: str) -> bool:
        """Delete the Secret; False when it was not there."""
        self._count()
        try:
            self.core.delete_namespaced_secret(
                name, namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            error = _error(exc)
            if error.status == 404:
                return False
            raise error from exc
        return True

    def pod_log(self, namespace: str, name: str, container: str) -> bytes:
        self._count()
        try:
            response: Any = self.core.read_namespaced_pod_log(
                name,
                namespace,
                container=container,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            raise _error(exc) from exc
        data: bytes = response.data or b""
        return data

    def list_pods(self, namespace: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods of `namespace` matching `selector`, and the list's resourceVersion."""
        self._count()
        try:
            response = self.core.list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            raise _error(exc) from exc
        data = self._json(response)
        items: list[dict[str, Any]] = data.get("items") or []
        for item in items:  # a list leaves out each item's kind
            item.setdefault("kind", "Pod")
        return items, str(data.get("metadata", {}).get("resourceVersion", ""))

    def watch_pods(
        self, namespace: str, selector: str, resource_version: str, seconds: int
    ) -> tuple[Any, Iterator[dict[str, Any]]]:
        """A watch of pods from `resource_version`, ended by the server after `seconds`: the
        response (close it to stop the watch from another thread) and its events."""
        self._count()
        try:
            response = self.core.list_namespaced_pod(
                namespace,
                label_selector=selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=seconds,
                _preload_content=False,
                _request_timeout=(self.timeout, seconds + self.timeout),
            )
        except Exception as exc:
            raise _error(exc) from exc

        def events() -> Iterator[dict[str, Any]]:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if line:
                    event: dict[str, Any] = json.loads(line)
                    yield event

        return response, events()

    def namespace_exists(self, namespace: str) -> bool:
        self._count()
        try:
            self.core.read_namespace(
                namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            error = _error(exc)
            if error.status == 404:
                return False
            raise error from exc
        return True

    def create_namespace(self, namespace: str) -> None:
        self._count()
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        try:
            self.core.create_namespace(
                cast(Any, body), _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            error = _error(exc)
            if error.status != 409:
                raise error from exc

    def list_namespaces(self) -> list[str]:
        self._count()
        try:
            response = self.core.list_namespace(
                _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            raise _error(exc) from exc
        return [item["metadata"]["name"] for item in self._json(response).get("items") or []]

    def can(self, namespace: str, verb: str, resource: str, subresource: str = "") -> bool:
        """Whether this client's user may `verb` the `resource` in `namespace`."""
        self._count()
        attributes: dict[str, Any] = {"namespace": namespace, "verb": verb, "resource": resource}
        if subresource:
            attributes["subresource"] = subresource
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        try:
            response = client.AuthorizationV1Api(self.client).create_self_subject_access_review(
                cast(Any, body), _preload_content=False, _request_timeout=self.timeout
            )
        except Exception as exc:
            raise _error(exc) from exc
        return bool(self._json(response).get("status", {}).get("allowed"))

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]


__all__ = ["KubeApi", "KubeApiError", "load_configuration"]
