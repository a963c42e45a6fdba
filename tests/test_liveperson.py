"""The LivePerson-compatible API, endpoint by endpoint, on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.store.core import Limits

from .conftest import OTHER_TENANT, TENANT, key, serve_app

pytestmark = pytest.mark.anyio

A = f"/v1/account/{TENANT}"
ADMIN = key("admin")
WRITER = key("writer")


async def create(client: httpx.AsyncClient, name: str = "ns", ttl: int | None = None) -> None:
    params = {"ttlSecond": str(ttl)} if ttl else None
    r = await client.post(A, json={"name": name}, params=params, headers=ADMIN)
    assert r.status_code == 204, r.text


async def test_create_and_list_namespaces(client: httpx.AsyncClient) -> None:
    await create(client, "myCoolNamespace")
    await create(client, "withTtl", ttl=100)
    await create(client, "myCoolNamespace")  # creating again is no error
    r = await client.get(A, headers=ADMIN)
    assert r.status_code == 200
    listed = r.json()
    assert [n["name"] for n in listed] == ["myCoolNamespace", "withTtl"]
    assert listed[0]["createdAt"].endswith("Z") and "ttlSecond" not in listed[0]
    assert listed[1]["ttlSecond"] == 100
    assert r.content  # body is not empty
    r = await client.post(A, json={"name": "ns"}, headers=ADMIN)
    assert r.status_code == 204 and r.content == b""


async def test_create_again_updates_ttl(client: httpx.AsyncClient) -> None:
    await create(client, "ns")
    await create(client, "ns", ttl=60)
    assert (await client.get(A, headers=ADMIN)).json()[0]["ttlSecond"] == 60


async def test_patch_and_get_properties(client: httpx.AsyncClient) -> None:
    await create(client)
    body = {"a": 1, "b": "hello", "c": True, "d": {"name": "x", "items": [1.5, [], {}]}, "e": None}
    r = await client.patch(f"{A}/ns/properties", json=body, headers=WRITER)
    assert r.status_code == 204 and r.content == b""
    r = await client.get(f"{A}/ns/properties", headers=WRITER)
    assert r.status_code == 200 and r.json() == body
    # the namespace level is the __default__ session
    r = await client.get(f"{A}/ns/__default__/properties", headers=WRITER)
    assert r.json() == body
    # merge: override existing keys, add new ones
    await client.patch(f"{A}/ns/properties", json={"a": 2, "f": "new"}, headers=WRITER)
    assert (await client.get(f"{A}/ns/properties", headers=WRITER)).json() == {**body, "a": 2, "f": "new"}


async def test_session_properties(client: httpx.AsyncClient) -> None:
    r = await client.patch(f"{A}/ns/session100/properties", json={"a": 720, "b": "jeff@test.com"}, headers=WRITER)
    assert r.status_code == 204
    r = await client.put(f"{A}/ns/session100/properties/items", json={"name": "value2", "items": ["A", "B"]}, headers=WRITER)
    assert r.status_code == 204
    r = await client.get(f"{A}/ns/session100/properties/", headers=WRITER)
    assert r.json() == {"a": 720, "b": "jeff@test.com", "items": {"name": "value2", "items": ["A", "B"]}}
    assert (await client.get(f"{A}/ns/properties", headers=WRITER)).json() == {}


async def test_writing_creates_the_namespace(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/implicit/s/properties", json={"a": 1}, headers=WRITER)
    assert [n["name"] for n in (await client.get(A, headers=WRITER)).json()] == ["implicit"]


async def test_put_raw_values(client: httpx.AsyncClient) -> None:
    for value in ["value4", 3, 2.5, True, None, [1, "x"], {"k": {"n": [None]}}]:
        r = await client.put(f"{A}/ns/properties/p", content=json.dumps(value), headers=WRITER)
        assert r.status_code == 204
        r = await client.get(f"{A}/ns/properties/p", headers=WRITER)
        # the value itself, as LivePerson's SDK reads it (JSON.parse of the body)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.content == json.dumps(value, separators=(",", ":")).encode() and r.json() == value


async def test_big_numbers_round_trip(client: httpx.AsyncClient) -> None:
    raw = b'{"big":12345678901234567,"f":0.1,"g":3.141592653589793,"neg":-9007199254740993}'
    r = await client.patch(f"{A}/ns/s/properties", content=raw, headers=WRITER)
    assert r.status_code == 204
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).content == raw


async def test_get_missing(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{A}/nothing/properties/p", headers=WRITER)
    assert r.status_code == 404 and "message" in r.json()
    r = await client.get(f"{A}/nothing/s/properties", headers=WRITER)
    assert r.status_code == 200 and r.json() == {}
    await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=WRITER)
    r = await client.get(f"{A}/ns/s/properties/b", headers=WRITER)
    assert r.status_code == 404 and r.json()["code"] == 404


async def test_include(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/ns/s/properties", json={"a": 1, "b": 2, "c": 3}, headers=WRITER)
    r = await client.get(f"{A}/ns/s/properties", params={"include": "a,c,zz"}, headers=WRITER)
    assert r.json() == {"a": 1, "c": 3}
    r = await client.get(f"/v1/brand/{TENANT}/ns/s/properties", params={"include": "b"}, headers=WRITER)
    assert r.status_code == 200 and r.json() == {"b": 2}
    r = await client.get(f"{A}/ns/s/properties", params={"include": ",".join(f"p{i}" for i in range(1001))}, headers=WRITER)
    assert r.status_code == 400


async def test_deletes(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/ns/s/properties", json={"a": 1, "b": 2}, headers=WRITER)
    await client.patch(f"{A}/ns/properties", json={"isSomething": True, "x": 1}, headers=WRITER)
    r = await client.delete(f"{A}/ns/s/properties/a", headers=WRITER)
    assert r.status_code == 204
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"b": 2}
    r = await client.delete(f"{A}/ns/properties/isSomething", headers=WRITER)
    assert r.status_code == 204
    assert (await client.get(f"{A}/ns/properties", headers=WRITER)).json() == {"x": 1}
    # deleting what is not there is no error
    for path in [f"{A}/ns/s/properties/zz", f"{A}/none/s/properties/zz", f"{A}/none/s/properties", f"{A}/none"]:
        r = await client.delete(path, headers=ADMIN)
        assert r.status_code == 204, path
    r = await client.delete(f"{A}/ns/s/properties/", headers=WRITER)  # the SDK sends the trailing slash
    assert r.status_code == 204
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {}
    assert (await client.get(f"{A}/ns/session-ids", headers=WRITER)).json() == ["__default__"]


async def test_delete_namespace(client: httpx.AsyncClient) -> None:
    await create(client, "gone", ttl=100)
    await client.patch(f"{A}/gone/s/properties", json={"a": 1}, headers=WRITER)
    r = await client.delete(f"{A}/gone", headers=ADMIN)
    assert r.status_code == 204
    assert (await client.get(A, headers=ADMIN)).json() == []
    assert (await client.get(f"{A}/gone/s/properties", headers=WRITER)).json() == {}
    # a namespace made again under the same name starts empty and without the TTL
    await client.patch(f"{A}/gone/s/properties", json={"b": 2}, headers=WRITER)
    assert (await client.get(f"{A}/gone/s/properties", headers=WRITER)).json() == {"b": 2}
    assert "ttlSecond" not in (await client.get(A, headers=ADMIN)).json()[0]


async def test_session_ids_paging(client: httpx.AsyncClient) -> None:
    ids = sorted(f"s{i:03d}" for i in range(45))
    await asyncio.gather(*(client.patch(f"{A}/ns/{s}/properties", json={"n": 1}, headers=WRITER) for s in ids))
    seen: list[str] = []
    for page in range(5):
        r = await client.get(f"{A}/ns/session-ids", params={"page": page, "perPage": 10}, headers=WRITER)
        assert r.status_code == 200
        seen += r.json()
    assert sorted(seen) == ids and len(seen) == len(set(seen))
    r = await client.get(f"{A}/ns/session-ids", headers=WRITER)
    assert sorted(r.json()) == ids
    r = await client.get(f"{A}/ns/session-properties", params={"perPage": 3}, headers=WRITER)
    assert len(r.json()) == 3 and r.json()[0]["property"] == {"n": 1}
    for bad in [{"perPage": 0}, {"perPage": 1001}, {"page": -1}, {"page": "x"}]:
        r = await client.get(f"{A}/ns/session-ids", params=bad, headers=WRITER)
        assert r.status_code == 400, bad


async def test_session_ttl_list(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{A}/namespace/ns/session", params={"ttlSecond": 100}, json={"sessionId": "mySessionId"}, headers=ADMIN)
    assert r.status_code == 204
    r = await client.get(f"{A}/namespace/ns/session", headers=ADMIN)
    assert r.status_code == 200
    [entry] = r.json()
    assert entry["sessionId"] == "mySessionId" and entry["ttlSecond"] == 100 and entry["createdAt"].endswith("Z")
    r = await client.post(f"{A}/namespace/ns/session", json={"sessionId": "x"}, headers=ADMIN)
    assert r.status_code == 400  # ttlSecond is required
    r = await client.post(f"{A}/namespace/ns/session", params={"ttlSecond": 5}, json={"id": "x"}, headers=ADMIN)
    assert r.status_code == 400
    r = await client.post(f"{A}/namespace/ns/session", params={"ttlSecond": 5}, json={"sessionId": "x"}, headers=WRITER)
    assert r.status_code == 403  # TTLs need admin


async def test_namespace_ttl_is_stamped_on_writes(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/ns/s/properties", json={"old": 1}, headers=WRITER)
    await create(client, "ns", ttl=1)
    await client.patch(f"{A}/ns/s/properties", json={"new": 1}, headers=WRITER)
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"old": 1, "new": 1}
    await asyncio.sleep(1.2)
    # the property written before the TTL was set keeps no TTL
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"old": 1}
    r = await client.get(f"{A}/ns/s/properties/new", headers=WRITER)
    assert r.status_code == 404


async def test_session_ttl_expires_the_session(client: httpx.AsyncClient) -> None:
    await client.post(f"{A}/namespace/ns/session", params={"ttlSecond": 1}, json={"sessionId": "s"}, headers=ADMIN)
    await client.patch(f"{A}/ns/s/properties", json={"a": 1, "b": 2}, headers=WRITER)
    await client.patch(f"{A}/ns/other/properties", json={"a": 1}, headers=WRITER)
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"a": 1, "b": 2}
    await asyncio.sleep(1.2)
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {}
    assert (await client.get(f"{A}/ns/session-ids", headers=WRITER)).json() == ["other"]
    assert (await client.get(f"{A}/namespace/ns/session", headers=WRITER)).json() == []


async def test_bad_requests_change_nothing(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=WRITER)
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("PATCH", f"{A}/ns/s/properties", {"content": b"{not json"}),
        ("PATCH", f"{A}/ns/s/properties", {"content": b'{"a": "\xff\xfe"}'}),  # invalid UTF-8
        ("PATCH", f"{A}/ns/s/properties", {"content": b"[1, 2]"}),
        ("PATCH", f"{A}/ns/s/properties", {"content": b""}),
        ("PUT", f"{A}/ns/s/properties/a", {"content": b"{oops"}),
        ("PUT", f"{A}/ns/s/properties/a", {"content": b""}),
        ("PATCH", f"{A}/bad%20name/s/properties", {"json": {"a": 2}}),
        ("PATCH", f"{A}/__emporix__/s/properties", {"json": {"a": 2}}),
        ("PATCH", "/v1/account/bad%7Bt%7D/ns/s/properties", {"json": {"a": 2}}),
        ("PATCH", f"{A}/ns/s/properties", {"content": b"[" * 70 + b"]" * 70}),
        ("PATCH", f"{A}/ns/s/properties", {"json": {"a": 2, "x" * 257: 1}}),
        ("POST", A, {"json": {"name": "bad name"}}),
        ("POST", A, {"json": {"nom": "x"}}),
        ("POST", A, {"json": {"name": "ok"}, "params": {"ttlSecond": "0"}}),
        ("POST", A, {"json": {"name": "ok"}, "params": {"ttlSecond": "abc"}}),
    ]
    for method, path, kwargs in bad:
        r = await client.request(method, path, headers=ADMIN, **kwargs)
        assert r.status_code == 400, (method, path, kwargs, r.text)
        assert isinstance(r.json()["message"], str)
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"a": 1}
    assert [n["name"] for n in (await client.get(A, headers=ADMIN)).json()] == ["ns"]


async def test_deep_json_within_the_limit(client: httpx.AsyncClient) -> None:
    deep: Any = 1
    for _ in range(63):
        deep = [deep]
    r = await client.put(f"{A}/ns/s/properties/deep", json=deep, headers=WRITER)
    assert r.status_code == 204
    assert (await client.get(f"{A}/ns/s/properties/deep", headers=WRITER)).json() == deep


async def test_body_too_large(redis: Any) -> None:
    async with serve_app(redis, Settings(max_body_bytes=1000)) as client:
        r = await client.patch(f"{A}/ns/s/properties", json={"a": "x" * 2000}, headers=WRITER)
        assert r.status_code == 413 and r.json()["message"]

        async def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 200

        r = await client.patch(f"{A}/ns/s/properties", content=chunks(), headers=WRITER)
        assert r.status_code == 413
        assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {}


async def test_document_too_large(redis: Any) -> None:
    async with serve_app(redis, Settings(limits=Limits(max_chars=1000, max_properties=5))) as client:
        r = await client.patch(f"{A}/ns/s/properties", json={"a": "x" * 500}, headers=WRITER)
        assert r.status_code == 204
        r = await client.patch(f"{A}/ns/s/properties", json={"b": "y" * 500}, headers=WRITER)
        assert r.status_code == 413 and r.json()["message"] == "document too large"
        r = await client.put(f"{A}/ns/s/properties/c", json="é" * 490, headers=WRITER)  # characters, not bytes
        assert r.status_code == 204
        assert set((await client.get(f"{A}/ns/s/properties", headers=WRITER)).json()) == {"a", "c"}
        # shrinking is always allowed
        r = await client.put(f"{A}/ns/s/properties/a", json="small", headers=WRITER)
        assert r.status_code == 204
        r = await client.patch(f"{A}/ns/t/properties", json={f"p{i}": i for i in range(6)}, headers=WRITER)
        assert r.status_code == 413
        assert (await client.get(f"{A}/ns/t/properties", headers=WRITER)).json() == {}


async def test_unknown_routes_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing/here", headers=WRITER)
    assert r.status_code == 404 and r.json()["code"] == 404
    r = await client.put(A, headers=ADMIN)
    assert r.status_code == 405 and r.json()["code"] == 405


async def test_tenant_isolation(client: httpx.AsyncClient) -> None:
    await client.patch(f"{A}/ns/s/properties", json={"mine": 1}, headers=WRITER)
    other = f"/v1/account/{OTHER_TENANT}"
    await client.patch(f"{other}/ns/s/properties", json={"theirs": 2}, headers=key("other"))
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"mine": 1}
    assert (await client.get(f"{other}/ns/s/properties", headers=key("other"))).json() == {"theirs": 2}
    await client.delete(f"{other}/ns", headers=key("other"))
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"mine": 1}
    r = await client.get(f"{other}/ns/s/properties", headers=WRITER)
    assert r.status_code == 403


async def test_concurrent_merges_keep_every_key(client: httpx.AsyncClient) -> None:
    await asyncio.gather(*(client.patch(f"{A}/ns/s/properties", json={f"k{i}": i}, headers=WRITER) for i in range(50)))
    assert (await client.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {f"k{i}": i for i in range(50)}


async def test_two_instances_share_one_redis(redis_factory: Any) -> None:
    async with serve_app(redis_factory()) as one, serve_app(redis_factory()) as two:
        await one.patch(f"{A}/ns/s/properties", json={"from": "one"}, headers=WRITER)
        assert (await two.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {"from": "one"}
        await two.delete(f"{A}/ns", headers=ADMIN)
        assert (await one.get(f"{A}/ns/s/properties", headers=WRITER)).json() == {}


async def test_one_property_is_its_bare_value_as_the_sdk_reads_it(client: httpx.AsyncClient) -> None:
    """LivePerson's context-service SDK (faas-cli) does JSON.parse(body) of
    GET .../properties/{name}, falling back to the text, and stores that under
    the name (getSelectedPropertiesInSession)."""
    values = {"a": 721, "b": "jeff@test.com", "c": ["value1", "value2"], "d": {"name": "myValue3"}, "e": None}
    assert (await client.patch(f"{A}/ns/s/properties", json=values, headers=WRITER)).status_code == 204
    selected = {}
    for name in [*values, "absent"]:
        r = await client.get(f"{A}/ns/s/properties/{name}", headers=WRITER)
        if r.status_code == 404:  # the SDK skips those
            continue
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        selected[name] = json.loads(r.text)
    assert selected == values


RESERVED = ["consumer", "operational", "conversation", "faas", "custom", "sde", "SDE"]


@pytest.mark.parametrize("name", RESERVED)
async def test_livepersons_own_namespaces_are_not_created_or_written(client: httpx.AsyncClient, name: str) -> None:
    r = await client.post(A, json={"name": name}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["message"] == f"namespace {name!r} is reserved for LivePerson's internal use"
    writes = [
        ("PATCH", f"{A}/{name}/s/properties", b'{"a":1}'),
        ("PATCH", f"{A}/{name}/properties", b'{"a":1}'),
        ("PUT", f"{A}/{name}/s/properties/a", b"1"),
        ("DELETE", f"{A}/{name}/s/properties/a", b""),
        ("DELETE", f"{A}/{name}/s/properties", b""),
        ("DELETE", f"{A}/{name}", b""),
        ("POST", f"{A}/namespace/{name}/session?ttlSecond=60", b'{"sessionId":"s"}'),
    ]
    for method, path, body in writes:
        r = await client.request(method, path, content=body, headers=ADMIN)
        assert r.status_code == 400 and "reserved" in r.json()["message"], (method, path)
    # reading is no error (there is nothing there), and nothing was made
    assert (await client.get(f"{A}/{name}/s/properties", headers=ADMIN)).json() == {}
    assert (await client.get(A, headers=ADMIN)).json() == []
