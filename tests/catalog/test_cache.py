"""Task caching: hits across runs and processes, and every known way caches go wrong."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskfabric import Cache, File, task, workflow
from taskfabric.catalog import Catalog, cache_key, inputs_hash, interface_hash
from taskfabric.catalog import _catalog as catalog_module
from taskfabric.config import load_config
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine, load_object
from taskfabric.sdk import source_version
from taskfabric.storage import PackStore


@pytest.fixture
def engine() -> Any:
    with Engine(load_config()) as eng:
        yield eng


def outputs(engine: Engine, wf: Any, result: Any) -> Any:
    assert result.succeeded, result.error
    return result.python_outputs(wf, engine.store, engine.work_root)


def cache_status(engine: Engine, execution_id: str) -> dict[str, str]:
    return {n.node_id: n.cache_status for n in engine.metadata.nodes(execution_id)}


CALLS: list[str] = []


@task(cache=True)
def slow_square(x: int) -> int:
    CALLS.append(f"square {x}")
    return x * x


@task(cache=Cache(version="1"))
def total(counts: dict[str, int]) -> int:
    CALLS.append("total")
    return sum(counts.values())


@task
def plain(x: int) -> int:
    return x


@workflow
def squares(x: int) -> int:
    return slow_square(x=plain(x=x))


def test_second_run_is_all_hits(engine: Engine) -> None:
    CALLS.clear()
    first = engine.launch(squares, {"x": 7})
    assert outputs(engine, squares, first) == 49
    assert cache_status(engine, first.execution_id) == {"n0": "disabled", "n1": "written"}
    second = engine.launch(squares, {"x": 7})
    assert outputs(engine, squares, second) == 49
    assert cache_status(engine, second.execution_id) == {"n0": "disabled", "n1": "hit"}
    assert CALLS == ["square 7"]
    node = next(n for n in engine.metadata.nodes(second.execution_id) if n.node_id == "n1")
    assert node.attempts == 0 and first.execution_id in node.message
    third = engine.launch(squares, {"x": 8})
    assert cache_status(engine, third.execution_id)["n1"] == "written"


def test_a_hit_is_an_event_its_row_records(engine: Engine) -> None:
    """A hit's success is its node row alone (no event row: a tenth of a hit's work), and
    `events` (`executions show --events`, the API) gives it among the others by time."""
    first = engine.launch(squares, {"x": 9})
    second = engine.launch(squares, {"x": 9})
    assert cache_status(engine, second.execution_id) == {"n0": "disabled", "n1": "hit"}
    with sqlite3.connect(engine.metadata.url.removeprefix("sqlite:///")) as db:
        stored = db.execute(
            "SELECT node_id, phase FROM events WHERE execution_id = ? ORDER BY id",
            (second.execution_id,),
        ).fetchall()
    # (a task node's plain transitions are its rows too: n0 ran, and has no event row)
    assert ("n1", "SUCCEEDED") not in stored and ("n0", "SUCCEEDED") not in stored
    events = engine.metadata.events(second.execution_id)
    assert [(e.phase, e.attempt) for e in events if e.node_id == "n0"] == [
        ("QUEUED", 0), ("RUNNING", 1), ("SUCCEEDED", 1)
    ]  # fmt: skip
    (hit,) = [e for e in events if e.node_id == "n1"]
    assert (hit.phase, hit.attempt) == ("SUCCEEDED", 0)
    assert first.execution_id in hit.message and hit.message.startswith("cache hit")
    assert [e.at for e in events] == sorted(e.at for e in events)
    n0 = [i for i, e in enumerate(events) if e.node_id == "n0" and e.phase == "SUCCEEDED"]
    assert n0 and n0[0] < events.index(hit)


def test_the_engine_keys_an_entry_as_cache_key_does(engine: Engine) -> None:
    """The engine hashes a task's fixed key parts once (the same digest as
    `catalog.cache_key`): an entry it writes is found under the key `cache_key` gives."""
    result = engine.launch(squares, {"x": 11})
    assert outputs(engine, squares, result) == 121
    execution = engine.metadata.get_execution(result.execution_id)
    assert execution is not None
    template = next(t for t in squares.compile().tasks if t.cache.enabled)
    inputs = types_pb2.LiteralMap()
    inputs.literals["x"].integer = 11
    key = cache_key(
        project=execution.project,
        domain=execution.domain,
        task_name=template.id.name,
        cache_version=template.cache.version,
        interface_hash=interface_hash(template.interface),
        inputs_hash=inputs_hash(inputs),
    )
    entry = Catalog(engine.metadata).get(key)
    assert entry is not None
    assert (entry.execution_id, entry.node_id) == (result.execution_id, "n1")


def test_a_hit_reads_what_the_entry_says(engine: Engine) -> None:
    """`Catalog.hit` (a cache hit's narrow read) gives the entry's outputs, inputs, origin
    and expiry, and a hit node records them."""
    first = engine.launch(squares, {"x": 12})
    second = engine.launch(squares, {"x": 12})
    assert outputs(engine, squares, second) == 144
    catalog = Catalog(engine.metadata)
    (entry,) = [e for e in catalog.list(limit=1000) if e.execution_id == first.execution_id]
    hit = catalog.hit(entry.key)
    assert hit is not None
    assert hit == (entry.outputs_uri, entry.inputs_uri, entry.execution_id, entry.expires_at)
    assert hit.inputs_uri and not hit.expired(time.time())
    assert catalog.hit("0" * 64) is None
    node = next(n for n in engine.metadata.nodes(second.execution_id) if n.node_id == "n1")
    assert (node.cache_status, node.outputs_uri, node.inputs_uri) == (
        "hit",
        hit.outputs_uri,
        hit.inputs_uri,
    )


def test_hits_read_one_snapshot_until_the_turn_ends(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hits of one turn of the loop read in one read transaction (`Catalog.hit`):
    another process's commit is seen once it ends (`end_reads`, or `READ_AT_MOST` after
    it began); `get` always reads the latest commit."""
    first = engine.launch(squares, {"x": 13})
    catalog = Catalog(engine.metadata)
    (entry,) = [e for e in catalog.list(limit=1000) if e.execution_id == first.execution_id]
    assert catalog.hit(entry.key) is not None
    other = Catalog(engine.metadata.engine)  # another connection, as another process's
    other.put(dataclasses.replace(entry, execution_id="e-other"))
    same_turn = catalog.hit(entry.key)
    assert same_turn is not None and same_turn.execution_id == first.execution_id
    catalog.end_reads()
    after = catalog.hit(entry.key)
    assert after is not None and after.execution_id == "e-other"
    other.delete(entry.key)
    assert catalog.get(entry.key) is None
    other.put(entry)
    monkeypatch.setattr(catalog_module, "READ_AT_MOST", 0.0)
    assert catalog.hit(entry.key) is not None
    other.delete(entry.key)
    assert catalog.hit(entry.key) is None  # the transaction was too old: a new one
    catalog.close()
    other.close()


@task(cache=True)
def cached_echo(x: int) -> int:
    CALLS.append(f"echo {x}")
    return x


@workflow
def echo_twice(x: int) -> int:
    return cached_echo(x=plain(x=cached_echo(x=x)))


def test_a_later_turn_hits_what_an_earlier_one_wrote(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine ends the read transaction of its cache hits with each turn: the second
    node of the same task and inputs, started in a later turn, hits the entry the first
    one wrote (in the same execution), however long a transaction may otherwise last."""
    monkeypatch.setattr(catalog_module, "READ_AT_MOST", 3600.0)
    CALLS.clear()
    result = engine.launch(echo_twice, {"x": 21})
    assert outputs(engine, echo_twice, result) == 21
    assert CALLS == ["echo 21"]
    assert cache_status(engine, result.execution_id) == {
        "n0": "written",
        "n1": "disabled",
        "n2": "hit",
    }


_RUN_AND_LIST_MODULES = """
import json, sys
from taskfabric.config import load_config
from taskfabric.engine import Engine, load_object
wf = load_object(sys.argv[1])[0]
with Engine(load_config()) as engine:
    phases = [engine.launch(wf, {"x": x}).phase for x in (1, int(sys.argv[2]))]
print(json.dumps({"phases": phases, "sqlalchemy": "sqlalchemy" in sys.modules}))
"""


def test_a_cached_run_on_a_sqlite_file_never_imports_sqlalchemy(tmp_path: Path) -> None:
    """On the plain SQLite file of the default config, cache hits read through a sqlite3
    connection of the catalog's own and entries are written with the run's records: a run
    on a database made before (its schema is SQLAlchemy's and Alembic's to make) imports no
    SQLAlchemy, whether its cached tasks hit or miss."""
    flow = tmp_path / "cached_flow.py"
    flow.write_text(textwrap.dedent(MODULE_V1))

    def run(second: int) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", _RUN_AND_LIST_MODULES, f"{flow}:wf", str(second)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return found

    assert run(1)["phases"] == ["SUCCEEDED", "SUCCEEDED"]  # makes the database
    again = run(2)  # x=1 hits, x=2 misses and writes its entry
    assert again == {"phases": ["SUCCEEDED", "SUCCEEDED"], "sqlalchemy": False}


@task(cache=True)
def cached_double(x: int) -> int:
    return 2 * x


@workflow
def doubles(x: int) -> int:
    return cached_double(x=cached_double(x=x))


def test_an_all_hit_execution_writes_one_pack_segment(engine: Engine) -> None:
    """A launch's inputs and workflow go to the segment of the loop's own documents,
    written before the execution's row names them: an execution whose nodes are all hits
    makes one segment file, and its documents read back from any process."""
    assert outputs(engine, doubles, engine.launch(doubles, {"x": 5})) == 20
    seen: list[tuple[str, ...]] = []

    def on_start(execution_id: str) -> None:
        rec = engine.metadata.get_execution(execution_id)
        assert rec is not None
        fresh = PackStore(engine.store)  # another process's view: only what is on disk
        inputs = types_pb2.LiteralMap.FromString(fresh.get(rec.inputs_uri))
        assert inputs.literals["x"].integer == 5
        # (encoded once per compiled workflow: the same bytes each launch)
        assert fresh.get(rec.workflow_uri) == doubles.compile().SerializeToString(
            deterministic=True
        )
        seen.append((rec.inputs_uri, rec.workflow_uri))

    result = engine.launch(doubles, {"x": 5}, on_start=on_start)
    assert outputs(engine, doubles, result) == 20
    assert set(cache_status(engine, result.execution_id).values()) == {"hit"}
    packs = engine.store.local_path(engine.store.uri("executions", result.execution_id, "packs"))
    assert packs is not None
    (segment,) = packs.iterdir()
    rec = engine.metadata.get_execution(result.execution_id)
    assert rec is not None and seen == [(rec.inputs_uri, rec.workflow_uri)]
    assert {u.partition("#")[0] for u in (rec.inputs_uri, rec.workflow_uri, rec.outputs_uri)} == {
        segment.as_uri()
    }


def test_map_key_order_does_not_matter(engine: Engine) -> None:
    @workflow
    def wf(counts: dict[str, int]) -> int:
        return total(counts=counts)

    CALLS.clear()
    a = engine.launch(wf, {"counts": {"a": 1, "b": 2, "c": 3}})
    b = engine.launch(wf, {"counts": {"c": 3, "a": 1, "b": 2}})
    assert outputs(engine, wf, a) == outputs(engine, wf, b) == 6
    assert cache_status(engine, b.execution_id)["n0"] == "hit"
    assert CALLS == ["total"]


def test_files_are_keyed_by_content_not_path(engine: Engine, tmp_path: Path) -> None:
    @task(cache=True)
    def size(f: File) -> int:
        CALLS.append("size")
        return len(Path(f.path).read_bytes())

    @workflow
    def wf(f: File) -> int:
        return size(f=f)

    CALLS.clear()
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("hello")
    two.write_text("hello")
    engine.launch(wf, {"f": File(one)})
    same_content = engine.launch(wf, {"f": File(two)})
    assert cache_status(engine, same_content.execution_id)["n0"] == "hit"
    one.chmod(0o644)
    one.write_text("hello, world")  # same path, new content
    changed = engine.launch(wf, {"f": File(one)})
    assert cache_status(engine, changed.execution_id)["n0"] == "written"
    assert outputs(engine, wf, changed) == 12
    assert CALLS == ["size", "size"]


def test_deleted_output_blob_is_a_miss_that_repairs_the_entry(engine: Engine) -> None:
    @task(cache=True)
    def report(text: str) -> File:
        CALLS.append("report")
        f = File.new("r.txt")
        Path(f.path).write_text(text)
        return f

    @task
    def read(f: File) -> str:
        return Path(f.path).read_text()

    @workflow
    def wf(text: str) -> str:
        return read(f=report(text=text))

    CALLS.clear()
    first = engine.launch(wf, {"text": "v1"})
    assert outputs(engine, wf, first) == "v1"
    catalog = Catalog(engine.metadata.engine)
    (entry,) = catalog.list(task="report")
    out = engine.read_literals(entry.outputs_uri)
    assert out is not None
    blob = Path(engine.store.local_path(out.literals["o0"].blob.uri) or "")
    blob.chmod(0o644)
    blob.unlink()
    second = engine.launch(wf, {"text": "v1"})
    assert outputs(engine, wf, second) == "v1"
    assert cache_status(engine, second.execution_id)["n0"] == "written"
    (repaired,) = catalog.list(task="report")
    assert repaired.execution_id == second.execution_id
    third = engine.launch(wf, {"text": "v1"})
    assert cache_status(engine, third.execution_id)["n0"] == "hit"
    assert CALLS == ["report", "report"]


def test_ttl_expiry_and_ignored_inputs_and_overwrite(engine: Engine) -> None:
    @task(cache=Cache(version="v", ttl=0.3, ignored_inputs=["note"]))
    def f(x: int, note: str) -> int:
        CALLS.append(f"f {note}")
        return x

    @workflow
    def wf(x: int, note: str) -> int:
        return f(x=x, note=note)

    CALLS.clear()
    engine.launch(wf, {"x": 1, "note": "a"})
    hit = engine.launch(wf, {"x": 1, "note": "b"})  # note is not part of the key
    assert cache_status(engine, hit.execution_id)["n0"] == "hit"
    forced = engine.launch(wf, {"x": 1, "note": "c"}, overwrite_cache=True)
    assert cache_status(engine, forced.execution_id)["n0"] == "written"
    time.sleep(0.35)
    expired = engine.launch(wf, {"x": 1, "note": "d"})
    assert cache_status(engine, expired.execution_id)["n0"] == "written"
    assert CALLS == ["f a", "f c", "f d"]


MODULE_V1 = """
from taskfabric import task, workflow

def helper(x):
    return x + 1

@task(cache=True)
def compute(x: int) -> int:
    return helper(x) * 10

@workflow
def wf(x: int) -> int:
    return compute(x=x)
"""


def _load(path: Path, source: str) -> Any:
    path.write_text(textwrap.dedent(source))
    sys.modules.pop(path.stem, None)
    importlib.invalidate_caches()
    return load_object(f"{path}:wf")[0]


def test_editing_the_code_invalidates(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "cached_mod.py"
    wf = _load(path, MODULE_V1)
    first = engine.launch(wf, {"x": 1})
    assert outputs(engine, wf, first) == 20
    same = _load(path, MODULE_V1)
    assert cache_status(engine, engine.launch(same, {"x": 1}).execution_id)["n0"] == "hit"
    # comments and blank lines change nothing the code does: still a hit
    commented = _load(
        path, "# a comment\n\n" + MODULE_V1.replace("return x + 1", "return x + 1  # one more")
    )
    assert cache_status(engine, engine.launch(commented, {"x": 1}).execution_id)["n0"] == "hit"
    # an edit of a function the task calls in the same module
    edited = _load(path, MODULE_V1.replace("return x + 1", "return x + 2"))
    result = engine.launch(edited, {"x": 1})
    assert cache_status(engine, result.execution_id)["n0"] == "written"
    assert outputs(engine, edited, result) == 30
    # an edit of the task itself
    edited2 = _load(path, MODULE_V1.replace("* 10", "* 100"))
    result = engine.launch(edited2, {"x": 1})
    assert outputs(engine, edited2, result) == 200
    # a change of the interface (output type) is a miss too, even with the same body
    retyped = _load(
        path,
        MODULE_V1.replace("-> int:\n    return helper", "-> float:\n    return helper").replace(
            "def wf(x: int) -> int", "def wf(x: int) -> float"
        ),
    )
    result = engine.launch(retyped, {"x": 1})
    assert cache_status(engine, result.execution_id)["n0"] == "written"
    sys.modules.pop("cached_mod", None)


def test_source_version_covers_same_module_helpers_only() -> None:
    assert source_version(slow_square.function).startswith("auto-")
    assert source_version(slow_square.function) == source_version(slow_square.function)
    assert source_version(slow_square.function) != source_version(total.function)


RACE_WF = """
import os, time
from pathlib import Path
from taskfabric import Cache, task, workflow

@task(cache=Cache(version="1", serialize=True))
def expensive(x: int) -> int:
    with open(os.environ["RACE_LOG"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    return x * 3

@workflow
def wf(x: int) -> int:
    return expensive(x=x)
"""


@pytest.mark.slow
def test_two_processes_racing_for_one_entry_compute_it_once(tmp_path: Path) -> None:
    wf_file = tmp_path / "race_wf.py"
    wf_file.write_text(RACE_WF)
    log = tmp_path / "race.log"
    env = dict(os.environ, RACE_LOG=str(log), PYTHONPATH=os.pathsep.join(sys.path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "taskfabric.cli", "run", f"{wf_file}:wf", "--x", "14"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "o0 = 42" in out
    assert len(log.read_text().split()) == 1  # computed once; the other waited and took it
    # and a third process gets a plain hit
    third = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "run", f"{wf_file}:wf", "--x", "14"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "o0 = 42" in third.stdout
    assert len(log.read_text().split()) == 1


def test_a_dead_reservation_is_taken_over(engine: Engine) -> None:
    catalog = Catalog(engine.metadata.engine)
    now = time.time()
    assert catalog.reserve("k", "dead-owner", ttl=5, now=now) == "dead-owner"
    assert catalog.reserve("k", "me", ttl=5, now=now + 1) == "dead-owner"
    assert catalog.reserve("k", "me", ttl=5, now=now + 6) == "me"  # expired: taken over
    assert catalog.reserve("k", "dead-owner", ttl=5, now=now + 7) == "me"
