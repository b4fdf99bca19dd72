"""Readable differences between what is registered and what a new registration brings."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from taskfabric.bundles import Bundle, bundle_members, read_member
from taskfabric.registry._stamp import text_diff

#: Most lines of source diff shown for a changed code bundle.
MAX_SOURCE_DIFF_LINES = 200


def _indent(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(True))


def entity_diff(
    kind: str,
    name: str,
    old: Any,
    new: Any,
    old_code: Mapping[str, str],
    new_code: Mapping[str, str],
) -> str:
    """The template diff (protobuf text format) and any change of code location."""
    parts = []
    text = text_diff(old, new, f"{kind} {name}")
    if text:
        parts.append(_indent(text))
    if dict(old_code) != dict(new_code):
        parts.append(f"  code location: {dict(old_code)} (registered) -> {dict(new_code)} (new)\n")
    return "".join(parts)


def bundle_diff(old_data: bytes | None, old_digest: str, new: Bundle) -> str:
    """Which files differ between the registered code bundle and the new one, with a unified
    diff of changed text files (cut after MAX_SOURCE_DIFF_LINES lines)."""
    head = f"code bundle: {old_digest[:12]} (registered) -> {new.digest[:12]} (new)\n"
    if old_data is None:
        return head + "  (the registered bundle is no longer in the blob store)\n"
    before = bundle_members(old_data)
    after = bundle_members(new.data)
    changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    lines = [head]
    for label, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            lines.append(f"  {label}: {', '.join(names)}\n")
    shown = 0
    for name in changed:
        a, b = read_member(old_data, name), read_member(new.data, name)
        try:
            a_text = (a or b"").decode("utf-8").splitlines(True)
            b_text = (b or b"").decode("utf-8").splitlines(True)
        except UnicodeDecodeError:
            continue
        for line in difflib.unified_diff(
            a_text, b_text, fromfile=f"{name} (registered)", tofile=f"{name} (new)"
        ):
            if shown >= MAX_SOURCE_DIFF_LINES:
                lines.append("  ... (diff cut)\n")
                return "".join(lines)
            lines.append("  " + (line if line.endswith("\n") else line + "\n"))
            shown += 1
    return "".join(lines)
