"""Alembic environment: runs on the connection that taskfabric hands it."""

from alembic import context

from taskfabric.metadata._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "taskfabric migrations run through taskfabric.metadata.MetadataStore.migrate(); "
        "they are not meant for the alembic command line"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
