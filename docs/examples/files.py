# docs/examples/files.py
import csv
from typing import Annotated

from taskfabric import Directory, File, task, workflow
from taskfabric.types import Format

CsvFile = Annotated[File, Format("csv")]  # the same type as File["csv"], spelled for mypy


@task
def make_table(rows: int) -> CsvFile:
    out = File.new("numbers.csv")  # a fresh path in a scratch folder: write it, return it
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["n", "square"])
        writer.writerows([i, i * i] for i in range(rows))
    return out


@task
def split(table: CsvFile, parts: int) -> Directory:
    lines = table.read_text().splitlines()  # fetched on first use; read-only
    header, body = lines[0], lines[1:]
    folder = Directory.new("parts")
    for p in range(parts):
        chunk = body[p::parts]
        (folder.path / f"part-{p}.csv").write_text("\n".join([header, *chunk]) + "\n")
    return folder


@task
def count_rows(parts: Directory) -> int:
    # iterating a Directory gives the local paths of its files, sorted
    return sum(len(path.read_text().splitlines()) - 1 for path in parts)


@workflow
def table_pipeline(rows: int = 10, parts: int = 3) -> tuple[CsvFile, Directory, int]:
    table = make_table(rows=rows)
    folder = split(table=table, parts=parts)
    return table, folder, count_rows(parts=folder)


@workflow
def split_file(table: CsvFile, parts: int = 2) -> int:
    """Split a local CSV file given on the command line."""
    return count_rows(parts=split(table=table, parts=parts))
