"""Idempotency keys that survive the engine.

A request that changes things remotely (a job's submit; a POST to a service that takes an
idempotency key) carries a key derived from the id of the attempt that first sent it. Before
sending, the key is written to a small record beside the node's documents in the blob store;
after the outcome is known, the record says so. When the engine dies in between (kill -9) and
`executions resume` runs the node again as a new attempt, that attempt finds the unfinished
record and sends the same key (and, for a job whose id was recorded, polls that job): the
service does not start a second one. An attempt that failed, was cancelled or timed out marks
its record finished, so the next attempt uses a key of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from taskfabric.plugin_api import TaskAttempt
from taskfabric.storage import BlobStore

__all__ = ["KeyBook", "KeyRecord", "idempotency_key"]

#: States after which a new attempt sends a new key.
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def idempotency_key(attempt_id: str) -> str:
    """`tf-<hex>`: stable for an attempt id, free of the characters services reject."""
    return "tf-" + hashlib.sha256(attempt_id.encode()).hexdigest()[:40]


@dataclass
class KeyRecord:
    key: str
    attempt_id: str  # the attempt that made the key
    state: str  # "sending", "running" (a job was created), or one of FINISHED
    job_id: str | None = None


class KeyBook:
    """The record of one node's keyed request, `<node folder>/http-<kind>.json`."""

    def __init__(self, store: BlobStore, attempt: TaskAttempt, kind: str) -> None:
        self.store = store
        folder = attempt.outputs_uri.rsplit("/", 1)[0]
        self.uri = f"{folder}/http-{kind}.json"

    def load(self) -> KeyRecord | None:
        if not self.store.exists(self.uri):
            return None
        try:
            data = json.loads(self.store.get_bytes(self.uri))
            return KeyRecord(**data)
        except (ValueError, TypeError):
            return None  # torn or foreign: start afresh

    def save(self, record: KeyRecord) -> None:
        self.store.put_bytes(self.uri, json.dumps(asdict(record), sort_keys=True).encode())

    def claim(self, attempt_id: str, live: set[str]) -> KeyRecord:
        """The record this attempt works with: an unfinished one of an attempt that is no
        longer alive in this process (its engine died), else a new one of its own."""
        found = self.load()
        if found is not None and found.state not in FINISHED and found.attempt_id not in live:
            return found
        return KeyRecord(key=idempotency_key(attempt_id), attempt_id=attempt_id, state="new")
