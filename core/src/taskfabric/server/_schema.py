"""The API token table, on the metadata database's ``MetaData`` (migration 0005 creates it).

A token is shown once, when it is created, and stored only as the sha256 of its text: a copy
of the database does not let anyone call the API. ``id`` is the public part of the token (it
is in the token's text, so a request finds its row without scanning), ``projects`` a JSON list
of the projects it may use (``["*"]``: every project) and ``role`` what it may do there;
``expires_at`` (migration 0006), if set, when it stops working.
"""

from __future__ import annotations

import sqlalchemy as sa

from taskfabric.metadata._schema import metadata

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, server_default=""),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("projects", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False, server_default=""),
    sa.Column("last_used_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    # Migration 0006: when the token stops working (unset: never).
    sa.Column("expires_at", sa.Float),
)
