"""The map item chunks an SQLite writer wrote last, kept decoded between its transactions
(`ChunkCache`; the chunks themselves: `_items`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskfabric.metadata._items import Chunk


class ChunkCache:
    """The chunks a writer connection wrote last, decoded, for its next transactions: an
    engine committing a few items at a time touches the same chunk commit after commit, and
    read and decoded it again each time. Valid only while no other connection writes the
    database: the first look-up of a transaction (`begin`) compares `version()` (the
    owner's `PRAGMA data_version`) with the one the chunks were kept at and drops them all
    when it moved; and only after a commit: a rollback calls `clear` (the chunks are changed
    in place). Holds at most `size` chunks, the least recently written dropped first (a
    map's items start in order: the few chunks of the items running)."""

    __slots__ = ("_checked", "_chunks", "_version", "size", "version")

    def __init__(self, version: Callable[[], int], size: int = 256) -> None:
        self._chunks: dict[tuple[str, str, int], Chunk] = {}
        self._version = version
        self._checked = False
        self.size = size
        #: the `version()` the chunks were kept at (None: none kept)
        self.version: int | None = None

    def __len__(self) -> int:
        return len(self._chunks)

    def begin(self) -> None:
        """A transaction begins: its first look-up checks the version."""
        self._checked = False

    def get(self, key: tuple[str, str, int]) -> Chunk | None:
        chunks = self._chunks
        if not chunks:
            return None
        if not self._checked:
            self._checked = True
            now = self._version()
            if now != self.version:
                chunks.clear()  # another connection wrote since: read them again
                self.version = now
                return None
        return chunks.get(key)

    def keep(self, chunks: dict[tuple[str, str, int], Chunk | None]) -> None:
        """The chunks a transaction touched (the most recent now)."""
        kept = self._chunks
        for key, chunk in chunks.items():
            if chunk is not None:
                kept.pop(key, None)
                kept[key] = chunk
        while len(kept) > self.size:
            del kept[next(iter(kept))]
        if kept and self.version is None:
            self.version = self._version()

    def clear(self) -> None:
        self._chunks.clear()
        self.version = None
