"""The external handle of an attempt (a pid and start time, an application id, a job id), so
that an engine resuming an execution re-attaches to the attempt's running work.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "node_attempts", sa.Column("handle", sa.Text, nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("node_attempts") as batch:
        batch.drop_column("handle")
