"""What a `taskfabric run` does before its first task, counted, not timed: it starts no
other program (the sandbox's fork server module asked `ldconfig -p` where libc is, twice, on
every run that merely imported it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOW = """
from taskfabric import task, workflow

@task
def inc(x: int) -> int:
    return x + 1

@workflow
def one(x: int = 1) -> int:
    return inc(x=x)
"""

# Every way Python starts a program goes through os.posix_spawn, os.fork or os.execv*
# (subprocess among them): count them, then run the command in this process.
PROGRAM = """
import os, sys
started = []
for name in ("fork", "posix_spawn", "posix_spawnp", "execv", "execve", "vfork"):
    real = getattr(os, name, None)
    if real is not None:
        def counted(*args, _real=real, _name=name, **kwargs):
            started.append((_name, str(args[0])[:80]))
            return _real(*args, **kwargs)
        setattr(os, name, counted)
import _posixsubprocess
real_fork_exec = _posixsubprocess.fork_exec
def fork_exec(*args, **kwargs):
    started.append(("fork_exec", str(args[0])[:80]))
    return real_fork_exec(*args, **kwargs)
_posixsubprocess.fork_exec = fork_exec
import atexit
atexit.register(lambda: print("STARTED", started, file=sys.stderr, flush=True))
sys.argv = ["taskfabric", "run", "flow.py:one"]
from taskfabric.cli import main
main()
"""


def test_a_run_starts_no_other_program(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "taskfabric.toml").write_text(f'[storage]\ndata_root = "{tmp_path / "data"}"\n')
    env = {**os.environ, "TASKFABRIC_CONFIG": str(tmp_path / "taskfabric.toml")}
    for _ in range(2):  # the first run makes the database (Alembic); the second is the case
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "o0 = 2" in done.stdout
    assert "STARTED []" in done.stderr, done.stderr
