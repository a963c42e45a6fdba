"""The Genesys-compatible Session Management API, on both backends."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from service.app import build_app
from service.config import Settings
from service.faces.genesys import NAMESPACE
from service.store import clients, keys
from service.store.core import Changes, Limits, SessionStore

from .conftest import OTHER_TENANT, SECRETS, TENANT, RedisServer, free_port, key, serve_app

pytestmark = pytest.mark.anyio

WRITER = key("writer")  # TENANT: read, write
READER = key("reader")  # TENANT: read
OTHER = key("other")  # OTHER_TENANT: everything
ALL = key("all")  # every tenant: everything
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DAY_MS = 24 * 3600 * 1000


def customer(value: str) -> dict[str, str]:
    return {"gkc_customerId": value}


def agent(value: str) -> dict[str, str]:
    return {"gkc_agentId": value}


async def ok(response: httpx.Response) -> dict[str, Any]:
    """The SessionInfo of a successful answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"response"}
    info: dict[str, Any] = body["response"]
    assert ISO.fullmatch(info["createdAt"]) and ISO.fullmatch(info["modifiedAt"])
    assert info["createdAt"] <= info["modifiedAt"]
    return info


def error(response: httpx.Response, status: int) -> str:
    """The description of an error answer, after checking its format."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "description"} and body["code"] == status, body
    assert isinstance(body["description"], str) and body["description"]
    return str(body["description"])


def ids_of(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in ("sessionId", "createdAt", "modifiedAt")}


@asynccontextmanager
async def open_app(redis: Any, settings: Settings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app with no auth file (open access)."""
    app = build_app(settings or Settings(), redis=redis, auth=None)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        yield client


# -- operations ----------------------------------------------------------------


async def test_create_anonymous_session(client: httpx.AsyncClient, store: SessionStore) -> None:
    info = await ok(await client.put("/sessions/new", params={"tenantId": TENANT}, headers=WRITER))
    assert set(info) == {"sessionId", "createdAt", "modifiedAt"}
    assert str(uuid.UUID(info["sessionId"])) == info["sessionId"]
    assert info["createdAt"] == info["modifiedAt"]
    again = await ok(await client.put("/sessions/new", params={"tenantId": TENANT}, headers=WRITER))
    assert again["sessionId"] != info["sessionId"]
    # it is a session of the storage core, in the tenant's reserved namespace
    stored = await store.read(TENANT, NAMESPACE, info["sessionId"])
    assert stored is not None and stored.properties == {} and stored.version == 1
    assert (
        await ok(await client.get(f"/sessions/{info['sessionId']}", params={"tenantId": TENANT}, headers=READER))
        == info
    )


async def test_create_named_session(client: httpx.AsyncClient, store: SessionStore) -> None:
    r = await client.put(
        "/sessions/new",
        params={"tenantId": TENANT},
        headers={**WRITER, **customer("cust-1"), **agent("agent-7")},
        json={"visitId": "visit-1", "globalVisitId": "gv-1", "somethingElse": [1, {"x": None}]},
    )
    info = await ok(r)
    assert list(info) == ["sessionId", "customerId", "agentId", "visitId", "globalVisitId", "createdAt", "modifiedAt"]
    assert ids_of(info) == {"customerId": "cust-1", "agentId": "agent-7", "visitId": "visit-1", "globalVisitId": "gv-1"}
    stored = await store.read(TENANT, NAMESPACE, info["sessionId"])
    assert stored is not None
    assert stored.properties == {
        "customerId": b'"cust-1"',
        "agentId": b'"agent-7"',
        "visitId": b'"visit-1"',
        "globalVisitId": b'"gv-1"',
    }
    # only a header, only a body, an empty body, an empty object
    info = await ok(await client.put("/sessions/new", params={"tenantId": TENANT}, headers={**WRITER, **agent("a")}))
    assert ids_of(info) == {"agentId": "a"}
    info = await ok(
        await client.put("/sessions/new", params={"tenantId": TENANT}, headers=WRITER, json={"visitId": "v"})
    )
    assert ids_of(info) == {"visitId": "v"}
    for body in [b"", b"  \n", b"{}"]:
        info = await ok(await client.put("/sessions/new", params={"tenantId": TENANT}, headers=WRITER, content=body))
        assert ids_of(info) == {}


async def test_ids_in_utf8(client: httpx.AsyncClient) -> None:
    headers = {b"maven-api-key": SECRETS["writer"].encode(), b"gkc_customerId": "José Ñandú".encode()}  # raw UTF-8
    info = await ok(
        await client.put("/sessions/new", params={"tenantId": TENANT}, headers=headers, json={"visitId": "访问"})
    )
    assert ids_of(info) == {"customerId": "José Ñandú", "visitId": "访问"}


async def test_get_creates_a_missing_session(client: httpx.AsyncClient, store: SessionStore) -> None:
    assert await store.read(TENANT, NAMESPACE, "abc-123") is None
    first = await ok(await client.get("/sessions/abc-123", params={"tenantId": TENANT}, headers=READER))
    assert first["sessionId"] == "abc-123" and ids_of(first) == {}
    stored = await store.read(TENANT, NAMESPACE, "abc-123")
    assert stored is not None and stored.version == 1 and stored.created_ms == stored.modified_ms
    assert (await store.list_sessions(TENANT, NAMESPACE, 10))[0] == ["abc-123"]  # indexed like any session
    await asyncio.sleep(0.01)
    second = await ok(await client.get("/sessions/abc-123", params={"tenantId": TENANT}, headers=READER))
    assert second == first  # a read changes neither the session nor its modification time
    # the gkc_ headers of a read are not stored: a read key may not write
    third = await ok(
        await client.get("/sessions/abc-123", params={"tenantId": TENANT}, headers={**READER, **customer("c")})
    )
    assert third == first


async def test_post_associates(client: httpx.AsyncClient) -> None:
    params = {"tenantId": TENANT}
    created = await ok(await client.put("/sessions/new", params=params, headers=WRITER, json={"visitId": "v1"}))
    path = f"/sessions/{created['sessionId']}"
    await asyncio.sleep(0.01)
    info = await ok(await client.post(path, params=params, headers={**WRITER, **customer("c1")}))
    assert ids_of(info) == {"visitId": "v1", "customerId": "c1"}
    assert info["createdAt"] == created["createdAt"] and info["modifiedAt"] > created["modifiedAt"]
    info = await ok(
        await client.post(path, params=params, headers={**WRITER, **agent("a1")}, json={"globalVisitId": "g1"})
    )
    assert ids_of(info) == {"customerId": "c1", "agentId": "a1", "visitId": "v1", "globalVisitId": "g1"}
    # fields not given keep their stored values; given ones replace them
    info = await ok(
        await client.post(path, params=params, headers={**WRITER, **customer("c2")}, json={"visitId": "v2"})
    )
    assert ids_of(info) == {"customerId": "c2", "agentId": "a1", "visitId": "v2", "globalVisitId": "g1"}
    # nothing given: nothing changes
    before = info
    info = await ok(await client.post(path, params=params, headers=WRITER))
    assert info == before
    assert await ok(await client.get(path, params=params, headers=READER)) == before


async def test_post_creates_a_missing_session(client: httpx.AsyncClient) -> None:
    params = {"tenantId": TENANT}
    info = await ok(
        await client.post("/sessions/fresh", params=params, headers={**WRITER, **customer("c")}, json={"visitId": "v"})
    )
    assert info["sessionId"] == "fresh" and ids_of(info) == {"customerId": "c", "visitId": "v"}
    assert info["createdAt"] == info["modifiedAt"]
    assert await ok(await client.get("/sessions/fresh", params=params, headers=READER)) == info
    info = await ok(await client.post("/sessions/empty", params=params, headers=WRITER))
    assert ids_of(info) == {}


async def test_session_ids_are_any_text(client: httpx.AsyncClient) -> None:
    for sid in ["with space", "ünïcødé", "a:b{c}", "x" * 256, ":meta", "new-ish", "NEW"]:
        info = await ok(
            await client.post(f"/sessions/{sid}", params={"tenantId": TENANT}, headers={**WRITER, **agent("a")})
        )
        assert info["sessionId"] == sid
        assert ids_of(await ok(await client.get(f"/sessions/{sid}", params={"tenantId": TENANT}, headers=READER))) == {
            "agentId": "a"
        }


async def test_new_is_only_the_create_operation(client: httpx.AsyncClient) -> None:
    for method in ["GET", "POST", "DELETE"]:
        r = await client.request(method, "/sessions/new", params={"tenantId": TENANT}, headers=WRITER)
        error(r, 405)
        assert r.headers["allow"] == "PUT"
    for method in ["PUT", "DELETE", "PATCH"]:
        r = await client.request(method, "/sessions/abc", params={"tenantId": TENANT}, headers=WRITER)
        error(r, 405)
        assert r.headers["allow"] == "GET, POST"
    # the 8.5.0 index writes the create path with a trailing slash
    await ok(await client.put("/sessions/new/", params={"tenantId": TENANT}, headers=WRITER))
    await ok(await client.get("/sessions/abc/", params={"tenantId": TENANT}, headers=READER))


# -- tenants and keys ----------------------------------------------------------


async def test_tenant_from_the_api_key(client: httpx.AsyncClient) -> None:
    info = await ok(await client.put("/sessions/new", headers={**WRITER, **customer("c")}))  # no tenantId
    path = f"/sessions/{info['sessionId']}"
    assert await ok(await client.get(path, params={"tenantId": TENANT}, headers=READER)) == info
    assert await ok(await client.get(path, params={"tenantId": TENANT}, headers=ALL)) == info
    assert await ok(await client.get(path, headers=READER)) == info
    # a key for every tenant must say which
    error(await client.get(path, headers=ALL), 400)
    error(await client.put("/sessions/new", headers=ALL), 400)
    error(await client.post(path, headers=ALL), 400)


async def test_open_access_needs_a_tenant(redis: Any) -> None:
    async with open_app(redis) as client:
        assert "tenantId" in error(await client.put("/sessions/new"), 400)
        error(await client.get("/sessions/s"), 400)
        info = await ok(await client.post("/sessions/s", params={"tenantId": TENANT}, headers=customer("c")))
        assert ids_of(info) == {"customerId": "c"}


async def test_authentication_and_authorisation(client: httpx.AsyncClient) -> None:
    params = {"tenantId": TENANT}
    for headers in [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {"maven-api-key": ""}]:
        error(await client.get("/sessions/s", params=params, headers=headers), 401)
        error(await client.put("/sessions/new", params=params, headers=headers), 401)
        error(await client.post("/sessions/s", params=params, headers=headers), 401)
    # every header the foundation accepts carries the key
    for headers in [{"x-api-key": SECRETS["writer"]}, {"authorization": f"Bearer {SECRETS['writer']}"}, WRITER]:
        await ok(await client.post("/sessions/s", params=params, headers=headers))
    # read may GET, not PUT or POST
    await ok(await client.get("/sessions/s", params=params, headers=READER))
    error(await client.put("/sessions/new", params=params, headers=READER), 403)
    error(await client.post("/sessions/s", params=params, headers=READER), 403)
    # a key of another tenant
    for method, path in [("GET", "/sessions/s"), ("POST", "/sessions/s"), ("PUT", "/sessions/new")]:
        error(await client.request(method, path, params={"tenantId": OTHER_TENANT}, headers=WRITER), 403)
        error(await client.request(method, path, params=params, headers=OTHER), 403)


async def test_tenant_isolation(client: httpx.AsyncClient, store: SessionStore) -> None:
    mine = await ok(
        await client.post("/sessions/shared-id", params={"tenantId": TENANT}, headers={**WRITER, **customer("mine")})
    )
    await asyncio.sleep(0.01)
    theirs = await ok(await client.post("/sessions/shared-id", headers={**OTHER, **customer("theirs")}))
    assert ids_of(mine) == {"customerId": "mine"} and ids_of(theirs) == {"customerId": "theirs"}
    assert theirs["createdAt"] > mine["createdAt"]  # two sessions, not one
    assert await ok(await client.get("/sessions/shared-id", headers=READER)) == mine
    assert await ok(await client.get("/sessions/shared-id", params={"tenantId": OTHER_TENANT}, headers=ALL)) == theirs
    # a read of an id only the other tenant has creates this tenant's own, empty one
    await ok(await client.post("/sessions/only-theirs", headers={**OTHER, **agent("x")}))
    assert ids_of(await ok(await client.get("/sessions/only-theirs", headers=READER))) == {}
    other = await store.read(OTHER_TENANT, NAMESPACE, "only-theirs")
    assert other is not None and other.properties == {"agentId": b'"x"'}


# -- errors ----------------------------------------------------------------------


async def test_bad_requests(client: httpx.AsyncClient, store: SessionStore) -> None:
    params = {"tenantId": TENANT}
    bad: list[tuple[str, str, dict[str, Any], str]] = [  # ..., what the description says
        ("POST", "/sessions/s", {"content": b"{not json"}, "malformed JSON"),
        ("POST", "/sessions/s", {"content": b'{"visitId": "\xff\xfe"}'}, "malformed JSON"),  # invalid UTF-8
        ("POST", "/sessions/s", {"content": b"[1, 2]"}, "must be a JSON object"),
        ("POST", "/sessions/s", {"content": b'"visitId"'}, "must be a JSON object"),
        ("POST", "/sessions/s", {"content": b"null"}, "must be a JSON object"),
        ("POST", "/sessions/s", {"json": {"visitId": 1}}, "Expected `str`, got `int` - at `$.visitId`"),
        ("POST", "/sessions/s", {"json": {"visitId": "v", "globalVisitId": None}}, "got `null` - at `$.globalVisitId`"),
        ("POST", "/sessions/s", {"json": {"globalVisitId": ["g"]}}, "got `array`"),
        ("POST", "/sessions/s", {"json": {"visitId": ""}}, "invalid visitId"),
        ("POST", "/sessions/s", {"json": {"visitId": "x" * 257}}, "invalid visitId"),
        ("POST", "/sessions/s", {"json": {"visitId": "tab\there"}}, "invalid visitId"),
        (
            "POST",
            "/sessions/s",
            {"content": b'{"x":' + b"[" * 70 + b"]" * 70 + b"}"},
            "nested deeper",
        ),  # deeper than the limit
        ("POST", "/sessions/s", {"headers": customer("")}, "invalid gkc_customerId"),
        ("POST", "/sessions/s", {"headers": customer("x" * 257)}, "invalid gkc_customerId"),
        ("POST", "/sessions/s", {"headers": agent("a\x7fb")}, "invalid gkc_agentId"),
        ("POST", "/sessions/s", {"headers": {"gkc_agentId": b"\xff\xfe"}}, "not UTF-8"),
        ("PUT", "/sessions/new", {"content": b"{oops"}, "malformed JSON"),
        ("PUT", "/sessions/new", {"json": {"visitId": 1.5}}, "got `float`"),
        ("PUT", "/sessions/new", {"headers": customer("x" * 257)}, "invalid gkc_customerId"),
        ("POST", "/sessions/" + "x" * 257, {}, "invalid sessionId"),
        ("GET", "/sessions/" + "x" * 257, {}, "invalid sessionId"),
        ("GET", "/sessions/a%01b", {}, "invalid sessionId"),
        ("POST", "/sessions/a%0Ab", {}, "invalid sessionId"),
        ("GET", "/sessions/s", {"params": {"tenantId": "bad tenant"}}, "invalid tenantId"),
        ("GET", "/sessions/s", {"params": {"tenantId": ""}}, "invalid tenantId"),
        ("PUT", "/sessions/new", {"params": {"tenantId": "a{b}"}}, "invalid tenantId"),
    ]
    for method, path, kwargs, says in bad:
        headers = {**WRITER, **kwargs.pop("headers", {})}
        kwargs.setdefault("params", params)
        r = await client.request(method, path, headers=headers, **kwargs)
        assert says in error(r, 400), (method, path, kwargs)
        assert r.headers["content-type"] == "application/json"
    # none of them made or changed a session
    assert await store.read(TENANT, NAMESPACE, "s") is None
    assert (await store.list_sessions(TENANT, NAMESPACE, 10))[0] == []


async def test_body_too_large(redis: Any) -> None:
    async with serve_app(redis, Settings(max_body_bytes=100)) as client:
        r = await client.post("/sessions/s", params={"tenantId": TENANT}, json={"visitId": "x" * 200}, headers=WRITER)
        error(r, 413)
        r = await client.put("/sessions/new", params={"tenantId": TENANT}, json={"visitId": "x" * 200}, headers=WRITER)
        error(r, 413)

        async def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 20

        error(await client.post("/sessions/s", params={"tenantId": TENANT}, content=chunks(), headers=WRITER), 413)
        # within the limit
        await ok(await client.post("/sessions/s", params={"tenantId": TENANT}, json={"visitId": "v"}, headers=WRITER))


async def test_storage_unavailable() -> None:
    # a Redis client pointed at a port where nothing listens
    dead = clients.connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.3)
    try:
        async with serve_app(dead) as client:
            params = {"tenantId": TENANT}
            for method, path in [("GET", "/sessions/s"), ("POST", "/sessions/s"), ("PUT", "/sessions/new")]:
                r = await client.request(method, path, params=params, headers={**WRITER, **customer("c")})
                assert "storage unavailable" in error(r, 503)
            # auth and validation still answer first
            error(await client.get("/sessions/s", params=params), 401)
            error(await client.post("/sessions/s", params=params, headers=WRITER, json={"visitId": 1}), 400)
    finally:
        await dead.aclose()


async def test_storage_stopped_and_back() -> None:
    if os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    server = RedisServer().start()
    client = clients.connect(server.url, timeout_s=0.3)
    try:
        async with serve_app(client) as api:
            params = {"tenantId": TENANT}
            await ok(await api.post("/sessions/s", params=params, headers={**WRITER, **customer("c")}))
            server.stop()
            for method, path in [("GET", "/sessions/s"), ("POST", "/sessions/s"), ("PUT", "/sessions/new")]:
                error(await api.request(method, path, params=params, headers=WRITER), 503)
            server.start()  # empty again (no persistence), and the client reconnects by itself
            await ok(await api.post("/sessions/s", params=params, headers={**WRITER, **customer("c")}))
            assert ids_of(await ok(await api.get("/sessions/s", params=params, headers=READER))) == {"customerId": "c"}
    finally:
        await client.aclose()
        server.cleanup()


# -- expiry ------------------------------------------------------------------------


async def test_default_idle_ttl(client: httpx.AsyncClient, store: SessionStore) -> None:
    info = await ok(await client.put("/sessions/new", params={"tenantId": TENANT}, headers=WRITER))
    stored = await store.read(TENANT, NAMESPACE, info["sessionId"])
    assert stored is not None and stored.idle_ms == DAY_MS
    assert abs(stored.expires_ms - (time.time() * 1000 + DAY_MS)) < 5000
    await ok(await client.get("/sessions/by-read", params={"tenantId": TENANT}, headers=READER))
    stored = await store.read(TENANT, NAMESPACE, "by-read")
    assert stored is not None and stored.idle_ms == DAY_MS


async def test_idle_expiry(redis: Any, store: SessionStore) -> None:
    async with serve_app(redis, Settings(genesys_idle_ttl_s=1)) as client:
        params = {"tenantId": TENANT}
        first = await ok(await client.post("/sessions/s", params=params, headers={**WRITER, **customer("c")}))
        made = await ok(await client.put("/sessions/new", params=params, headers=WRITER))
        # reads and writes each push the expiry on
        for step in range(3):
            await asyncio.sleep(0.6)
            if step % 2:
                r = await client.post("/sessions/s", params=params, headers={**WRITER, **agent(f"a{step}")})
            else:
                r = await client.get("/sessions/s", params=params, headers=READER)
            assert (await ok(r))["createdAt"] == first["createdAt"]
        # the unused one has gone meanwhile
        assert await store.read(TENANT, NAMESPACE, made["sessionId"]) is None
        await asyncio.sleep(1.2)
        assert await store.read(TENANT, NAMESPACE, "s") is None
        assert (await store.list_sessions(TENANT, NAMESPACE, 10))[0] == []
        # a read now makes a new, empty session of the same id
        again = await ok(await client.get("/sessions/s", params=params, headers=READER))
        assert ids_of(again) == {} and again["createdAt"] > first["createdAt"]
        # an associate with nothing to change still pushes the expiry on
        await asyncio.sleep(0.6)
        await ok(await client.post("/sessions/s", params=params, headers=WRITER))
        await asyncio.sleep(0.6)
        assert await store.read(TENANT, NAMESPACE, "s") is not None


# -- concurrency ---------------------------------------------------------------------


async def test_concurrent_posts_make_one_session(client: httpx.AsyncClient, store: SessionStore) -> None:
    fields: list[Callable[[int], dict[str, Any]]] = [
        lambda i: {"headers": {**WRITER, **customer(f"c{i}")}},
        lambda i: {"headers": {**WRITER, **agent(f"a{i}")}},
        lambda i: {"headers": WRITER, "json": {"visitId": f"v{i}"}},
        lambda i: {"headers": WRITER, "json": {"globalVisitId": f"g{i}"}},
    ]
    answers = await asyncio.gather(
        *(client.post("/sessions/race", params={"tenantId": TENANT}, **fields[i % 4](i)) for i in range(20))
    )
    infos = [await ok(r) for r in answers]
    assert len({i["createdAt"] for i in infos}) == 1
    final = await ok(await client.get("/sessions/race", params={"tenantId": TENANT}, headers=READER))
    assert set(ids_of(final)) == {"customerId", "agentId", "visitId", "globalVisitId"}
    assert final["createdAt"] == infos[0]["createdAt"]
    stored = await store.read(TENANT, NAMESPACE, "race")
    assert stored is not None and stored.version == 20  # created once, changed by every POST
    assert (await store.list_sessions(TENANT, NAMESPACE, 10))[0] == ["race"]


async def test_concurrent_gets_make_one_session(client: httpx.AsyncClient, store: SessionStore) -> None:
    answers = await asyncio.gather(
        *(client.get("/sessions/race", params={"tenantId": TENANT}, headers=READER) for _ in range(20))
    )
    infos = [await ok(r) for r in answers]
    assert all(i == infos[0] for i in infos)
    stored = await store.read(TENANT, NAMESPACE, "race")
    assert stored is not None and stored.version == 1


# -- the storage core method ---------------------------------------------------------


async def test_read_or_create(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_retention_s=0))  # no retention: a cleared idle TTL is no expiry
    made = await store.read_or_create(TENANT, "ns", "s", idle_ttl_ms=60_000)
    assert made.properties == {} and made.version == 1 and made.idle_ms == 60_000
    assert made.created_ms == made.modified_ms and made.expires_ms == made.modified_ms + 60_000
    # an existing session comes back whole, with its idle expiry moved on and nothing else changed
    await store.write(TENANT, "ns", "s", Changes().set("a", b"1").set(":odd", b'{"x":[1]}'))
    await asyncio.sleep(0.01)
    found = await store.read_or_create(TENANT, "ns", "s", idle_ttl_ms=60_000)
    assert found.properties == {"a": b"1", ":odd": b'{"x":[1]}'}
    assert found.version == 2 and found.created_ms == made.created_ms and found.expires_ms > made.expires_ms
    # None keeps the session's idle TTL; 0 clears it
    assert (await store.read_or_create(TENANT, "ns", "s")).idle_ms == 60_000
    cleared = await store.read_or_create(TENANT, "ns", "s", idle_ttl_ms=0)
    assert cleared.idle_ms == 0 and cleared.expires_ms == 0
    ns = await store.namespace(TENANT, "ns")
    assert ns is not None
    assert await store.redis.pttl(keys.session(TENANT, "ns", ns.generation, "s").session) == -1
    # expired properties are not returned
    await store.write(TENANT, "ns", "s", Changes().set("short", b'"x"'), property_ttl_ms=50)
    await asyncio.sleep(0.1)
    assert set((await store.read_or_create(TENANT, "ns", "s")).properties) == {"a", ":odd"}


async def test_read_or_create_publishes_the_creation(store: SessionStore) -> None:
    """A session that a read creates is a change: followers of it (the native
    API's event stream) hear of it once, and not of later reads."""
    subscription = await store.subscribe(TENANT, "ns", "born")
    try:
        await store.read_or_create(TENANT, "ns", "born", idle_ttl_ms=60_000)
        event = await subscription.next(timeout=5)
        assert event is not None and orjson.loads(event) == {"version": 1, "changed": [], "deleted": []}
        await store.read_or_create(TENANT, "ns", "born", idle_ttl_ms=60_000)
        assert await subscription.next(timeout=0.3) is None
    finally:
        await subscription.aclose()
