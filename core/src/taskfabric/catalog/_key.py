"""Cache keys: one function, used by every way a task can run.

key = sha256(project, domain, task name, cache version, interface hash, inputs hash)

- The cache version is the task's explicit `Cache(version=...)`, or else derived from its
  code: the task function's compiled code plus that of every function and class of the same
  module that it calls, directly or through each other (found from the names the code uses,
  not by running it). Editing what any of them does gives a new version; comments and
  formatting do not.
  (`taskfabric.sdk.source_version` computes it when a task is declared.)
  Not covered: code in other modules and installed packages, data the code reads from files
  or the network, environment variables, and the Python version. Give an explicit version
  (and bump it) when results depend on those.
- The interface hash covers the names and types of inputs and outputs.
- The inputs hash is over the canonical encoding of the input values: map and record field
  order do not matter; files and directories count by content, not by path; inputs listed in
  `Cache(ignored_inputs=...)` are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.types import literal_map_hash


def interface_hash(interface: interface_pb2.TypedInterface) -> str:
    """Hash of input and output names and types (not defaults or descriptions)."""
    digest = hashlib.sha256()
    named = [("in", i.name, i.type) for i in interface.inputs] + [
        ("out", o.name, o.type) for o in interface.outputs
    ]
    for label, name, lt in sorted(named, key=lambda e: (e[0], e[1])):
        digest.update(f"{label}:{name}:".encode())
        digest.update(lt.SerializeToString(deterministic=True))
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def inputs_hash(inputs: types_pb2.LiteralMap, ignored: Collection[str] = ()) -> str:
    return literal_map_hash(inputs, exclude=ignored)


def cache_key(
    *,
    project: str,
    domain: str,
    task_name: str,
    cache_version: str,
    interface_hash: str,
    inputs_hash: str,
) -> str:
    parts = (project, domain, task_name, cache_version, interface_hash, inputs_hash)
    digest = hashlib.sha256("\0".join(parts).encode())
    return digest.hexdigest()
