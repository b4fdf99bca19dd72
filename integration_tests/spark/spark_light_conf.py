"""Spark properties of the integration tests (a module of its own, so tests import it by a name
no other test folder's conftest.py shadows)."""

from __future__ import annotations

#: Properties that keep applications small on a 2-core test machine.
LIGHT_CONF = {
    "spark.executor.memory": "512m",
    "spark.cores.max": 1,
    "spark.task.maxFailures": 1,
    "spark.sql.shuffle.partitions": 2,
}
