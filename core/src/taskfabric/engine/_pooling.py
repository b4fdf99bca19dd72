"""The engine's side of resource pools: the pool manager (when the config declares pools),
the hold service behind `taskfabric.hold`, the tokens and pushback backends pay and report,
a pool gate per execution, and the check that a task's pools can ever be granted."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskfabric.config import Config
from taskfabric.engine._holds import HoldService
from taskfabric.engine._owners import this_owner
from taskfabric.engine._pools import PoolGate
from taskfabric.errors import TaskfabricError
from taskfabric.metadata import ExecutionRecord, MetadataStore


class EnginePools:
    """Pools for one engine; everything is created on first use (and only with pools)."""

    def __init__(self, config: Config, metadata: MetadataStore, work_root: Path) -> None:
        self._config = config
        self._metadata = metadata
        self._work_root = work_root
        self._manager: Any = None
        #: every manager made (the engine's, the hold service's) and the capacities that
        #: backends set (`set_capacity`), which each of them gets
        self._managers: list[Any] = []
        self._capacities: dict[str, int | None] = {}
        self._capacity_lock = threading.Lock()
        # Made once per process whatever the threads that ask first at once (a server's
        # launches, a worker's executions): each manager keeps database connections checked
        # out for good, and a burst of first launches had made one each, until the API's
        # connection pool was empty and every request waited for one (issue 21's drill).
        self._make_lock = threading.Lock()
        #: the hold service of `taskfabric.hold` (None until an execution runs with pools)
        self.holds: HoldService | None = None

    @property
    def manager(self) -> Any:
        """The config's pool manager (`taskfabric.pools.PoolManager`), None without pools."""
        if self._manager is None and getattr(self._config, "pools", None):
            with self._make_lock:
                if self._manager is None:
                    self._manager = self._new_manager(this_owner())
        return self._manager

    def _new_manager(self, owner: str) -> Any:
        from taskfabric.pools import PoolManager, specs_from_config

        manager = PoolManager(self._metadata.engine, specs_from_config(self._config), owner=owner)
        with self._capacity_lock:
            for pool, slots in self._capacities.items():
                manager.set_capacity(pool, slots)
            self._managers.append(manager)
        return manager

    def take_tokens(self, weights: Mapping[str, int]) -> float:
        """`BackendContext.take_tokens`: seconds to wait before a call beyond the grant's."""
        manager = self.manager
        return 0.0 if manager is None or not weights else float(manager.take_tokens(weights))

    def pushback(self, pools: Mapping[str, float]) -> None:
        """`BackendContext.pushback`: the pools grant nothing for so many seconds."""
        manager = self.manager
        if manager is not None:
            for pool, seconds in sorted(pools.items()):
                manager.pushback(pool, seconds)

    def set_capacity(self, pool: str, slots: int | None) -> None:
        """`BackendContext.set_pool_capacity`: every manager of this engine grants at most
        `slots` of `pool` (None: its configured slots)."""
        if pool not in getattr(self._config, "pools", {}):
            raise LookupError(
                f"no pool '{pool}' to size: declare [pools.{pool}] in the config file, with "
                "`slots` the most it may ever grant (see docs/pools.md)"
            )
        self.manager  # noqa: B018 (made now, so that it gets the capacity)
        with self._capacity_lock:
            self._capacities[pool] = slots
            for manager in self._managers:
                manager.set_capacity(pool, slots)

    def gate(self, rec: ExecutionRecord) -> PoolGate | None:
        """The pool gate of an execution's attempts, None without pools."""
        manager = self.manager
        if manager is None:
            return None
        if self.holds is None:
            with self._make_lock:
                if self.holds is None:
                    engine = self._config.engine
                    self.holds = HoldService(
                        self._new_manager,
                        self._work_root,
                        engine.hold_listen,
                        engine.hold_advertise,
                    )
        ttl = min(spec.lease_ttl for spec in manager.specs.values())
        return PoolGate(
            manager,
            execution_id=rec.id,
            project=rec.project,
            domain=rec.domain,
            renew_seconds=max(0.5, ttl / 3),
            holds=self.holds,
            metadata=self._metadata,
        )

    def validate(self, task_name: str, weights: Mapping[str, int], project: str) -> None:
        """Fail when a task asks for pools that do not exist or could never grant it."""
        manager = self.manager
        if manager is None:
            names = ", ".join(sorted(weights))
            raise TaskfabricError(
                f"task '{task_name}' asks for resource pool(s) {names}, but the config "
                f"declares no pools: add a [pools.{sorted(weights)[0]}] table with its "
                "slots (see docs/configuration.md)"
            )
        try:
            manager.validate_request(
                weights,
                project=project or self._config.project.name,
                domain=self._config.project.domain,
                who=f"task '{task_name}'",
            )
        except Exception as exc:
            raise TaskfabricError(str(exc)) from exc

    def release_execution(self, execution_id: str) -> None:
        """Void the leases and queue places an execution's previous engine left."""
        if self.manager is not None:
            self.manager.release_execution(execution_id)

    def close(self) -> None:
        if self.holds is not None:
            self.holds.close()
        if self._manager is not None:
            self._manager.close()
