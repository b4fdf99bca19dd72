"""The built-in `sandbox` backend passes the backend conformance suite (bubblewrap, from
Debian's `bubblewrap` package, which .ci/run installs)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from taskfabric.testing import BackendConformance

#: The suite's side channels (markers, counters) must be visible to every attempt: a sandbox
#: sees only the folders its settings give it, so the tests' scratch folders live in one.
SHARED = Path(tempfile.gettempdir()) / "taskfabric-conformance-sandbox"


class TestSandboxConformance(BackendConformance):
    backend = {"driver": "sandbox", "kill_grace_seconds": 1, "read_write": [str(SHARED)]}
    # Each attempt is a sandboxed child process, which cancel() kills.
    can_stop_running_work = True

    @pytest.fixture
    def conformance_scratch(self) -> Path:
        scratch = SHARED / uuid.uuid4().hex
        scratch.mkdir(parents=True)
        # A server run as root runs its attempts as the host's user 65534: a shared folder
        # must be theirs to write in (docs/server.md, "Bounds").
        scratch.chmod(0o777)
        return scratch
