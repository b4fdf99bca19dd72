"""Code bundles: a source tree as a deterministic, content-addressed tar.gz in the blob store
(`bundles/<sha256>.tar.gz`), and loading an object back from one.

The registry creates and uploads them when code is registered; the engine loads a registered
workflow's code from its bundle (`load_bundled`). Both stand on this package, which stands
only on the blob store.

```python
bundle = create_bundle(Path("flows/"))
uri = upload_bundle(store, bundle.data)
wf = load_bundled({"bundle": uri, "module": "flows.etl", "object": "etl"}, store, cache_root)
```
"""

from taskfabric.bundles._bundle import (
    SKIPPED_DIRS,
    Bundle,
    BundleError,
    bundle_digest,
    bundle_files,
    bundle_members,
    create_bundle,
    extract_bundle,
    read_member,
    upload_bundle,
)
from taskfabric.bundles._load import bundle_root, load_bundled

__all__ = [
    "SKIPPED_DIRS",
    "Bundle",
    "BundleError",
    "bundle_digest",
    "bundle_files",
    "bundle_members",
    "bundle_root",
    "create_bundle",
    "extract_bundle",
    "load_bundled",
    "read_member",
    "upload_bundle",
]
