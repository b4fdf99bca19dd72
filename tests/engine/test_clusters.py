"""Several clusters: a backend with labelled, weighted targets; deterministic routing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from taskfabric import task, workflow
from taskfabric.config import BackendConfig, Config, ProjectOverrides, StorageConfig
from taskfabric.engine import BackendNotConfiguredError, Engine
from taskfabric.engine._backends import pick_target


@task
def one(x: int) -> int:
    return x


@workflow
def wf(x: int) -> int:
    return one(x=x)


TARGETS = [
    {"label": "eu", "weight": 3, "workers": 2},
    {"label": "eu", "name": "eu-small", "weight": 1, "workers": 1},
    {"label": "us", "workers": 4},
]


def _engine(tmp_path: Path) -> Engine:
    return Engine(
        Config(
            storage=StorageConfig(data_root=tmp_path),
            task_types={"python": "pool"},
            backends={"pool": BackendConfig(driver="local", options={"targets": TARGETS})},
            projects={
                "paris": ProjectOverrides(cluster="eu"),
                "ohio": ProjectOverrides(cluster="us"),
            },
        )
    )


def test_project_cluster_label_routes_to_its_targets(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine:
        us = engine.launch(wf, {"x": 1}, project="ohio")
        eu = engine.launch(wf, {"x": 1}, project="paris")
        assert engine.metadata.attempts(us.execution_id)[0].backend == "pool@us"
        eu_backend = engine.metadata.attempts(eu.execution_id)[0].backend
        assert eu_backend in ("pool@eu", "pool@eu-small")  # both are labelled eu
        # the target's own settings apply: us has 4 workers, eu 2, eu-small 1
        backends = {b.name: b for b in engine.backends.instances()}
        assert backends["pool@us"].workers == 4  # type: ignore[attr-defined]
        expected = 2 if eu_backend == "pool@eu" else 1
        assert backends[eu_backend].workers == expected  # type: ignore[attr-defined]


def test_the_launch_cluster_label_wins_over_the_project(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine:
        result = engine.launch(wf, {"x": 1}, project="paris", cluster="us")
        assert engine.metadata.attempts(result.execution_id)[0].backend == "pool@us"
        rec = engine.metadata.get_execution(result.execution_id)
        assert rec is not None and rec.cluster == "us"


def test_pick_is_deterministic_and_weighted() -> None:
    picks = Counter(
        pick_target("pool", TARGETS, "eu", f"ex{i}").get("name", "eu") for i in range(4000)
    )
    assert 0.70 < picks["eu"] / 4000 < 0.80  # weight 3 of 4
    assert pick_target("pool", TARGETS, "", "abc") == pick_target("pool", TARGETS, "", "abc")


def test_unknown_label_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendNotConfiguredError, match="no target labelled 'mars'.*eu, us"):
        pick_target("pool", TARGETS, "mars", "e")
