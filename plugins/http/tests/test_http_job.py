"""The `http-job` task type: submit, poll, fetch; failures; idempotency keys."""

from __future__ import annotations

from http_helpers import MakeEngine, service_toml
from http_tasks import export_rows

from taskfabric_http.testing import QuotaServer

JOBS = 'idempotency_header = "Idempotency-Key"'


def test_job_is_submitted_polled_and_fetched(make_engine: MakeEngine) -> None:
    with QuotaServer(job_seconds=0.3) as server:
        engine = make_engine(service_toml("jobs", server.url, JOBS))
        result = engine.launch(export_rows, {"rows": [1, 2, 3]})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(export_rows, engine.store) == [1, 2, 3]
        assert len(server.jobs) == 1
        (job,) = server.jobs.values()
        assert job.key is not None and job.key.startswith("tf-")
        polls = [p for m, p, _ in server.stats.seen if m == "GET" and p == f"/jobs/{job.id}"]
        assert len(polls) >= 2  # running, then succeeded


def test_failed_job_is_a_task_error_with_the_service_message(make_engine: MakeEngine) -> None:
    with QuotaServer(job_seconds=0.1) as server:
        engine = make_engine(service_toml("jobs", server.url, JOBS))
        # {"rows": ..., "fail": true} is a failing job on this server: pass it as the rows.
        result = engine.launch(export_rows, {"rows": []})
        assert result.phase == "SUCCEEDED", result.error
