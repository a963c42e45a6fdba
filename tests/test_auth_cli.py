"""API keys and scopes on the wire, the auth file, and the command line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import cli
from service.auth import AuthConfig, AuthFileError, Denied

from .conftest import OTHER_TENANT, SECRETS, TENANT, RedisServer, auth_document, free_port, key, serve_app

A = f"/v1/account/{TENANT}"


@pytest.mark.anyio
async def test_keys_on_every_header(client: httpx.AsyncClient) -> None:
    for headers in [
        {"maven-api-key": SECRETS["reader"]},
        {"X-API-Key": SECRETS["reader"]},
        {"Authorization": f"Bearer {SECRETS['reader']}"},
    ]:
        r = await client.get(f"{A}/ns/properties", headers=headers)
        assert r.status_code == 200, headers


@pytest.mark.anyio
async def test_missing_and_unknown_keys(client: httpx.AsyncClient) -> None:
    for headers in [{}, {"maven-api-key": "wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}]:
        r = await client.get(f"{A}/ns/properties", headers=headers)
        assert r.status_code == 401 and r.json()["message"], headers


@pytest.mark.anyio
async def test_scopes_and_tenants(client: httpx.AsyncClient) -> None:
    reader, writer, admin = key("reader"), key("writer"), key("admin")
    assert (await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=reader)).status_code == 403
    assert (await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=writer)).status_code == 204
    assert (await client.delete(f"{A}/ns/s/properties/a", headers=reader)).status_code == 403
    assert (await client.post(A, json={"name": "x"}, headers=writer)).status_code == 403
    assert (await client.delete(f"{A}/ns", headers=writer)).status_code == 403
    assert (await client.post(A, json={"name": "x"}, headers=admin)).status_code == 204
    r = await client.get(f"/v1/account/{OTHER_TENANT}/ns/s/properties", headers=admin)
    assert r.status_code == 403 and "tenant" in r.json()["message"]
    assert (await client.get(f"/v1/account/{OTHER_TENANT}/ns/s/properties", headers=key("all"))).status_code == 200
    # 403 before anything is read from the body or the store
    r = await client.patch(f"/v1/account/{OTHER_TENANT}/ns/s/properties", content=b"{bad", headers=admin)
    assert r.status_code == 403


@pytest.mark.anyio
async def test_open_access_without_an_auth_file(redis: Any) -> None:
    async with serve_app(redis, open_access=True) as client:
        assert (await client.post(A, json={"name": "x"})).status_code == 204
        assert (await client.get(A)).json()[0]["name"] == "x"


def test_auth_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    digest = hashlib.sha256(b"secret").hexdigest()
    path.write_text(
        f'[[keys]]\nid = "k"\ntenant = "t"\nsha256 = "{digest}"\nscopes = ["read", "session_context.context_manage"]\n'
        '[customer_tokens]\nalgorithm = "HS256"\nsecret = "s"\n'
    )
    config = AuthConfig.load(path)
    found = config.authenticate("secret")
    assert found.id == "k" and found.scopes == {"read", "write"}
    assert config.document["customer_tokens"]["algorithm"] == "HS256"  # other sections are kept for their owners
    with pytest.raises(Denied):
        config.authenticate("Secret")
    for bad in ["[[keys]]\nid = 1", "keys = 3", "[[keys]]\nid='k'\ntenant='t'\nsha256='zz'\nscopes=[]", "not toml ="]:
        path.write_text(bad)
        with pytest.raises(AuthFileError):
            AuthConfig.load(path)
    path.write_text('[[keys]]\nid="k"\ntenant="t"\nsha256="%s"\nscopes=["root"]' % ("0" * 64))
    with pytest.raises(AuthFileError, match="unknown scope"):
        AuthConfig.load(path)
    with pytest.raises(AuthFileError, match="cannot read"):
        AuthConfig.load(tmp_path / "missing.toml")


def test_keys_new(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "new", "--tenant", "739483", "--scopes", "read,write", "--id", "bot-emea"]) == 0
    out = capsys.readouterr().out
    secret = out.split("keep it secret): ", 1)[1].split("\n", 1)[0]
    entry = tomllib.loads(out[out.index("[[keys]]"):])
    assert entry["keys"][0] == {
        "id": "bot-emea",
        "tenant": "739483",
        "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "scopes": ["read", "write"],
    }
    assert AuthConfig.from_document(entry).authenticate(secret).tenant == "739483"
    assert cli.main(["keys", "new", "--tenant", "t", "--scopes", "read,root"]) == 2


def test_serve_options_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTORE_PORT", "9999")
    monkeypatch.setenv("SESSIONSTORE_REDIS_URL", "redis://example:6380/1")
    monkeypatch.setenv("SESSIONSTORE_INSECURE_NO_AUTH", "true")
    args = cli.parser().parse_args(["serve", "--port", "7000"])
    assert (args.port, args.redis_url, args.insecure_no_auth, args.host) == (7000, "redis://example:6380/1", True, "127.0.0.1")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_serve_help_lists_every_option() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for option in ["--host", "--port", "--redis-url", "--auth-file", "--log-level", "--insecure-no-auth", "SESSIONSTORE_"]:
        assert option in result.stdout


def test_serve_refuses_a_public_address_without_keys() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--auth-file" in result.stderr
    result = run_cli("serve", "--port", str(free_port()), env={"SESSIONSTORE_HOST": "0.0.0.0"})
    assert result.returncode == 2
    result = run_cli("serve", "--redis-url", "http://nope", "--port", str(free_port()))
    assert result.returncode == 2 and "scheme" in result.stderr


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the service did not start")


def test_serve_embedded_store_end_to_end() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        assert httpx.patch(f"{url}{A}/ns/s/properties", json={"a": 1}).status_code == 204
        assert httpx.get(f"{url}{A}/ns/s/properties").json() == {"a": 1}
        assert httpx.get(f"{url}/readyz").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "in-memory" in output and "no auth file" in output


def test_serve_real_redis_with_auth_file(tmp_path: Path, redis_server: RedisServer) -> None:
    auth = tmp_path / "auth.toml"
    entries = auth_document()["keys"]
    auth.write_text("".join(f'[[keys]]\nid="{e["id"]}"\ntenant="{e["tenant"]}"\nsha256="{e["sha256"]}"\nscopes={e["scopes"]!r}\n'.replace("'", '"') for e in entries))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--auth-file", str(auth)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SESSIONSTORE_REDIS_URL": redis_server.url.replace("redis://", "redis://default:@")},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        assert httpx.get(f"{url}{A}/cli-ns/s/properties").status_code == 401
        assert httpx.patch(f"{url}{A}/cli-ns/s/properties", json={"a": 1}, headers=key("writer")).status_code == 204
        assert httpx.get(f"{url}{A}/cli-ns/s/properties", headers=key("reader")).json() == {"a": 1}
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "in-memory" not in output
    for secret in SECRETS.values():
        assert secret not in output
