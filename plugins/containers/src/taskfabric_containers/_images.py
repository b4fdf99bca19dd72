"""Images from a spec: `ImageSpec` and its build, tagged by a content hash of the spec.

An image is built in two layers of caching:

1. the **base image**, `localhost/taskfabric-base:<hash>`: a Debian root file system made by
   `debootstrap --variant=minbase` (with python3 and python3-venv) from the Debian mirror this
   machine's apt uses, imported through the container API. Its tarball is kept in the cache
   folder (`$TASKFABRIC_CONTAINERS_CACHE`, default `~/.cache/taskfabric/containers`), so a
   wiped image store needs no second debootstrap. No public image registry is needed.
2. the **task image**, `localhost/<name>:<spec hash>`: the base plus a virtualenv at
   /opt/taskfabric/venv holding the spec's Python packages (wheels built on this machine by
   `pip wheel`, local project folders included, installed offline in the build), its Debian
   packages, its code folders and its environment.

The spec hash covers every field and the content of every local folder the spec names, so an
unchanged spec is never rebuilt and a changed file in the project's code gives a new tag.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric.errors import TaskfabricError

if TYPE_CHECKING:  # the Docker client is imported by those who build, not by ImageSpec users
    from taskfabric_containers._client import ContainerApi

#: The Python each Debian suite's python3 is.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
#: Folder names never hashed or copied from a local folder.
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "build", "dist"})
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VENV = "/opt/taskfabric/venv"
CODE = "/opt/taskfabric/code"
LABEL_SPEC = "taskfabric.image_spec"


class ImageBuildError(TaskfabricError):
    """An image spec that cannot be built, and why."""


def cache_dir() -> Path:
    root = os.environ.get("TASKFABRIC_CONTAINERS_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "taskfabric" / "containers"


def _is_local(requirement: str) -> bool:
    return requirement.startswith((".", "/", "~"))


def _local_path(requirement: str, root: Path) -> Path:
    """The folder of a local requirement ('./core[pandas]' -> <root>/core)."""
    path = re.sub(r"\[[^\]]*\]$", "", requirement)
    return (root / Path(path).expanduser()).resolve()


def _pip_requirement(requirement: str, root: Path) -> str:
    """A requirement as pip takes it: local folders absolute, their extras kept."""
    if not _is_local(requirement):
        return requirement
    extras = re.search(r"\[[^\]]*\]$", requirement)
    return str(_local_path(requirement, root)) + (extras.group(0) if extras else "")


def _tree_files(folder: Path) -> Iterator[Path]:
    for current, dirs, names in os.walk(folder):
        here = Path(current)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(names):
            if not name.endswith((".pyc", ".pyo")) and not name.startswith("."):
                yield here / name


def _hash_tree(digest: Any, folder: Path) -> None:
    if folder.is_file():
        digest.update(folder.read_bytes())
        return
    for path in _tree_files(folder):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())


@dataclass(frozen=True)
class ImageSpec:
    """A container image declared as data; `taskfabric images build FILE.py:NAME` builds it.

    - `name`: the repository, tagged `localhost/<name>:<content hash>`;
    - `python_version`: the image's Python (that of the Debian suite's python3: 3.11 on
      bookworm); the wheels are built by an interpreter of this version on this machine;
    - `packages`: pip requirements; a path (`./core[pandas]`, relative to `root`) is the
      project's own code, built into a wheel;
    - `apt_packages`: Debian packages installed in the image (its build then uses the host's
      network);
    - `code`: folders (relative to `root`) whose contents are copied to /opt/taskfabric/code,
      which is on PYTHONPATH: code the tasks import without installing it (`code=["src"]`
      makes `src/etl/` importable as `etl`);
    - `env`: environment variables of the image;
    - `registry`: when set, the image is also pushed as `<registry>/<name>:<hash>`.

    Pass it where an image reference goes: `@task(container_image=spec)`.
    """

    name: str = "taskfabric-task"
    python_version: str = "3.11"
    packages: Sequence[str] = ()
    apt_packages: Sequence[str] = ()
    code: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    suite: str = "bookworm"
    registry: str = ""
    #: The folder relative paths start from (default: the current folder when built).
    root: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ImageBuildError(
                f"image name {self.name!r} is not a repository name: lower-case letters, "
                "digits and . _ - / (e.g. 'acme/etl')"
            )
        expected = SUITE_PYTHON.get(self.suite)
        if expected is None:
            raise ImageBuildError(
                f"suite {self.suite!r} is not one of {sorted(SUITE_PYTHON)}: the base image is "
                "built from those Debian suites"
            )
        if self.python_version != expected:
            raise ImageBuildError(
                f"python_version {self.python_version!r}: Debian {self.suite}'s python3 is "
                f"{expected}; write python_version='{expected}' or another suite "
                f"({', '.join(f'{s}: {v}' for s, v in SUITE_PYTHON.items())})"
            )
        for pkg in self.apt_packages:
            if not _APT_NAME.match(pkg):
                raise ImageBuildError(f"apt package {pkg!r} is not a Debian package name")
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ImageBuildError(f"env name {key!r} is not an environment variable name")
        if isinstance(self.packages, str) or isinstance(self.apt_packages, str):
            raise ImageBuildError("packages and apt_packages are lists of names, not one str")

    @property
    def root_path(self) -> Path:
        return Path(self.root or os.getcwd()).resolve()

    def base_ref(self) -> str:
        return f"localhost/taskfabric-base:{self.suite}-{_base_hash(self.suite)}"

    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) of the spec and of every local folder it names."""
        digest = hashlib.sha256()
        digest.update(
            repr(
                (
                    self.name,
                    self.python_version,
                    tuple(self.packages),
                    tuple(self.apt_packages),
                    tuple(self.code),
                    sorted(self.env.items()),
                    self.suite,
                    self.base_ref(),
                    _BUILD_RECIPE_VERSION,
                )
            ).encode()
        )
        root = self.root_path
        for req in self.packages:
            if _is_local(req):
                folder = _local_path(req, root)
                if not folder.exists():
                    raise ImageBuildError(
                        f"package {req!r}: no folder {folder} (paths are relative to {root})"
                    )
                _hash_tree(digest, folder)
        for folder_name in self.code:
            folder = (root / folder_name).resolve()
            if not folder.exists():
                raise ImageBuildError(f"code {folder_name!r}: no folder {folder}")
            _hash_tree(digest, folder)
        return digest.hexdigest()[:16]

    def image_ref(self) -> str:
        """`localhost/<name>:<content hash>`: what the image is tagged, and what tasks name."""
        return f"localhost/{self.name}:{self.content_hash()}"


#: Bump when the way images are built changes, so old tags are not reused.
_BUILD_RECIPE_VERSION = 3
#: Bump when the base image's recipe changes (debootstrap-rootfs.sh, its packages).
_BASE_RECIPE_VERSION = 2
_BASE_PACKAGES = ("python3", "python3-venv")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or one-line .list)."""
    candidates: list[Path] = []
    if (sources_dir / "sources.list").is_file():
        candidates.append(sources_dir / "sources.list")
    parts = sources_dir / "sources.list.d"
    if parts.is_dir():
        candidates.extend(sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources")))
    for path in candidates:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (
                        line.partition(":")
                        for line in stanza.splitlines()
                        if ":" in line and not line.lstrip().startswith("#")
                    )
                }
                uris = fields.get("uris", "").split()
                if "deb" in fields.get("types", "").split() and uris:
                    uri = uris[0]
                    if not uri.rstrip("/").endswith("-security"):
                        return uri
        else:
            for line in text.splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb":
                    uri = next((w for w in words[1:] if "://" in w), "")
                    if uri and not uri.rstrip("/").endswith("-security"):
                        return uri
    raise ImageBuildError(
        f"no Debian mirror found in {sources_dir}/sources.list(.d): the base image is built "
        "from the mirror apt uses; add one (e.g. a deb822 file with URIs: ...)"
    )


def _base_hash(suite: str) -> str:
    digest = hashlib.sha256(repr((suite, _BASE_PACKAGES, _BASE_RECIPE_VERSION)).encode())
    return digest.hexdigest()[:12]


Progress = Callable[[str], None]


def _script(name: str) -> Path:
    return Path(str(resources.files("taskfabric_containers") / "scripts" / name))


def build_base(spec: ImageSpec, api: ContainerApi, progress: Progress) -> str:
    """The spec's base image, imported from the cached root file system tarball, which is
    made by debootstrap when missing. Returns its reference."""
    ref = spec.base_ref()
    if api.image_exists(ref):
        progress(f"base image {ref}: present")
        return ref
    tarball = cache_dir() / f"rootfs-{ref.rsplit(':', 1)[1]}.tar"
    if not tarball.is_file():
        if os.geteuid() != 0:
            raise ImageBuildError(
                f"the base image {ref} is missing and making it runs debootstrap, which needs "
                "root: run `taskfabric images build` once as root, or "
                f"`sudo {_script('debootstrap-rootfs.sh')} {tarball} {spec.suite} MIRROR`"
            )
        if shutil.which("debootstrap") is None:
            raise ImageBuildError(
                "debootstrap is not installed: `apt-get install -y debootstrap` (the base "
                "image is built from Debian packages)"
            )
        mirror = debian_mirror()
        progress(f"base image {ref}: debootstrap {spec.suite} from {mirror} (about a minute)")
        started = time.monotonic()
        tarball.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "bash",
                str(_script("debootstrap-rootfs.sh")),
                str(tarball),
                spec.suite,
                mirror,
                ",".join(_BASE_PACKAGES),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ImageBuildError(
                f"debootstrap of {spec.suite} failed (exit {result.returncode}): "
                + "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            )
        progress(f"root file system made in {time.monotonic() - started:.0f} s: {tarball}")
    api.import_image(tarball, ref, env={"PATH": _SYSTEM_PATH, "LANG": "C.UTF-8"})
    progress(f"base image {ref}: imported")
    return ref


def _wheels(spec: ImageSpec, folder: Path, progress: Progress) -> None:
    """Build or fetch a wheel of every package the spec names, and of their dependencies."""
    if not spec.packages:
        return
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != spec.python_version:
        raise ImageBuildError(
            f"the image's Python is {spec.python_version} but this is Python {running}: run "
            f"`taskfabric images build` with a Python {spec.python_version}, which builds the "
            "wheels the image installs"
        )
    root = spec.root_path
    requirements = [_pip_requirement(r, root) for r in spec.packages]
    progress(f"wheels: pip wheel {' '.join(requirements)}")
    deps, local = folder / "deps", folder / "local"
    _pip_wheel(deps, requirements)
    local_requirements = [r for r in requirements if r.startswith("/")]
    if local_requirements:
        # The project's own wheels go in a layer of their own: a change to its code
        # rebuilds that small layer, not the one of its dependencies.
        _pip_wheel(local, ["--no-deps", *local_requirements])
        for wheel in local.glob("*.whl"):
            (deps / wheel.name).unlink(missing_ok=True)


def _pip_wheel(folder: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(folder), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageBuildError(
            "building the wheels failed (pip wheel exit "
            f"{result.returncode}): " + "\n".join(result.stderr.strip().splitlines()[-15:])
        )


def dockerfile(spec: ImageSpec, base: str, content_hash: str, wheels: Path | None) -> str:
    """The Dockerfile of the task image; `wheels` is the context's wheel folder."""
    lines = [f"FROM {base}"]
    if spec.apt_packages:
        lines.append(
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            f"--no-install-recommends {' '.join(spec.apt_packages)} && rm -rf /var/lib/apt/lists/*"
        )
    lines.append(f"RUN python3 -m venv {VENV}")
    pip = f"{VENV}/bin/pip install --quiet --no-index --no-cache-dir"
    if wheels is not None and any(wheels.glob("deps/*.whl")):
        lines += [
            "COPY wheels/deps /tmp/taskfabric-deps",
            f"RUN {pip} /tmp/taskfabric-deps/*.whl && rm -rf /tmp/taskfabric-deps",
        ]
    if wheels is not None and any(wheels.glob("local/*.whl")):
        lines += [
            "COPY wheels/local /tmp/taskfabric-local",
            f"RUN {pip} --no-deps /tmp/taskfabric-local/*.whl && rm -rf /tmp/taskfabric-local",
        ]
    if spec.code:
        lines.append(f"COPY code {CODE}")
    env = {"PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if spec.code:
        env["PYTHONPATH"] = CODE
    env.update(spec.env)
    for key, value in env.items():
        lines.append(f"ENV {key}={_quote(value)}")
    lines.append(f'LABEL {LABEL_SPEC}="{content_hash}"')
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class BuildResult:
    ref: str
    built: bool
    seconds: float


def build_image(
    spec: ImageSpec,
    api: ContainerApi,
    progress: Progress = lambda _: None,
    *,
    no_cache: bool = False,
) -> BuildResult:
    """Build the spec's image unless an image of its content hash exists; push it when the
    spec names a registry. `no_cache` builds it again, layer caches included (the base image
    and its root file system tarball are still reused)."""
    started = time.monotonic()
    content_hash = spec.content_hash()
    ref = f"localhost/{spec.name}:{content_hash}"
    if not no_cache and api.image_exists(ref):
        progress(f"{ref}: up to date (spec unchanged)")
        _push(spec, api, ref, content_hash, progress)
        return BuildResult(ref, False, time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="taskfabric-image-") as tmp:
        context = Path(tmp)
        # The wheels are built while the base image is made (debootstrap, a minute or more).
        with ThreadPoolExecutor(1, thread_name_prefix="taskfabric-wheels") as pool:
            wheels = pool.submit(_wheels, spec, context / "wheels", progress)
            base = build_base(spec, api, progress)
            wheels.result()
        root = spec.root_path
        for folder_name in spec.code:
            source = (root / folder_name).resolve()
            # A folder is a PYTHONPATH entry: its contents go to /opt/taskfabric/code.
            target = context / "code"
            if source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / source.name)
                continue
            for path in _tree_files(source):
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
        (context / "Dockerfile").write_text(
            dockerfile(spec, base, content_hash, context / "wheels")
        )
        progress(f"{ref}: building")
        network = "host" if spec.apt_packages else "none"
        api.build(context, ref, network=network, no_cache=no_cache)
    _push(spec, api, ref, content_hash, progress)
    seconds = time.monotonic() - started
    progress(f"{ref}: built in {seconds:.0f} s")
    return BuildResult(ref, True, seconds)


def _push(
    spec: ImageSpec, api: ContainerApi, ref: str, content_hash: str, progress: Progress
) -> None:
    if not spec.registry:
        return
    remote = f"{spec.registry.rstrip('/')}/{spec.name}:{content_hash}"
    progress(f"pushing {remote}")
    try:
        api.push(ref, remote)
    except Exception as exc:  # the Docker client's errors, the registry's answer
        raise ImageBuildError(
            f"{ref} was built, but the push to {remote} failed: {exc}. Check that the "
            "registry is reachable from the container engine, that you are logged in to it "
            "(`podman login`), and, for a registry without TLS, that the engine's "
            "registries.conf marks it `insecure = true`"
        ) from exc


__all__ = [
    "BuildResult",
    "ImageBuildError",
    "ImageSpec",
    "build_base",
    "build_image",
    "cache_dir",
    "debian_mirror",
    "dockerfile",
]
