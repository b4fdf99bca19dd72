"""The parts of taskfabric-containers that need no container engine: limits, names, mounts,
settings, image specs and the Debian mirror."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from taskfabric import Resources, task
from taskfabric.core.v1 import types_pb2
from taskfabric.storage import LocalBlobStore
from taskfabric_containers import (
    ContainerBackend,
    ContainerSettings,
    ImageBuildError,
    ImageSpec,
    PodmanBackend,
)
from taskfabric_containers._images import debian_mirror, dockerfile
from taskfabric_containers._limits import (
    LimitError,
    cpu_nanos,
    describe_bytes,
    limits_of,
    memory_bytes,
)
from taskfabric_containers._mounts import blob_uris, code_root, input_mounts
from taskfabric_containers._names import container_name


@pytest.mark.parametrize(
    ("quantity", "nanos"), [("2", 2 * 10**9), ("500m", 5 * 10**8), ("0.25", 25 * 10**7)]
)
def test_cpu_quantities(quantity: str, nanos: int) -> None:
    assert cpu_nanos(quantity, "t") == nanos


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6), ("1.5Gi", 3 * 2**29)],
)
def test_memory_quantities(quantity: str, size: int) -> None:
    assert memory_bytes(quantity, "t") == size


def test_bad_quantities_say_what_to_write() -> None:
    with pytest.raises(LimitError, match=r"task x: memory '12q' is not a memory quantity"):
        memory_bytes("12q", "task x")
    with pytest.raises(LimitError, match=r"cpu '1Gi' is not a CPU quantity"):
        cpu_nanos("1Gi", "task x")
    with pytest.raises(LimitError, match="below the smallest limit"):
        memory_bytes("1Ki", "task x")


def test_describe_bytes() -> None:
    assert describe_bytes(64 * 2**20) == "64 MiB"
    assert describe_bytes(3 * 2**29) == "1.5 GiB"


def test_task_limits_win_over_the_backend_defaults_and_gpus_are_refused() -> None:
    @task(limits=Resources(memory="64Mi"))
    def small() -> None: ...

    limits = limits_of(small.template(), "2", "1Gi", "task small")
    assert (limits.memory, limits.nano_cpus) == (64 * 2**20, 2 * 10**9)

    @task(limits=Resources(gpu=1))
    def gpu() -> None: ...

    with pytest.raises(LimitError, match="gives containers no GPUs"):
        limits_of(gpu.template(), "", "", "task gpu")


def test_container_names_are_stable_unique_and_valid() -> None:
    name = container_name("abc123/n1[4]/2")
    assert name == container_name("abc123/n1[4]/2")
    assert name != container_name("abc123/n1[4]/3")
    assert name.startswith("tf-abc123-n1-4-2-")
    assert all(ch.isalnum() or ch in "_.-" for ch in name)


def test_blob_uris_finds_files_in_nested_values(tmp_path: Path) -> None:
    inputs = types_pb2.LiteralMap()
    inputs.literals["f"].blob.uri = "file:///a/one.txt"
    listed = inputs.literals["many"].list.literals.add()
    listed.map.literals["d"].dataframe.uri = "file:///a/frame"
    inputs.literals["n"].integer = 3
    assert sorted(blob_uris(inputs)) == ["file:///a/frame", "file:///a/one.txt"]


def test_input_mounts_are_read_only_and_not_nested(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    mounts = input_mounts(
        store,
        iter([folder.as_uri(), (folder / "sub" / "x.txt").as_uri(), "s3://b/k", "file:///no"]),
    )
    assert [(m.source, m.read_only) for m in mounts] == [(folder, True)]


def test_code_root_of_scripts_and_packages(tmp_path: Path) -> None:
    from taskfabric.core.v1 import tasks_pb2

    script = tasks_pb2.PythonFunction(module="flows", source_file=str(tmp_path / "flows.py"))
    assert code_root(script) == tmp_path
    nested = tasks_pb2.PythonFunction(
        module="pkg.sub.mod", source_file=str(tmp_path / "pkg" / "sub" / "mod.py")
    )
    assert code_root(nested) == tmp_path
    installed = tasks_pb2.PythonFunction(
        module="taskfabric.testing._tasks", source_file=str(tmp_path / "x.py")
    )
    assert code_root(installed) is None  # the image installs it


def test_settings_refuse_bad_mounts_and_env_names() -> None:
    with pytest.raises(ValidationError, match="is not HOST_PATH:CONTAINER_PATH"):
        ContainerSettings(mounts=["relative:/x"])
    with pytest.raises(ValidationError, match="is not an environment variable name"):
        ContainerSettings(pass_env=["NOT-A-NAME"])


def test_an_image_spec_hash_follows_its_content(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("A = 1\n")
    spec = ImageSpec(name="acme/etl", code=["code"], root=str(tmp_path))
    first = spec.image_ref()
    assert first.startswith("localhost/acme/etl:") and first == spec.image_ref()
    (tmp_path / "code" / "m.py").write_text("A = 2\n")
    assert spec.image_ref() != first
    other_env = ImageSpec(name="acme/etl", code=["code"], root=str(tmp_path), env={"X": "1"})
    assert other_env.image_ref() != spec.image_ref()


def test_bad_image_specs_say_what_to_write() -> None:
    with pytest.raises(ImageBuildError, match=r"Debian bookworm's python3 is 3\.11"):
        ImageSpec(python_version="3.12")
    with pytest.raises(ImageBuildError, match="is not a repository name"):
        ImageSpec(name="Bad Name")
    with pytest.raises(ImageBuildError, match="no folder"):
        ImageSpec(packages=["./nowhere"], root="/tmp").image_ref()


def test_an_image_spec_is_accepted_where_an_image_goes() -> None:
    spec = ImageSpec(name="acme/plain")

    @task(container_image=spec)
    def in_image() -> None: ...

    assert in_image.template().container_image == spec.image_ref()


def test_the_dockerfile_installs_deps_then_the_project(tmp_path: Path) -> None:
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "a-1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "b-1-py3-none-any.whl").write_bytes(b"")
    spec = ImageSpec(apt_packages=["jq"], env={"TZ": "UTC"})
    text = dockerfile(spec, "localhost/base:1", "abc", tmp_path)
    lines = text.splitlines()
    assert lines[0] == "FROM localhost/base:1"
    assert "apt-get install" in lines[1] and lines[1].endswith("rm -rf /var/lib/apt/lists/*")
    deps = next(i for i, line in enumerate(lines) if "taskfabric-deps" in line)
    local = next(i for i, line in enumerate(lines) if "taskfabric-local" in line)
    assert deps < local and "--no-deps" in lines[local + 1]
    assert 'ENV TZ="UTC"' in lines and 'LABEL taskfabric.image_spec="abc"' in lines


def test_the_debian_mirror_is_read_from_apt_sources(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://old.example/debian"
    with pytest.raises(ImageBuildError, match="no Debian mirror found"):
        debian_mirror(tmp_path / "nothing")


def test_a_task_sets_only_the_backend_options_its_operator_allows() -> None:
    from taskfabric.backends import TaskOptionsError, task_options
    from taskfabric_containers._settings import check_task_overrides

    @task(backend_options={"podman": {"env": {"MODE": "fast"}, "network": "bridge"}})
    def wants_network() -> None: ...

    template = wants_network.template()
    with pytest.raises(TaskOptionsError) as refused:
        task_options(template, ("podman",), ["env"], backend="pods", where="task w")
    assert str(refused.value) == (
        "task w: backend_options['podman'] sets network, which backend 'pods' does not let "
        "tasks set (tasks may set: env); remove it from the task, or let tasks set it with "
        "`task_overrides` in [backends.pods]"
    )
    allowed = task_options(template, ("podman",), ["env", "network"], backend="pods")
    own = check_task_overrides(allowed, "task w")
    assert (own.env, own.network, own.mounts) == ({"MODE": "fast"}, "bridge", [])
    # Another driver's entry is not this backend's business.
    assert task_options(template, ("docker",), [], backend="d") == {}

    @task(backend_options={"docker": {"mounts": ["relative:/data"]}})
    def bad_mount() -> None: ...

    options = task_options(bad_mount.template(), ("docker",), ["mounts"], backend="d")
    with pytest.raises(
        ValueError, match=r"task b: backend_options: mounts: mount 'relative:/data'"
    ):
        check_task_overrides(options, "task b")


def test_backend_options_must_be_json_settings_by_driver() -> None:
    from taskfabric import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match=r"backend_options\['podman'\] must be a dict"):

        @task(backend_options={"podman": "bridge"})  # type: ignore[dict-item]
        def wrong() -> None: ...

    with pytest.raises(TaskDefinitionError, match="must hold JSON values"):

        @task(backend_options={"podman": {"env": {"A": object()}}})
        def opaque() -> None: ...


def _backend(tmp_path: Path, **settings: object) -> ContainerBackend:
    from taskfabric.plugin_api import BackendContext
    from taskfabric.storage import PackStore

    data = tmp_path / "data"
    store = LocalBlobStore(data / "blobs")
    context = BackendContext(
        store=store,
        literals=PackStore(store),
        data_root=data,
        work_root=data / "work",
        parallelism=2,
        core_version="0",
    )
    return PodmanBackend("box", ContainerSettings.model_validate(settings), context)


def test_isolation_gaps_name_what_opens_a_way_out(tmp_path: Path) -> None:
    @task
    def plain() -> None: ...

    assert PodmanBackend.isolated
    assert _backend(tmp_path).isolation_gaps(plain.template()) == []
    gaps = _backend(
        tmp_path,
        task_overrides=["env", "mounts"],
        mounts=[f"{tmp_path}:/host:ro", "/opt/reference:/ref"],
    ).isolation_gaps(plain.template())
    assert len(gaps) == 2, gaps
    assert (
        'task_overrides lets tasks add their own mounts (any folder of the host): remove "mounts"'
        in gaps[0]
    )
    assert f"mounts '{tmp_path}:/host:ro' shows the containers {tmp_path / 'data'}" in gaps[1]


def test_abandon_stops_and_removes_the_container_its_handle_names(tmp_path: Path) -> None:
    # an attempt an earlier engine process left running, which the resumed run never reached
    backend = _backend(tmp_path, kill_grace_seconds=3)
    calls: list[tuple[str, str]] = []

    class Api:
        def find(self, name: str) -> str | None:
            calls.append(("find", name))
            return "id-1" if name == "tf-e-n0-1" else None

        def stop(self, container_id: str, grace_seconds: float) -> None:
            calls.append(("stop", f"{container_id} {grace_seconds:g}"))

        def remove(self, container_id: str) -> None:
            calls.append(("remove", container_id))

        def close(self) -> None:
            pass

    backend.api = Api()  # type: ignore[assignment]
    backend.abandon("e/n0/1", "tf-e-n0-1")
    backend.abandon("e/n1/1", "tf-e-n1-1")  # gone already: nothing to stop
    backend.close()  # waits for the stopping threads
    assert sorted(calls) == [
        ("find", "tf-e-n0-1"),
        ("find", "tf-e-n1-1"),
        ("remove", "id-1"),
        ("stop", "id-1 3"),
    ]
