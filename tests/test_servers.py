"""``sessionstore serve --server uvicorn|granian`` as a real process: the same
app on either, with its lifespan and its event streams' end at SIGTERM (the
other served-process tests in test_operations.py run on both too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.faces.native import ChangeEvent
from service.observability import Metrics, Observe
from service.store.scripts import Scripts

from .conftest import SERVER_SAYS, TENANT, RedisServer, free_port, serve_process, stop_process
from .test_operations import children

S = f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions"


def events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """The (field, value) of each event or comment of a text/event-stream."""
    found: tuple[str, str] | None = None
    for line in lines:
        if line == "":
            if found is not None:
                yield found
            found = None
            continue
        field, _, value = line.partition(":")
        found = (field or "comment", value.strip())


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_the_lifespan_loads_the_scripts_before_any_request(private_redis: RedisServer, server: str) -> None:
    direct = redis.Redis(port=private_redis.port)
    shas = [script.sha for script in Scripts().all()]
    try:
        assert not any(direct.script_exists(*shas))
        process, url = serve_process("--server", server, "--redis-url", private_redis.url)
        try:
            assert all(direct.script_exists(*shas))  # /readyz answered: the lifespan's startup has run
            r = httpx.put(f"{url}{S}/conv-1", json={"properties": {"intent": "refund"}})
            assert r.status_code == 201 and r.headers["etag"] == '"1"'
            assert httpx.get(f"{url}{S}/conv-1").json()["properties"] == {"intent": "refund"}
            assert httpx.get(f"{url}/healthz").headers["server"] == server
        finally:
            code, output = stop_process(process)
    finally:
        direct.close()
    assert code == 0, output


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_an_event_stream_delivers_and_ends_by_itself_on_sigterm(private_redis: RedisServer, server: str) -> None:
    # a grace longer than the read timeout: only the stream's own end closes it
    # in time, and a server that cut it off would leave an unfinished chunked
    # body, which httpx reports as an error
    process, url = serve_process("--server", server, "--redis-url", private_redis.url, "--shutdown-grace", "60")
    try:
        with (
            httpx.Client(base_url=url, timeout=30) as http,
            http.stream("GET", f"{S}/conv-2/events") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events(response.iter_lines())
            assert next(stream) == ("comment", "subscribed")
            assert httpx.put(f"{url}{S}/conv-2", json={"properties": {"agent": "ann"}}).status_code == 201
            field, value = next(e for e in stream if e[0] != "comment")
            assert field == "data" and msgspec.json.decode(value, type=ChangeEvent) == ChangeEvent(1, ["agent"], [])
            process.send_signal(signal.SIGTERM)
            rest = list(stream)  # ends: the app's shutting_down event, set at SIGTERM in the worker
        code, output = stop_process(process, terminate=False)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert all(field == "comment" for field, _ in rest), rest
    assert code == 0, output
    assert SERVER_SAYS[server]["grace over"] not in output


def test_the_server_comes_from_the_environment_too() -> None:
    process, url = serve_process(env={"SESSIONSTORE_SERVER": "granian"})
    try:
        assert httpx.get(f"{url}/healthz").headers["server"] == "granian"
    finally:
        code, output = stop_process(process)
    assert code == 0, output


async def boom(request: Request) -> Response:
    raise ValueError("boom-7c1d")


def failing_app() -> Starlette:
    """An app factory for the test below: one route that fails, inside Observe."""
    return Starlette(routes=[Route("/boom", boom)], middleware=[Middleware(Observe, metrics=Metrics())])


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_an_unhandled_error_is_logged_once(server: str) -> None:
    port = free_port()
    code = (
        "from service import servers; from service.logs import configure_logging\n"
        f"servers.run({server!r}, 'tests.test_servers:failing_app', "
        f"servers.Serving('127.0.0.1', {port}, 1, 5.0, 'info', configure_logging('text', 'info')))"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/boom", headers={"X-Request-ID": "boom-1"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
                time.sleep(0.05)
        assert r.status_code == 500 and r.json() == {"code": 500, "message": "internal error"}
    finally:
        exit_code, output = stop_process(process)
    assert exit_code == 0, output
    assert output.count("ValueError: boom-7c1d") == 1, output  # one report: Observe's, with the request id
    assert "unhandled error on GET /boom request_id=boom-1" in output


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_a_port_in_use_is_refused(server: str) -> None:
    first, url = serve_process("--server", "granian")  # it listens with SO_REUSEPORT
    try:
        port = url.rsplit(":", 1)[1]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTORE_")}
        second = subprocess.run([sys.executable, "-m", "service", "serve", "--server", server, "--port", port],
                                capture_output=True, text=True, timeout=60, check=False, env=clean)  # fmt: skip
    finally:
        code, output = stop_process(first)
    assert second.returncode == 3, second.stdout + second.stderr  # uvicorn's exit code for a failed start
    assert "ddress already in use" in second.stderr
    assert code == 0, output


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_a_worker_that_dies_is_replaced(private_redis: RedisServer, server: str) -> None:
    process, url = serve_process("--server", server, "--workers", "2", "--redis-url", private_redis.url)
    try:
        before = children(process.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(now := children(process.pid)) == 2 and before[0] not in now):
            assert time.monotonic() < deadline, "no new worker"
            time.sleep(0.1)
        for _ in range(10):  # a new connection each: both workers answer
            assert httpx.get(f"{url}/readyz").status_code == 200
    finally:
        code, output = stop_process(process)
    assert code == 0, output
