"""API tokens: expiry, last use, revocation across server processes, the command line's
messages, and a server on HTTPS with a certificate made here."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from server_helpers import ServerProcess, Site
from test_api import Api

from taskfabric.cli import cli
from taskfabric.server import Client, ServerError
from taskfabric.server._schema import api_tokens

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    found = Api(tmp_path)
    yield found
    found.plane.close()


def _set(api: Api, token_id: str, **values: float | None) -> None:
    with api.plane.metadata.engine.begin() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(**values))


def test_a_token_expires(api: Api) -> None:
    admin = api.client(api.token(["shop"], "admin", "boss"))
    made = admin.create_token(["shop"], "viewer", "ci", expires_in=3600)
    assert made.info.expires_at is not None
    assert abs(made.info.expires_at - (made.info.created_at + 3600)) < 1e-6
    viewer = api.client(made.token)
    assert viewer.whoami().name == "ci"
    # An hour later (the clock is the row's, moved back rather than waited for).
    _set(api, made.info.id, expires_at=time.time() - 1)
    with pytest.raises(ServerError) as caught:
        viewer.whoami()
    assert caught.value.status == 401
    assert f"the API token {made.info.id} expired at" in str(caught.value)
    listed = {t.name: t for t in admin.tokens()}
    assert listed["ci"].state == "expired" and listed["boss"].state == "active"
    # A lifetime that is not positive is refused.
    response = api.http.post(
        "/api/v1/tokens",
        json={"projects": ["shop"], "role": "viewer", "expires_in": 0},
        headers=dict(admin._http.headers),
    )
    assert response.status_code == 422


def test_tokens_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "taskfabric.toml"
    config.write_text("[server]\nworkers = 0\n")
    code, text, err = invoke(
        config, "tokens", "create", "--project", "shop", "--role", "admin", "--name", "[bot]"
    )
    assert code == 0, err
    # Rich markup is not read in the message: '[server]' and the name stay as written.
    assert "the file named by [server] token_file." in err and "([bot])" in err, err
    code, _, err = invoke(
        config, "tokens", "create", "--project", "shop", "--role", "viewer", "--expires-in", "2d"
    )
    assert code == 0 and ", until " in err, err
    code, _, err = invoke(
        config, "tokens", "create", "--project", "shop", "--role", "viewer", "--expires-in", "-1"
    )
    assert code == 2 and "--expires-in '-1': give a positive duration" in err

    # Last use: 'never' until the token is used, then when.
    code, out, _ = invoke(config, "tokens", "list")
    row = next(line for line in out.splitlines() if "[bot]" in line)
    assert row.count("never") == 2, row  # not used yet, does not expire
    site = Site(tmp_path, None)
    try:
        server = site.server(workers=0)
        Client(server.url, text.strip()).whoami()
    finally:
        site.close()
    code, out, _ = invoke(config, "tokens", "list", "-o", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["[bot]"]["last_used_at"] is not None and rows["[bot]"]["state"] == "active"
    assert rows[""]["expires_at"] - rows[""]["created_at"] == pytest.approx(2 * 86400)
    code, out, _ = invoke(config, "tokens", "list")
    row = next(line for line in out.splitlines() if "[bot]" in line)
    assert row.count("never") == 1 and " ago " in row, row


def test_a_revocation_holds_at_once_on_every_server(tmp_path: Path) -> None:
    """Two servers on one database: a token revoked through one is refused by the other on
    its very next request (no process keeps a token it has seen)."""
    site = Site(tmp_path, None)
    try:
        one, two = site.server(workers=0), site.server(workers=0)
        admin = Client(one.url, site.token(["shop"], "admin"))
        made = admin.create_token(["shop"], "viewer", "short-lived")
        by_one, by_two = Client(one.url, made.token), Client(two.url, made.token)
        for _ in range(3):  # seen, and possibly cached, by both
            assert by_one.whoami().name == by_two.whoami().name == "short-lived"
        admin.revoke_token(made.info.id)
        for client in (by_two, by_one):
            with pytest.raises(ServerError) as caught:
                client.whoami()
            assert caught.value.status == 401
    finally:
        site.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (apt-get install openssl)"
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_server_on_https(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    site = Site(tmp_path, None)
    with site.config_path.open("a") as fh:
        fh.write(f'ssl_certfile = "{cert.name}"\nssl_keyfile = "{key.name}"\n')
    try:
        server = ServerProcess(
            site.config_path, tmp_path / "server.log", workers=0, env={}, ca_file=cert
        )
        site.servers.append(server.start())
        assert server.url.startswith("https://")
        token = site.token(["shop"], "viewer", "tls")
        assert Client(server.url, token, ca_file=cert).whoami().name == "tls"
        # Without the certificate the client refuses the server; plain HTTP is not served.
        with pytest.raises(ServerError) as caught:
            Client(server.url, token).whoami()
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https", "http") + "/healthz", timeout=5)
        # The command line trusts it through [server] ca_file.
        remote = tmp_path / "remote.toml"
        remote.write_text(
            f'[server]\nurl = "{server.url}"\ntoken_file = "token"\nca_file = "{cert.name}"\n'
        )
        (tmp_path / "token").write_text(token)
        code, out, err = invoke(remote, "executions", "list", "-o", "json")
        assert code == 0 and json.loads(out) == [], err
    finally:
        site.close()


def test_a_bad_certificate_ends_the_command(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    config = tmp_path / "taskfabric.toml"
    config.write_text('[server]\nssl_certfile = "cert.pem"\nworkers = 0\nport = 0\n')
    code, _, err = invoke(config, "server")
    assert code == 2 and "cannot use the TLS certificate" in err and "ssl_certfile" in err, err
