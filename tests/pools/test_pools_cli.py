"""`taskfabric pools` and `taskfabric pools show NAME`, on the config's database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from pool_helpers import holder

from taskfabric.cli import cli
from taskfabric.config import load_config
from taskfabric.metadata import MetadataStore
from taskfabric.pools import PoolManager, specs_from_config

CONFIG = """\
[pools.geo]
slots = 2
rate = 30
per = "minute"
project_caps = { "*" = 2 }

[pools.db]
slots = 1
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def busy_pools(taskfabric_home: Path) -> None:
    (taskfabric_home / "config.toml").write_text(CONFIG, encoding="utf-8")
    config = load_config()
    store = MetadataStore(config.metadata_url)
    pm = PoolManager(store.engine, specs_from_config(config), owner="host:1")
    assert pm.request(holder("held", "ml"), {"geo": 1, "db": 1}) is not None
    assert pm.request(holder("second", "ml"), {"geo": 1, "db": 1}) is None
    assert pm.request(holder("first", "web"), {"db": 1}, priority=3) is None
    pm.pushback("geo", 60)
    pm.close()
    store.close()


def test_list_shows_capacity_holders_and_waiters(taskfabric_home: Path) -> None:
    busy_pools(taskfabric_home)
    code, out, _ = invoke("pools")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "POOL", "IN", "USE", "RATE", "TOKENS", "TTL", "HOLDERS", "WAITERS", "STATE"
    ]  # fmt: skip
    assert lines[1].split()[:3] == ["db", "1/1", "-"] and "full" in lines[1]
    assert lines[2].split()[:4] == ["geo", "1/2", "30/min", "burst"] and "paused" in lines[2]
    assert "db: holders" in out and "ex-held" in out
    # waiters in the order they will be served: priority first
    db_waiters = out[out.index("db: waiters") :].splitlines()
    assert db_waiters[2].split()[:2] == ["1", "ex-first"]
    assert db_waiters[3].split()[:2] == ["2", "ex-second"]
    again = invoke("pools", "list")[1].splitlines()
    assert [line.split()[:3] for line in again[:3]] == [line.split()[:3] for line in lines[:3]]


def test_show_and_json(taskfabric_home: Path) -> None:
    busy_pools(taskfabric_home)
    code, out, _ = invoke("pools", "show", "geo")
    assert code == 0 and "geo project caps: *=2" in out and "ex-second" in out
    code, out, _ = invoke("pools", "show", "db", "-o", "json")
    pool = json.loads(out)
    assert (pool["name"], pool["slots"], pool["in_use"]) == ("db", 1, 1)
    assert [h["execution_id"] for h in pool["holders"]] == ["ex-held"]
    assert [(w["position"], w["execution_id"]) for w in pool["waiters"]] == [
        (1, "ex-first"),
        (2, "ex-second"),
    ]
    assert 0 < pool["holders"][0]["expires_in_seconds"] <= 30
    code, out, _ = invoke("pools", "-o", "json")
    assert [p["name"] for p in json.loads(out)] == ["db", "geo"]
    assert json.loads(out)[1]["paused_until"] is not None


def test_unknown_pool_and_no_pools(taskfabric_home: Path) -> None:
    code, _, err = invoke("pools")
    assert code == 1 and "no pools configured: declare one under [pools.<name>]" in err
    (taskfabric_home / "config.toml").write_text(CONFIG, encoding="utf-8")
    code, _, err = invoke("pools", "show", "nope")
    assert code == 1 and "no pool named 'nope'; configured pools: db, geo" in err
    code, out, err = invoke("pools", "show", "db")
    assert code == 0 and "nobody holds or waits for 'db'" in err
