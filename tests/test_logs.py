"""taskfabric.logs: ids bound by the engine on every line, console and JSON output, levels, cost."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from taskfabric.logs import (
    bind_contextvars,
    bound_contextvars,
    configure_logging,
    get_logger,
    unbind_contextvars,
)

MODULE_LOGGER = get_logger("tests.module")  # made before any configure_logging, like real modules


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    configure_logging()


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_console_lines_carry_bound_execution_and_node_ids() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    log = get_logger("taskfabric.engine")
    structlog.contextvars.bind_contextvars(execution_id="ex-1", node_id="n0")
    log.info("node started", attempt=1)
    structlog.contextvars.unbind_contextvars("node_id")
    log.info("execution done")
    first, second = out.getvalue().splitlines()
    assert "node started" in first
    assert "execution_id=ex-1" in first
    assert "node_id=n0" in first
    assert "attempt=1" in first
    assert "[info     ]" in first
    assert "[taskfabric.engine]" in first
    assert "execution_id=ex-1" in second
    assert "node_id" not in second


def test_json_lines_parse_and_carry_ids_level_and_iso_timestamp() -> None:
    out = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=out)
    structlog.contextvars.bind_contextvars(execution_id="ex-2", node_id="n1")
    get_logger("taskfabric.engine").debug("resolved %d inputs", 3, size=12)
    (line,) = json_lines(out.getvalue())
    assert line["event"] == "resolved 3 inputs"
    assert line["level"] == "debug"
    assert line["logger"] == "taskfabric.engine"
    assert (line["execution_id"], line["node_id"], line["size"]) == ("ex-2", "n1", 12)
    timestamp = dt.datetime.fromisoformat(str(line["timestamp"]))
    assert timestamp.tzinfo is not None
    assert abs(dt.datetime.now(dt.UTC) - timestamp) < dt.timedelta(minutes=1)


def test_json_exceptions_carry_the_traceback() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    try:
        raise KeyError("missing-input")
    except KeyError:
        get_logger("t").exception("task failed")
    (line,) = json_lines(out.getvalue())
    assert line["level"] == "error"
    assert "KeyError: 'missing-input'" in str(line["exception"])


@pytest.mark.parametrize("level", ["warning", "WARNING"])
def test_levels_below_the_minimum_are_dropped(level: str) -> None:
    out = io.StringIO()
    configure_logging(level=level, fmt="json", stream=out)
    log = get_logger("t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["w", "e"]


def test_filtered_calls_do_no_work() -> None:
    class Exploding:
        def __repr__(self) -> str:
            raise AssertionError("rendered a filtered event")

    out = io.StringIO()
    configure_logging(level="info", stream=out)
    log = get_logger("t")
    log.debug("never", value=Exploding())
    assert out.getvalue() == ""
    # what such a call costs is measured by bench/bench_logs.py, not here


def test_file_sink_is_always_json_and_appends(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "taskfabric.jsonl"
    out = io.StringIO()
    configure_logging(fmt="console", file=log_file, stream=out)
    structlog.contextvars.bind_contextvars(execution_id="ex-3")
    get_logger("t").info("one")
    configure_logging(fmt="console", file=log_file, stream=out)
    get_logger("t").info("two")
    assert [line["event"] for line in json_lines(log_file.read_text())] == ["one", "two"]
    assert json_lines(log_file.read_text())[0]["execution_id"] == "ex-3"
    assert len(out.getvalue().splitlines()) == 2
    assert not out.getvalue().startswith("{")


def test_reconfiguring_replaces_and_does_not_duplicate(tmp_path: Path) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first, file=tmp_path / "a.jsonl")
    configure_logging(stream=second)
    configure_logging(stream=second)
    MODULE_LOGGER.info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
    assert "[tests.module]" in second.getvalue()
    MODULE_LOGGER.info("after the file sink went away")
    assert (tmp_path / "a.jsonl").read_text() == ""


def test_loggers_made_before_a_reconfigure_follow_it() -> None:
    out = io.StringIO()
    configure_logging(level="error", stream=out)
    MODULE_LOGGER.info("hidden")
    configure_logging(level="debug", fmt="json", stream=out)
    MODULE_LOGGER.debug("shown")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["shown"]


def test_bound_loggers_keep_their_context() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    get_logger("t").bind(backend="local").info("submitted")
    (line,) = json_lines(out.getvalue())
    assert line["backend"] == "local"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colors_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain, terminal = io.StringIO(), FakeTerminal()
    configure_logging(stream=plain)
    get_logger("t").info("x")
    configure_logging(stream=terminal)
    get_logger("t").info("x")
    assert "\x1b[" not in plain.getvalue()
    assert "\x1b[" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    no_color = FakeTerminal()
    configure_logging(stream=no_color)
    get_logger("t").info("x")
    assert "\x1b[" not in no_color.getvalue()


def test_ids_follow_asyncio_tasks_and_copied_contexts_into_threads() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    log = get_logger("t")

    async def node(node_id: str) -> None:
        structlog.contextvars.bind_contextvars(node_id=node_id)
        await asyncio.sleep(0)
        log.info("in task")

    async def execution() -> None:
        structlog.contextvars.bind_contextvars(execution_id="ex-4")
        await asyncio.gather(node("a"), node("b"))

    asyncio.run(execution())
    structlog.contextvars.bind_contextvars(execution_id="ex-5", node_id="c")
    thread = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "in thread"))
    thread.start()
    thread.join()
    ids = {(line["execution_id"], line["node_id"]) for line in json_lines(out.getvalue())}
    assert ids == {("ex-4", "a"), ("ex-4", "b"), ("ex-5", "c")}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'; use one of debug, info"):
        configure_logging(level="verbose")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging(fmt="xml")  # type: ignore[arg-type]


def test_default_stream_is_stderr_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    get_logger("t").warning("to stderr")
    captured = capsys.readouterr()
    assert "to stderr" in captured.err
    assert captured.out == ""


def test_ids_bound_here_and_through_structlog_are_the_same_variables() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    log = get_logger("t")
    bind_contextvars(execution_id="ex-6", node_id="a")
    structlog.contextvars.unbind_contextvars("node_id")
    log.info("one")
    with bound_contextvars(node_id="b", attempt=2):
        structlog.contextvars.bind_contextvars(attempt=3)
        log.info("two")
    log.info("three")
    unbind_contextvars("execution_id")
    log.info("four")
    lines = [
        {k: line.get(k) for k in ("event", "execution_id", "node_id", "attempt")}
        for line in json_lines(out.getvalue())
    ]
    assert lines == [
        {"event": "one", "execution_id": "ex-6", "node_id": None, "attempt": None},
        {"event": "two", "execution_id": "ex-6", "node_id": "b", "attempt": 3},
        {"event": "three", "execution_id": "ex-6", "node_id": None, "attempt": None},
        {"event": "four", "execution_id": None, "node_id": None, "attempt": None},
    ]


def test_structlog_is_imported_by_the_first_line_logged_only() -> None:
    # A run logs nothing at its level: it never pays for importing structlog (with asyncio
    # and rich). Ids bound before structlog is loaded are structlog's context afterwards.
    program = """
import io, json, sys
from taskfabric.logs import bind_contextvars, configure_logging, get_logger
out = io.StringIO()
configure_logging(level="info", fmt="json", stream=out)
log = get_logger("t")
bind_contextvars(execution_id="ex-7", node_id="n")
log.debug("filtered")
print("structlog" in sys.modules)
log.info("shown")
print("structlog" in sys.modules)
import structlog
structlog.contextvars.unbind_contextvars("node_id")
log.info("again")
lines = map(json.loads, out.getvalue().splitlines())
print([{k: d.get(k) for k in ("event", "execution_id", "node_id")} for d in lines])
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False",
        "True",
        str(
            [
                {"event": "shown", "execution_id": "ex-7", "node_id": "n"},
                {"event": "again", "execution_id": "ex-7", "node_id": None},
            ]
        ),
    ]


class _Unwritable(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_log_call_never_raises(fmt: str) -> None:
    """A closed or full stream, or a value that cannot be rendered, loses the line at worst: a
    log call in a backend's watcher thread must never end the thread (issue 21)."""
    log = get_logger("taskfabric.watcher")
    for stream, close in ((io.StringIO(), True), (_Unwritable(), False)):
        configure_logging(fmt=fmt, stream=stream)
        if close:  # closed after the set-up, as pytest's captured streams are
            stream.close()
        log.warning("round failed", error="x")
        log.exception("round failed")
    out = io.StringIO()
    configure_logging(fmt=fmt, stream=out)
    log.warning("value", odd=_Unprintable())
    assert "value (the rest of this log line could not be rendered: RuntimeError)" in (
        out.getvalue()
    )
