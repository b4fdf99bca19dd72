"""The built-in `subprocess` backend passes the backend conformance suite."""

from __future__ import annotations

from taskfabric.testing import BackendConformance


class TestSubprocessConformance(BackendConformance):
    backend = {"driver": "subprocess"}
    # Each attempt is a child process, which cancel() kills.
    can_stop_running_work = True
