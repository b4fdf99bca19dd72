"""taskfabric-kubernetes: each task attempt is a Pod of its own.

```toml
[backends.k8s]
driver = "kubernetes"
context = "prod-eu"                       # a kubeconfig context (one per cluster)
namespace = "tf-{execution.project}-{execution.domain}"
image = "registry.example/team/tasks:2026.12"

[task_types]
python = "k8s"
```

`@task(requests=Resources(cpu="1", memory="1Gi"), limits=...)` become the pod's resources;
`pod_template` and `task_pod_templates` add node selectors, tolerations, volumes and more.
See docs/plugins/kubernetes.md.
"""

from taskfabric_kubernetes._backend import KubernetesBackend
from taskfabric_kubernetes._settings import KubernetesSettings

__version__ = "0.1.0"

__all__ = ["KubernetesBackend", "KubernetesSettings"]
