"""The `taskfabric` command's fast exit: what Python's own exit would have done is done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskfabric.cli._exit import _status

PROGRAM = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from taskfabric.cli._exit import exit_now

folder = Path(sys.argv[1])
pool = ThreadPoolExecutor(1)  # an idle worker, not a daemon: the exit must shut it down
pool.submit(time.sleep, 0).result()
left_open = open(folder / "left-open.txt", "w")  # never flushed nor closed by its writer
left_open.write("kept")

def late() -> None:
    time.sleep(0.2)
    (folder / "thread.txt").write_text("joined")

threading.Thread(target=late).start()
atexit.register(lambda: (folder / "atexit.txt").write_text("ran"))
print("unflushed", end="")
exit_now(3)
"""


def test_exit_now_waits_for_threads_runs_atexit_and_flushes_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed"
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "left-open.txt").read_text() == "kept"


def test_exit_codes_are_those_of_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert [_status(None), _status(0), _status(2)] == [0, 0, 2]
    assert _status("bad input") == 1
    assert capsys.readouterr().err == "bad input\n"
