"""The user docs are true: their code samples are the files in docs/examples, and those run.

A fenced ```python (or ```toml) block of docs/*.md whose first line is `# docs/examples/NAME`
must be identical to that file. Each example's workflow then runs on the real engine, and the
outputs, errors and command-line output that the docs show are checked against what it does.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import taskfabric
from taskfabric import CompilationError, File
from taskfabric.cli import cli
from taskfabric.config import (
    ConfigError,
    EngineConfig,
    LoggingConfig,
    MetadataConfig,
    ProjectConfig,
    StorageConfig,
    load_config,
)
from taskfabric.engine import Engine, ExecutionResult, load_object

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
HEADER = re.compile(r"^# docs/examples/(\S+)$")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: A python block longer than this must be an example file, so that a test runs it.
MAX_UNTESTED_LINES = 12
#: The pages these tests hold to that rule (and check links and snippets of).
USER_DOCS = ("quickstart.md", "types.md", "configuration.md", "architecture.md")


def doc_text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def blocks() -> Iterator[tuple[str, str, str]]:
    """(doc name, language, body) of every fenced block of docs/*.md."""
    for doc in sorted(DOCS.glob("*.md")):
        for match in FENCE.finditer(doc.read_text(encoding="utf-8")):
            yield doc.name, match.group(1), match.group(2)


def example_blocks() -> list[tuple[str, str, str]]:
    """(doc name, example file name, body) of every block that quotes an example file."""
    found = []
    for doc, _, body in blocks():
        header = HEADER.match(body.split("\n", 1)[0])
        if header:
            found.append((doc, header.group(1), body))
    return found


def text_block_after(doc: str, marker: str) -> str:
    """The body of the first ```text block after `marker` in `doc`."""
    text = doc_text(doc)
    start = text.index(marker)
    for match in FENCE.finditer(text):
        if match.start() > start and match.group(1) == "text":
            return match.group(2)
    raise AssertionError(f"no text block after {marker!r} in {doc}")


# -- the docs quote the example files verbatim ----------------------------------------------


@pytest.mark.parametrize(("doc", "name", "body"), example_blocks(), ids=lambda v: str(v)[:40])
def test_block_is_identical_to_its_example_file(doc: str, name: str, body: str) -> None:
    path = EXAMPLES / name
    assert path.is_file(), f"{doc} quotes docs/examples/{name}, which does not exist"
    assert body == path.read_text(encoding="utf-8"), (
        f"the block of {doc} that starts with `# docs/examples/{name}` differs from the file: "
        "copy the file into the block (or the block into the file)"
    )


def test_every_example_file_is_quoted_in_the_docs() -> None:
    quoted = {name for _, name, _ in example_blocks()}
    files = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".toml")}
    assert files == quoted


def test_long_python_samples_are_example_files() -> None:
    for doc, language, body in blocks():
        if doc not in USER_DOCS:
            continue
        if language == "python" and not HEADER.match(body.split("\n", 1)[0]):
            lines = body.count("\n")
            assert lines <= MAX_UNTESTED_LINES, (
                f"{doc} has a {lines}-line python sample that no test runs: move it to "
                "docs/examples/ and start the block with `# docs/examples/NAME.py`"
            )


# -- running the examples ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples() -> Iterator[dict[str, ModuleType]]:
    """The example modules, loaded the way `taskfabric run` loads them (by file)."""
    loaded: dict[str, ModuleType] = {}
    before = set(sys.modules)
    for path in sorted(EXAMPLES.glob("*.py")):
        if path.stem != "test_hello":
            module, _ = load_object(f"{path}:__name__")
            loaded[path.stem] = sys.modules[path.stem]
            assert module == path.stem
    yield loaded
    for name in set(sys.modules) - before:
        if name in loaded or name == "test_hello":
            del sys.modules[name]
    while str(EXAMPLES) in sys.path:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture
def engine() -> Iterator[Engine]:
    from taskfabric.config import PoolConfig

    # The examples' `geo-api` pool, as docs/examples/pools.toml declares pools.
    config = load_config().model_copy(update={"pools": {"geo-api": PoolConfig(slots=4)}})
    with Engine(config) as eng:
        yield eng


def outputs(engine: Engine, wf: Any, result: ExecutionResult) -> Any:
    assert result.phase == "SUCCEEDED", result.error
    return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)


def nodes(engine: Engine, result: ExecutionResult) -> dict[str, Any]:
    return {n.node_id: n for n in engine.metadata.nodes(result.execution_id)}


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(REPO)  # the docs show paths relative to the repository
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_hello(examples: dict[str, ModuleType], engine: Engine) -> None:
    hello = examples["hello"]
    result = engine.launch(hello.sum_of_squares, {"n": 100})
    assert outputs(engine, hello.sum_of_squares, result) == 328350
    recorded = nodes(engine, result)
    assert recorded["n1"].kind == "map" and recorded["n1[3]"].kind == "map_item"
    assert len([n for n in recorded if n.startswith("n1[")]) == 100
    # docs/architecture.md: small documents are packed records of per-execution segments
    record = engine.metadata.get_execution(result.execution_id)
    assert record is not None
    packed = re.compile(
        rf"^file:///.*/executions/{result.execution_id}/packs/[^/]+\.pack#\d+\+\d+$"
    )
    for uri in (
        record.inputs_uri,
        record.workflow_uri,
        record.outputs_uri,
        recorded["n0"].inputs_uri,
        recorded["n1[3]"].outputs_uri,
    ):
        assert packed.match(uri), uri
    assert "packs/<segment>.pack#<offset>+<length>" in doc_text("architecture.md")


def test_hello_on_the_command_line(
    examples: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    quickstart = doc_text("quickstart.md")
    code, out, _ = run_cli(
        monkeypatch, "run", "docs/examples/hello.py:sum_of_squares", "--n", "100"
    )
    assert code == 0 and out.strip() == "o0 = 328350"
    assert "o0 = 328350" in quickstart
    code, out, _ = run_cli(monkeypatch, "run", "docs/examples/hello.py:sum_of_squares", "--help")
    assert code == 0
    shown = text_block_after("quickstart.md", "`--help` lists them")
    for line in ("  Sum of the squares of 0 .. n-1.", "  --n INT  int (default: 10)"):
        assert line in shown and line in out.splitlines()
    code, out, _ = run_cli(monkeypatch, "executions", "list", "-o", "json")
    execution_id = json.loads(out)[0]["id"]
    code, out, _ = run_cli(monkeypatch, "executions", "show", execution_id[:4])
    assert code == 0
    shown = text_block_after("quickstart.md", "`show` prints")
    actual = [line.split() for line in out.splitlines()]
    for line in shown.splitlines():
        words = line.split()
        if words and (words[0] == "NODE" or re.fullmatch(r"n\d+", words[0])):
            # the node table: the same columns, and the same nodes, names, kinds and phases
            assert any(a[:4] == words[:4] for a in actual), line
            if words[0] == "NODE":
                assert words in actual
    code, _, err = run_cli(monkeypatch, "run", "docs/examples/hello.py:sum_of_squares", "--n", "x")
    assert code == 2
    assert "invalid value 'x' for type int: not an integer; expected e.g. 42" in err
    assert "invalid value 'abc' for type int: not an integer; expected e.g. 42" in quickstart


def test_unit_tests_of_the_quickstart_pass(examples: dict[str, ModuleType]) -> None:
    code = pytest.main([str(EXAMPLES / "test_hello.py"), "-q", "-p", "no:cacheprovider"])
    assert code == pytest.ExitCode.OK


def test_fanout(examples: dict[str, ModuleType], engine: Engine) -> None:
    fanout = examples["fanout"]
    result = engine.launch(fanout.sweep, {})
    assert outputs(engine, fanout.sweep, result) == pytest.approx(0.01)
    assert "`sweep()` returns `0.01`" in doc_text("quickstart.md")
    map_node = fanout.sweep.compile().primary.nodes[1]
    assert map_node.map.concurrency == 3 and list(map_node.map.mapped_inputs) == ["learning_rate"]
    assert len([n for n in nodes(engine, result) if n.startswith("n1[")]) == 6
    # outside a workflow, map_task is a loop that returns the outputs as lists
    fits = fanout.map_task(fanout.train)(learning_rate=[0.1, 0.01], epochs=10)
    assert fits.learning_rate == [0.1, 0.01] and len(fits.loss) == 2


def test_hold(examples: dict[str, ModuleType], engine: Engine) -> None:
    hold = examples["hold"]
    result = engine.launch(hold.geocode_all, {"n": 10, "size": 4})
    found = outputs(engine, hold.geocode_all, result)
    assert [len(batch) for batch in found] == [4, 4, 2] and found[2] == ["8 MAIN ST", "9 MAIN ST"]
    assert engine.pool_manager.status(["geo-api"])[0].in_use == 0  # every hold came back
    # outside a task there is no engine to ask: a clear error, as docs/pools.md says
    with pytest.raises(taskfabric.HoldError, match="only inside a running task"):
        hold.geocode_batch(addresses=["1 main st"])
    assert "only inside a running task" in doc_text("pools.md")


def test_branching(examples: dict[str, ModuleType], engine: Engine) -> None:
    wf = examples["branching"].process
    expected = {
        ("events", False): "events: processed on the cluster",
        ("users", False): "users: processed in memory",
        ("users", True): "users: processed on the cluster",
    }
    for (table, force), text in expected.items():
        result = engine.launch(wf, {"table": table, "force_cluster": force})
        assert outputs(engine, wf, result) == text
    assert 'returns `"users: processed in memory"`' in doc_text("quickstart.md")
    result = engine.launch(wf, {"table": "empty"})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "NoCaseHeld"
    assert result.error["message"] == "the table is empty or unknown"
    assert result.error["node_id"] == "n1"


def test_subworkflows(
    examples: dict[str, ModuleType], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = examples["subworkflows"].compare
    result = engine.launch(wf, {"left": "a,bb,ccc", "right": "dddd,ee"})
    assert outputs(engine, wf, result) == (2.0, 1.5)
    recorded = nodes(engine, result)
    assert recorded["n0"].kind == "workflow" and recorded["n1/n1"].name == "scale"
    code, out, _ = run_cli(
        monkeypatch,
        "run",
        "docs/examples/subworkflows.py:compare",
        "--left",
        "a,bb,ccc",
        "--right",
        "dddd,ee",
    )
    assert code == 0 and out.split() == ["o0", "=", "2.0", "o1", "=", "1.5"]
    assert "`o0 = 2.0` and `o1 = 1.5`" in doc_text("quickstart.md")


def test_task_settings_are_recorded_and_caching_works_as_documented(
    examples: dict[str, ModuleType], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = examples["task_settings"]
    template = settings.geocode.template()
    assert template.retry.retries == 3 and template.retry.initial_backoff.seconds == 2
    assert template.timeout.seconds == 300
    assert template.cache.enabled and template.cache.version == "2"
    assert list(template.cache.ignored_inputs) == ["verbose"]
    assert template.resources.requests.memory == "1Gi" and template.resources.limits.cpu == "2"
    assert [(p.pool, p.weight) for p in template.pools] == [("geo-api", 1)]
    counted = settings.count.template()
    assert counted.retry.retries == 2 and counted.retry.initial_backoff.seconds == 1
    assert counted.timeout.seconds == 30
    calls: list[list[str]] = []
    real = settings.geocode.function

    def counting(addresses: list[str], verbose: bool = False) -> list[str]:
        calls.append(addresses)
        return real(addresses, verbose)  # type: ignore[no-any-return]

    monkeypatch.setattr(settings.geocode, "function", counting)
    from taskfabric import workflow

    @workflow
    def loud(addresses: list[str]) -> list[str]:
        return settings.geocode(addresses=addresses, verbose=True)

    statuses = []
    for wf, overwrite in (
        (settings.geocode_all, False),
        (loud, False),  # `verbose` is an ignored input: the same key
        (settings.geocode_all, True),
    ):
        result = engine.launch(wf, {"addresses": [" main st "]}, overwrite_cache=overwrite)
        assert result.phase == "SUCCEEDED", result.error
        statuses.append(nodes(engine, result)["n0"].cache_status)
    assert statuses == ["written", "hit", "written"]
    assert len(calls) == 2


def test_bad_task_setting_fails_at_decoration() -> None:
    from taskfabric import TaskDefinitionError, task

    with pytest.raises(
        TaskDefinitionError, match=r"\.py:\d+: task '\S*fetch': retries must be >= 0 \(got -1\)"
    ):

        @task(retries=-1)
        def fetch(x: int) -> int:
            return x

    assert "task 'fetch': retries must be >= 0 (got -1)" in doc_text("quickstart.md")


def test_files(examples: dict[str, ModuleType], engine: Engine, tmp_path: Path) -> None:
    files = examples["files"]
    result = engine.launch(files.table_pipeline, {"rows": 10, "parts": 3})
    table, folder, rows = outputs(engine, files.table_pipeline, result)
    assert rows == 10
    assert table.format == "csv" and table.content_hash.startswith("sha256:")
    assert table.read_text().splitlines()[1] == "0,0"
    assert [p.name for p in folder] == ["part-0.csv", "part-1.csv", "part-2.csv"]
    quickstart = doc_text("quickstart.md")
    assert "table.read_text().splitlines()[1]  # '0,0'" in quickstart
    assert "# ['part-0.csv', 'part-1.csv', 'part-2.csv']" in quickstart
    with pytest.raises(PermissionError, match="stored blob and cannot be modified"):
        table.open("w")
    local = tmp_path / "numbers.csv"
    local.write_text("n,square\n" + "".join(f"{i},{i * i}\n" for i in range(5)))
    result = engine.launch(files.split_file, {"table": File(local)})
    assert outputs(engine, files.split_file, result) == 5


def test_compile_errors(
    examples: dict[str, ModuleType], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    compile_errors = examples["compile_errors"]
    monkeypatch.chdir(REPO)
    with pytest.raises(CompilationError) as caught:
        compile_errors.broken.compile()
    assert len(caught.value.issues) == 3
    shown = text_block_after("quickstart.md", "## Errors at compile time")
    assert "error: " + str(caught.value) in shown
    code, _, err = run_cli(
        monkeypatch,
        "run",
        "docs/examples/compile_errors.py:broken",
        "--words",
        '["a"]',
        "--total",
        "2",
    )
    assert code == 2 and "error: " + str(caught.value) in err
    result = engine.launch(compile_errors.fixed, {"words": ["a", "b"], "total": 4.0})
    assert outputs(engine, compile_errors.fixed, result) == 0.5
    # a constant int given to a float input is converted
    from taskfabric import workflow

    @workflow
    def constant(total: float) -> float:
        return compile_errors.share(part=3, whole=total)

    result = engine.launch(constant, {"total": 4.0})
    assert outputs(engine, constant, result) == 0.75


def test_resume_after_a_failure(
    examples: dict[str, ModuleType], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = examples["resume"].daily_report
    monkeypatch.delenv("REPORT_TOKEN", raising=False)
    failed = engine.launch(wf, {"day": "2024-05-01"})
    assert failed.phase == "FAILED" and failed.error is not None
    assert (failed.error["node_id"], failed.error["code"]) == ("n1", "RuntimeError")
    assert failed.error["message"] == "REPORT_TOKEN is not set"
    assert (
        'line 16, in publish\n    raise RuntimeError("REPORT_TOKEN is not set")'
        in (failed.error["traceback"])
    )
    assert 'resume.py", line 16, in publish' in doc_text("quickstart.md")
    monkeypatch.setenv("REPORT_TOKEN", "s3cret")
    resumed = engine.resume(failed.execution_id)
    assert resumed.execution_id == failed.execution_id
    assert outputs(engine, wf, resumed) == "published 3 rows"
    recorded = nodes(engine, resumed)
    assert (recorded["n0"].attempts, recorded["n1"].attempts) == (1, 2)


def test_records(
    examples: dict[str, ModuleType], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = examples["records"]
    start = datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    inputs = {"model": "resnet", "split": records.Split.TRAIN, "start": start, "days": 2}
    result = engine.launch(records.report, inputs)
    expected = "resnet on TRAIN until 2024-05-03 07:30 UTC: accuracy 0.93, loss n/a"
    assert outputs(engine, records.report, result) == expected
    args = ["--model", "resnet", "--split", "train", "--start", "2024-05-01T09:30:00+02:00"]
    code, out, _ = run_cli(monkeypatch, "run", "docs/examples/records.py:report", *args, "--days=2")
    assert code == 0 and out.strip() == f'o0 = "{expected}"'
    types_md = doc_text("types.md")
    assert f'o0 = "{expected}"' in types_md
    from taskfabric.types import type_str

    literal_type = type_str(records.evaluate.interface.outputs["o0"].literal_type)
    assert f"`{literal_type}`" in types_md


def test_dataframes(examples: dict[str, ModuleType], engine: Engine, tmp_path: Path) -> None:
    dataframes = examples["dataframes"]
    result = engine.launch(dataframes.sales_report, {"days": 2})
    assert outputs(engine, dataframes.sales_report, result) == "east"
    from taskfabric.storage import LocalBlobStore
    from taskfabric.types import LiteralConversionError, TransformContext, default_engine

    store = LocalBlobStore(tmp_path / "store")
    ctx = TransformContext(store=store, raw_prefix=store.uri("raw"), work_dir=tmp_path / "work")
    types = default_engine()
    frame = dataframes.load_sales.function(1)
    literal = types.to_literal(frame, dataframes.Sales, ctx)
    assert list(types.to_python(literal, dataframes.Sales, ctx).columns) == [
        "region",
        "units",
        "price",
    ]
    assert "note" in types.to_python(literal, dataframes.pd.DataFrame, ctx).columns
    frame["units"] = frame["units"].astype(float)
    with pytest.raises(LiteralConversionError) as caught:
        types.to_literal(frame, dataframes.Sales, ctx)
    assert f"`{caught.value}`" in doc_text("types.md")


def test_custom_type(examples: dict[str, ModuleType], engine: Engine) -> None:
    from taskfabric.types import default_engine

    custom = examples["custom_type"]
    try:
        result = engine.launch(custom.invoice, {"net": Decimal("100.10")})
        assert outputs(engine, custom.invoice, result) == Decimal("119.12")
        assert "returns `Decimal('119.12')`" in doc_text("types.md")
    finally:
        default_engine().unregister("decimal.Decimal")


def test_castability_table(examples: dict[str, ModuleType], engine: Engine) -> None:
    import pandas as pd

    from taskfabric import Directory
    from taskfabric.types import default_engine, is_castable

    castability = examples["castability"]
    result = engine.launch(castability.fits, {})
    fits = outputs(engine, castability.fits, result)
    assert fits == "PointModel(0.0, 0.0), limit=3, grade=B"
    assert f'`fits()` returns `"{fits}"`' in doc_text("types.md")
    names = {
        **vars(castability),
        "File": File,
        "Directory": Directory,
        "Path": Path,
        "pd": pd,
        "None": None,
    }
    text = doc_text("types.md")
    table = text[text.index("| output type | input type | fits |") :].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert len(rows) >= 20
    types = default_engine()
    for row in rows:
        source, target, verdict = (cell.strip() for cell in row.strip("|").split(" | "))
        source_type, target_type = (
            eval(cell.strip("`").replace("\\|", "|"), names)  # the table's own type expressions
            for cell in (source, target)
        )
        expected = verdict.strip("*").startswith("yes")
        got = is_castable(types.literal_type(source_type), types.literal_type(target_type))
        assert got == expected, row


def test_unsupported_type_table_matches_the_errors() -> None:
    from taskfabric import TaskDefinitionError, task

    def message(py_type: Any) -> str:
        def f(x):  # type: ignore[no-untyped-def]
            return x

        f.__annotations__ = {"x": py_type, "return": None}
        with pytest.raises(TaskDefinitionError) as caught:
            task(f)
        return str(caught.value)

    text = doc_text("types.md")
    import collections.abc
    import datetime as dt
    import enum

    class Perm(enum.Flag):
        R = 1

    expectations = {
        set[str]: "use list[str] (sorted if the order must be stable)",
        tuple[int, str]: "use a @dataclass for a fixed set of fields, or list[T]",
        dict[int, str]: "map keys must be str: use dict[str, str]",
        typing.Any: "declare a concrete type",
        typing.Literal["a"]: "use an enum.Enum",
        collections.abc.Sequence[int]: "use list[int]",
        dt.date: "use datetime.datetime (timezone-aware)",
        Perm: "use list[SomeEnum] for a set of options",
        Decimal: "make it a @dataclass or a pydantic BaseModel (or register a TypeTransformer",
    }
    for py_type, fix in expectations.items():
        assert fix in message(py_type), py_type
    assert "sets are not supported: use list[str] (sorted if the order must be stable)" in text


def test_example_config_file(examples: dict[str, ModuleType], tmp_path: Path) -> None:
    path = EXAMPLES / "taskfabric.toml"
    config = load_config(path, env={})
    assert config.project.name == "weather" and config.engine.parallelism == 8
    assert config.data_root == Path("~/weather-data").expanduser()
    assert config.log_file == EXAMPLES / "logs" / "taskfabric.jsonl"
    assert config.backend("local").options == {"workers": 8}
    training = config.for_project("training")
    assert training.task_types["python"] == "gpu-box"
    # TASKFABRIC_DATA_ROOT replaces [storage] data_root, relative to the working directory
    moved = load_config(path, cwd=tmp_path, env={"TASKFABRIC_DATA_ROOT": "data"})
    assert moved.data_root == tmp_path / "data"
    assert moved.metadata_url == f"sqlite:///{tmp_path / 'data' / 'taskfabric.db'}"
    # a project's executions run on the backend its [projects.<name>] section names
    hello = examples["hello"]
    with Engine(load_config(path)) as eng:
        for project, backend in (("weather", "local"), ("training", "gpu-box")):
            result = eng.launch(hello.sum_of_squares, {"n": 2}, project=project)
            assert outputs(eng, hello.sum_of_squares, result) == 1
            attempts = eng.metadata.attempts(result.execution_id)
            assert {a.backend for a in attempts} == {backend}


SECTIONS: dict[str, type[BaseModel]] = {
    "project": ProjectConfig,
    "storage": StorageConfig,
    "metadata": MetadataConfig,
    "engine": EngineConfig,
    "logging": LoggingConfig,
}


@pytest.mark.parametrize("section", SECTIONS)
def test_every_config_key_is_documented_with_its_default(section: str) -> None:
    text = doc_text("configuration.md")
    start = text.index(f"### `[{section}]`")
    table = text[start:].split("\n\n")[1]
    documented = {}
    for line in table.splitlines()[2:]:
        key, default, _ = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        documented[key.strip("`")] = default
    model = SECTIONS[section]
    assert set(documented) == set(model.model_fields)
    for key, field in model.model_fields.items():
        if field.default is None:
            assert documented[key] == "unset", key
        else:
            value = tomllib.loads(f"v = {documented[key].strip('`')}")["v"]
            assert value == field.default, key


def test_every_config_section_is_documented() -> None:
    from taskfabric.config import Config, ProjectOverrides

    headings = re.findall(r"^### `\[([a-z_]+)", doc_text("configuration.md"), re.MULTILINE)
    assert set(Config.model_fields) <= set(headings)
    projects = doc_text("configuration.md").split("### `[projects.<name>]`", 1)[1]
    for key in ProjectOverrides.model_fields:
        assert f"[projects.<name>.{key}" in projects or f"`{key} = " in projects, key


def test_config_error_example(tmp_path: Path) -> None:
    text = doc_text("configuration.md")
    bad = next(body for _, _, body in blocks() if body.startswith("# taskfabric.toml (with"))
    (tmp_path / "taskfabric.toml").write_text(bad)
    with pytest.raises(ConfigError) as caught:
        load_config(cwd=tmp_path, env={})
    assert str(caught.value) + "\n" == text_block_after("configuration.md", "# taskfabric.toml (")
    (tmp_path / "twice.toml").write_text("[engine]\nparallelism = 8\n[engine]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(Path("twice.toml"), cwd=tmp_path, env={})
    shown = " ".join(str(caught.value).replace("twice.toml", "taskfabric.toml").split())
    assert shown in " ".join(text.split())


def test_cli_input_table_examples_parse() -> None:
    from taskfabric.types import parse_cli_value

    assert parse_cli_value("yes", bool) is True
    assert parse_cli_value("1h30m", timedelta) == timedelta(minutes=90)
    assert parse_cli_value("PT1H30M", timedelta) == timedelta(minutes=90)
    assert parse_cli_value("500ms", timedelta) == timedelta(milliseconds=500)
    assert parse_cli_value("base64:aGVsbG8=", bytes) == b"hello"
    assert parse_cli_value('["a", "b"]', list[str]) == ["a", "b"]
    assert parse_cli_value("none", typing.Optional[int]) is None  # noqa: UP045
    with pytest.raises(ValueError, match="no timezone"):
        parse_cli_value("2024-05-01T12:00:00", datetime)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    for doc in (DOCS / name for name in USER_DOCS):
        text = FENCE.sub("", doc.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path_text, _, anchor = target.partition("#")
            path = (doc.parent / path_text) if path_text else doc
            assert path.exists(), f"{doc.name}: link to missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text()), re.M)
                assert anchor in {slug(h) for h in headings}, f"{doc.name}: no anchor {target}"


def test_snippets_parse() -> None:
    """The short python samples that are not example files are at least valid Python."""
    for doc, language, body in blocks():
        if language == "python" and doc in USER_DOCS:
            ast.parse(body, filename=doc)
