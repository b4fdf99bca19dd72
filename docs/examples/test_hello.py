# docs/examples/test_hello.py
from pathlib import Path

import pytest
from hello import numbers, square, sum_of_squares, total

from taskfabric import map_task


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Executions started by these tests go to a throwaway data root.
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path))


def test_tasks_are_plain_functions() -> None:
    assert square(3) == 9
    assert total(xs=numbers(n=4)) == 6


def test_map_task_outside_a_workflow_is_a_loop() -> None:
    assert map_task(square)(x=[1, 2, 3]) == [1, 4, 9]


def test_calling_a_workflow_runs_it() -> None:
    assert sum_of_squares(n=3) == 5  # a real execution, recorded like any other
