"""Tasks and workflows of the tests, at module level so that out-of-process backends (the
`subprocess` backend's `taskfabric-execute`) can import them by name."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from taskfabric import Directory, File, task, workflow
from taskfabric_shell import Shell


@task
def make_text(lines: int) -> File:
    out = File.new("text.txt")
    Path(out).write_text("".join(f"line {i}\n" for i in range(lines)))
    return out


@task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
def count_lines(src: File) -> int: ...


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def mixed(lines: int) -> int:
    return double(x=count_lines(src=make_text(lines=lines)))


@task(config=Shell(script="tr a-z A-Z < {inputs.src} > {outputs.o0}"))
def upper(src: File) -> File: ...


@task
def read_text(f: File) -> str:
    return f.read_text()


@workflow
def shout(src: File) -> tuple[File, str]:
    loud = upper(src=src)
    return loud, read_text(f=loud)


class Summary(NamedTuple):
    words: int
    mean: float
    empty: bool
    first: str


@task(
    config=Shell(
        script="""
        set -euo pipefail
        wc -w < {inputs.src} > {outputs.words}
        awk '{{ n += NF }} END {{ print n / NR }}' {inputs.src} > {outputs.mean}
        if [ -s {inputs.src} ]; then echo false; else echo true; fi > {outputs.empty}
        head -n 1 {inputs.src} > "$TF_OUTPUT_FIRST"
        """
    )
)
def summarize(src: File) -> Summary: ...


@workflow
def stats(src: File) -> Summary:
    return summarize(src=src)


@task(
    config=Shell(
        script="""
        for i in $(seq 1 {inputs.n}); do echo "part $i" > {outputs.o0}/part-$i.txt; done
        cp {inputs.files} {outputs.o0}/
        echo "$GREETING, $TF_INPUT_LABEL" > {outputs.o1}
        """,
        env={"GREETING": "hello"},
    )
)
def fill(n: int, files: list[File], label: str) -> tuple[Directory, str]: ...


@task
def count_files(d: Directory) -> int:
    return len(d.files())


@workflow
def folder(n: int, files: list[File], label: str) -> tuple[int, str]:
    filled, greeting = fill(n=n, files=files, label=label)
    return count_files(d=filled), greeting


@task(
    config=Shell(
        script="""
        for i in $(seq 1 30); do echo "stderr line $i" >&2; done
        echo "not in the error"
        exit {inputs.code}
        """
    )
)
def fails(code: int) -> int: ...


@workflow
def failing(code: int) -> int:
    return double(x=fails(code=code))


@task(config=Shell(script="echo 'forgot to write' > /dev/null"))
def forgets(x: int) -> File: ...


@workflow
def forgetful(x: int) -> File:
    return forgets(x=x)


# The engine's timeout fires once the pid file is written (the test holds its clock); the
# script's own timer (real time, from the script's start) must leave it time to write it.
@task(timeout=5, config=Shell(script="sleep 600 & echo $! > {inputs.pid_file}; wait"))
def slow(pid_file: str) -> None: ...


@workflow
def too_slow(pid_file: str) -> None:
    slow(pid_file=pid_file)
