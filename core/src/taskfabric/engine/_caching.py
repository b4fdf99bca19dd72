"""The cache step of task nodes: look up, wait for, write and release catalog entries."""

from __future__ import annotations

import hashlib
import time
from typing import Any, NamedTuple

from taskfabric.catalog import CacheEntry, Catalog, inputs_hash, interface_hash
from taskfabric.core.v1 import tasks_pb2, types_pb2
from taskfabric.engine._documents import Documents
from taskfabric.engine._recording import Recorder
from taskfabric.engine._state import QUEUED, TERMINAL, NodeState
from taskfabric.logs import get_logger
from taskfabric.storage import ReadAhead

log = get_logger("taskfabric.engine")


class Lookup(NamedTuple):
    """What the cache says about a task node about to run (a tuple: one is made per hit)."""

    #: a hit: the node's outputs, served from the catalog (the node is done)
    outputs: types_pb2.LiteralMap | None = None
    #: another execution is computing the same result: ask again after `poll_seconds`
    wait: bool = False


RUN = Lookup()

#: the kinds of `LiteralType` whose values name no blob
_SCALAR_TYPES = frozenset({"simple", "enum_type"})

#: Cache keys this process computed, by their task's fixed parts and the deterministic
#: encoding of the inputs (equal encodings are equal inputs: the same key). Serving a hit
#: means seeing inputs again, and a long-lived engine (a worker, a server, a notebook)
#: sees them again in its own launches: the encoding costs a tenth of the canonical
#: hashing it saves (`literal_map_hash` and two SHA-256). Shared by the process's
#: executions (dict reads and writes are atomic); bounded, emptied when full.
_KEYS: dict[tuple[str, bytes], str] = {}
_KEYS_AT_MOST = 4096
#: inputs whose encoding is longer are hashed without the memo (a large value's encoding
#: would be kept, and hashing costs more than the look-up saves only for small ones)
_KEYED_BYTES_AT_MOST = 1024


class _Settings(NamedTuple):
    """A task's cache settings, as the cache step reads them for each of its nodes."""

    enabled: bool
    serialize: bool
    task_name: str
    version: str
    ignored: frozenset[str]
    interface_hash: str
    #: every output's type is a scalar one (simple or enum): its outputs name no blob
    #: that could be gone (the key covers the interface: an entry's outputs have its types)
    scalar_outputs: bool
    #: a digest that has hashed what `catalog.cache_key` hashes ahead of the inputs' hash
    #: (the same for every node of the task in this execution: project, domain, name,
    #: version, interface hash), copied for each node's key
    key_prefix: Any  # a hashlib sha256 object
    #: the fixed parts of the task's keys and its ignored inputs, as `_KEYS` files them
    memo_tag: str


class CacheStep:
    """The catalog's side of one execution: entries it reads and writes, and the
    reservations (serialized caching) it holds, kept alive with the heartbeat."""

    def __init__(
        self,
        *,
        catalog: Catalog | None,
        execution_id: str,
        project: str,
        domain: str,
        overwrite: bool,
        documents: Documents,
        recorder: Recorder,
        poll_seconds: float = 0.2,
    ) -> None:
        self._catalog = catalog
        self._execution_id = execution_id
        self._project = project
        self._domain = domain
        self._overwrite = overwrite
        self._documents = documents
        self._recorder = recorder
        self.poll_seconds = poll_seconds
        self._settings: dict[int, _Settings] = {}
        self._reserved: dict[str, NodeState] = {}
        #: the hits of a turn read their entries' outputs through it (a chain's, one after
        #: another in the segment that computed them: one read for many); a new one each
        #: turn, as the catalog's read transaction (`end_turn`)
        self._ahead = ReadAhead()
        recorder.on_heartbeat(self._heartbeat)

    def lookup(self, ns: NodeState) -> Lookup:
        """Serve `ns` from the catalog, or make it wait for another computation of the same
        result (a serialized cache), or say it must run (and reserve its result)."""
        assert ns.task is not None and ns.inputs is not None
        settings = self._settings_of(ns.task)
        catalog = self._catalog
        if not settings.enabled or catalog is None:
            ns.cache_status = "disabled"
            return RUN
        if not ns.cache_key:
            try:
                ns.cache_key = self._key_of(ns, settings)
            except ValueError as exc:  # e.g. a blob input without a content hash
                log.warning("not cached: no key for its inputs", node_id=ns.full_id, error=str(exc))
                ns.cache_status = "disabled"
                return RUN
        if not self._overwrite:
            entry = catalog.hit(ns.cache_key)
            if entry is not None and (entry.expires_at is None or not entry.expired(time.time())):
                try:
                    outputs = self._documents.load(entry.outputs_uri, self._ahead)
                    if not settings.scalar_outputs:
                        self._documents.require_blobs(outputs)
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
                    return Lookup(outputs)
        if settings.serialize and ns.full_id not in self._reserved:
            owner = self._owner(ns)
            holder = catalog.reserve(ns.cache_key, owner, ttl=3 * self._recorder.heartbeat_seconds)
            if holder != owner:
                if ns.phase != QUEUED or not ns.message.startswith("waiting for"):
                    ns.phase = QUEUED
                    self._recorder.node(ns, f"waiting for {holder} to compute this cached result")
                return Lookup(wait=True)
            self._reserved[ns.full_id] = ns
        ns.cache_status = "miss"
        return RUN

    def end_turn(self) -> None:
        """The loop's turn ended: a later look-up sees every commit made until now (the
        hits of a turn read in one transaction: `Catalog.hit`), and reads outputs afresh."""
        if self._catalog is not None:
            self._catalog.end_reads()
        if self._ahead.data:
            self._ahead = ReadAhead()

    def write(self, ns: NodeState) -> None:
        """Record the entry of a node computed after a miss (with its success)."""
        assert ns.task is not None and ns.inputs is not None
        task = ns.task
        settings = self._settings_of(task)
        now = time.time()
        ttl = task.cache.ttl.ToTimedelta().total_seconds() if task.cache.HasField("ttl") else 0
        self._recorder.cache_entry(
            CacheEntry(
                key=ns.cache_key,
                project=self._project,
                domain=self._domain,
                task_name=task.id.name,
                cache_version=task.cache.version,
                interface_hash=settings.interface_hash,
                inputs_hash=inputs_hash(ns.inputs, settings.ignored),
                outputs_uri=ns.outputs_uri,
                inputs_uri=ns.inputs_uri,
                execution_id=self._execution_id,
                node_id=ns.full_id,
                created_at=now,
                expires_at=now + ttl if ttl > 0 else None,
            )
        )
        self.release(ns)
        ns.cache_status = "written"

    def release(self, ns: NodeState) -> None:
        """Give up the node's reservation, if it holds one (it ended or was stopped)."""
        if self._reserved.pop(ns.full_id, None) is not None:
            self._recorder.release_reservation(ns.cache_key, self._owner(ns))

    def _owner(self, ns: NodeState) -> str:
        return f"{self._execution_id}/{ns.full_id}"

    def _settings_of(self, task: tasks_pb2.TaskTemplate) -> _Settings:
        """What the cache step reads of a task's template, read once (by id(): the
        execution's templates are one object each, held by its Runner)."""
        found = self._settings.get(id(task))
        if found is None:
            cache = task.cache
            name, version = task.id.name, cache.version
            iface = interface_hash(task.interface) if cache.enabled else ""
            fixed = "\0".join((self._project, self._domain, name, version, iface, ""))
            ignored = frozenset(cache.ignored_inputs)
            found = self._settings[id(task)] = _Settings(
                enabled=cache.enabled,
                serialize=cache.serialize,
                task_name=name,
                version=version,
                ignored=ignored,
                interface_hash=iface,
                scalar_outputs=all(
                    o.type.WhichOneof("type") in _SCALAR_TYPES for o in task.interface.outputs
                ),
                key_prefix=hashlib.sha256(fixed.encode()),
                memo_tag=fixed + "\0".join(sorted(ignored)),
            )
        return found

    def _key_of(self, ns: NodeState, settings: _Settings) -> str:
        """`catalog.cache_key` of the node (the same digest: a copy of the digest of its
        fixed parts, hashed once per task, then the inputs' hash), or the key this process
        computed for the same task and inputs before (`_KEYS`)."""
        assert ns.inputs is not None
        encoded = ns.inputs.SerializeToString(deterministic=True)
        memo = (settings.memo_tag, encoded) if len(encoded) <= _KEYED_BYTES_AT_MOST else None
        if memo is not None and (known := _KEYS.get(memo)) is not None:
            return known
        hashed = inputs_hash(ns.inputs, settings.ignored)
        digest = settings.key_prefix.copy()
        digest.update(hashed.encode())
        key = str(digest.hexdigest())
        if memo is not None:
            if len(_KEYS) >= _KEYS_AT_MOST:
                _KEYS.clear()
            _KEYS[memo] = key
        return key

    def _heartbeat(self) -> None:
        """Keep the reservations of nodes still under way from expiring."""
        held = [
            (ns.cache_key, self._owner(ns))
            for ns in self._reserved.values()
            if ns.phase not in TERMINAL
        ]
        if held and self._catalog is not None:
            self._catalog.heartbeat(held, ttl=3 * self._recorder.heartbeat_seconds)
