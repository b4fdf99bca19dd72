"""Task caching in the execution loop: look up, wait for, write and release entries."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from taskfabric.engine._state import QUEUED, NodeState
from taskfabric.engine._util import _blob_uris
from taskfabric.logs import get_logger

if TYPE_CHECKING:
    from taskfabric.engine._runner import Runner

log = get_logger("taskfabric.engine")


def cache_owner(r: Runner, ns: NodeState) -> str:
    return f"{r.execution_id}/{ns.full_id}"


def cache_lookup(r: Runner, ns: NodeState) -> bool:
    """Serve `ns` from the catalog, or make it wait for another computation of the same
    result. True when the node is handled (hit, or waiting); False: run it."""
    assert ns.task is not None and ns.inputs is not None
    settings = ns.task.cache
    if not settings.enabled or r.catalog is None:
        ns.cache_status = "disabled"
        return False
    if not ns.cache_key:
        try:
            ns.cache_key = r._key_of(ns)
        except ValueError as exc:  # e.g. a blob input without a content hash
            log.warning("not cached: no key for its inputs", node_id=ns.full_id, error=str(exc))
            ns.cache_status = "disabled"
            return False
    if not r.overwrite_cache:
        entry = r.catalog.get(ns.cache_key)
        if entry is not None and not entry.expired(time.time()):
            try:
                outputs = r._load_outputs(entry.outputs_uri)
                for uri in _blob_uris(outputs):
                    if not r.store.exists(uri):
                        raise FileNotFoundError(f"output blob {uri} is gone")
            except Exception as exc:
                log.warning(
                    "cache entry's outputs are gone or unreadable; recomputing and "
                    "repairing the entry",
                    node_id=ns.full_id,
                    key=ns.cache_key[:16],
                    error=str(exc),
                )
            else:
                ns.cache_status = "hit"
                ns.outputs_uri = entry.outputs_uri
                ns.inputs_uri = entry.inputs_uri
                ns.message = f"cache hit: computed by execution {entry.execution_id}"
                r._succeeded(ns, outputs, message=ns.message)
                return True
    if settings.serialize and not ns.cache_reserved:
        owner = r._cache_owner(ns)
        holder = r.catalog.reserve(ns.cache_key, owner, ttl=3 * r.heartbeat_seconds)
        if holder != owner:
            if ns.phase != QUEUED or not ns.message.startswith("waiting for"):
                ns.phase = QUEUED
                r._record(ns, f"waiting for {holder} to compute this cached result")
            r._timer(time.monotonic() + r.cache_poll_seconds, "cache_wait", ns)
            return True
        ns.cache_reserved = True
    ns.cache_status = "miss"
    return False


def key_of(r: Runner, ns: NodeState) -> str:
    from taskfabric.catalog import cache_key, inputs_hash, interface_hash

    assert ns.task is not None and ns.inputs is not None
    task = ns.task
    iface = r._interface_hashes.get(task.id.name)
    if iface is None:
        iface = r._interface_hashes[task.id.name] = interface_hash(task.interface)
    return cache_key(
        project=r.project,
        domain=r.domain,
        task_name=task.id.name,
        cache_version=task.cache.version,
        interface_hash=iface,
        inputs_hash=inputs_hash(ns.inputs, task.cache.ignored_inputs),
    )


def cache_write(r: Runner, ns: NodeState) -> None:
    from taskfabric.catalog import CacheEntry, inputs_hash, interface_hash

    assert ns.task is not None and ns.inputs is not None
    task = ns.task
    now = time.time()
    ttl = task.cache.ttl.ToTimedelta().total_seconds() if task.cache.HasField("ttl") else 0
    r.batch.cache_entry(
        CacheEntry(
            key=ns.cache_key,
            project=r.project,
            domain=r.domain,
            task_name=task.id.name,
            cache_version=task.cache.version,
            interface_hash=interface_hash(task.interface),
            inputs_hash=inputs_hash(ns.inputs, task.cache.ignored_inputs),
            outputs_uri=ns.outputs_uri,
            inputs_uri=ns.inputs_uri,
            execution_id=r.execution_id,
            node_id=ns.full_id,
            created_at=now,
            expires_at=now + ttl if ttl > 0 else None,
        )
    )
    r._cache_release(ns)
    ns.cache_status = "written"


def cache_release(r: Runner, ns: NodeState) -> None:
    if ns.cache_reserved:
        r.batch.release_reservation(ns.cache_key, r._cache_owner(ns))
        ns.cache_reserved = False
