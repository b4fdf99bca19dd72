"""The built-in `local` backend passes the backend conformance suite."""

from __future__ import annotations

from taskfabric.testing import BackendConformance


class TestLocalConformance(BackendConformance):
    backend = {"driver": "local"}
    # Worker threads cannot be killed: a cancelled attempt runs on, its result discarded.
    can_stop_running_work = False
