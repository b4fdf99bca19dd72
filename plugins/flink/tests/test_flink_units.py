"""The parts of taskfabric-flink that need no JVM: the task config and its errors, the
client's arguments, the root cause of failures, the backends' settings."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment, TableEnvironment

from taskfabric import task
from taskfabric.errors import TaskfabricError
from taskfabric_flink import Flink
from taskfabric_flink._backends import FlinkClusterSettings, job_ids_in_log
from taskfabric_flink._config import merged_conf
from taskfabric_flink._environment import client_environment, job_name, submit_args
from taskfabric_flink._errors import root_cause, user_frames
from taskfabric_flink._pool import ClusterPool
from taskfabric_flink._rest import FlinkRest, FlinkRestError
from taskfabric_flink._watch import ClusterView, LiveJobs, job_links


def test_the_task_config_merges_over_the_backend_and_shortcuts_win() -> None:
    config = Flink(
        conf={
            "parallelism.default": 8,
            "state.backend.type": "rocksdb",
            "pipeline.object-reuse": True,
        },
        parallelism=2,
        runtime_mode="batch",
        checkpoint_interval_ms=5000,
    )
    merged = merged_conf(
        {"parallelism.default": "4", "taskmanager.memory.process.size": "1g"}, config
    )
    assert merged == {
        "parallelism.default": "2",
        "state.backend.type": "rocksdb",
        "pipeline.object-reuse": "true",
        "execution.runtime-mode": "BATCH",
        "execution.checkpointing.interval": "5000 ms",
        "taskmanager.memory.process.size": "1g",
    }
    restored = Flink.from_proto(config.to_proto())
    assert restored == config


def test_a_bad_config_is_reported_by_task_with_every_problem_and_the_fix() -> None:
    with pytest.raises(TaskfabricError) as caught:

        @task(
            config=Flink(
                conf={"pipeline.name": "mine", "parallelism": 3, "x.y": [1, 2]},
                runtime_mode="MICRO",
            )
        )
        def bad() -> None: ...

    message = str(caught.value)
    assert "bad" in message
    assert "conf['pipeline.name'] cannot be set here: taskfabric names every job" in message
    assert "Flink conf['parallelism']: a Flink option is a dotted key" in message
    assert "conf['x.y'] is a list: Flink options are strings, numbers or booleans" in message
    assert "runtime_mode='MICRO': write 'BATCH' or 'STREAMING'" in message


def test_an_unknown_argument_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Flink\(\) has no argument 'paralellism'; its arguments"):
        Flink(paralellism=2).flink_conf()  # type: ignore[call-arg]


def test_the_client_environment_points_the_gateway_at_the_target(tmp_path: Path) -> None:
    python = str(tmp_path / "venv" / "bin" / "python")
    env = client_environment(
        {"PATH": "/usr/bin"}, ["-m", "127.0.0.1:8081"], {"a.b": "x y"}, "e1/n0/1", python
    )
    args = shlex.split(env["SUBMIT_ARGS"])
    assert args[:3] == ["remote", "-m", "127.0.0.1:8081"]
    assert "-Da.b=x y" in args
    assert f"-Dpipeline.name={job_name('e1/n0/1')}" in args
    assert f"-Dpython.executable={python}" in args
    assert env["PATH"].split(":")[0] == str(tmp_path / "venv" / "bin")
    assert submit_args(["-t", "local"], {}) == "remote -t local"


def test_job_ids_are_read_from_the_client_log(tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    a, b = "0" * 31 + "a", "f" * 32
    log.write_text(
        f"x\nJob has been submitted with JobID {a}\nJob has been submitted with JobID {b}\n"
    )
    assert job_ids_in_log(log) == [a, b]
    assert job_ids_in_log(tmp_path / "none.log") == []


def test_the_cluster_settings_check_the_rest_url() -> None:
    with pytest.raises(
        ValidationError, match="is not the http\\(s\\) URL of a Flink REST endpoint"
    ):
        FlinkClusterSettings(rest_url="127.0.0.1:8081")
    assert FlinkClusterSettings(rest_url="http://h:8081/").rest_url == "http://h:8081"


JAVA_ONLY = """\
py4j.protocol.Py4JJavaError: An error occurred while calling o12.executeSql.
: org.apache.flink.table.api.TableException: Failed to execute sql
\tat org.apache.flink.table.api.internal.TableEnvironmentImpl.executeInternal(T.java:1)
Caused by: org.apache.flink.runtime.client.JobExecutionException: Job execution failed.
\tat org.apache.flink.runtime.jobmaster.JobResult.toJobExecutionResult(JobResult.java:144)
Caused by: java.io.FileNotFoundException: /no/such/file (No such file or directory)
\tat java.base/java.io.FileInputStream.open0(Native Method)
"""


def test_the_root_cause_of_a_java_failure_is_its_deepest_real_cause() -> None:
    found = root_cause(JAVA_ONLY)
    assert found is not None
    assert found[0] == "FileNotFoundException"
    assert found[1] == "java.io.FileNotFoundException: /no/such/file (No such file or directory)"


def test_a_udf_workers_traceback_keeps_the_users_frames() -> None:
    frames = (
        '  File "apache_beam/runners/worker/operations.py", line 567, in output\n'
        '  File "/venv/lib/python3.11/site-packages/pyflink/fn_execution/x.py", line 3, in f\n'
        '  File "<string>", line 1, in <lambda>\n'
        '  File "/home/me/jobs.py", line 9, in ratio\n'
        "    return x / 0\n"
    )
    assert user_frames(frames) == '  File "/home/me/jobs.py", line 9, in ratio\n    return x / 0'


def test_the_environments_a_function_takes_are_not_inputs() -> None:
    @task(config=Flink(parallelism=2))
    def build(
        env: StreamExecutionEnvironment,
        n: int,
        t_env: TableEnvironment,
        st_env: StreamTableEnvironment,
    ) -> int:
        return n

    assert list(build.interface.inputs) == ["n"]
    assert build.interface.context == {
        "env": StreamExecutionEnvironment,
        "t_env": TableEnvironment,
        "st_env": StreamTableEnvironment,
    }
    # Without Flink(...) the task type passes nothing: the parameter is an unsupported input.
    with pytest.raises(TaskfabricError, match="parameter 'env'"):

        @task
        def plain(env: StreamExecutionEnvironment) -> None: ...


class _FakeRest(FlinkRest):
    """The answers of a cluster's REST API, without a cluster."""

    def __init__(self, total: int, jobs: list[dict[str, Any]], slots: dict[str, int]) -> None:
        super().__init__("http://127.0.0.1:1")
        self.total, self.listed, self.slots = total, jobs, slots
        self.down = False

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if self.down:
            raise FlinkRestError(f"{method} {path}: connection refused")
        if path == "/overview":
            return {"slots-total": self.total, "slots-available": 0}
        if path == "/jobs/overview":
            return {"jobs": self.listed}
        jid = path.rsplit("/", 1)[1]
        return {"vertices": [{"parallelism": 1}, {"parallelism": self.slots[jid]}]}


def test_a_sized_pool_leaves_out_the_margin_and_the_jobs_taskfabric_did_not_submit() -> None:
    rest = _FakeRest(
        8,
        [
            {"jid": "a", "name": "taskfabric-ex/n0/1", "state": "RUNNING"},  # the pool's own
            {"jid": "b", "name": "nightly-etl", "state": "RUNNING"},  # 3 slots
            {"jid": "c", "name": "adhoc", "state": "FINISHED"},  # ended
            {"jid": "d", "name": "adhoc", "state": "CREATED"},  # 2 slots, being scheduled
        ],
        {"a": 4, "b": 3, "d": 2},
    )
    set_to: list[tuple[str, int | None]] = []
    sized = ClusterPool(
        "flink", "slots", rest, margin=1, every=60, set_capacity=lambda *a: set_to.append(a)
    )
    assert sized.refresh() == 8 - 1 - 3 - 2
    rest.listed = rest.listed[:1]
    assert sized.refresh() == 7
    rest.down = True
    assert sized.refresh() == 0  # a cluster that does not answer runs nothing
    assert set_to == [("slots", 2), ("slots", 7), ("slots", 0)]
    rest.down, rest.total = False, 1
    assert ClusterPool("f", "slots", rest, margin=3, every=60, set_capacity=print).read() == 0


def test_a_pool_sized_from_the_cluster_needs_a_pool() -> None:
    with pytest.raises(ValidationError, match="no `pool` is set"):
        FlinkClusterSettings(rest_url="http://127.0.0.1:8081", pool_refresh_seconds=5)
    settings = FlinkClusterSettings(
        rest_url="http://127.0.0.1:8081", pool="slots", pool_refresh_seconds=5, pool_margin=1
    )
    assert (settings.pool_refresh_seconds, settings.pool_margin) == (5, 1)


def test_the_jobs_of_a_running_attempt_come_from_the_rest_api() -> None:
    from taskfabric.core.v1 import tasks_pb2, types_pb2
    from taskfabric.plugin_api import TaskAttempt

    notified: list[str] = []
    attempt = TaskAttempt(
        "ex/n0/1", "ex", "n0", 1, tasks_pb2.TaskTemplate(), types_pb2.LiteralMap(), "", "", "",
        notified.append,
    )  # fmt: skip
    rest = _FakeRest(4, [], {})
    live = LiveJobs("flink", rest, every=60)
    live.watch(attempt)
    assert live.view("ex/n0/1") == ClusterView()
    assert "not read yet" in ClusterView().message()
    live.refresh()
    view = live.view("ex/n0/1")
    assert view is not None and view.read and not view.jobs and notified == ["ex/n0/1"]
    assert view.message().endswith("no job of it on the cluster yet")
    rest.listed = [
        {"jid": "j2", "name": "taskfabric-ex/n0/1", "state": "RUNNING", "start-time": 2},
        {"jid": "j1", "name": "taskfabric-ex/n0/1", "state": "FINISHED", "start-time": 1},
        {"jid": "x", "name": "taskfabric-ex/n1/1", "state": "RUNNING", "start-time": 1},
    ]
    live.refresh()
    live.refresh()  # nothing changed: notified once
    view = live.view("ex/n0/1")
    assert view is not None and view.jobs == (("j1", "FINISHED"), ("j2", "RUNNING"))
    assert view.message() == "Flink jobs on the cluster: j1 FINISHED, j2 RUNNING"
    assert notified == ["ex/n0/1"] * 2
    assert [link.uri for link in job_links("http://jm", list(view.jobs))] == [
        "http://jm/#/job/completed/j1",
        "http://jm/#/job/running/j2",
    ]
    rest.down = True
    live.refresh()
    view = live.view("ex/n0/1")
    assert view is not None and view.jobs[1] == ("j2", "RUNNING")  # the last seen stay
    assert view.message().startswith("the Flink REST API does not answer")
    live.forget("ex/n0/1")
    assert live.view("ex/n0/1") is None
    live.close()
