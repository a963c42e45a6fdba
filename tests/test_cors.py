"""CORS (--cors-origin): preflights for every route and method, the headers
of simple requests, an event stream followed from another origin, origins
that are not allowed (no CORS headers, never a 500), and the option itself.
In a real browser: tests/test_console_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import httpx
import jwt
import pytest
import uvicorn

from service import cli, cli_serve, cors
from service.app import build_app
from service.auth import AuthConfig
from service.cli_common import ENV_PREFIX
from service.config import Settings
from service.openapi import route_methods

from .conftest import SECRETS, TENANT, auth_document, free_port, key, serve_app

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example"
DESK = "http://127.0.0.1:3000"
TOKEN_SECRET = "c" * 64
SHOP_TENANT = "shopco"  # an Emporix tenant name
# what the issue names: every header some face reads, and the answer headers a page may read
REQUEST_HEADERS = ("Authorization", "Content-Type", "maven-api-key", "X-API-Key", "saas-token", "If-Match",
                   "If-None-Match", "X-Request-Id")  # fmt: skip
EXPOSED = {"etag", "location", "x-request-id"}
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/desk/sessions"


def document() -> dict[str, Any]:
    return {**auth_document(), "customer_tokens": {"algorithm": "HS256", "secret": TOKEN_SECRET}}


def customer_token(session: str, customer: str | None = None) -> str:
    claims: dict[str, Any] = {"tenant": SHOP_TENANT, "sessionId": session, "exp": int(time.time()) + 600}
    if customer:
        claims["customerId"] = customer
    return jwt.encode(claims, TOKEN_SECRET, algorithm="HS256")


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def preflight(origin: str, method: str, headers: tuple[str, ...] = REQUEST_HEADERS) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ",".join(h.lower() for h in headers)}  # fmt: skip


def app_client(redis: Any, origins: tuple[str, ...] = (SHOP, DESK)) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    return serve_app(redis, Settings(cors_origins=origins), auth=document())


@pytest.fixture
async def client(redis: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(redis) as c:
        yield c


@pytest.fixture
async def embedded() -> AsyncIterator[httpx.AsyncClient]:
    """For what does not depend on the storage."""
    async with app_client(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())) as c:
        yield c


# -- preflights ----------------------------------------------------------------------------


def concrete(path: str) -> str:
    return re.sub(r"{([^}]+)}", lambda m: {"tenant": TENANT, "account": TENANT}.get(m.group(1), "x"), path)


async def test_every_route_and_method_answers_a_preflight(embedded: httpx.AsyncClient) -> None:
    app = build_app(Settings(), redis=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    answered = 0
    for rm in route_methods(app.routes):
        r = await embedded.options(concrete(rm.path), headers=preflight(SHOP, rm.method))
        where = f"{rm.method} {rm.path}"
        assert r.status_code == 200, (where, r.text)
        assert r.headers["access-control-allow-origin"] == SHOP, where
        assert rm.method in r.headers["access-control-allow-methods"].split(", "), where
        allowed = {h.lower() for h in r.headers["access-control-allow-headers"].split(", ")}
        assert {h.lower() for h in REQUEST_HEADERS} <= allowed, where
        assert "access-control-allow-credentials" not in r.headers
        answered += 1
    assert answered > 40  # every face's routes were walked


async def test_a_preflight_for_a_header_no_face_reads_is_refused(embedded: httpx.AsyncClient) -> None:
    r = await embedded.options(NATIVE + "/s", headers=preflight(SHOP, "PUT", ("X-API-Key", "X-Unknown")))
    assert r.status_code == 400 and "headers" in r.text


# -- simple requests -------------------------------------------------------------------------


async def test_answers_to_an_allowed_origin_carry_cors_headers(client: httpx.AsyncClient) -> None:
    r = await client.put(NATIVE + "/s1", json={"properties": {"a": 1}}, headers={"Origin": DESK, **key("writer")})
    assert r.status_code == 201
    assert r.headers["access-control-allow-origin"] == DESK and "Origin" in r.headers["vary"]
    assert {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")} == EXPOSED
    assert r.headers["etag"] == '"1"' and r.headers["x-request-id"]
    # errors too: the page can read why it was refused
    r = await client.get(NATIVE + "/s1", headers={"Origin": DESK, "X-API-Key": "wrong"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == DESK
    r = await client.get(NATIVE + "/nobody", headers={"Origin": DESK, **key("reader")})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == DESK


async def test_a_storefront_reads_its_own_context(client: httpx.AsyncClient) -> None:
    base = f"/session-context/{SHOP_TENANT}/me/context"
    bearer = {"Authorization": f"Bearer {customer_token('cart-7', 'cust-1')}", "Origin": SHOP}
    r = await client.patch(base + "?upsert=true", json={"currency": "EUR", "metadata": {"version": 1}}, headers=bearer)
    assert r.status_code == 204, r.text
    r = await client.get(base, headers=bearer)
    assert r.status_code == 200 and r.json()["currency"] == "EUR"
    assert r.headers["access-control-allow-origin"] == SHOP


async def test_an_origin_not_allowed_gets_no_cors_header(client: httpx.AsyncClient) -> None:
    await client.put(NATIVE + "/s1", json={"properties": {"a": 1}}, headers=key("writer"))
    strange = ["https://evil.example", "https://shop.example.evil", "http://shop.example", "null", "",
               "https://SHOP.example/", "*", "https://shop.example, https://evil.example", "\u00e9t\u00e9"]  # fmt: skip
    for origin in strange:
        headers = {"Origin": origin.encode("utf-8")}  # the raw bytes, not ASCII
        r = await client.options(NATIVE + "/s1", headers={**preflight("", "GET"), **headers})
        assert r.status_code == 400 and cors_headers(r) == {}, origin
        assert "Origin" in r.headers["vary"]
        r = await client.get(NATIVE + "/s1", headers={**headers, **key("reader")})
        assert r.status_code == 200 and cors_headers(r) == {}, origin
        assert "Origin" in r.headers["vary"]
    # an OPTIONS that is no preflight is the route's own answer (405), as without CORS
    r = await client.options(NATIVE + "/s1", headers={"Origin": "https://evil.example"})
    assert r.status_code == 405 and cors_headers(r) == {}


async def test_without_origins_there_is_no_cors_at_all(redis: Any) -> None:
    async with app_client(redis, origins=()) as client:
        r = await client.options(NATIVE + "/s1", headers=preflight(SHOP, "GET"))
        assert r.status_code == 405 and cors_headers(r) == {}
        r = await client.get("/healthz", headers={"Origin": SHOP})
        assert r.status_code == 200 and cors_headers(r) == {} and "vary" not in r.headers


async def test_any_origin(redis: Any) -> None:
    async with app_client(redis, origins=("*",)) as client:
        r = await client.options(NATIVE + "/s1", headers=preflight("https://anyone.example", "DELETE"))
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        r = await client.get("/healthz", headers={"Origin": "https://anyone.example"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers


# -- an event stream from another origin, through a real HTTP server -----------------------------


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handlers
        yield


async def test_an_allowed_origin_follows_a_session_s_events(redis: Any) -> None:
    app = build_app(Settings(cors_origins=(DESK,)), redis=redis, auth=AuthConfig.from_document(document()))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="on", ws="none",
                            log_config=None, log_level="warning")  # fmt: skip
    server = Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{config.port}{NATIVE}"
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.options(base + "/live/events", headers=preflight(DESK, "GET", ("X-API-Key",)))
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == DESK
            headers = {"Origin": DESK, "Accept": "text/event-stream", **key("reader")}
            async with http.stream("GET", base + "/live/events", headers=headers) as stream:
                assert stream.status_code == 200 and stream.headers["access-control-allow-origin"] == DESK
                lines = stream.aiter_lines()
                assert await anext(lines) == ": subscribed"
                r = await http.put(base + "/live", json={"properties": {"x": 1}}, headers=key("writer"))
                assert r.status_code == 201
                async with asyncio.timeout(5):
                    async for line in lines:
                        if line.startswith("data:"):
                            assert '"changed":["x"]' in line
                            break
            # as an EventSource does it: no header, the key in the query
            query = {"access_token": SECRETS["reader"]}
            async with http.stream("GET", base + "/live/events", params=query, headers={"Origin": DESK}) as stream:
                assert stream.status_code == 200 and stream.headers["access-control-allow-origin"] == DESK
                assert await anext(stream.aiter_lines()) == ": subscribed"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


# -- the option --------------------------------------------------------------------------------


def test_origins_are_checked_and_written_as_browsers_send_them() -> None:
    assert cors.check_origins(["https://Shop.Example", " http://127.0.0.1:3000 ", "https://shop.example", "*"]) == (
        "https://shop.example", "http://127.0.0.1:3000", "*")  # fmt: skip
    assert cors.check_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("shop.example", "https://shop.example/", "https://shop.example/path", "ftp://shop.example",
                "https://shop.example:port", "null", "https://*.example"):  # fmt: skip
        with pytest.raises(ValueError, match="not an origin"):
            cors.check_origin(bad)


def test_the_option_repeats_and_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def origins(*argv: str) -> tuple[str, ...]:
        return cli_serve.settings_from_args(cli.parser().parse_args(["serve", *argv])).cors_origins

    # a copy of the environment: export_to_environment below writes to it
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)})
    assert origins() == ()
    assert origins("--cors-origin", SHOP, "--cors-origin", DESK) == (SHOP, DESK)
    monkeypatch.setenv("SESSIONSTORE_CORS_ORIGINS", f"{SHOP}, {DESK},")
    assert origins() == (SHOP, DESK)
    assert origins("--cors-origin", "https://other.example") == ("https://other.example",)  # the option wins
    # serve --workers N hands its options to the workers through the environment
    args = cli.parser().parse_args(["serve", "--cors-origin", SHOP, "--cors-origin", DESK])
    del os.environ["SESSIONSTORE_CORS_ORIGINS"]
    cli_serve.export_to_environment(args)
    assert os.environ["SESSIONSTORE_CORS_ORIGINS"] == f"{SHOP},{DESK}"
    assert origins() == (SHOP, DESK)


def test_serve_refuses_a_bad_origin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", str(free_port()), "--cors-origin", "https://shop.example/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "'https://shop.example/' is not an origin" in result.stderr and "Traceback" not in result.stderr




async def test_only_the_event_stream_takes_the_key_from_the_query(redis: Any) -> None:
    """An EventSource cannot send headers: the events route (only it) takes ?access_token=."""
    async with serve_app(redis) as client:
        base = f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions/s"
        assert (await client.get(base, params={"access_token": SECRETS["reader"]})).status_code == 401
        r = await client.get(base + "/events", params={"access_token": "nope"})
        assert r.status_code == 401 and r.json()["status"] == 401
