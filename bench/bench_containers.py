"""Containers benchmark: what a no-op task costs on the `podman` backend against a bare
container of the same image, and what an image build costs cold and cached.

    python bench/bench_containers.py --url unix:///run/podman/podman.sock   # or a service of
    python bench/bench_containers.py --repeat 9                             # its own (default)

- bare: `containers.run(IMAGE, ["python3", "-c", "import taskfabric.execute"])` through the same
  API (create, start, wait, remove): a container that imports what `taskfabric-execute` does.
- C1: a one-task workflow on the podman backend: the engine records the execution, stages the
  attempt's files, starts a container running `taskfabric-execute` (load the task, read the
  inputs, write the outputs), follows its log, reads the result back, removes the container.
- B1: the test task image (the core and pandas) built with no cache at all (its base image
  present), against B2: the same build when the spec is unchanged (the image is reused).

Figures are medians of `--repeat` runs of C1 and bare; the ratio to read is C1 / bare. Needs
podman (apt-get install podman runc debootstrap) and taskfabric-containers installed.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from containers_noop import one_noop

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric_containers import ImageSpec, build_image
from taskfabric_containers._client import ContainerApi
from taskfabric_containers.testing import podman_service

REPO = Path(__file__).resolve().parents[1]
SPEC = ImageSpec(name="taskfabric-it", packages=["./core[pandas]"], root=str(REPO))


@contextlib.contextmanager
def service(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-podman-") as tmp,
        podman_service(Path(tmp)) as started,
    ):
        yield started


def bare(api: ContainerApi, image: str) -> float:
    started = time.perf_counter()
    api.client.containers.run(
        image, ["python3", "-c", "import taskfabric.execute"], remove=True, network_mode="none"
    )
    return time.perf_counter() - started


def on_backend(engine: Engine) -> float:
    started = time.perf_counter()
    result = engine.launch(one_noop, {"x": 3})
    elapsed = time.perf_counter() - started
    assert result.phase == "SUCCEEDED", result.error
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a podman/Docker API (default: start one)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-build", action="store_true", help="skip B1 (a few minutes)")
    args = parser.parse_args()
    with service(args.url) as url, tempfile.TemporaryDirectory(prefix="bench-tf-") as tmp:
        api = ContainerApi(url, timeout=900)
        cached = build_image(SPEC, api)  # the image exists for the rest of the run
        image = cached.ref
        root = Path(tmp)
        (root / "taskfabric.toml").write_text(
            f'[storage]\ndata_root = "{root / "data"}"\n[task_types]\npython = "podman"\n'
            f'[backends.podman]\ndriver = "podman"\nurl = "{url}"\nimage = "{image}"\n'
        )
        engine = Engine(load_config(root / "taskfabric.toml"))
        try:
            bare(api, image), on_backend(engine)  # warm both paths once
            bare_runs, task_runs = [], []
            for _ in range(args.repeat):
                bare_runs.append(bare(api, image))
                task_runs.append(on_backend(engine))
        finally:
            engine.close()
        b, c = statistics.median(bare_runs), statistics.median(task_runs)
        print(f"bare container      {b * 1000:8.0f} ms   1.00x")
        print(f"C1 no-op task       {c * 1000:8.0f} ms   {c / b:.2f}x   (+{(c - b) * 1000:.0f} ms)")
        reused = build_image(SPEC, api)
        assert not reused.built
        if not args.skip_build:
            cold = build_image(SPEC, api, no_cache=True)
            print(f"B1 image build cold {cold.seconds:8.1f} s    1.00x")
            print(
                f"B2 unchanged spec   {reused.seconds:8.3f} s    "
                f"{reused.seconds / cold.seconds:.4f}x"
            )
        else:
            print(f"B2 unchanged spec   {reused.seconds:8.3f} s")
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
