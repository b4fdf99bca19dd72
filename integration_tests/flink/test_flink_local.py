"""The flink-local backend: each attempt's jobs on a mini-cluster in the attempt's own
client process (one gateway JVM per Flink attempt, so this module runs few)."""

from __future__ import annotations

import flink_jobs
import flink_orders

from taskfabric.engine import Engine


def test_a_dataframe_goes_from_python_through_flink_and_back(local_engine: Engine) -> None:
    result = local_engine.launch(flink_orders.orders_report, {"n": 9})
    assert result.phase == "SUCCEEDED", result.error
    # amounts 0..8, regions by i % 3: north gets 2 + 5 + 8 = 15, taxed by the UDF: 18.75.
    assert result.python_outputs(flink_orders.orders_report, local_engine.store) == "north:18.75:3"
    # The Flink task's Table output is a dataframe literal with the Table's column types.
    from taskfabric.core.v1 import types_pb2

    nodes = {n.node_id: n for n in local_engine.metadata.nodes(result.execution_id)}
    outputs = types_pb2.LiteralMap()
    outputs.ParseFromString(local_engine.literals.get(nodes["n1"].outputs_uri))
    frame = outputs.literals["o0"].dataframe
    assert frame.type.format == "parquet"
    assert [c.name for c in frame.type.columns] == ["region", "total", "orders"]
    assert frame.uri.endswith(".parquet"), frame.uri


def test_a_list_goes_in_by_collection_and_a_data_stream_comes_back(local_engine: Engine) -> None:
    result = local_engine.launch(flink_jobs.doubling, {"values": [3, 1, 2]})
    assert result.phase == "SUCCEEDED", result.error
    assert sorted(result.python_outputs(flink_jobs.doubling, local_engine.store)) == [2, 4, 6]


def test_the_function_receives_its_environments_configured_by_task_over_backend(
    engine_with_defaults: Engine,
) -> None:
    result = engine_with_defaults.launch(flink_jobs.received_environments, {"n": 5})
    assert result.phase == "SUCCEEDED", result.error
    got = result.python_outputs(flink_jobs.received_environments, engine_with_defaults.store)
    # parallelism: the task's 3 over the backend's 2; the checkpoint interval and the max
    # parallelism from the task; the watermark interval from the backend; Flink's default mode;
    # 5 rows of a stream read as a table; the same environment as stream_env().
    assert got == ["3", "2000", "64", "300 ms", "STREAMING", "5", "True"]
    # The environments are not inputs: the workflow passed only n.
    assert list(flink_jobs.environments.interface.inputs) == ["n"]
