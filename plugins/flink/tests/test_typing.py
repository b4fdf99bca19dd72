"""Flink tasks type-check as users write them: mypy --strict (the repository's settings) finds
no error in a workflow that passes a task its inputs only, the environment parameters having
the default `FROM_ATTEMPT`, and still reports a real type error in such a call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--no-error-summary", "--show-error-codes", *map(str, files)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )  # fmt: skip


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> str:
    """mypy's report on the example, and on a copy with a wrong call: one run for both."""
    folder = tmp_path_factory.mktemp("typed")
    wrong = folder / "typed_wrong.py"
    wrong.write_text(
        (HERE / "typed_workflow.py").read_text(encoding="utf-8")
        + "\n\n@workflow\ndef wrong() -> int:\n    return total(values=squares(n='four'))\n",
        encoding="utf-8",
    )
    done = _mypy(HERE / "typed_workflow.py", wrong)
    assert "error: " in done.stdout or done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_workflow_that_passes_the_inputs_only_type_checks(checked: str) -> None:
    assert "typed_workflow.py" not in checked, checked


def test_a_wrong_argument_is_still_reported(checked: str) -> None:
    errors = [line for line in checked.splitlines() if "typed_wrong.py" in line]
    assert len(errors) == 1, checked
    assert 'Argument "n" to "__call__" of "TaskDefinition" has incompatible type "str"' in errors[0]
    assert "[arg-type]" in errors[0]


def test_the_environments_with_a_default_are_still_given_by_the_task_type() -> None:
    import typed_workflow

    from taskfabric_flink import FROM_ATTEMPT, FlinkEnvironmentError

    assert list(typed_workflow.total.interface.inputs) == ["values"]
    assert sorted(typed_workflow.total.interface.context) == ["env", "t_env"]
    assert list(typed_workflow.squares.interface.inputs) == ["n"]
    assert repr(FROM_ATTEMPT) == "FROM_ATTEMPT"
    # Called by hand without an environment: a clear error, not an AttributeError.
    with pytest.raises(FlinkEnvironmentError, match=r"asked for .from_elements\): .* pass one"):
        typed_workflow.squares(3)
