"""A finished run lets its graph go by reference counting: its nodes and their scope refer
to each other, and left to the cyclic collector a chain of 100 nodes was some 740 objects a
launch (its inputs and outputs among them) that every young collection walked again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from taskfabric import task, workflow
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.engine._state import NodeState


@task
def inc(x: int) -> int:
    return x + 1


@workflow
def chain(x: int) -> int:
    for _ in range(5):
        x = inc(x=x)
    return x


@pytest.fixture
def collected_by_hand() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.usefixtures("collected_by_hand")
def test_a_finished_run_leaves_no_node_to_the_collector(engine: Engine) -> None:
    assert engine.launch(chain, {"x": 1}).succeeded
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    nodes = [o for o in gc.garbage if isinstance(o, NodeState)]
    maps = [o for o in gc.garbage if isinstance(o, types_pb2.LiteralMap)]
    assert not nodes, f"{len(nodes)} nodes left to the cyclic collector"
    assert len(maps) <= 2, maps  # the execution's own inputs and outputs (the runner's)
