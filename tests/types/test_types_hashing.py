"""Canonical encoding and hashes of literals (cache keys)."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import (
    File,
    TransformContext,
    TypeEngine,
    canonical_bytes,
    literal_hash,
    literal_map_hash,
)


def lit_int(value: int) -> pb.Literal:
    return pb.Literal(integer=value)


def test_hash_format(engine: TypeEngine) -> None:
    digest = literal_hash(engine.to_literal(3, int))
    assert digest.startswith("sha256:") and len(digest) == 7 + 64


@given(
    st.dictionaries(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1), max_size=8), st.randoms()
)
def test_map_hash_ignores_insertion_order(entries: dict[str, int], rnd: random.Random) -> None:
    engine = TypeEngine.with_builtins()
    keys = list(entries)
    shuffled_keys = keys[:]
    rnd.shuffle(shuffled_keys)
    shuffled = {k: entries[k] for k in shuffled_keys}
    one = engine.to_literal(entries, dict[str, int])
    two = engine.to_literal(shuffled, dict[str, int])
    assert canonical_bytes(one) == canonical_bytes(two)
    assert literal_hash(one) == literal_hash(two)
    as_map_one = {k: lit_int(v) for k, v in entries.items()}
    as_map_two = {k: lit_int(v) for k, v in shuffled.items()}
    assert literal_map_hash(as_map_one) == literal_map_hash(as_map_two)


def test_literal_map_in_different_insertion_orders() -> None:
    first = pb.LiteralMap()
    second = pb.LiteralMap()
    for key in ["a", "b", "c", "d", "e"]:
        first.literals[key].CopyFrom(lit_int(ord(key)))
    for key in ["e", "c", "a", "d", "b"]:
        second.literals[key].CopyFrom(lit_int(ord(key)))
    assert literal_map_hash(first) == literal_map_hash(second)
    assert literal_map_hash(first) == literal_map_hash(dict(second.literals))


def test_record_field_order_is_irrelevant(engine: TypeEngine) -> None:
    @dataclass
    class AB:
        a: int
        b: str

    @dataclass
    class BA:
        b: str
        a: int

    assert literal_hash(engine.to_literal(AB(1, "x"), AB)) == literal_hash(
        engine.to_literal(BA("x", 1), BA)
    )
    assert literal_hash(engine.to_literal(AB(1, "x"), AB)) != literal_hash(
        engine.to_literal(AB(2, "x"), AB)
    )


def test_exclude_drops_named_inputs() -> None:
    entries = {"x": lit_int(1), "seed": lit_int(42)}
    assert literal_map_hash(entries, exclude={"seed"}) == literal_map_hash({"x": lit_int(1)})
    assert literal_map_hash(entries) != literal_map_hash({"x": lit_int(1)})


def test_values_that_differ_hash_differently(engine: TypeEngine) -> None:
    candidates = [
        engine.to_literal(1, int),
        engine.to_literal(1.0, float),
        engine.to_literal("1", str),
        engine.to_literal(b"1", bytes),
        engine.to_literal(True, bool),
        engine.to_literal(None, None),
        engine.to_literal([1], list[int]),
        engine.to_literal({"1": 1}, dict[str, int]),
        engine.to_literal([], list[int]),
        engine.to_literal({}, dict[str, int]),
        engine.to_literal(["a", "b"], list[str]),
        engine.to_literal(["ab"], list[str]),
        engine.to_literal(["a", ""], list[str]),
        engine.to_literal(1, int | str),
        engine.to_literal("1", int | str),
    ]
    hashes = [literal_hash(c) for c in candidates]
    assert len(set(hashes)) == len(hashes)


def test_union_is_hashed_with_its_variant(engine: TypeEngine) -> None:
    as_int = engine.to_literal(1, int | float)
    as_float = engine.to_literal(1.0, int | float)
    assert literal_hash(as_int) != literal_hash(as_float)
    assert literal_hash(engine.to_literal(1, int | None)) != literal_hash(engine.to_literal(1, int))
    # The variant, not the whole union, is part of the value: 1 as int is 1 as int.
    assert literal_hash(engine.to_literal(1, int | None)) == literal_hash(
        engine.to_literal(1, int | str)
    )


def test_float_zero_signs_and_nans_are_canonical(engine: TypeEngine) -> None:
    assert literal_hash(engine.to_literal(0.0, float)) == literal_hash(
        engine.to_literal(-0.0, float)
    )
    quiet = float("nan")
    other_nan = -math.nan
    assert literal_hash(engine.to_literal(quiet, float)) == literal_hash(
        engine.to_literal(other_nan, float)
    )
    assert literal_hash(engine.to_literal(math.inf, float)) != literal_hash(
        engine.to_literal(-math.inf, float)
    )


def test_files_hash_by_content_not_path(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "data.csv").write_text("1,2\n")
    (tmp_path / "b" / "other-name.csv").write_text("1,2\n")
    one = engine.to_literal(File(tmp_path / "a" / "data.csv"), File, ctx)
    two = engine.to_literal(File(tmp_path / "b" / "other-name.csv"), File, ctx)
    assert one.blob.uri != two.blob.uri
    assert literal_hash(one) == literal_hash(two)


def test_different_content_at_the_same_uri_hashes_differently() -> None:
    blob = pb.BlobValue(
        uri="file:///data/x.csv",
        content_hash="sha256:" + "a" * 64,
        type=pb.BlobType(dimensionality=pb.BLOB_DIMENSIONALITY_SINGLE),
    )
    changed = pb.BlobValue()
    changed.CopyFrom(blob)
    changed.content_hash = "sha256:" + "b" * 64
    assert literal_hash(pb.Literal(blob=blob)) != literal_hash(pb.Literal(blob=changed))


def test_blob_without_content_hash_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="no content hash"):
        literal_hash(pb.Literal(blob=pb.BlobValue(uri="file:///x")))
    with pytest.raises(ValueError, match="no value"):
        literal_hash(pb.Literal())


def test_hash_is_stable_across_versions() -> None:
    """The encoding is part of cache keys: a change must be deliberate (bump the prefix)."""
    value = pb.Literal()
    value.map.literals["b"].CopyFrom(pb.Literal(string="x"))
    value.map.literals["a"].list.literals.add().integer = 1
    assert canonical_bytes(value) == (
        b"M\x00\x00\x00\x00\x00\x00\x00\x02"
        b"\x00\x00\x00\x00\x00\x00\x00\x01a"
        b"L\x00\x00\x00\x00\x00\x00\x00\x01i\x00\x00\x00\x00\x00\x00\x00\x01"
        b"\x00\x00\x00\x00\x00\x00\x00\x01bs\x00\x00\x00\x00\x00\x00\x00\x01x"
    )


def test_each_hash_is_the_sha256_of_the_versioned_encoding() -> None:
    """Both hashes copy one digest of the version prefix: every call gives
    sha256(prefix + encoding), the same on the second call as on the first."""
    prefix = b"taskfabric-literal-v1\0"
    value = pb.Literal(string="x")
    expected = "sha256:" + hashlib.sha256(prefix + canonical_bytes(value)).hexdigest()
    assert literal_hash(value) == literal_hash(value) == expected
    m = pb.LiteralMap()
    m.literals["k"].CopyFrom(value)
    encoded = b"M" + (1).to_bytes(8, "big") + (1).to_bytes(8, "big") + b"k"
    expected = "sha256:" + hashlib.sha256(prefix + encoded + canonical_bytes(value)).hexdigest()
    assert literal_map_hash(m) == literal_map_hash(m) == expected
