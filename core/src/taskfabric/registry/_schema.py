"""The registry tables, on the metadata database's ``MetaData`` (migration 0004 creates them).

- ``registry_entities``: one row per registered task, workflow and launch plan version, keyed by
  kind, project, domain, name and version; immutable once written. The template itself (a
  ``TaskTemplate``, ``CompiledWorkflow`` or ``LaunchPlanSpec``) is a blob at ``template_uri``;
  ``digest`` is the sha256 of its deterministic serialization, ``bundle_digest`` names the code
  bundle it was registered with and ``code`` (JSON) where in the bundle its object lives.
- ``code_bundles``: content-addressed source trees (digest of the uncompressed tar -> URI).
- ``launch_plan_states``: the active version of each launch plan name (one row per name, so
  one active version at a time), when it was activated (the anchor of a fixed rate) and the
  newest schedule slot the scheduler has handled.
"""

from __future__ import annotations

import sqlalchemy as sa

from taskfabric.metadata._schema import executions, metadata

registry_entities = sa.Table(
    "registry_entities",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("domain", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("template_uri", sa.Text, nullable=False),
    sa.Column("bundle_digest", sa.String(64), nullable=False, server_default=""),
    sa.Column("code", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
)
sa.Index(
    "ix_registry_entities_created",
    registry_entities.c.kind,
    registry_entities.c.project,
    registry_entities.c.domain,
    registry_entities.c.created_at,
)

code_bundles = sa.Table(
    "code_bundles",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

launch_plan_states = sa.Table(
    "launch_plan_states",
    metadata,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("domain", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("activated_at", sa.Float, nullable=False),
    sa.Column("last_slot", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# The scheduler's concurrency check: queued or running executions of one launch plan.
sa.Index(
    "ix_executions_launch_plan",
    executions.c.project,
    executions.c.domain,
    executions.c.launch_plan,
)
