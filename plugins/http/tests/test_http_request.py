"""The `http` task type on the engine, against a real service on 127.0.0.1."""

from __future__ import annotations

from http_helpers import MakeEngine, service_toml
from http_tasks import Echoed, Place, locate, locate_and_echo

from taskfabric_http.testing import QuotaServer


def test_request_maps_json_to_a_dataclass(make_engine: MakeEngine, server: QuotaServer) -> None:
    engine = make_engine(service_toml("geo", server.url))
    result = engine.launch(locate, {"address": "Main St"})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(locate, engine.store) == Place("Main St", 10.5, -2.25)
    assert server.stats.seen[0][:2] == ("GET", "/geocode")


def test_json_body_from_a_record_and_several_outputs(
    make_engine: MakeEngine, server: QuotaServer
) -> None:
    engine = make_engine(service_toml("geo", server.url))
    result = engine.launch(locate_and_echo, {"address": "Elm"})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(locate_and_echo, engine.store) == Echoed(200, "Elm", "POST")
