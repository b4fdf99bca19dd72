"""`executions show` lists attempts' log links: under each failed attempt, and in a `logs`
section for the latest attempt of the other nodes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from taskfabric.cli._common import out
from taskfabric.cli._show import print_nodes


def _node(node_id: str, phase: str, error: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(
        node_id=node_id,
        name=f"wf.{node_id}",
        kind="task",
        phase=phase,
        attempts=1,
        cache_status="disabled",
        started_at=1.0,
        finished_at=2.0,
        error=error,
        message="",
        parent_id=None,
    )


def test_log_links_of_failed_and_succeeded_nodes_are_shown() -> None:
    ok = _node("n0", "SUCCEEDED")
    bad = _node("n1", "FAILED", {"code": "AnalysisException", "message": "no column x"})
    attempts = {
        "n0": [SimpleNamespace(attempt=1, phase="SUCCEEDED", error=None, log_links=[
            {"name": "spark-driver", "uri": "file:///data/n0/spark-driver-1.log"}])],
        "n1": [SimpleNamespace(attempt=1, phase="FAILED", error=bad.error, log_links=[
            {"name": "spark-app", "uri": "http://127.0.0.1:8080/app/?appId=app-1"}])],
    }  # fmt: skip
    with out.capture() as captured:
        print_nodes(
            [ok, bad],
            attempts_of=lambda n: attempts[n.node_id],
            values_of=lambda n: "",
            show_all=False,
            no_values=True,
        )
    text = captured.get()
    assert "#1 FAILED AnalysisException: no column x" in text
    assert "log spark-app: http://127.0.0.1:8080/app/?appId=app-1" in text
    assert "logs" in text
    assert "n0 #1 spark-driver: file:///data/n0/spark-driver-1.log" in text


def test_no_logs_section_without_links() -> None:
    node = _node("n0", "SUCCEEDED")
    attempt = SimpleNamespace(attempt=1, phase="SUCCEEDED", error=None, log_links=[])
    with out.capture() as captured:
        print_nodes(
            [node],
            attempts_of=lambda n: [attempt],
            values_of=lambda n: "",
            show_all=False,
            no_values=True,
        )
    assert "logs" not in captured.get()
