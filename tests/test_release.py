"""A release's metadata, checked without building anything (the wheels themselves are built
and installed in integration_tests/release): every distribution of the tree (the core and
each plugins/* folder) has the one version, a LICENSE, classifiers and the project URLs that
a package index shows, and CHANGELOG.md names it among the distributions released together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import build_wheelhouse  # noqa: E402


def test_every_distribution_is_ready_for_a_release() -> None:
    assert [p.name for p in build_wheelhouse.distributions()][:1] == ["core"]
    assert {p.name for p in build_wheelhouse.distributions()} >= {
        "core", "shell", "http", "spark", "flink", "containers", "aws", "kubernetes"
    }  # fmt: skip
    build_wheelhouse.check_tree()  # raises ReleaseError naming what is missing


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda meta: meta.pop("urls"), "[project.urls] lacks Homepage, Documentation"),
        (
            lambda meta: meta["urls"].update(Source="https://example.org/fork"),
            "[project.urls] Source = 'https://example.org/fork', the core's is",
        ),
        (
            lambda meta: meta["urls"].update(
                Documentation=meta["urls"]["Source"] + "/blob/main/docs/plugins/nope.md"
            ),
            "is not a file of this tree",
        ),
        (lambda meta: meta.update(classifiers=[]), "no 'Development Status :: ...' classifier"),
        (
            lambda meta: meta.update(name="taskfabric-unlisted"),
            "CHANGELOG.md: its opening list of the distributions released together does not "
            "name `taskfabric-unlisted`",
        ),
    ],
    ids=["no-urls", "another-repository", "missing-doc-page", "no-classifiers", "not-in-changelog"],
)
def test_a_plugin_without_its_metadata_is_refused(
    monkeypatch: pytest.MonkeyPatch, change: object, expected: str
) -> None:
    real = build_wheelhouse.project

    def project(folder: Path) -> dict[str, object]:
        meta = real(folder)
        if folder.name == "http":
            change(meta)  # type: ignore[operator]
        return meta

    monkeypatch.setattr(build_wheelhouse, "project", project)
    with pytest.raises(build_wheelhouse.ReleaseError) as raised:
        build_wheelhouse.check_tree()
    assert "plugins/http/pyproject.toml" in str(raised.value) or "CHANGELOG" in str(raised.value)
    assert expected in str(raised.value)


def test_no_file_holds_a_merge_conflict_marker() -> None:
    """A merge whose conflict was committed unresolved (it happened once, in
    docs/architecture.md) shows both sides to every reader: no tracked text file may hold a
    line that git's conflict markers begin."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    markers = re.compile(rb"^(<{7} |={7}$|>{7} )", re.MULTILINE)
    found = []
    for name in filter(None, files):
        path = REPO / name.decode()
        if not path.is_file() or path.suffix in {".png", ".ico", ".whl", ".gz", ".db"}:
            continue
        for match in markers.finditer(path.read_bytes()):
            line = path.read_bytes()[: match.start()].count(b"\n") + 1
            found.append(f"{name.decode()}:{line}")
    assert not found, f"unresolved merge conflicts at {found}: resolve them and commit"
