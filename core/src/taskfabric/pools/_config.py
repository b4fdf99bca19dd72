"""From the config file's ``[pools.<name>]`` tables to ``PoolSpec``s."""

from __future__ import annotations

from taskfabric.config import Config
from taskfabric.pools._spec import PoolSpec


def specs_from_config(config: Config) -> dict[str, PoolSpec]:
    """The pools of ``config``, with ``[projects.<p>] pool_caps`` folded into each pool's
    project caps."""
    caps_from_projects: dict[str, dict[str, int]] = {}
    for project, override in config.projects.items():
        for pool, cap in override.pool_caps.items():
            caps_from_projects.setdefault(pool, {})[project] = cap
    return {
        name: PoolSpec(
            name=name,
            slots=pool.slots,
            rate=pool.rate_per_second,
            burst=pool.burst,
            project_caps={**pool.project_caps, **caps_from_projects.get(name, {})},
            domain_caps=dict(pool.domain_caps),
            lease_ttl=pool.lease_ttl,
            project_weights=dict(pool.project_weights),
        )
        for name, pool in sorted(config.pools.items())
    }
