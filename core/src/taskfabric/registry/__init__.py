"""The control plane's registry: versioned tasks, workflows and launch plans, code bundles,
and the scheduler.

```python
registry = Registry(MetadataStore(url), store)
result = registry.register(Path("flows/"), project="ml", domain="development", version="v1")
compiled, code = registry.get_workflow("ml", "development", "flows.etl.etl", "v1")
registry.activate("ml", "development", "nightly", "v1")
Scheduler(registry, enqueue_launcher(engine)).run_forever(stop)
```

- Entities are immutable and keyed by project/domain/name/version: registering identical
  content again is a no-op, different content raises `RegistrationConflict` with a diff.
- Code runs from its bundle (`taskfabric.bundles`): a deterministic, content-addressed tar.gz
  of the source tree at `bundles/<sha256>.tar.gz` in the blob store.
- One version of a launch plan name is active at a time; the scheduler launches its slots
  under names derived from the plan and the slot, so a restart never launches one twice.
"""

from taskfabric.registry._discover import DiscoveryError
from taskfabric.registry._launch import (
    Launcher,
    LaunchError,
    LaunchRequest,
    complete_inputs,
    enqueue_launcher,
    execution_name,
)
from taskfabric.registry._package import (
    KINDS,
    Entity,
    Package,
    PackageError,
    build_package,
)
from taskfabric.registry._registry import (
    ActiveLaunchPlan,
    EntityConflict,
    EntityInfo,
    EntityNotFoundError,
    RegisteredEntity,
    RegistrationConflict,
    RegistrationResult,
    Registry,
    normalize_kind,
    registry_for,
)
from taskfabric.registry._schedule import describe_schedule, due_slots, next_slot
from taskfabric.registry._scheduler import Scheduler
from taskfabric.registry._stamp import stamp_launch_plan, stamp_task, stamp_workflow

__all__ = [
    "KINDS",
    "ActiveLaunchPlan",
    "DiscoveryError",
    "Entity",
    "EntityConflict",
    "EntityInfo",
    "EntityNotFoundError",
    "LaunchError",
    "LaunchRequest",
    "Launcher",
    "Package",
    "PackageError",
    "RegisteredEntity",
    "RegistrationConflict",
    "RegistrationResult",
    "Registry",
    "Scheduler",
    "build_package",
    "complete_inputs",
    "describe_schedule",
    "due_slots",
    "enqueue_launcher",
    "execution_name",
    "next_slot",
    "normalize_kind",
    "registry_for",
    "stamp_launch_plan",
    "stamp_task",
    "stamp_workflow",
]
