"""`[engine] max_output_bytes`: a task whose outputs are larger fails with `OutputsTooLarge`
(a user error, not retried) and the engine does not read them, on a backend that runs the
task in the engine's process, in a process of its own and in a sandbox. The API reads no
stored document over `[server] max_value_bytes` (the test of that is in tests/server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.sdk import map_task, task, workflow
from taskfabric.testing._harness import config_text, launch


@task(retries=2)
def text_of(n: int) -> str:
    return "x" * n


@workflow
def sized(n: int) -> int:
    return len_of(s=text_of(n=n))


@task
def len_of(s: str) -> int:
    return len(s)


@pytest.fixture(params=["local", "subprocess", "sandbox"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "taskfabric.toml"
    text = config_text(
        data_root=tmp_path / "data",
        backend={"driver": request.param},
        task_type="python",
        parallelism=2,
    )
    path.write_text(text.replace("[engine]\n", "[engine]\nmax_output_bytes = 4096\n"))
    with use_plugins(Plugins(autoload=False)):
        found = Engine(load_config(path))
        yield found
        found.close()


def test_outputs_over_the_limit_fail_the_attempt_once(engine: Engine) -> None:
    result = launch(engine, sized, {"n": 100_000}, task_type="python", deadline=120)
    assert result.phase == "FAILED", result
    error: dict[str, Any] = dict(result.error or {})
    assert error["code"] == "OutputsTooLarge", error
    assert (
        "more than the 4096 bytes an attempt's outputs may be ([engine] max_output_bytes)"
        in (error["message"])
    ), error
    assert "return large data as a File, Directory or DataFrame" in error["message"]
    attempts = engine.metadata.attempts(result.execution_id)
    assert [a.attempt for a in attempts] == [1], "a too-large output is not retried"


def test_outputs_within_the_limit_pass(engine: Engine) -> None:
    result = launch(engine, sized, {"n": 3000}, task_type="python", deadline=120)
    assert result.phase == "SUCCEEDED", result
    assert result.outputs is not None and result.outputs.literals["o0"].integer == 3000


def test_a_sandbox_does_not_read_outputs_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox backend copies an attempt's outputs to the store only after reading them:
    a document over the limit is refused by its size, never read into the engine."""
    from taskfabric.backends import _sandbox

    read: list[str] = []
    real = _sandbox.read_regular

    def spy(path: Path, limit: int = 1 << 30) -> bytes | None:
        read.append(path.name)
        return real(path, limit)

    monkeypatch.setattr(_sandbox, "read_regular", spy)
    path = tmp_path / "taskfabric.toml"
    text = config_text(
        data_root=tmp_path / "data",
        backend={"driver": "sandbox"},
        task_type="python",
        parallelism=1,
    )
    path.write_text(text.replace("[engine]\n", "[engine]\nmax_output_bytes = 4096\n"))
    with use_plugins(Plugins(autoload=False)), Engine(load_config(path)) as engine:
        result = launch(engine, sized, {"n": 100_000}, task_type="python", deadline=120)
    assert result.phase == "FAILED" and result.error is not None
    assert dict(result.error)["code"] == "OutputsTooLarge"
    assert "outputs.pb" not in read, read


@task
def word(n: int) -> str:
    return "y" * n


@task
def total_len(words: list[str]) -> int:
    return sum(len(w) for w in words)


@workflow
def gathered(sizes: list[int]) -> int:
    return total_len(words=map_task(word)(n=sizes))


def _local_engine(tmp_path: Path, parallelism: int) -> Engine:
    path = tmp_path / "taskfabric.toml"
    text = config_text(
        data_root=tmp_path / "data",
        backend={"driver": "local"},
        task_type="python",
        parallelism=parallelism,
    )
    path.write_text(text.replace("[engine]\n", "[engine]\nmax_output_bytes = 4096\n"))
    return Engine(load_config(path))


def test_a_maps_gathered_outputs_over_the_limit_fail_the_map(tmp_path: Path) -> None:
    """Each item's outputs are under the limit, the map's list of them is not: the map fails
    with `OutputsTooLarge` once the gathered bytes pass the limit (not after gathering them
    all), its queued items are not run, and nothing is retried."""
    with use_plugins(Plugins(autoload=False)), _local_engine(tmp_path, 1) as engine:
        result = launch(engine, gathered, {"sizes": [1000] * 40}, task_type="python", deadline=120)
        attempts = engine.metadata.attempts(result.execution_id)
    assert result.phase == "FAILED", result
    error: dict[str, Any] = dict(result.error or {})
    assert error["code"] == "OutputsTooLarge", error
    message = error["message"]
    assert "gathered" in message and "of its 40 items" in message, message
    assert "more than the 4096 bytes a node's outputs may be ([engine] max_output_bytes)" in (
        message
    )
    assert "have each item return large data as a File" in message
    ran = [a for a in attempts if a.node_id.startswith("n0[")]
    # 4 items of ~1,000 bytes pass 4,096: one at a time, the fifth is never started
    assert 4 <= len(ran) <= 5, [a.node_id for a in ran]
    assert not [a for a in attempts if a.node_id == "n1"], "the reduce does not run"
    assert all(a.attempt == 1 for a in attempts)


def test_a_maps_gathered_outputs_within_the_limit_pass(tmp_path: Path) -> None:
    with use_plugins(Plugins(autoload=False)), _local_engine(tmp_path, 2) as engine:
        result = launch(engine, gathered, {"sizes": [100] * 30}, task_type="python", deadline=120)
    assert result.phase == "SUCCEEDED", result
    assert result.outputs is not None and result.outputs.literals["o0"].integer == 3000
