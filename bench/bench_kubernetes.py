"""Kubernetes benchmark: what a no-op task costs on the `kubernetes` backend against a bare
pod of the same image, and what following many pods costs in API calls.

    bash integration_tests/kubernetes/cluster.sh up        # the test cluster (or any cluster)
    python bench/bench_kubernetes.py --image localhost/taskfabric-it:TAG --repeat 5 --pods 20

- bare: a pod created with the `kubernetes` client running
  `python3 -c "import taskfabric.execute"` (what `taskfabric-execute` imports), followed by a
  watch until it ended, then deleted: the floor of any pod-per-attempt backend.
- K1: a one-task workflow on the kubernetes backend: the engine records the execution, the
  backend stages the attempt's files, creates the pod, follows it with its watch, reads the
  log and the outputs back, and deletes the pod.
- W: a map of `--pods` no-op items with `[engine] parallelism = --pods` (all at once), counting the
  backend's API calls (creates, reads, logs, deletes, lists, watches started): calls per pod.

Figures are medians of `--repeat` runs of K1 and bare; the ratio to read is K1 / bare. Needs a
cluster whose node has the image (`cluster.sh import-image`), and taskfabric-kubernetes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

import taskfabric_kubernetes._api as kube_api
from taskfabric.config import load_config
from taskfabric.engine import Engine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import kubernetes_noop  # noqa: E402

NAMESPACE = "tf-bench"


def bare_pod(core: client.CoreV1Api, image: str) -> float:
    name = f"bench-bare-{uuid.uuid4().hex[:8]}"
    pod = {
        "metadata": {"name": name, "labels": {"bench": name}},
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            "shareProcessNamespace": True,
            "containers": [
                {
                    "name": "task",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import taskfabric.execute"],
                }
            ],
        },
    }
    listed = core.list_namespaced_pod(NAMESPACE, label_selector=f"bench={name}")
    started = time.perf_counter()
    core.create_namespaced_pod(NAMESPACE, pod)
    follower = watch.Watch()
    for event in follower.stream(
        core.list_namespaced_pod,
        NAMESPACE,
        label_selector=f"bench={name}",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=300,
    ):
        if event["object"].status.phase in ("Succeeded", "Failed"):
            follower.stop()
            break
    elapsed = time.perf_counter() - started
    core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
    return elapsed


def config_file(folder: Path, kubeconfig: str, context: str, image: str, pods: int) -> Path:
    path = folder / "taskfabric.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{folder / "data"}"

            [engine]
            parallelism = {pods}

            [task_types]
            python = "k8s"

            [backends.k8s]
            driver = "kubernetes"
            kubeconfig = "{kubeconfig}"
            context = "{context}"
            namespace = "{NAMESPACE}"
            image = "{image}"
            image_pull_policy = "Never"
            code = "host-path"
            pod_template = {{ spec = {{ hostNetwork = true }} }}
            """),
        encoding="utf-8",
    )
    return path


class CountingCalls:
    """Counts every API call of every backend (`KubeApi._count`), for calls per pod."""

    def __init__(self) -> None:
        self.calls = 0
        original = kube_api.KubeApi._count

        def count(api: Any) -> None:
            self.calls += 1
            original(api)

        kube_api.KubeApi._count = count  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default="/var/lib/taskfabric/kubernetes/kubeconfig")
    parser.add_argument("--context", default="taskfabric-test")
    parser.add_argument("--image", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    core = client.CoreV1Api(
        config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    )
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    counter = CountingCalls()
    with tempfile.TemporaryDirectory(prefix="bench-kubernetes-") as tmp:
        path = config_file(Path(tmp), args.kubeconfig, args.context, args.image, args.pods)
        bare, k1 = [], []
        with Engine(load_config(path)) as engine:
            engine.launch(kubernetes_noop.one_noop, {})  # warm: the watch, the node's cache
            bare_pod(core, args.image)
            for _ in range(args.repeat):
                bare.append(bare_pod(core, args.image))
                started = time.perf_counter()
                result = engine.launch(kubernetes_noop.one_noop, {})
                k1.append(time.perf_counter() - started)
                assert result.phase == "SUCCEEDED", result.error
            before = counter.calls
            started = time.perf_counter()
            result = engine.launch(kubernetes_noop.many_noops, {"n": args.pods})
            wide = time.perf_counter() - started
            assert result.phase == "SUCCEEDED", result.error
            calls = counter.calls - before
    b, k = statistics.median(bare), statistics.median(k1)
    runs_b = sorted(round(x, 2) for x in bare)
    runs_k = sorted(round(x, 2) for x in k1)
    print(f"bare pod (create -> ended, watched):  median {b:.2f} s  {runs_b}")
    print(f"K1 one no-op task on kubernetes:      median {k:.2f} s  {runs_k}")
    print(f"K1 / bare: {k / b:.2f}   overhead: {k - b:+.2f} s")
    print(
        f"W map of {args.pods} no-op pods at once: {wide:.1f} s, {calls} API calls, "
        f"{calls / (args.pods + 1):.2f} per pod (the map's items and its list task)"
    )


if __name__ == "__main__":
    main()
