"""Registering: immutable versions, no-op re-registration, conflicts with a diff, stamping."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from registry_helpers import flows_package, write_tree

from taskfabric.core.v1 import identifier_pb2, types_pb2, workflow_pb2
from taskfabric.registry import (
    DiscoveryError,
    EntityNotFoundError,
    LaunchError,
    Package,
    PackageError,
    RegistrationConflict,
    Registry,
    build_package,
)

P, D = "acme", "development"


def _ids(compiled: workflow_pb2.CompiledWorkflow) -> list[identifier_pb2.Identifier]:
    """Every identifier in a compiled workflow, node references included."""
    found = []

    def node_ids(node: workflow_pb2.Node) -> None:
        target = node.WhichOneof("target")
        if target == "task":
            found.append(node.task.task_id)
        elif target == "workflow":
            found.append(node.workflow.workflow_id)
        elif target == "map":
            found.append(node.map.task_id)
        elif target == "branch":
            for case in node.branch.cases:
                node_ids(case.then_node)
            node_ids(node.branch.else_node)

    for template in [compiled.primary, *compiled.subworkflows]:
        found.append(template.id)
        for node in template.nodes:
            node_ids(node)
    found += [t.id for t in compiled.tasks]
    return found


def test_register_records_every_entity_stamped_with_project_domain_version(
    registry: Registry, tmp_path: Path
) -> None:
    pkg = flows_package(tmp_path / "src")
    result = registry.register(pkg, project=P, domain=D, version="v1")
    got = {(e.kind, e.name, e.status) for e in result.entities}
    assert got == {
        ("task", "acme.flows.numbers", "registered"),
        ("task", "acme.flows.scale", "registered"),
        ("task", "acme.flows.total", "registered"),
        ("workflow", "acme.flows.pipeline", "registered"),
        ("workflow", "acme.flows.scaled", "registered"),
        ("launch_plan", "hourly", "registered"),
    }
    compiled, code = registry.get_workflow(P, D, "acme.flows.pipeline", "v1")
    ids = _ids(compiled)
    kinds = {i.resource_type for i in ids}
    assert identifier_pb2.RESOURCE_TYPE_TASK in kinds
    assert identifier_pb2.RESOURCE_TYPE_WORKFLOW in kinds
    assert len(ids) > 8 and {(i.project, i.domain, i.version) for i in ids} == {(P, D, "v1")}
    # source paths are relative to the bundle root: the same code from anywhere is the same
    assert compiled.primary.location.file == "acme/flows.py"
    assert {t.function.source_file for t in compiled.tasks} == {"acme/flows.py"}
    assert {t.function.module for t in compiled.tasks} == {"acme.flows"}
    assert code == {
        "bundle": result.bundle_uri,
        "root": "",
        "module": "acme.flows",
        "object": "pipeline",
    }
    spec = registry.get_launch_plan(P, D, "hourly", "v1")
    assert (spec.workflow_id.name, spec.workflow_id.version) == ("acme.flows.pipeline", "v1")
    assert registry.get_task(P, D, "acme.flows.scale").id.version == "v1"


def test_registering_the_same_content_again_is_a_no_op_even_from_another_checkout(
    registry: Registry, tmp_path: Path
) -> None:
    pkg = flows_package(tmp_path / "src")
    first = registry.register(pkg, project=P, domain=D, version="v1")
    again = registry.register(pkg, project=P, domain=D, version="v1")
    assert not first.unchanged and again.unchanged
    assert {e.status for e in again.entities} == {"unchanged"}
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(tmp_path / "src", copy)
    from_copy = registry.register(copy / "acme", project=P, domain=D, version="v1")
    assert from_copy.unchanged and from_copy.bundle_digest == first.bundle_digest
    assert registry.versions("workflow", P, D, "acme.flows.pipeline") == ["v1"]


def test_different_content_under_a_registered_version_is_refused_with_a_diff(
    registry: Registry, tmp_path: Path, clock: object
) -> None:
    pkg = flows_package(tmp_path / "src")
    registry.register(pkg, project=P, domain=D, version="v1")
    before = registry.list_entities("workflow", P, D)
    flows_package(tmp_path / "src", factor=5, catch_up="latest")
    with pytest.raises(RegistrationConflict) as info:
        registry.register(pkg, project=P, domain=D, version="v1")
    text = str(info.value)
    assert text.startswith(f"version v1 of {P}/{D} is already registered with different content")
    assert "register the changes under a new version" in text
    # the launch plan's template diff names it and shows the changed policy
    assert "launch plan hourly:" in text
    assert "-catch_up: CATCH_UP_POLICY_ALL" in text and "+catch_up: CATCH_UP_POLICY_LATEST" in text
    # the code change shows as a source diff of the bundle
    assert "changed: acme/flows.py" in text
    assert "-FACTOR = 2" in text and "+FACTOR = 5" in text
    assert "same template, different code bundle:" in text and "task acme.flows.total" in text
    names = {(c.kind, c.name) for c in info.value.conflicts}
    assert ("launch_plan", "hourly") in names and ("task", "acme.flows.scale") in names
    # nothing was recorded
    assert registry.list_entities("workflow", P, D) == before
    # under a new version it registers, side by side with the old one
    registry.register(pkg, project=P, domain=D, version="v2")
    assert registry.versions("workflow", P, D, "acme.flows.pipeline") == ["v2", "v1"]


def test_a_changed_template_shows_as_a_protobuf_text_diff(
    registry: Registry, tmp_path: Path
) -> None:
    src = write_tree(
        tmp_path / "one",
        {"flow.py": "from taskfabric import task\n\n@task\ndef f(x: int) -> int:\n    return x\n"},
    )
    registry.register(src, project=P, domain=D, version="v1")
    write_tree(
        src,
        {"flow.py": "from taskfabric import task\n\n@task\ndef f(x: str) -> str:\n    return x\n"},
    )
    with pytest.raises(RegistrationConflict) as info:
        registry.register(src, project=P, domain=D, version="v1")
    (conflict,) = info.value.conflicts
    assert (conflict.kind, conflict.name) == ("task", "flow.f")
    assert "--- task flow.f (registered)" in conflict.diff
    assert "+++ task flow.f (new)" in conflict.diff
    changed = [line.strip() for line in conflict.diff.splitlines() if "SIMPLE_TYPE" in line]
    minus, plus = "-      simple: SIMPLE_TYPE_INTEGER", "+      simple: SIMPLE_TYPE_STRING"
    assert changed == [minus, plus] * 2


def test_versions_live_side_by_side(registry: Registry, tmp_path: Path, clock: object) -> None:
    registry.register(flows_package(tmp_path / "a"), project=P, domain=D, version="v1")
    clock.advance(10)  # type: ignore[attr-defined]
    registry.register(flows_package(tmp_path / "b", factor=3), project=P, domain=D, version="v2")
    old, old_code = registry.get_workflow(P, D, "acme.flows.pipeline", "v1")
    new, new_code = registry.get_workflow(P, D, "acme.flows.pipeline", "v2")
    latest, _ = registry.get_workflow(P, D, "acme.flows.pipeline")
    assert old.primary.id.version == "v1" and new.primary.id.version == "v2"
    assert latest.primary.id.version == "v2"
    assert old_code["bundle"] != new_code["bundle"]
    # other projects and domains are separate registries
    registry.register(
        flows_package(tmp_path / "c", factor=4), project=P, domain="prod", version="v1"
    )
    assert registry.versions("workflow", P, D, "acme.flows.pipeline") == ["v2", "v1"]
    assert registry.versions("workflow", P, "prod", "acme.flows.pipeline") == ["v1"]
    with pytest.raises(EntityNotFoundError, match="registered versions: v2, v1"):
        registry.get_workflow(P, D, "acme.flows.pipeline", "v9")
    with pytest.raises(EntityNotFoundError, match="did you mean acme.flows.pipeline"):
        registry.get_workflow(P, D, "pipeline")
    assert [e.version for e in registry.list_entities("workflows", P, D, "acme.flows.scaled")] == [
        "v2",
        "v1",
    ]


def test_a_package_travels_as_bytes_and_is_checked(registry: Registry, tmp_path: Path) -> None:
    package = build_package(flows_package(tmp_path / "src"), project=P, domain=D, version="v1")
    data = package.to_bytes()
    assert data == package.to_bytes()
    received = Package.from_bytes(data)
    result = registry.record(received)
    assert {e.status for e in result.entities} == {"registered"}
    # a package whose templates are stamped for another scope is refused
    forged = build_package(flows_package(tmp_path / "x"), project="other", domain=D, version="v1")
    tampered = Package(P, D, "v1", forged.bundle, forged.entities)
    with pytest.raises(PackageError, match="stamped other/development/v1"):
        registry.record(tampered)
    with pytest.raises(PackageError, match="not a registration package"):
        Package.from_bytes(b"garbage")


def test_launch_plan_inputs_fixed_defaults_and_overrides(
    registry: Registry, tmp_path: Path
) -> None:
    registry.register(flows_package(tmp_path / "src"), project=P, domain=D, version="v1")
    req = registry.prepare_launch(P, D, "hourly", version="v1", execution_name="run-1")
    assert req.name == "run-1" and req.launch_plan == "hourly:v1"
    assert req.cluster == "eu"  # the plan's cluster label; a launch's own one wins
    assert registry.prepare_launch(P, D, "hourly", version="v1", cluster="us").cluster == "us"
    assert {k: v.integer for k, v in req.inputs.literals.items()} == {"n": 3, "bonus": 1}
    override = types_pb2.Literal(integer=9)
    req = registry.prepare_launch(P, D, "hourly", version="v1", inputs={"bonus": override})
    assert req.inputs.literals["bonus"].integer == 9
    with pytest.raises(LaunchError, match="input n is fixed by the launch plan"):
        registry.prepare_launch(P, D, "hourly", version="v1", inputs={"n": override})
    with pytest.raises(LaunchError, match="'nope' is not an input of workflow"):
        registry.prepare_launch(P, D, "hourly", version="v1", inputs={"nope": override})
    # launching the workflow itself: its own defaults, required inputs checked
    req = registry.prepare_workflow_launch(P, D, "acme.flows.pipeline", inputs={"n": override})
    assert {k: v.integer for k, v in req.inputs.literals.items()} == {"n": 9, "bonus": 0}
    with pytest.raises(LaunchError, match=r"missing input n \(int\)"):
        registry.prepare_workflow_launch(P, D, "acme.flows.pipeline")


def test_discovery_errors_name_the_problem(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="no such file or folder"):
        registry.register(tmp_path / "missing", project=P, domain=D, version="v1")
    broken = write_tree(tmp_path / "broken", {"flow.py": "import does_not_exist\n"})
    with pytest.raises(DiscoveryError, match="cannot import module 'flow'.*does_not_exist"):
        registry.register(broken, project=P, domain=D, version="v1")
    empty = write_tree(tmp_path / "empty", {"lib.py": "X = 1\n"})
    with pytest.raises(DiscoveryError, match="no tasks, workflows or launch plans"):
        registry.register(empty, project=P, domain=D, version="v1")
    with pytest.raises(PackageError, match="version 'v 1' is not valid"):
        registry.register(empty, project=P, domain=D, version="v 1")


def test_a_folder_of_scripts_and_imports_are_isolated(registry: Registry, tmp_path: Path) -> None:
    import sys

    tree = {
        "helpers.py": "def twice(x: int) -> int:\n    return 2 * x\n",
        "jobs/daily.py": (
            "from helpers import twice\n"
            "from taskfabric import task, workflow\n\n"
            "@task\ndef t(x: int) -> int:\n    return twice(x)\n\n"
            "@workflow\ndef daily(x: int) -> int:\n    return t(x=x)\n"
        ),
        "setup.py": "raise SystemExit('never imported')\n",
    }
    src = write_tree(tmp_path / "scripts", tree)
    result = registry.register(src, project=P, domain=D, version="v1")
    assert {e.name for e in result.entities} == {"jobs.daily.t", "jobs.daily.daily"}
    assert result.skipped == ("setup.py",)
    _, code = registry.get_workflow(P, D, "jobs.daily.daily")
    assert (code["module"], code["object"]) == ("jobs.daily", "daily")
    assert "helpers" not in sys.modules and "jobs" not in sys.modules
    assert str(src) not in sys.path


def test_concurrent_registrations_of_one_version_agree(
    registry: Registry, db_url: str, tmp_path: Path
) -> None:
    import threading

    from taskfabric.metadata import MetadataStore
    from taskfabric.storage import LocalBlobStore

    same = build_package(flows_package(tmp_path / "a"), project=P, domain=D, version="v1")
    other = build_package(
        flows_package(tmp_path / "b", factor=9), project=P, domain=D, version="v1"
    )
    stores = [MetadataStore(db_url) for _ in range(4)]
    registries = [Registry(s, LocalBlobStore(tmp_path / "blobs")) for s in stores]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(registries))

    def register(reg: Registry, package: Package) -> None:
        barrier.wait()
        try:
            result = reg.record(package)
            outcomes.append("unchanged" if result.unchanged else "registered")
        except RegistrationConflict:
            outcomes.append("conflict")

    # as a server receives them: each request its own copy
    packages = [Package.from_bytes(p.to_bytes()) for p in (same, same, other, other)]
    threads = [
        threading.Thread(target=register, args=(r, p))
        for r, p in zip(registries, packages, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    # one package won; its twin found it unchanged; the two others were refused
    assert sorted(outcomes) == ["conflict", "conflict", "registered", "unchanged"]
    assert registry.versions("workflow", P, D, "acme.flows.pipeline") == ["v1"]


def test_the_launch_plan_cluster_label_reaches_the_execution(
    registry: Registry, tmp_path: Path
) -> None:
    from taskfabric.registry import enqueue_launcher

    class Recorder:
        def __init__(self) -> None:
            self.extra: dict[str, object] = {}

        def enqueue(self, compiled: object, inputs: object, **kwargs: object) -> object:
            self.extra = kwargs

            class Rec:
                id = "ex1"

            return Rec()

    registry.register(flows_package(tmp_path / "src"), project=P, domain=D, version="v1")
    engine = Recorder()
    enqueue_launcher(engine)(registry.prepare_launch(P, D, "hourly", version="v1"))  # type: ignore[arg-type]
    assert engine.extra["cluster"] == "eu" and engine.extra["launch_plan"] == "hourly:v1"
