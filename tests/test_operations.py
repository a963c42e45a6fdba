"""Operating the service: /metrics, request ids and logs, worker processes,
graceful shutdown, ``sessionstore check`` and the deployment files."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router

from service import cli
from service.app import build_app
from service.auth import AuthConfig
from service.cli_common import ENV_PREFIX
from service.config import Settings
from service.logs import JsonFormatter, RequestContextFilter, TextFormatter, logging_config
from service.observability import Metrics, Observe, request_id
from service.store import checks, clients
from service.store.core import SessionStore
from service.store.scripts import Scripts

from .conftest import (
    SECRETS,
    SERVER_SAYS,
    TENANT,
    RedisServer,
    auth_document,
    free_port,
    key,
    serve_app,
    serve_process,
    stop_process,
)

A = f"/v1/account/{TENANT}"
ROOT = Path(__file__).resolve().parents[1]
ROUTE = "/v1/account/{account}/{namespace}/{session}/properties"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


# -- metrics ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    raw_id = "session-7f3a-raw"
    for n in range(3):
        assert (
            await client.patch(f"{A}/ns/{raw_id}/properties", json={"n": n}, headers=key("writer"))
        ).status_code == 204
    for _ in range(2):
        assert (await client.get(f"{A}/ns/{raw_id}/properties", headers=key("reader"))).status_code == 200
    assert (await client.get(f"/v1/brand/{TENANT}/ns/{raw_id}/properties/", headers=key("reader"))).status_code == 200
    assert (await client.get(f"{A}/ns/{raw_id}/properties", headers={"maven-api-key": "wrong"})).status_code == 401
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.get("/api/v1/tenants/no/such/thing")).status_code == 404
    assert (await client.delete("/healthz")).status_code == 405
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    total = "sessionstore_http_requests_total"
    assert sample(text, total, route=ROUTE, method="PATCH", status="204") == 3
    assert sample(text, total, route=ROUTE, method="GET", status="200") == 3  # the /v1/brand/ alias included
    assert sample(text, total, route=ROUTE, method="GET", status="401") == 1
    assert sample(text, total, route="unmatched", method="GET", status="404") == 2
    assert sample(text, total, route="/healthz", method="DELETE", status="405") == 1
    assert sample(text, "sessionstore_http_request_duration_seconds_count", route=ROUTE, method="PATCH") == 3
    assert (
        sample(text, "sessionstore_http_request_duration_seconds_bucket", route=ROUTE, method="PATCH", le="+Inf") == 3
    )
    assert sample(text, "sessionstore_event_streams_open") == 0
    assert sample(text, "sessionstore_workers") == 1
    assert raw_id not in text and TENANT not in text and "no/such" not in text  # templates, never raw paths
    assert "process_resident_memory_bytes" in text
    # the scrape itself is counted once it is answered
    again = (await client.get("/metrics")).text
    assert sample(again, total, route="/metrics", method="GET", status="200") == 1


@pytest.mark.anyio
async def test_script_reloads_and_reconnects_are_counted(redis: Any, backend: str) -> None:
    async with serve_app(redis) as client:
        assert (await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=key("writer"))).status_code == 204
        await redis.script_flush()
        assert (await client.patch(f"{A}/ns/s/properties", json={"a": 2}, headers=key("writer"))).status_code == 204
        text = (await client.get("/metrics")).text
        assert sample(text, "sessionstore_script_reloads_total") == 1
        assert sample(text, "sessionstore_redis_reconnects_total") == 0
        if backend == "real":
            killer = clients.connect(f"redis://127.0.0.1:{redis.connection_pool.connection_kwargs['port']}/0")
            try:
                assert await killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            finally:
                await killer.aclose()
            statuses = []
            for _ in range(20):
                statuses.append((await client.get(f"{A}/ns/s/properties", headers=key("reader"))).status_code)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.05)
            assert statuses[-1] == 200, statuses
            text = (await client.get("/metrics")).text
            assert sample(text, "sessionstore_redis_reconnects_total") >= 1
            assert sample(text, "sessionstore_redis_errors_total", route=ROUTE) == statuses.count(503)


@pytest.mark.anyio
async def test_redis_errors_are_counted_and_logged_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestContextFilter())
    caplog.set_level(logging.WARNING)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with serve_app(None, Settings(redis_url=dead, redis_timeout_s=0.2, request_deadline_s=0.5)) as client:
        for _ in range(2):
            r = await client.get(f"{A}/ns/s/properties", headers={**key("reader"), "X-Request-ID": "outage-1"})
            assert r.status_code == 503 and r.headers["x-request-id"] == "outage-1"
        text = (await client.get("/metrics")).text
    assert sample(text, "sessionstore_redis_errors_total", route=ROUTE) == 2
    assert sample(text, "sessionstore_http_requests_total", route=ROUTE, method="GET", status="503") == 2
    during = [rec for rec in caplog.records if "storage unavailable" in rec.getMessage()]
    assert len(during) == 2 and all(getattr(rec, "request_id", None) == "outage-1" for rec in during)
    assert all(getattr(rec, "request_id", None) is None for rec in caplog.records if rec not in during)


def stream_app(release: asyncio.Event) -> Router:
    """Routes as the app's middleware sees them (no Starlette error middleware in between)."""

    async def events(request: Request) -> Response:
        async def body() -> Any:
            yield b"data: 1\n\n"
            await release.wait()
            yield b"data: 2\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    return Router(routes=[Route("/events/{id}", events), Route("/boom", boom)])


@pytest.mark.anyio
async def test_open_event_streams_are_counted() -> None:
    release = asyncio.Event()
    metrics = Metrics()
    app = Observe(stream_app(release), metrics)
    started = asyncio.Event()
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.start":
            started.set()

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events/x",
        "raw_path": b"/events/x",
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("t", 80),
        "client": ("127.0.0.1", 1),
    }
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await asyncio.wait_for(started.wait(), 5)
    assert sample(metrics.render()[0].decode(), "sessionstore_event_streams_open") == 1
    release.set()
    await asyncio.wait_for(task, 5)
    text = metrics.render()[0].decode()
    assert sample(text, "sessionstore_event_streams_open") == 0
    assert sample(text, "sessionstore_http_requests_total", route="/events/{id}", method="GET", status="200") == 1
    assert (
        sample(text, "sessionstore_http_request_duration_seconds_count", route="/events/{id}") == 0
    )  # streams left out
    ids = [value for name, value in messages[0]["headers"] if name == b"x-request-id"]
    assert len(ids) == 1 and re.fullmatch(rb"[0-9a-f]{32}", ids[0])


# -- request ids and logs ----------------------------------------------------------


@pytest.mark.anyio
async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert r.headers["x-request-id"] == "abc.DEF_123-x"
    for bad in ["x" * 129, "has space", "semi;colon", "é"]:
        r = await client.get("/healthz", headers={b"X-Request-ID": bad.encode()})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), bad
    ids = set()
    for path, status in [(f"{A}/ns/s/properties", 401), ("/nowhere", 404), ("/healthz", 200)]:
        r = await client.get(path)
        assert r.status_code == status and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        assert r.headers.get_list("x-request-id") == [r.headers["x-request-id"]]
        ids.add(r.headers["x-request-id"])
    assert len(ids) == 3


@pytest.mark.anyio
async def test_an_unhandled_error_answers_500_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestContextFilter())
    app = Observe(stream_app(asyncio.Event()), Metrics())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom", headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1" and r.json()["code"] == 500
    [record] = [rec for rec in caplog.records if rec.exc_info]
    assert record.request_id == "bug-1" and "/boom" in record.getMessage()  # type: ignore[attr-defined]
    # uvicorn's own report of the same error is dropped: it is logged once, with the id
    again = logging.LogRecord(
        "uvicorn.error", logging.ERROR, "", 0, "Exception in ASGI application", None, record.exc_info
    )
    assert not RequestContextFilter().filter(again)


@pytest.mark.anyio
async def test_access_log_lines(redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestContextFilter())
    caplog.set_level(logging.INFO, logger="sessionstore.access")
    config = AuthConfig.from_document(auth_document())
    app = build_app(Settings(access_log=True), redis=redis, auth=config)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        await c.patch(f"{A}/ns/s1/properties?secret=q", json={"a": 1}, headers={**key("writer"), "X-Request-ID": "r1"})
        await c.get(f"{A}/ns/s1/properties", headers={"Authorization": f"Bearer {SECRETS['reader']}"})
        await c.get(f"{A}/ns/s1/properties", headers={"X-API-Key": "not-a-key"})
    lines = [rec for rec in caplog.records if rec.name == "sessionstore.access"]
    assert len(lines) == 3
    assert getattr(lines[0], "request_id", None) == "r1"
    fields = [getattr(line, "access", {}) for line in lines]
    assert fields[0] == {
        "method": "PATCH",
        "path": f"{A}/ns/s1/properties",
        "route": ROUTE,
        "status": 204,
        "duration_ms": fields[0]["duration_ms"],
        "key": "writer",
        "client": "127.0.0.1",
    }
    assert fields[1]["key"] == "reader" and fields[2]["key"] == "unknown" and fields[2]["status"] == 401
    text = "\n".join(TextFormatter().format(rec) for rec in caplog.records)
    for secret in [*SECRETS.values(), "not-a-key", "secret=q"]:
        assert secret not in text
    assert f"PATCH {A}/ns/s1/properties 204" in text and "key=writer request_id=r1" in text


def test_log_formatters() -> None:
    record = logging.LogRecord("sessionstore.web", logging.WARNING, "", 0, "storage %s\nforged line", ("down",), None)
    token = request_id.set("rid-9")
    try:
        assert RequestContextFilter().filter(record)
    finally:
        request_id.reset(token)
    text = TextFormatter().format(record)
    assert text.endswith("WARNING sessionstore.web: storage down\\x0aforged line request_id=rid-9") and "\n" not in text
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "sessionstore.web" and line["request_id"] == "rid-9"
    assert line["message"] == "storage down\nforged line" and line["time"].endswith("Z")
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    assert "ValueError: bad" in orjson.loads(JsonFormatter().format(failed))["exception"]
    assert logging_config("json")["formatters"]["default"]["()"].endswith("JsonFormatter")
    with pytest.raises(ValueError):
        logging_config("xml")


# -- shutting down ------------------------------------------------------------------


@pytest.mark.anyio
async def test_sigterm_sets_shutting_down_at_once() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    seen: list[int] = []

    def server_handler(sig: int, frame: Any) -> None:  # stands for uvicorn's, which starts the graceful shutdown
        seen.append(sig)

    before = signal.signal(signal.SIGTERM, server_handler)
    try:
        app = build_app(Settings(), redis=redis, watch_signals=True)
        event: asyncio.Event = app.state.shutting_down
        async with app.router.lifespan_context(app):
            assert not event.is_set()
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(event.wait(), 2)
            assert seen == [signal.SIGTERM]  # handed on to the handler that was there
        assert signal.getsignal(signal.SIGTERM) is server_handler  # and that one is back
    finally:
        signal.signal(signal.SIGTERM, before)
    # without watch_signals, the event is set at lifespan shutdown
    app = build_app(Settings(), redis=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    async with app.router.lifespan_context(app):
        assert not app.state.shutting_down.is_set()
    assert app.state.shutting_down.is_set()


# -- the served process ---------------------------------------------------------------


def redis_with_password(password: str) -> RedisServer:
    return RedisServer(extra=["--requirepass", password]).start()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and "spawn_main" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_two_workers_share_the_port_and_the_metrics(private_redis: RedisServer, server: str) -> None:
    process, url = serve_process("--server", server, "--workers", "2", "--redis-url", private_redis.url)
    try:
        assert len(children(process.pid)) == 2
        for n in range(40):  # a new connection each: the kernel spreads them over the workers
            r = httpx.patch(f"{url}{A}/ns/w{n}/properties", json={"n": n})
            assert r.status_code == 204
        assert httpx.get(f"{url}{A}/ns/w7/properties").json() == {"n": 7}  # one Redis, whichever worker answers
        scrapes = [httpx.get(url + "/metrics").text for _ in range(6)]
        for text in scrapes:  # every worker answers with the counts of all of them
            assert sample(text, "sessionstore_workers") == 2
            assert sample(text, "sessionstore_http_requests_total", route=ROUTE, method="PATCH", status="204") == 40
            assert sample(text, "sessionstore_http_request_duration_seconds_count", route=ROUTE, method="PATCH") == 40
    finally:
        code, output = stop_process(process)
    assert code == 0, output
    assert output.count(SERVER_SAYS[server]["stopped"]) == 2


def test_workers_need_a_redis_url() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(free_port())],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--redis-url" in result.stderr


def slow_patch(url: str, path: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    return sock


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_sigterm_lets_a_slow_request_complete(private_redis: RedisServer, server: str) -> None:
    process, url = serve_process("--server", server, "--redis-url", private_redis.url)
    body = orjson.dumps({"a": 1, "text": "x" * 200})
    try:
        sock = slow_patch(url, f"{A}/ns/slow/properties", body)
        sock.sendall(body[:10])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # the request is in flight: its body is still coming
        time.sleep(0.3)
        with pytest.raises(OSError):  # no new connections once shutting down
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
        for n in range(10, len(body), 40):
            sock.sendall(body[n : n + 40])
            time.sleep(0.1)
        assert read_status(sock) == 204
        sock.close()
        code, output = stop_process(process, terminate=False)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 0, output
    assert SERVER_SAYS[server]["grace over"] not in output

    async def stored() -> Any:
        client = clients.connect(private_redis.url)
        try:
            return await SessionStore(client).read(TENANT, "ns", "slow")
        finally:
            await client.aclose()

    session = asyncio.run(stored())
    assert session is not None and orjson.loads(session.properties["a"]) == 1


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_shutdown_grace_bounds_a_request_that_does_not_end(private_redis: RedisServer, server: str) -> None:
    process, url = serve_process("--server", server, "--redis-url", private_redis.url, "--shutdown-grace", "1")
    sock = slow_patch(url, f"{A}/ns/stuck/properties", b'{"a": 1}')
    try:
        sock.sendall(b'{"a"')  # and never the rest
        time.sleep(0.3)
        began = time.monotonic()
        code, output = stop_process(process, timeout=20)
        took = time.monotonic() - began
    finally:
        sock.close()
    assert code == 0, output
    assert 0.9 < took < 8, took
    assert SERVER_SAYS[server]["grace over"] in output


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_logs_carry_request_ids_and_no_secrets(tmp_path: Path, server: str) -> None:
    password = "redis-pass-8c1f2e"
    redis = redis_with_password(password)
    auth = tmp_path / "auth.toml"
    auth.write_text(
        "".join(
            f'[[keys]]\nid = "{e["id"]}"\ntenant = "{e["tenant"]}"\nsha256 = "{e["sha256"]}"\nscopes = {orjson.dumps(e["scopes"]).decode()}\n'
            for e in auth_document()["keys"]
        )
    )
    redis_url = f"redis://default:{password}@127.0.0.1:{redis.port}/0"
    try:
        process, url = serve_process(
            "--server",
            server,
            "--auth-file",
            str(auth),
            "--log-format",
            "json",
            "--access-log",
            "--log-level",
            "debug",
            env={"SESSIONSTORE_REDIS_URL": redis_url},
        )
        try:
            calls = [
                ("PATCH", f"{A}/ns/s/properties", {"maven-api-key": SECRETS["writer"], "X-Request-ID": "req-1"}),
                ("GET", f"{A}/ns/s/properties", {"X-API-Key": SECRETS["reader"]}),
                ("GET", f"{A}/ns/s/properties", {"Authorization": f"Bearer {SECRETS['admin']}"}),
                ("GET", f"{A}/ns/s/properties", {"Authorization": "Bearer wrong-secret-1234"}),
                (
                    "GET",
                    f"/v1/account/{TENANT}/ns/s/properties?apiKey=query-secret-99",
                    {"maven-api-key": SECRETS["other"]},
                ),
            ]
            ids = []
            for method, path, headers in calls:
                r = httpx.request(method, url + path, headers=headers, json={"a": 1} if method == "PATCH" else None)
                ids.append(r.headers["x-request-id"])
        finally:
            code, output = stop_process(process)
    finally:
        redis.cleanup()
    assert code == 0, output
    lines = [orjson.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "sessionstore.access" and line["path"] != "/readyz"]
    assert [line["request_id"] for line in access] == ids and ids[0] == "req-1"
    assert [line["key"] for line in access] == ["writer", "reader", "admin", "unknown", "other"]
    assert [line["status"] for line in access] == [204, 200, 200, 401, 403]
    assert all(line["route"] == ROUTE for line in access)
    assert any(line["logger"].startswith(SERVER_SAYS[server]["logger"]) for line in lines)  # the server's lines too
    for secret in [*SECRETS.values(), password, "wrong-secret-1234", "query-secret-99"]:
        assert secret not in output, secret
    assert hashlib.sha256(SECRETS["writer"].encode()).hexdigest() not in output


# -- sessionstore check ---------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_check_a_good_redis(private_redis: RedisServer) -> None:
    result = run_cli("check", "--redis-url", private_redis.url)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = result.stdout.splitlines()
    assert re.fullmatch(r"redis: answers at redis://127\.0\.0\.1:\d+/0 \(\d+\.\d+\.\d+, standalone\)", first)
    assert second == f"scripts: {len(Scripts().all())} loaded"


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "noeviction"])
def test_check_warns_about_an_eviction_policy_unsafe_for_the_layout(policy: str) -> None:
    redis = RedisServer(free_port(), extra=["--maxmemory-policy", policy]).start()
    try:
        result = run_cli("check", "--redis-url", redis.url)
    finally:
        redis.cleanup()
    assert result.returncode == 0, result.stdout + result.stderr  # it serves: a warning, not a problem
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    if policy.startswith("allkeys-"):
        assert len(warnings) == 1 and f"maxmemory-policy {policy} is not safe" in warnings[0]
        assert "namespace record" in warnings[0] and "volatile-*" in warnings[0]
    else:
        assert warnings == []


def test_check_hides_the_password_and_fails_without_it() -> None:
    redis = redis_with_password("pw-5d7e")
    try:
        good = run_cli("check", "--redis-url", f"redis://default:pw-5d7e@127.0.0.1:{redis.port}/0")
        bad = run_cli("check", "--redis-url", f"redis://default:nope-4411@127.0.0.1:{redis.port}/0")
    finally:
        redis.cleanup()
    assert good.returncode == 0 and "pw-5d7e" not in good.stdout and ":***@" in good.stdout
    assert bad.returncode == 1 and "nope-4411" not in bad.stdout and bad.stdout.startswith("redis: does not answer")


def test_check_a_redis_that_does_not_answer() -> None:
    result = run_cli("check", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "0.5")
    assert result.returncode == 1
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("redis: does not answer at redis://127.0.0.1:")
    assert run_cli("check", "--redis-url", "http://x").returncode == 2
    no_url = subprocess.run(
        [sys.executable, "-m", "service", "check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "SESSIONSTORE_REDIS_URL"},
    )
    assert no_url.returncode == 2 and "--redis-url" in no_url.stderr


def test_check_reports_a_cluster_node(tmp_path: Path) -> None:
    port = free_port()
    while port > 55000:  # the cluster bus listens on port + 10000
        port = free_port()
    redis = RedisServer(
        port, extra=["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    ).start()
    try:
        result = run_cli("check", "--redis-url", redis.url)
    finally:
        redis.cleanup()
    assert result.returncode == 1
    assert ", cluster)" in result.stdout.splitlines()[0] and "Redis Cluster" in result.stdout


@pytest.mark.anyio
async def test_check_reports_a_script_that_does_not_load(tmp_path: Path, redis: Any, backend: str) -> None:
    if backend == "fake":
        pytest.skip("the embedded store does not compile scripts on SCRIPT LOAD")
    (tmp_path / "lib.lua").write_text("local x = 1\n")
    (tmp_path / "good.lua").write_text("-- include: lib\nreturn x\n")
    (tmp_path / "broken.lua").write_text("return (\n")
    report = await checks.check(redis, Scripts(tmp_path))
    assert report.answers and report.mode == "standalone" and report.scripts_loaded == 1 and not report.ok
    assert report.problems[0].startswith("lua/broken.lua does not load: ")
    assert (await checks.check(redis)).ok


# -- deployment files -----------------------------------------------------------------


def serve_options() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in vars(cli.parser().parse_args(["serve"])) if name != "command"}


@pytest.mark.parametrize("name", ["docker-compose.yml", "deploy/docker-compose.scaled.yml"])
def test_compose_files(name: str) -> None:
    path = ROOT / name
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    instances = [s for s in services.values() if s.get("build") or "sessionstore" in str(s.get("image", ""))]
    assert instances, "no sessionstore service"
    for service in instances:
        environment = service["environment"]
        assert set(environment) <= serve_options(), set(environment) - serve_options()
        assert environment["SESSIONSTORE_AUTH_FILE"] == "/etc/sessionstore/auth.toml"
        mounts = [v.split(":") for v in service["volumes"]]
        assert any(
            target == "/etc/sessionstore/auth.toml" and (path.parent / source).is_file()
            for source, target, *_ in mounts
        )
        assert (path.parent / service["build"] / "Dockerfile").is_file()
        # docker's stop timeout must outlast the shutdown grace (default 10 s)
        grace = float(environment.get("SESSIONSTORE_SHUTDOWN_GRACE", 10))
        assert float(str(service["stop_grace_period"]).rstrip("s")) > grace
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).exists(), source
    if "scaled" in name:
        assert len([s for s in services if s.startswith("redis-")]) >= 6
        assert "redis+cluster://" in str(instances[0]["environment"]["SESSIONSTORE_REDIS_URL"])
        assert instances[0]["deploy"]["replicas"] >= 2


def test_the_docs_document_operations() -> None:
    docs = (ROOT / "docs" / "operating.md").read_text() + (ROOT / "docs" / "deployment.md").read_text()
    for needle in [
        "# Operating sessionstore",
        "# Deployment",
        "/metrics",
        "--log-format",
        "--access-log",
        "X-Request-ID",
        "--workers",
        "--shutdown-grace",
        "sessionstore export",
        "sessionstore import",
        "sessionstore check",
        "docker compose",
        "deploy/docker-compose.scaled.yml",
    ]:
        assert needle in docs, needle
