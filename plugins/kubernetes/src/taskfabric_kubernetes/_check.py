"""`taskfabric plugins check` for the `kubernetes` backend: the API server answers, the
namespaces exist and the backend's user may do what it needs there."""

from __future__ import annotations

from taskfabric.templates import Placeholder, parse
from taskfabric_kubernetes._api import KubeApi, KubeApiError
from taskfabric_kubernetes._names import namespace_of
from taskfabric_kubernetes._settings import NAMESPACE_KINDS, KubernetesSettings

#: What the backend does with pods: (verb, resource, subresource).
NEEDED = (
    ("create", "pods", ""),
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("delete", "pods", ""),
    ("get", "pods", "log"),
)
#: And with presigned blob access: each pod's Secret holding the URL of its grants.
NEEDED_SECRETS = (
    ("create", "secrets", ""),
    ("update", "secrets", ""),
    ("patch", "secrets", ""),
    ("delete", "secrets", ""),
)


def _namespaces(api: KubeApi, settings: KubernetesSettings) -> tuple[list[str], str]:
    """The namespaces to check, and a note on how they were chosen."""
    parts = parse(settings.namespace, kinds=NAMESPACE_KINDS)
    if not any(isinstance(p, Placeholder) for p in parts):
        return [namespace_of(settings.namespace, "", "")], ""
    # A template: check the existing namespaces it can produce (its fixed text around the
    # placeholders), when the user may list namespaces.
    fixed = [p for p in parts if isinstance(p, str)]
    prefix = fixed[0] if parts and isinstance(parts[0], str) else ""
    try:
        found = [n for n in api.list_namespaces() if n.startswith(prefix.lower())]
    except KubeApiError as exc:
        return [], f"namespace template {settings.namespace!r}: cannot list namespaces ({exc})"
    if not found:
        return [], (
            f"no namespace matches the template {settings.namespace!r} yet: create one per "
            "project and domain, or set create_namespaces = true"
        )
    return found, f"namespaces matching {settings.namespace!r}"


def check_backend(
    api: KubeApi, settings: KubernetesSettings, backend: str, *, secrets: bool = False
) -> tuple[bool, str]:
    """Whether the backend may run pods (and, with `secrets`, their grants' Secrets)."""
    try:
        version = api.version()
    except KubeApiError as exc:
        return False, (
            f"the Kubernetes API server {api.server} ({api.where}) does not answer: "
            f"{exc.message}. Check the kubeconfig and context in [backends.{backend}]"
        )
    head = f"Kubernetes {version} at {api.server} ({api.where})"
    namespaces, note = _namespaces(api, settings)
    problems: list[str] = []
    checked: list[str] = []
    for namespace in namespaces:
        try:
            if not api.namespace_exists(namespace):
                if not settings.create_namespaces:
                    problems.append(
                        f"namespace {namespace!r} does not exist (create it, or set "
                        "create_namespaces = true)"
                    )
                continue
        except KubeApiError as exc:
            if exc.status != 403:
                problems.append(f"namespace {namespace!r}: {exc.message}")
                continue
        missing = []
        for verb, resource, sub in NEEDED + (NEEDED_SECRETS if secrets else ()):
            try:
                allowed = api.can(namespace, verb, resource, sub)
            except KubeApiError as exc:
                problems.append(f"cannot review permissions in {namespace!r}: {exc.message}")
                break
            if not allowed:
                missing.append(f"{verb} {resource}{'/' + sub if sub else ''}")
        if missing:
            problems.append(
                f"in namespace {namespace!r} the user may not {', '.join(missing)}: grant them "
                "with a Role and RoleBinding"
            )
        else:
            checked.append(namespace)
    if note and not namespaces:
        problems.append(note)
    if problems:
        return False, f"{head}; " + "; ".join(problems)
    where = ", ".join(checked)
    return True, f"{head}; may run pods in {where}" + (f" ({note})" if note else "")


__all__ = ["NEEDED", "NEEDED_SECRETS", "check_backend"]
