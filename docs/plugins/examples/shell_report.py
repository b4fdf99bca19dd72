# docs/plugins/examples/shell_report.py
from typing import NamedTuple

from taskfabric import Directory, File, task, workflow
from taskfabric_shell import Shell


@task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
def count_lines(src: File) -> int: ...


class Stats(NamedTuple):
    words: int
    longest: str
    has_todo: bool


@task(
    config=Shell(
        script="""
        set -euo pipefail
        wc -w < {inputs.src} > {outputs.words}
        awk '{{ if (length($0) > length(max)) max = $0 }} END {{ print max }}' \\
            {inputs.src} > {outputs.longest}
        if grep -q TODO {inputs.src}; then echo true; else echo false; fi > {outputs.has_todo}
        """
    )
)
def stats(src: File) -> Stats: ...


@task(config=Shell(script="split -l {inputs.lines} {inputs.src} {outputs.o0}/part-"))
def split_file(src: File, lines: int) -> Directory: ...


@task
def part_files(parts: Directory) -> list[File]:
    return [File(path) for path in parts]  # a Python task between two shell tasks


@task(
    config=Shell(
        script='sort {inputs.parts} | uniq -c | sort -rn > "$TF_OUTPUT_O0"',
        env={"LC_ALL": "C"},
    )
)
def counted(parts: list[File]) -> File: ...


@workflow
def report(src: File, lines_per_part: int = 2) -> tuple[int, int, str, bool, File]:
    s = stats(src=src)
    parts = part_files(parts=split_file(src=src, lines=lines_per_part))
    return count_lines(src=src), s.words, s.longest, s.has_todo, counted(parts=parts)
