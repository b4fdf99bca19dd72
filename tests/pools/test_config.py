"""``[pools.<name>]`` in the config file: validated with file and line, turned into specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfabric.config import ConfigError, load_config
from taskfabric.pools import PoolSpec, specs_from_config

FULL = """\
[pools.geo-api]
slots = 5
rate = 120
per = "minute"
burst = 3
lease_ttl = 20
project_caps = { "*" = 2 }
domain_caps = { production = 4 }
project_weights = { ml = 2.0 }

[pools.db]
slots = 8

[projects.ml]
pool_caps = { geo-api = 3 }
"""


def load(folder: Path, text: str) -> list[PoolSpec]:
    (folder / "taskfabric.toml").write_text(text, encoding="utf-8")
    return list(specs_from_config(load_config(cwd=folder, env={})).values())


def error_for(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(folder, text)
    return str(caught.value)


def test_pools_become_specs(tmp_path: Path) -> None:
    assert load(tmp_path, FULL) == [
        PoolSpec("db", 8),
        PoolSpec(
            "geo-api",
            5,
            rate=2.0,
            burst=3,
            lease_ttl=20,
            project_caps={"*": 2, "ml": 3},
            domain_caps={"production": 4},
            project_weights={"ml": 2.0},
        ),
    ]
    assert load(tmp_path, "") == []


def test_defaults(tmp_path: Path) -> None:
    (spec,) = load(tmp_path, "[pools.x]\nslots = 4\nrate = 10\n")
    assert (spec.rate, spec.bucket, spec.lease_ttl) == (10, 4, 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[pools.geo]\nslots = 2\nslotz = 3\n",
            "taskfabric.toml:3: pools.geo.slotz: unknown key; allowed keys in [pools.geo]: burst, "
            "domain_caps, lease_ttl, per, project_caps, project_weights, rate, slots. "
            "Did you mean 'slots'?",
        ),
        ("[pools.geo]\nrate = 1\n", "taskfabric.toml:1: pools.geo.slots: required key is missing"),
        (
            "[pools.geo]\nslots = 0\n",
            "taskfabric.toml:2: pools.geo.slots: Input should be greater than or equal to 1",
        ),
        (
            '[pools.geo]\nslots = 2\nper = "minute"\n',
            "taskfabric.toml:3: pools.geo.per: per is set but rate is not; add rate or remove per",
        ),
        (
            '[pools.geo]\nslots = 2\nrate = 5\nper = "hour"\n',
            "taskfabric.toml:4: pools.geo.per: Input should be 'second' or 'minute'",
        ),
        (
            "[pools.geo]\nslots = 2\n\n[pools.geo.project_caps]\nml = 0\n",
            "taskfabric.toml:5: pools.geo.project_caps.ml: Input should be greater than or equal",
        ),
        (
            '[pools."bad name"]\nslots = 2\n',
            'taskfabric.toml:1: pools."bad name": not a valid pool name',
        ),
        (
            "[pools.geo]\nslots = 2\n\n[projects.ml.pool_caps]\nnope = 1\n",
            "taskfabric.toml:5: projects.ml.pool_caps.nope: no pool named 'nope' in [pools] "
            "(defined: geo)",
        ),
        (
            "[pools.geo]\nslots = 2\nproject_caps = { ml = 1 }\n\n[projects.ml]\n"
            "pool_caps.geo = 1\n",
            "taskfabric.toml:6: projects.ml.pool_caps.geo: also set as [pools.geo] "
            "project_caps.ml; keep one",
        ),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error_for(tmp_path, text).startswith(expected)


def test_the_documented_example(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "pools.toml"
    geo, warehouse = load(tmp_path, example.read_text(encoding="utf-8"))
    assert geo == PoolSpec(
        "geo-api",
        5,
        rate=2.0,
        burst=10,
        lease_ttl=30,
        project_caps={"*": 3, "ingest": 5},
        project_weights={"ingest": 2.0},
    )
    assert warehouse.project_caps == {"ml": 4}
    assert warehouse.domain_caps == {"production": 6, "*": 2}
