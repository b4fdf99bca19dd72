"""The schema revision this code reads and writes (kept apart from the tables, which need
SQLAlchemy, so that the SQLite run path can check it without importing SQLAlchemy)."""

#: The newest migration; a test checks that it matches migrations/versions.
HEAD_REVISION = "0011"
