"""Build every distribution of this repository (the core and each plugin) into one folder of
wheels, checked for release:

    python scripts/build_wheelhouse.py                 # -> ./wheelhouse
    python scripts/build_wheelhouse.py --out DIR

Checks before building: every distribution has the one version of the core, each plugin's
`taskfabric` requirement admits it, a LICENSE identical to the repository's sits next to
each pyproject.toml, each has classifiers and the project URLs (the core's Homepage, Source,
Issues and Changelog, and a Documentation page of its own that exists in this tree), and
CHANGELOG.md names it. Checks after: each wheel carries that version, its LICENSE, its
classifiers and its URLs, and the checkout has no build/ or *.egg-info left. Install from
the folder with `pip install --find-links DIR taskfabric-http` (the core comes from it too).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
#: The project URLs every distribution declares; all but Documentation are the core's.
URL_LABELS = ("Homepage", "Documentation", "Source", "Issues", "Changelog")
SHARED_URL_LABELS = ("Homepage", "Source", "Issues", "Changelog")


class ReleaseError(Exception):
    """The tree is not ready for a release: what is wrong and where."""


def distributions() -> list[Path]:
    """The folders with a pyproject.toml: core/ first, then plugins/*/ by name."""
    return [REPO / "core", *sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))]


def project(folder: Path) -> dict[str, object]:
    with (folder / "pyproject.toml").open("rb") as fh:
        found: dict[str, object] = tomllib.load(fh)["project"]
    return found


def version_of(folder: Path) -> str:
    """A distribution's version: static in its pyproject.toml, or (the core's) in the file
    its [tool.hatch.version] names."""
    meta = project(folder)
    if "version" in meta:
        return str(meta["version"])
    with (folder / "pyproject.toml").open("rb") as fh:
        path = tomllib.load(fh)["tool"]["hatch"]["version"]["path"]
    found = re.search(r'^__version__ = "([^"]+)"', (folder / path).read_text(), re.MULTILINE)
    if found is None:
        raise ReleaseError(f'{folder / path}: no __version__ = "..." line')
    return found.group(1)


def check_tree() -> str:
    """The one version of every distribution; raises `ReleaseError` on any mismatch."""
    version = version_of(REPO / "core")
    license_text = (REPO / "LICENSE").read_bytes()
    problems = []
    for folder in distributions():
        meta = project(folder)
        where = folder.relative_to(REPO) / "pyproject.toml"
        if version_of(folder) != version:
            problems.append(f"{where}: version {version_of(folder)}, the core's is {version}")
        for init in (folder / "src").glob("*/__init__.py"):
            said = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.MULTILINE)
            if said is not None and said.group(1) != version:
                problems.append(
                    f"{init.relative_to(REPO)}: __version__ {said.group(1)}, the core's is "
                    f"{version}"
                )
        if folder.name != "core":
            core_reqs = [
                Requirement(r)
                for r in meta.get("dependencies", [])  # type: ignore[attr-defined]
                if Requirement(r).name == "taskfabric"
            ]
            if not core_reqs or not core_reqs[0].specifier.contains(version):
                problems.append(
                    f"{where}: its taskfabric requirement does not admit the core's version "
                    f"{version}: require taskfabric>=X.Y,<X.(Y+1) of that version"
                )
        license_file = folder / "LICENSE"
        if not license_file.exists() or license_file.read_bytes() != license_text:
            problems.append(
                f"{license_file.relative_to(REPO)}: missing or not the repository's LICENSE "
                "(copy it there: a wheel carries the LICENSE next to its pyproject.toml)"
            )
        problems += metadata_problems(folder)
    if problems:
        raise ReleaseError("not ready for a release:\n  " + "\n  ".join(problems))
    return version


def metadata_problems(folder: Path) -> list[str]:
    """What a distribution's page on the package index would lack: classifiers, the project
    URLs (shared with the core's, a Documentation page that exists here), a CHANGELOG entry."""
    meta = project(folder)
    where = folder.relative_to(REPO) / "pyproject.toml"
    problems = []
    classifiers = [str(c) for c in meta.get("classifiers", [])]  # type: ignore[attr-defined]
    for needed in ("Development Status :: ", "Programming Language :: Python :: 3"):
        if not any(c.startswith(needed) for c in classifiers):
            problems.append(f"{where}: no '{needed}...' classifier in [project] classifiers")
    urls: dict[str, str] = dict(meta.get("urls", {}))  # type: ignore[call-overload]
    core_urls: dict[str, str] = dict(project(REPO / "core").get("urls", {}))  # type: ignore[call-overload]
    missing = [label for label in URL_LABELS if label not in urls]
    if missing:
        problems.append(f"{where}: [project.urls] lacks {', '.join(missing)}")
    for label in SHARED_URL_LABELS:
        if label in urls and urls[label] != core_urls.get(label):
            problems.append(
                f"{where}: [project.urls] {label} = {urls[label]!r}, the core's is "
                f"{core_urls.get(label)!r} (one repository for every distribution)"
            )
    doc = urls.get("Documentation", "")
    prefix = core_urls.get("Source", "") + "/blob/main/"
    if doc and (not doc.startswith(prefix) or not (REPO / doc.removeprefix(prefix)).is_file()):
        problems.append(
            f"{where}: [project.urls] Documentation = {doc!r} is not a file of this tree "
            f"under {prefix}"
        )
    name = str(meta["name"])
    preamble = (REPO / "CHANGELOG.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    if f"`{name}`" not in preamble:
        problems.append(
            f"CHANGELOG.md: its opening list of the distributions released together does not "
            f"name `{name}`"
        )
    return problems


def leftovers() -> list[Path]:
    """build/ folders and *.egg-info that a build left in the checkout."""
    found = []
    for folder in distributions():
        found += [p for p in (folder / "build", folder / "dist") if p.exists()]
        found += list(folder.rglob("*.egg-info"))
    return found


def build(out: Path) -> list[Path]:
    version = check_tree()
    out.mkdir(parents=True, exist_ok=True)
    before = set(leftovers())
    # With the build backend here already (tox's envs), no isolated environment per build.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    wheels = []
    for folder in distributions():
        name = str(project(folder)["name"])
        for old in out.glob(f"{name.replace('-', '_')}-*.whl"):
            old.unlink()
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation]
        subprocess.run([*command, "-w", str(out), str(folder)], check=True)
        (wheel,) = out.glob(f"{name.replace('-', '_')}-{version}-*.whl")
        check_wheel(wheel, version)
        wheels.append(wheel)
        print(f"built {wheel.name}")
    left = set(leftovers()) - before
    if left:
        raise ReleaseError(f"the builds left files in the checkout: {sorted(map(str, left))}")
    return wheels


def check_wheel(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = zf.read(metadata).decode()
    if not re.search(rf"^Version: {re.escape(version)}$", text, re.MULTILINE):
        raise ReleaseError(f"{wheel.name}: METADATA does not say Version: {version}")
    if not any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in names):
        raise ReleaseError(f"{wheel.name}: no LICENSE in its .dist-info/licenses/")
    labels = re.findall(r"^Project-URL: ([^,]+),", text, re.MULTILINE)
    missing = [label for label in URL_LABELS if label not in labels]
    if missing:
        raise ReleaseError(f"{wheel.name}: METADATA has no Project-URL for {', '.join(missing)}")
    if not re.search(r"^Classifier: ", text, re.MULTILINE):
        raise ReleaseError(f"{wheel.name}: METADATA has no Classifier")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "wheelhouse", help="the folder")
    opts = parser.parse_args(argv)
    try:
        wheels = build(opts.out.resolve())
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(wheels)} wheels in {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
