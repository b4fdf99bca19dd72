"""`capture_output`: where an in-process attempt's prints go."""

from __future__ import annotations

import contextvars
import sys
from pathlib import Path

import pytest

from taskfabric.tasklogs import _Capture, capture_in_context, capture_output


def test_a_named_log_in_a_folder_is_made_at_the_first_write(tmp_path: Path) -> None:
    folder = tmp_path / "exec" / "n0" / "1"
    with capture_output(folder, name="live.log", echo=False) as capture:
        assert not capture.wrote
        assert not folder.exists()  # nothing printed yet: no folder, no file
        print("hello from the task")
        sys.stderr.write("and its stderr\n")
    assert capture.wrote
    assert capture.path == folder / "live.log"
    assert capture.path.read_text() == "hello from the task\nand its stderr\n"


def test_nothing_printed_leaves_no_file(tmp_path: Path) -> None:
    with capture_output(tmp_path / "a", name="live.log", echo=False) as capture:
        pass
    assert not capture.wrote
    assert not (tmp_path / "a").exists()


def test_a_path_without_a_name_is_the_log_itself(tmp_path: Path) -> None:
    log = tmp_path / "x" / "task.log"
    with capture_output(log, echo=False) as capture:
        print("one line")
    assert capture.path == log
    assert log.read_text() == "one line\n"


def test_a_capture_in_a_context_of_its_own_ends_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`capture_in_context` (the local backend's, per attempt): set in the context the
    caller made, nothing to reset; outside that context prints go where they did."""

    def attempt() -> _Capture:
        capture = capture_in_context(tmp_path / "n0" / "1", name="live.log", echo=False)
        try:
            print("inside")
        finally:
            capture.end()
        return capture

    capture = contextvars.copy_context().run(attempt)
    print("outside")
    assert capture.wrote
    assert capture.path.read_text() == "inside\n"
    assert capsys.readouterr().out == "outside\n"
    quiet = contextvars.copy_context().run(
        lambda: capture_in_context(tmp_path / "n1" / "1", name="live.log", echo=False)
    )
    quiet.end()
    assert not quiet.wrote
    assert not (tmp_path / "n1").exists()
