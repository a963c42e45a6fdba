"""Redis over TLS (``rediss://`` with a CA, a client certificate and its key)
and with an ACL user and password: the app (the multiplexed connection and
the Lua scripts), ``sessionstore check`` and ``sessionstore serve`` against
private redis-servers these tests start (TLS only, client certificates
required, the default user off), the app and ``sessionstore check`` on a
private TLS-only Redis Cluster (``rediss+cluster://``), the options' bad
combinations, and the password never in a log line, an error body or the
command's output.

These tests start their own servers: they do not run on the backend
fixture's three backends."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from service import cli, cli_serve
from service.cli_common import ENV_PREFIX, tls_from_args
from service.config import Settings
from service.store import clients
from service.store.clients import ClusterClient, RedisTls, redact

from .conftest import TENANT, RedisClusterServers, RedisServer, free_port, key, serve_app, serve_process, stop_process
from .tls_certs import TlsFiles, make_tls_files

PASSWORD = "tls-acl-password-7c41e2"
WRONG = "wrong-password-b83f05"
ACL = ["user default off", f"user alice on >{PASSWORD} ~* &* +@all"]
LP = f"/v1/account/{TENANT}"  # the LivePerson API
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(certs: TlsFiles) -> Iterator[RedisServer]:
    """TLS only (no plain port), client certificates required, the default
    user off and alice on; it also listens on 127.0.0.2, a name its
    certificate does not carry."""
    server = RedisServer(tls=certs, tls_auth_clients="yes", acl=ACL, extra=["--bind", "127.0.0.1", "127.0.0.2"])
    yield server.start()
    server.cleanup()


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """No TLS; the default user off and alice on."""
    server = RedisServer(acl=ACL).start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def tls_cluster(certs: TlsFiles) -> Iterator[RedisClusterServers]:
    """A Redis Cluster (three primaries, three replicas) serving TLS only:
    clients, the cluster bus and replication; client certificates required;
    on every node the default user off and alice on (the replicas log in to
    their primaries as alice)."""
    cluster = RedisClusterServers(tls=certs, tls_auth_clients="yes", acl=ACL, auth=("alice", PASSWORD)).start()
    yield cluster
    cluster.cleanup()


def tls_of(certs: TlsFiles, *, client_cert: bool = True, ca: Path | None = None) -> RedisTls:
    if not client_cert:
        return RedisTls(ca_file=str(ca or certs.ca))
    return RedisTls(str(ca or certs.ca), str(certs.client_cert), str(certs.client_key))


def tls_flags(certs: TlsFiles, *, client_cert: bool = True) -> list[str]:
    flags = ["--redis-tls-ca", str(certs.ca)]
    if client_cert:
        flags += ["--redis-tls-cert", str(certs.client_cert), "--redis-tls-key", str(certs.client_key)]
    return flags


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and WRONG not in text, text


# -- the app over TLS ---------------------------------------------------------------


async def exercise(api: httpx.AsyncClient, name: str) -> None:
    """A LivePerson write and read, and a native write and read."""
    admin = key("admin")
    assert (await api.post(LP, json={"name": name}, headers=admin)).status_code == 204
    assert (await api.patch(f"{LP}/{name}/s1/properties", json={"a": 1, "b": "x"}, headers=admin)).status_code == 204
    r = await api.get(f"{LP}/{name}/s1/properties", headers=admin)
    assert r.status_code == 200 and r.json() == {"a": 1, "b": "x"}, r.text
    r = await api.put(f"{NATIVE}/{name}-n/sessions/s2", json={"properties": {"c": [1, 2]}}, headers=admin)
    assert r.status_code == 201, r.text
    r = await api.get(f"{NATIVE}/{name}-n/sessions/s2", headers=admin)
    assert r.status_code == 200 and r.json()["properties"] == {"c": [1, 2]} and r.headers["etag"] == '"1"'
    assert (await api.get("/readyz")).status_code == 200


@pytest.mark.anyio
async def test_the_app_over_tls_with_an_acl_user(tls_redis: RedisServer, certs: TlsFiles) -> None:
    redis = clients.connect(tls_redis.url_as("alice", PASSWORD), timeout_s=5, tls=tls_of(certs))
    try:
        async with serve_app(redis) as api:
            await exercise(api, "tls")
        # the multiplexed connection (commands and Lua scripts) was the TLS one
        assert redis.multiplexed_connections == 1
        assert redis._link.writer.get_extra_info("ssl_object") is not None
        # and the pool's connections (pipelines, transactions) are TLS too
        async with redis.pipeline(transaction=True) as pipe:
            assert await pipe.set("tls-k", "v").get("tls-k").execute() == [True, b"v"]
        assert await redis.acl_whoami() == "alice"
        # the multiplexed TLS connection, dropped by the server, is made again
        assert await redis.client_kill_filter(_type="normal", skipme=True) >= 1
        for _ in range(50):
            try:
                assert await redis.get("tls-k") == b"v"
                break
            except RedisConnectionError:  # the command that met the dropped connection
                await asyncio.sleep(0.01)
        assert redis.multiplexed_connections == 2
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_the_server_certificate_and_its_host_name_are_checked(tls_redis: RedisServer, certs: TlsFiles) -> None:
    async def ping(url: str, tls: RedisTls) -> Any:
        redis = clients.connect(url, timeout_s=2, tls=tls)
        try:
            return await redis.ping()
        finally:
            await redis.aclose()

    good = tls_redis.url_as("alice", PASSWORD)
    assert await ping(good.replace("127.0.0.1", "localhost"), tls_of(certs)) is True  # DNS:localhost in the SAN
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED") as signed:
        await ping(good, tls_of(certs, ca=certs.other_ca))  # signed by another CA
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED|match") as named:
        await ping(good.replace("127.0.0.1", "127.0.0.2"), tls_of(certs))  # a name not in the certificate
    with pytest.raises(RedisConnectionError) as anonymous:  # tls-auth-clients yes, no client certificate
        await ping(good, tls_of(certs, client_cert=False))
    with pytest.raises(AuthenticationError) as refused:
        await ping(tls_redis.url_as("alice", WRONG), tls_of(certs))
    assert_no_secret(*(str(e.value) for e in (signed, named, anonymous, refused)))


# -- sessionstore check ---------------------------------------------------------------


def test_check_over_tls(tls_redis: RedisServer, certs: TlsFiles) -> None:
    good = run_cli("check", "--redis-url", tls_redis.url_as("alice", PASSWORD), *tls_flags(certs))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"redis: answers at rediss://alice:***@127.0.0.1:{tls_redis.port}/0 (")
    # the URL from the environment, as an operator would give the password
    from_env = run_cli("check", *tls_flags(certs), env={"SESSIONSTORE_REDIS_URL": tls_redis.url_as("alice", PASSWORD)})
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    wrong = run_cli("check", "--redis-url", tls_redis.url_as("alice", WRONG), *tls_flags(certs))
    assert wrong.returncode == 1 and wrong.stdout.startswith("redis: does not answer at rediss://alice:***@")
    assert "AuthenticationError" in wrong.stdout
    no_cert = run_cli("check", "--redis-url", tls_redis.url_as("alice", PASSWORD), *tls_flags(certs, client_cert=False))
    assert no_cert.returncode == 1 and no_cert.stdout.startswith("redis: does not answer at rediss://alice:***@")
    for result in (good, from_env, wrong, no_cert):
        assert "Traceback" not in result.stdout + result.stderr
        assert_no_secret(result.stdout, result.stderr)


# -- sessionstore serve ---------------------------------------------------------------


def start_serving(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``sessionstore serve`` logging all it can, up once /healthz answers (a
    Redis that refuses the password leaves /readyz at 503)."""
    return serve_process("--log-level", "debug", "--access-log", *args, env=env, ready="/healthz")


def stop_serving(process: subprocess.Popen[str]) -> str:
    code, output = stop_process(process)
    assert code == 0, output
    return output


def test_serve_over_tls_with_workers(tls_redis: RedisServer, certs: TlsFiles) -> None:
    """Two workers, every option from the environment: each worker builds its
    client from the SESSIONSTORE_* variables serve hands on."""
    env = {
        "SESSIONSTORE_REDIS_URL": tls_redis.url_as("alice", PASSWORD),
        "SESSIONSTORE_REDIS_TLS_CA": str(certs.ca),
        "SESSIONSTORE_REDIS_TLS_CERT": str(certs.client_cert),
        "SESSIONSTORE_REDIS_TLS_KEY": str(certs.client_key),
    }
    process, url = start_serving("--workers", "2", env=env)
    try:
        with httpx.Client(base_url=url) as api:
            for n in range(6):  # a new connection each: the kernel spreads them over the workers
                assert httpx.get(url + "/readyz").status_code == 200
                r = httpx.patch(f"{url}{LP}/served/s{n}/properties", json={"n": n})
                assert r.status_code == 204, r.text
            assert api.get(f"{LP}/served/s3/properties").json() == {"n": 3}
            r = api.put(f"{NATIVE}/served-n/sessions/s", json={"properties": {"a": 1}})
            assert r.status_code == 201 and api.get(f"{NATIVE}/served-n/sessions/s").json()["properties"] == {"a": 1}
    finally:
        output = stop_serving(process)
    assert output.count("Finished server process") == 2
    assert "rediss://alice:***@127.0.0.1" in output  # the Redis the service uses, redacted
    assert_no_secret(output)


def test_serve_over_tls_with_a_wrong_password(tls_redis: RedisServer, certs: TlsFiles) -> None:
    # on the command line, the worst place: still never in the output or a body
    process, url = start_serving("--redis-url", tls_redis.url_as("alice", WRONG), *tls_flags(certs))
    try:
        with httpx.Client(base_url=url) as api:
            answers = [
                api.get("/readyz"),
                api.patch(f"{LP}/served/s/properties", json={"a": 1}),
                api.get(f"{LP}/served/s/properties"),
                api.get(f"{NATIVE}/served-n/sessions/s"),
            ]
    finally:
        output = stop_serving(process)
    assert [r.status_code for r in answers] == [503] * len(answers), [r.text for r in answers]
    assert answers[0].json()["status"] == "unavailable"
    assert_no_secret(output, *(r.text for r in answers), *(str(r.headers) for r in answers))
    assert "rediss://alice:***@127.0.0.1" in output


# -- bad combinations of options ------------------------------------------------------


def test_bad_tls_options_are_usage_errors(tls_redis: RedisServer, certs: TlsFiles, tmp_path: Path) -> None:
    tls_url = tls_redis.url_as("alice", PASSWORD)
    plain_url = tls_url.replace("rediss://", "redis://")
    ca, cert, cert_key = str(certs.ca), str(certs.client_cert), str(certs.client_key)
    missing = str(tmp_path / "missing.pem")
    cases = [
        # (arguments after the command, what the one line must say)
        (["--redis-url", plain_url, "--redis-tls-ca", ca], "rediss://"),
        (["--redis-url", plain_url, "--redis-tls-cert", cert, "--redis-tls-key", cert_key], "not redis://"),
        (["--redis-url", "unix:///tmp/redis.sock", "--redis-tls-ca", ca], "not unix://"),
        (["--redis-url", f"redis+cluster://alice:{PASSWORD}@127.0.0.1:7000", "--redis-tls-ca", ca], "not redis+cluster://"),
        (["--redis-url", tls_url, "--redis-tls-cert", cert], "--redis-tls-key"),
        (["--redis-url", tls_url, "--redis-tls-ca", ca, "--redis-tls-key", cert_key], "--redis-tls-cert"),
        (["--redis-url", tls_url, "--redis-tls-ca", missing], f"--redis-tls-ca: cannot read {missing}"),
        (["--redis-url", tls_url, "--redis-tls-cert", missing, "--redis-tls-key", cert_key], "--redis-tls-cert: cannot read"),
        (["--redis-url", tls_url, "--redis-tls-ca", cert_key], "--redis-tls-ca"),  # a key, not a CA certificate
        (["--redis-url", tls_url, "--redis-tls-cert", cert, "--redis-tls-key", str(certs.server_key)], "--redis-tls-key"),
    ]  # fmt: skip
    commands = [
        ["check"],
        ["export", "--tenant", TENANT],
        ["import", str(tmp_path / "in.jsonl")],
        ["serve", "--port", str(free_port())],
    ]
    runs = [(commands[n % len(commands)], args, needle) for n, (args, needle) in enumerate(cases)]  # every command
    runs.append(
        (["serve", "--port", str(free_port())], ["--redis-tls-ca", ca], "--redis-url")
    )  # the embedded store: no TLS
    with ThreadPoolExecutor(len(runs)) as pool:  # side by side: each is a Python start
        results = list(pool.map(lambda run: run_cli(*run[0], *run[1]), runs))
    for (command, args, needle), result in zip(runs, results, strict=True):
        assert result.returncode == 2, (command, args, result.stdout, result.stderr)
        assert result.stderr.startswith("sessionstore: ") and result.stderr.count("\n") == 1, result.stderr
        assert needle in result.stderr, (needle, result.stderr)
        assert_no_secret(result.stdout, result.stderr)


def test_tls_options_reach_the_workers(monkeypatch: pytest.MonkeyPatch, certs: TlsFiles) -> None:
    """serve --workers N hands every option on as SESSIONSTORE_* variables,
    which each worker reads back (cli_serve.app_from_environment)."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)})
    url = f"rediss://alice:{PASSWORD}@redis.internal:6380/0"
    flags = [
        "--redis-tls-ca",
        str(certs.ca),
        "--redis-tls-cert",
        str(certs.client_cert),
        "--redis-tls-key",
        str(certs.client_key),
    ]
    args = cli.parser().parse_args(["serve", "--redis-url", url, *flags])
    cli_serve.export_to_environment(args)
    assert os.environ["SESSIONSTORE_REDIS_TLS_CA"] == str(certs.ca)
    settings = cli_serve.settings_from_args(cli.parser().parse_args(["serve"]))
    assert settings.redis_url == url
    assert settings.redis_tls() == tls_of(certs)
    assert Settings().redis_tls() is None
    for command in ("check", "export", "import"):
        more = ["--tenant", "t"] if command == "export" else ["f"] if command == "import" else []
        assert tls_from_args(cli.parser().parse_args([command, *more])) == tls_of(certs)  # from the environment


# -- an ACL user without TLS ----------------------------------------------------------


@pytest.mark.anyio
async def test_an_acl_user_without_tls(acl_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redis = clients.connect(acl_redis.url_as("alice", PASSWORD), timeout_s=5)
    try:
        async with serve_app(redis) as api:
            await exercise(api, "acl")
    finally:
        await redis.aclose()
    refused = clients.connect(acl_redis.url_as("alice", WRONG), timeout_s=2)
    try:
        async with serve_app(refused, Settings(access_log=True)) as api:
            answers = [
                await api.get("/readyz"),
                await api.get(f"{LP}/acl/s1/properties", headers=key("admin")),
                await api.patch(f"{LP}/acl/s1/properties", json={"a": 2}, headers=key("admin")),
                await api.get(f"{NATIVE}/acl-n/sessions/s2", headers=key("admin")),
            ]
    finally:
        await refused.aclose()
    assert [r.status_code for r in answers] == [503] * len(answers), [r.text for r in answers]
    logs = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert "sessionstore.access" in logs
    assert_no_secret(logs, *(r.text for r in answers))


# -- a Redis Cluster over TLS -----------------------------------------------------------


@pytest.mark.anyio
async def test_the_app_on_a_tls_cluster(tls_cluster: RedisClusterServers, certs: TlsFiles) -> None:
    """rediss+cluster:// end to end: the LivePerson and native APIs on
    sessions spread over the three primaries, each primary reached over TLS
    (the server certificate and host name checked) as alice."""
    admin = key("admin")
    ids = [f"s{i}" for i in range(20)]  # in different buckets, so on different slots and nodes
    redis = clients.connect(tls_cluster.url_as("alice", PASSWORD), timeout_s=5, tls=tls_of(certs))
    try:
        assert isinstance(redis, ClusterClient)
        async with serve_app(redis) as api:
            assert (await api.post(LP, json={"name": "tlsc"}, headers=admin)).status_code == 204

            async def one(sid: str) -> None:
                r = await api.patch(f"{LP}/tlsc/{sid}/properties", json={"id": sid, "n": 1}, headers=admin)
                assert r.status_code == 204, r.text
                r = await api.get(f"{LP}/tlsc/{sid}/properties", headers=admin)
                assert r.status_code == 200 and r.json() == {"id": sid, "n": 1}, r.text
                r = await api.put(f"{NATIVE}/tlsc-n/sessions/{sid}", json={"properties": {"c": [sid]}}, headers=admin)
                assert r.status_code == 201, r.text
                r = await api.get(f"{NATIVE}/tlsc-n/sessions/{sid}", headers=admin)
                assert r.status_code == 200 and r.json()["properties"] == {"c": [sid]}, r.text
                assert r.headers["etag"] == '"1"'

            await asyncio.gather(*(one(sid) for sid in ids))
            assert (await api.get("/readyz")).status_code == 200
            r = await api.get(f"{NATIVE}/tlsc-n/sessions/{ids[7]}", headers=admin)  # read again, after the burst
            assert r.status_code == 200 and r.json()["properties"] == {"c": [ids[7]]}, r.text
        primaries = redis.get_primaries()
        assert len(primaries) == 3 and {p.port for p in primaries} <= {s.port for s in tls_cluster.servers}
        # every primary holds some of the sessions, and was reached over TLS as alice
        held = [await redis.keys("ss:*:s:*", target_nodes=primary) for primary in primaries]
        assert sum(map(len, held)) == 2 * len(ids) and all(held), held  # the LivePerson and the native ones
        for primary in primaries:
            assert primary.connection_class.__name__ == "SSLConnection"
            assert primary.connection_kwargs["ssl_check_hostname"] is True
            assert await redis.execute_command("ACL WHOAMI", target_nodes=primary) in ("alice", b"alice")
    finally:
        await redis.aclose()


def test_check_on_a_tls_cluster(tls_cluster: RedisClusterServers, certs: TlsFiles) -> None:
    result = run_cli("check", "--redis-url", tls_cluster.url_as("alice", PASSWORD), *tls_flags(certs))
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = ",".join(f"127.0.0.1:{s.port}" for s in tls_cluster.servers[:3])
    assert result.stdout.startswith(f"redis: answers at rediss+cluster://alice:***@{nodes} ("), result.stdout
    assert ", cluster)\n" in result.stdout and "problem:" not in result.stdout, result.stdout
    # without the client certificate, the nodes refuse the connection
    url = tls_cluster.url_as("alice", PASSWORD)
    no_cert = run_cli("check", "--redis-url", url, *tls_flags(certs, client_cert=False))
    assert no_cert.returncode == 1, no_cert.stdout + no_cert.stderr
    assert no_cert.stdout.startswith("redis: does not answer at rediss+cluster://alice:***@"), no_cert.stdout
    for r in (result, no_cert):
        assert "Traceback" not in r.stdout + r.stderr
        assert_no_secret(r.stdout, r.stderr)


# -- the URL in logs, and the client's TLS keywords -----------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://alice:s3cret@h:7379/0", "redis://alice:***@h:7379/0"),
        ("rediss://:s3cret@h:6380/1", "rediss://:***@h:6380/1"),
        ("redis://default:@h:7379/0", "redis://default:@h:7379/0"),  # an empty password: nothing to hide
        ("redis://h:7379/0", "redis://h:7379/0"),
        ("redis://alice@h:7379/0", "redis://alice@h:7379/0"),
        (
            "redis+cluster://alice:s3cret@h1:7000,h2:7001,[::1]:7002",
            "redis+cluster://alice:***@h1:7000,h2:7001,[::1]:7002",
        ),
        ("rediss+cluster://alice:s3cret@h1:7000,h2:7001", "rediss+cluster://alice:***@h1:7000,h2:7001"),
        ("unix://alice:s3cret@/run/redis.sock?db=2", "unix://alice:***@/run/redis.sock?db=2"),
        ("unix:///run/redis@main.sock", "unix:///run/redis@main.sock"),
        ("redis://h:7379/0?password=s3cret&db=1", "redis://h:7379/0?password=***&db=1"),
        # not escaped as they should be: hidden all the same
        ("redis://alice:s3/cret@h:7379/0", "redis://alice:***@h:7379/0"),
        ("redis://alice:s3#cret@h:7379/0", "redis://alice:***@h:7379/0"),
        ("redis://alice:s3@cret@h:7379/0", "redis://alice:***@h:7379/0"),
        ("redis://alice:s3?cret@h:7379/0", "redis://alice:***@h:7379/0"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "cret" not in redact(url)


@pytest.mark.anyio
async def test_tls_keywords_of_the_clients(certs: TlsFiles) -> None:
    single = clients.connect("rediss://127.0.0.1:6390/0", timeout_s=1, tls=tls_of(certs))
    try:
        kwargs = single.connection_pool.connection_kwargs
        assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
            str(certs.ca), str(certs.client_cert), str(certs.client_key),
        )  # fmt: skip
        assert single.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        await single.aclose()
    only_ca = clients.connect("rediss://127.0.0.1:6390/0", timeout_s=1, tls=tls_of(certs, client_cert=False))
    try:
        assert "ssl_certfile" not in only_ca.connection_pool.connection_kwargs
    finally:
        await only_ca.aclose()
    cluster = clients.connect("rediss+cluster://alice:pw@127.0.0.1:7000,127.0.0.1:7001", timeout_s=1, tls=tls_of(certs))
    try:
        assert isinstance(cluster, ClusterClient)
        kwargs = cluster.nodes_manager.connection_kwargs
        assert kwargs["connection_class"].__name__ == "SSLConnection" and kwargs["ssl_check_hostname"] is True
        assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
            str(certs.ca), str(certs.client_cert), str(certs.client_key),
        )  # fmt: skip
    finally:
        await cluster.aclose()
    for url in ("redis://127.0.0.1:6390/0", "redis+cluster://127.0.0.1:7000", "unix:///tmp/r.sock", None):
        with pytest.raises(ValueError, match="--redis-tls-ca"):
            clients.connect(url, timeout_s=1, tls=tls_of(certs, client_cert=False))
    with pytest.raises(ValueError, match="--redis-tls-cert and --redis-tls-key go together"):
        clients.connect("rediss://127.0.0.1:6390/0", timeout_s=1, tls=RedisTls(cert_file=str(certs.client_cert)))


@pytest.mark.parametrize(
    "url",
    [
        "redis://alice:s3/cret@h:7379/0",
        "rediss://alice:s3#cret@h:6380/0",
        "redis://alice:s3?cret@h:7379/0",
        "rediss+cluster://alice:s3?cret@h1:7000,h2:7001",
        "redis+cluster://alice:s3#cret@h1:7000",
    ],
)
def test_a_password_not_escaped_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValueError, match="%-escape") as refused:
        clients.validate_url(url)
    assert "cret" not in str(refused.value)
    result = run_cli("check", "--redis-url", url)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cret" not in result.stdout + result.stderr
