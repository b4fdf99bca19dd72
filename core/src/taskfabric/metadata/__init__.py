"""The metadata database: executions, node executions, attempts and their transitions."""

from taskfabric.metadata._connections import (
    DEFAULT_POOL_SIZE,
    database_out_of_reach,
    engine_pool_size,
    out_of_connections_hint,
)
from taskfabric.metadata._lite import connect_file, integrity_errors
from taskfabric.metadata._records import (
    AttemptRecord,
    EventRecord,
    ExecutionRecord,
    MapItemsQueued,
    MapItemsStopped,
    NodeRecord,
    PriorItem,
)
from taskfabric.metadata._revision import HEAD_REVISION
from taskfabric.metadata._store import Batch, MetadataStore, create_db_engine

__all__ = [
    "DEFAULT_POOL_SIZE",
    "HEAD_REVISION",
    "AttemptRecord",
    "Batch",
    "EventRecord",
    "ExecutionRecord",
    "MapItemsQueued",
    "MapItemsStopped",
    "MetadataStore",
    "NodeRecord",
    "PriorItem",
    "connect_file",
    "create_db_engine",
    "database_out_of_reach",
    "engine_pool_size",
    "integrity_errors",
    "out_of_connections_hint",
]
