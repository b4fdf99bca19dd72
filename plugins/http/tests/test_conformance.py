"""The `http` backend passes the backend conformance suite (it runs any task type in worker
threads, HTTP attempts with their services' pools)."""

from __future__ import annotations

from taskfabric.testing import BackendConformance


class TestHttpConformance(BackendConformance):
    backend = {"driver": "http"}
