"""On SQLite, node_executions and node_attempts stored in their primary key's b-tree
(`WITHOUT ROWID`) instead of a rowid table plus a separate index of the key: every commit
of a transition wrote a page of each b-tree it touched (seven for a task's end and its
successor's start), and now writes five. Nothing changes on PostgreSQL.

The tables are rebuilt in one transaction (rows copied, `ix_node_executions_kind` made
again); a failure leaves them as they were. Rows whose execution (or node) is gone, left by
a delete with the foreign keys off, are not copied.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: parent first: node_attempts' foreign key names node_executions
TABLES = ("node_executions", "node_attempts")
#: a row's parent, which the copy checks: rows left by deleting an execution with the foreign
#: keys off (the sqlite3 shell's default), which nothing reads, are not copied
PARENT = {
    "node_executions": "SELECT 1 FROM executions AS p WHERE p.id = o.execution_id",
    "node_attempts": (
        "SELECT 1 FROM node_executions AS p "
        "WHERE p.execution_id = o.execution_id AND p.node_id = o.node_id"
    ),
}


def upgrade() -> None:
    _rebuild(without_rowid=True)


def downgrade() -> None:
    _rebuild(without_rowid=False)


def _rebuild(*, without_rowid: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    dbapi = bind.connection.dbapi_connection
    assert dbapi is not None
    # pysqlite begins a transaction before DML only: begin it before the DDL, so that the
    # tables are rebuilt all or not at all (Alembic's commit, with the revision, ends it).
    if not dbapi.in_transaction:
        bind.exec_driver_sql("BEGIN")
    tables = {
        str(name): str(sql)
        for name, sql in bind.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            TABLES,
        )
    }
    indexes = [
        str(sql)
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN (?, ?) "
            "AND sql IS NOT NULL",
            TABLES,
        )
    ]
    # Renamed first: SQLite rewrites the foreign key of node_attempts to follow its parent,
    # so dropping the old tables at the end cascades into nothing.
    for name in TABLES:
        bind.exec_driver_sql(f"ALTER TABLE {name} RENAME TO _old_{name}")
    for name in TABLES:
        sql = tables[name].rstrip()
        if sql.upper().endswith("WITHOUT ROWID"):
            sql = sql[: -len("WITHOUT ROWID")].rstrip()
        bind.exec_driver_sql(sql + (" WITHOUT ROWID" if without_rowid else ""))
        columns = ", ".join(
            str(row[1]) for row in bind.exec_driver_sql(f"PRAGMA table_info(_old_{name})")
        )
        bind.exec_driver_sql(
            f"INSERT INTO {name} ({columns}) SELECT {columns} FROM _old_{name} AS o "
            f"WHERE EXISTS ({PARENT[name]})"
        )
    for name in reversed(TABLES):
        bind.exec_driver_sql(f"DROP TABLE _old_{name}")
    for index_sql in indexes:  # (they went with the old tables)
        bind.exec_driver_sql(index_sql)
