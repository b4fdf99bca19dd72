"""What users see when something is wrong: config, templates, 4xx/5xx, secrets."""

from __future__ import annotations

import pytest
from http_helpers import MakeEngine, service_toml
from http_tasks import locate

from taskfabric import task
from taskfabric.errors import TaskfabricError
from taskfabric_http import Call, HttpJob, HttpRequest
from taskfabric_http._send import Caller
from taskfabric_http.testing import QuotaServer


def test_template_naming_no_input_fails_at_decoration() -> None:
    with pytest.raises(TaskfabricError, match=r"\{inputs\.adress\} names no input"):

        @task(config=HttpRequest(service="geo", url="/geocode?q={inputs.adress}"))
        def geocode(address: str) -> dict[str, float]: ...


def test_bad_brace_and_bad_path_fail_when_written() -> None:
    with pytest.raises(ValueError, match="is never closed"):
        HttpRequest(service="geo", url="/x/{inputs.a")
    with pytest.raises(ValueError, match=r"output 'o0'.*not an output source"):
        HttpRequest(service="geo", outputs="results.0")
    with pytest.raises(ValueError, match="method 'FETCH'"):
        HttpRequest(service="geo", method="FETCH")


def test_job_placeholder_in_submit_is_refused() -> None:
    with pytest.raises(TaskfabricError, match=r"submit: \{job\.id\} has no value there"):

        @task(config=HttpJob(service="j", submit=Call(url="/{job.id}"), status=Call(url="/s")))
        def job() -> int: ...


def test_config_round_trips_through_its_proto() -> None:
    job = HttpJob(
        service="j",
        submit=Call(method="post", url="/jobs", body={"n": 5, "x": "{inputs.x}"}),
        status=Call(url="/jobs/{job.id}"),
        cancel=Call(method="DELETE", url="/jobs/{job.id}"),
        outputs={"o0": "$.out"},
    )
    back = HttpJob.from_proto(job.to_proto())
    assert back == job
    assert isinstance(back, HttpJob) and back.submit.body == {"n": 5, "x": "{inputs.x}"}


def test_undeclared_service_fails_before_running(make_engine: MakeEngine) -> None:
    engine = make_engine('[backends.http]\ndriver = "http"\n')
    with pytest.raises(Exception, match=r"service 'geo' is not declared.*services\.geo"):
        engine.launch(locate, {"address": "x"})


def test_4xx_is_a_task_error_with_the_body_excerpt(
    make_engine: MakeEngine, server: QuotaServer
) -> None:
    engine = make_engine(service_toml("geo", server.url))
    result = engine.launch(locate, {"address": ""})  # the server wants a q
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "HttpClientError"
    assert "answered 400 Bad Request" in result.error["message"]
    assert "q is required" in result.error["message"]
    assert len(server.stats.seen) == 1  # a 4xx is not retried


def test_5xx_is_retried_with_backoff(make_engine: MakeEngine, server: QuotaServer) -> None:
    engine = make_engine(service_toml("geo", server.url, "retries = 2\nbackoff = 0.05"))
    for _ in range(2):
        server.script.append((502, {}, {"error": "bad gateway"}))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "SUCCEEDED", result.error
    assert server.stats.requests == 3
    nodes = engine.metadata.nodes(result.execution_id)
    assert [n.attempts for n in nodes] == [1]  # retried inside the attempt


def test_a_retry_takes_a_rate_token_of_its_own(
    make_engine: MakeEngine, server: QuotaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One token per 1000 s: the grant pays for the first request and empties the bucket, so
    # each retry must wait for a token of its own, ~1000 s more than the one before. The
    # waits are recorded instead of slept: the test judges what the caller was told to wait,
    # not how fast a busy machine ran it.
    waits: list[float] = []
    monkeypatch.setattr(Caller, "_wait", lambda self, seconds: waits.append(seconds))
    engine = make_engine(
        service_toml("geo", server.url, 'retries = 2\nbackoff = 0.01\npools = ["geo-api"]')
        + "[pools.geo-api]\nslots = 1\nrate = 0.001\nburst = 1\n"
    )
    for _ in range(2):
        server.script.append((502, {}, {"error": "bad gateway"}))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "SUCCEEDED", result.error
    assert server.stats.requests == 3
    rate_waits = [w for w in waits if w > 1]  # the others are the 0.01 s backoffs
    assert len(rate_waits) == 2, waits
    first, second = rate_waits
    # the first retry waits for the token the bucket lacks, the second for one more
    assert 900 < first <= 1000 and 900 < second - first <= 1000, waits


def test_5xx_every_time_fails_naming_the_service(
    make_engine: MakeEngine, server: QuotaServer
) -> None:
    engine = make_engine(service_toml("geo", server.url, "retries = 1\nbackoff = 0.01"))
    for _ in range(2):
        server.script.append((503, {}, {"error": "down"}))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "HttpServerError"
    assert "service 'geo' answered 503" in result.error["message"]


def test_connection_refused_is_a_connect_error(make_engine: MakeEngine) -> None:
    engine = make_engine(service_toml("geo", "http://127.0.0.1:9", "retries = 0"))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "HttpConnectError"
    assert "could not be reached" in result.error["message"] or "failed" in result.error["message"]


def test_token_is_sent_and_redacted_from_errors(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("GEO_TOKEN", secret)
    with QuotaServer(token=secret) as server:
        engine = make_engine(service_toml("geo", server.url, 'auth = { env = "GEO_TOKEN" }'))
        ok = engine.launch(locate, {"address": "Oak"})
        assert ok.phase == "SUCCEEDED", ok.error
        # The server echoes what it got in its 400/401 answers; the error must not show it.
        server.script.append((403, {}, {"error": f"token {secret} lacks a scope"}))
        failed = engine.launch(locate, {"address": "Oak"})
        assert failed.phase == "FAILED" and failed.error is not None
        assert secret not in failed.error["message"]
        assert "token *** lacks a scope" in failed.error["message"]
    db = (engine.config.data_root / "taskfabric.db").read_bytes()
    assert secret.encode() not in db


def test_missing_token_names_the_variable(
    make_engine: MakeEngine, server: QuotaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    engine = make_engine(service_toml("geo", server.url, 'auth = { env = "NO_SUCH_TOKEN" }'))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "FAILED" and result.error is not None
    assert "environment variable NO_SUCH_TOKEN is not set" in result.error["message"]
    assert server.stats.requests == 0


def test_response_that_does_not_fit_the_output_type(
    make_engine: MakeEngine, server: QuotaServer
) -> None:
    engine = make_engine(service_toml("geo", server.url))
    server.script.append((200, {}, {"results": []}))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "HttpResponseError"
    assert "$.results has 0 item(s), so [0] is out of range" in result.error["message"]
    server.script.append((200, {}, {"results": [{"name": "x", "lat": "north", "lon": 1}]}))
    result = engine.launch(locate, {"address": "Oak"})
    assert result.error is not None
    assert "output 'o0' (Place)" in result.error["message"] and "lat" in result.error["message"]


def test_bad_service_config_names_the_key(make_engine: MakeEngine) -> None:
    engine = make_engine(service_toml("geo", "ftp://x", "timeot = 3"))
    with pytest.raises(Exception, match=r"timeot|base_url"):
        engine.launch(locate, {"address": "Oak"})
