"""The native API, endpoint by endpoint and status by status, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.app import build_app
from service.auth import AuthConfig
from service.config import Settings
from service.faces.native_conditions import entity_tags
from service.faces.native_wire import ChangeEvent
from service.store import keys, seam
from service.store.core import RETENTION_13_MONTHS_S, Limits

from .conftest import OTHER_TENANT, TENANT, RedisServer, auth_document, free_port, key, serve_app

pytestmark = pytest.mark.anyio

S = f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions"
WRITER = key("writer")
READER = key("reader")
MERGE = {**WRITER, "Content-Type": "application/merge-patch+json"}
PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert isinstance(body["title"], str) and isinstance(body["detail"], str) and body["detail"]
    return body


async def put(client: httpx.AsyncClient, sid: str, properties: dict[str, Any], **kwargs: Any) -> httpx.Response:
    headers = {**WRITER, **kwargs.pop("headers", {})}
    return await client.put(f"{S}/{sid}", json={"properties": properties}, headers=headers, **kwargs)


async def patch(client: httpx.AsyncClient, sid: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {**MERGE, **kwargs.pop("headers", {})}
    return await client.patch(f"{S}/{sid}", content=json.dumps(body), headers=headers, **kwargs)


async def props(client: httpx.AsyncClient, sid: str) -> dict[str, Any] | None:
    r = await client.get(f"{S}/{sid}", headers=READER)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()["properties"]  # type: ignore[no-any-return]


# -- the resource and its ETag ----------------------------------------------------


async def test_put_and_get(client: httpx.AsyncClient) -> None:
    before = time.time()
    r = await put(client, "s1", {"a": 1, "b": {"c": [1.5, None, "x"]}, "big": 12345678901234567890123})
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    created = r.json()
    assert created["sessionId"] == "s1"
    assert created["properties"] == {"a": 1, "b": {"c": [1.5, None, "x"]}, "big": 12345678901234567890123}
    meta = created["metadata"]
    assert meta["version"] == 1 and meta["createdAt"] == meta["modifiedAt"] and meta["createdAt"].endswith("Z")
    # no idle TTL: the session expires after the retention (--max-retention, 13 months) from its last write
    retention = datetime.fromisoformat(meta["expiresAt"]) - datetime.fromisoformat(meta["modifiedAt"])
    assert retention.total_seconds() == RETENTION_13_MONTHS_S
    assert abs(datetime.fromisoformat(meta["createdAt"]).timestamp() - before) < 5

    r = await client.get(f"{S}/s1", headers=READER)
    assert r.status_code == 200 and r.headers["etag"] == '"1"' and r.headers["content-type"] == "application/json"
    assert r.json() == created
    # replacing: 200, the properties are the new ones only
    r = await put(client, "s1", {"z": "new"})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["properties"] == {"z": "new"} and r.json()["metadata"]["version"] == 2
    assert r.json()["metadata"]["createdAt"] == meta["createdAt"]
    # sessionId and metadata may be sent back as read; they are ignored
    r = await client.put(f"{S}/s1", json={**r.json(), "properties": {"z": 1}}, headers=WRITER)
    assert r.status_code == 200 and r.json()["properties"] == {"z": 1}
    r = await client.head(f"{S}/s1", headers=READER)
    assert r.status_code == 200 and r.headers["etag"] == '"3"' and r.content == b""


async def test_get_missing_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{S}/nobody", headers=READER), 404)
    assert_problem(await client.get(f"/api/v1/tenants/{TENANT}/namespaces/nothing/sessions/x", headers=READER), 404)


async def test_if_none_match_on_get(client: httpx.AsyncClient) -> None:
    await put(client, "s", {"a": 1})
    await put(client, "s", {"a": 2})
    for header in ['"2"', 'W/"2"', '"1", "2"', '"7",W/"2"', "*"]:
        r = await client.get(f"{S}/s", headers={**READER, "If-None-Match": header})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == '"2"', header
    for header in ['"1"', '"x"', '"1", W/"3"']:
        r = await client.get(f"{S}/s", headers={**READER, "If-None-Match": header})
        assert r.status_code == 200 and r.json()["properties"] == {"a": 2}, header
    # If-Match on a read
    assert (await client.get(f"{S}/s", headers={**READER, "If-Match": '"2"'})).status_code == 200
    assert_problem(await client.get(f"{S}/s", headers={**READER, "If-Match": '"1"'}), 412)
    assert_problem(await client.get(f"{S}/nobody", headers={**READER, "If-Match": "*"}), 412)


async def test_if_match_on_writes(client: httpx.AsyncClient) -> None:
    r = await put(client, "s", {"a": 1})
    assert r.headers["etag"] == '"1"'
    # stale, weak (never matches for If-Match) or nonsense: 412 and no change
    for header in ['"7"', 'W/"1"', '"abc"', '"7", "8"']:
        assert_problem(await put(client, "s", {"a": "no"}, headers={"If-Match": header}), 412)
        assert_problem(await patch(client, "s", {"properties": {"a": "no"}}, headers={"If-Match": header}), 412)
        r = await client.put(f"{S}/s/properties/a", json="no", headers={**WRITER, "If-Match": header})
        assert_problem(r, 412)
        assert_problem(await client.delete(f"{S}/s/properties/a", headers={**WRITER, "If-Match": header}), 412)
        assert_problem(await client.delete(f"{S}/s", headers={**WRITER, "If-Match": header}), 412)
    assert await props(client, "s") == {"a": 1}
    # the current one, alone, in a list (any one of them will do), or *
    r = await put(client, "s", {"a": 2}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    r = await patch(client, "s", {"properties": {"b": 3}}, headers={"If-Match": '"9", W/"3", "2"'})
    assert r.status_code == 200 and r.headers["etag"] == '"3"'
    r = await put(client, "s", {"c": 4}, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.headers["etag"] == '"4"'
    r = await client.put(f"{S}/s/properties/d", json=5, headers={**WRITER, "If-Match": '"4"'})
    assert r.status_code == 204 and r.headers["etag"] == '"5"'
    r = await client.delete(f"{S}/s/properties/d", headers={**WRITER, "If-Match": '"5"'})
    assert r.status_code == 204 and r.headers["etag"] == '"6"'
    r = await client.delete(f"{S}/s", headers={**WRITER, "If-Match": '"6"'})
    assert r.status_code == 204
    # If-Match on a missing session: 412, and nothing is created
    assert_problem(await put(client, "s", {"a": 1}, headers={"If-Match": "*"}), 412)
    assert_problem(await patch(client, "s", {"properties": {"a": 1}}, headers={"If-Match": '"1"'}), 412)
    assert_problem(await client.delete(f"{S}/s", headers={**WRITER, "If-Match": '"7"'}), 412)
    assert await props(client, "s") is None


async def test_if_none_match_star_creates_only(client: httpx.AsyncClient) -> None:
    r = await put(client, "s", {"a": 1}, headers={"If-None-Match": "*"})
    assert r.status_code == 201
    assert_problem(await put(client, "s", {"a": 2}, headers={"If-None-Match": "*"}), 412)
    assert_problem(await patch(client, "s", {"properties": {"a": 2}}, headers={"If-None-Match": "*"}), 412)
    assert await props(client, "s") == {"a": 1}
    assert_problem(await put(client, "s", {"a": 2}, headers={"If-None-Match": '"1"'}), 400)  # only * on a write
    assert_problem(await put(client, "s", {"a": 2}, headers={"If-None-Match": "*", "If-Match": '"1"'}), 412)
    assert_problem(await client.delete(f"{S}/s", headers={**WRITER, "If-None-Match": "*"}), 400)


async def test_etag_round_trip_and_lost_updates(client: httpx.AsyncClient) -> None:
    await put(client, "s", {"n": 0})
    r = await client.get(f"{S}/s", headers=READER)
    tag = r.headers["etag"]
    # everyone read the same version; exactly one conditional write wins
    results = await asyncio.gather(*(put(client, "s", {"n": i}, headers={"If-Match": tag}) for i in range(10)))
    assert sorted(r.status_code for r in results) == [200] + [412] * 9
    winner = next(r for r in results if r.status_code == 200)
    new_tag = winner.headers["etag"]
    assert new_tag != tag
    r = await client.get(f"{S}/s", headers={**READER, "If-None-Match": new_tag})
    assert r.status_code == 304
    r = await client.get(f"{S}/s", headers={**READER, "If-None-Match": tag})
    assert r.status_code == 200 and r.headers["etag"] == new_tag and r.json() == winner.json()


def test_entity_tag_parsing() -> None:
    assert entity_tags("*") is None
    assert entity_tags(' "1" ,W/"2",3, "a,b"') == [(False, "1"), (True, "2"), (False, "3"), (False, "a,b")]
    assert entity_tags("") == []


# -- merge patch ----------------------------------------------------------------------

# RFC 7396, Appendix A: (target, patch, result)
RFC7396_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("number", "target", "merge", "result"), [(n, *e) for n, e in enumerate(RFC7396_EXAMPLES, 1)])
async def test_rfc7396_examples_on_a_property(
    client: httpx.AsyncClient, number: int, target: Any, merge: Any, result: Any
) -> None:
    """Each example with the property "doc" as its target document (a null result: the property is gone)."""
    await put(client, "s", {"doc": target, "other": 1})
    r = await patch(client, "s", {"properties": {"doc": merge}})
    assert r.status_code == 200, r.text
    expected = {"other": 1} if result is None else {"doc": result, "other": 1}
    assert r.json()["properties"] == expected
    assert await props(client, "s") == expected


@pytest.mark.parametrize(
    ("number", "target", "merge", "result"),
    [(n, *e) for n, e in enumerate(RFC7396_EXAMPLES, 1) if isinstance(e[0], dict) and isinstance(e[1], dict)],
)
async def test_rfc7396_examples_on_the_properties(
    client: httpx.AsyncClient, number: int, target: Any, merge: Any, result: Any
) -> None:
    """The examples whose documents are objects, with the properties as the target document."""
    await put(client, "s", target)
    r = await patch(client, "s", {"properties": merge})
    assert r.status_code == 200 and r.json()["properties"] == result


async def test_patch(client: httpx.AsyncClient) -> None:
    r = await patch(client, "s", {"properties": {"a": 1, "b": {"c": 2}}})
    assert r.status_code == 201 and r.headers["etag"] == '"1"'  # a missing session is created
    r = await patch(client, "s", {"properties": {"b": {"d": 3}}, "sessionId": "s", "metadata": {"version": 1}})
    assert r.status_code == 200 and r.json()["properties"] == {"a": 1, "b": {"c": 2, "d": 3}}
    r = await patch(client, "s", {})  # changes nothing: no new version
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    r = await patch(client, "s", {"properties": None})  # every property deleted
    assert r.status_code == 200 and r.json()["properties"] == {} and r.headers["etag"] == '"3"'
    r = await client.patch(f"{S}/s", json={"properties": {"a": 1}}, headers=WRITER)  # application/json
    assert_problem(r, 415)
    assert r.headers["accept-patch"] == "application/merge-patch+json"
    r = await client.patch(
        f"{S}/s",
        content=b'{"properties": {}}',
        headers={**WRITER, "Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert r.status_code == 200
    for bad in [
        b"[1]",
        b'{"properties": [1]}',
        b'{"properties": 5}',
        b'{"propertes": {}}',
        b"{oops",
        b"",
        b'{"properties": {"": 1}}',
    ]:
        r = await client.patch(f"{S}/s", content=bad, headers=MERGE)
        assert_problem(r, 400)
    assert await props(client, "s") == {}


# -- delete, touch, TTLs ---------------------------------------------------------------


async def test_delete(client: httpx.AsyncClient) -> None:
    await put(client, "s", {"a": 1})
    assert (await client.delete(f"{S}/s", headers=WRITER)).status_code == 204
    assert await props(client, "s") is None
    assert_problem(await client.delete(f"{S}/s", headers=WRITER), 404)
    assert_problem(await client.delete(f"/api/v1/tenants/{TENANT}/namespaces/none/sessions/s", headers=WRITER), 404)
    # made again, it starts over
    r = await put(client, "s", {"b": 2})
    assert r.status_code == 201 and r.json()["metadata"]["version"] == 1


async def test_idle_ttl_and_touch(client: httpx.AsyncClient) -> None:
    r = await put(client, "s", {"a": 1}, params={"ttl": 1})
    expires = datetime.fromisoformat(r.json()["metadata"]["expiresAt"]).timestamp()
    assert abs(expires - (time.time() + 1)) < 0.5
    await asyncio.sleep(0.6)
    assert (await client.post(f"{S}/s:touch", headers=WRITER)).status_code == 204  # expires 1 s from now
    r = await client.get(f"{S}/s", headers=READER)
    assert r.status_code == 200 and r.json()["metadata"]["version"] == 1  # a touch makes no new version
    assert datetime.fromisoformat(r.json()["metadata"]["expiresAt"]).timestamp() > expires
    await asyncio.sleep(0.6)
    assert await props(client, "s") == {"a": 1}  # 1.2 s after the write: the touch kept it; reads do not
    await asyncio.sleep(0.6)
    assert await props(client, "s") is None
    assert_problem(await client.post(f"{S}/s:touch", headers=WRITER), 404)
    # every write moves the expiry, PATCH with ?ttl= too
    r = await patch(client, "t", {"properties": {"a": 1}}, params={"ttl": 100})
    first = r.json()["metadata"]["expiresAt"]
    await asyncio.sleep(0.05)
    r = await client.post(f"{S}/t/properties/n:increment", json={"by": 1}, headers=WRITER)
    r = await client.get(f"{S}/t", headers=READER)
    assert r.json()["metadata"]["expiresAt"] > first
    for bad in ["0", "-1", "x", "1.5", str(10 * 366 * 24 * 3600 + 1)]:
        assert_problem(await put(client, "t", {"a": 1}, params={"ttl": bad}), 400)
        assert_problem(await patch(client, "t", {"properties": {"a": 1}}, params={"ttl": bad}), 400)


async def test_property_ttl(client: httpx.AsyncClient) -> None:
    await put(client, "s", {"stays": 1})
    r = await client.put(f"{S}/s/properties/goes", json={"v": 2}, params={"ttl": 1}, headers=WRITER)
    assert r.status_code == 204
    assert await props(client, "s") == {"stays": 1, "goes": {"v": 2}}
    await asyncio.sleep(1.2)
    assert await props(client, "s") == {"stays": 1}
    assert_problem(await client.get(f"{S}/s/properties/goes", headers=READER), 404)
    r = await client.put(f"{S}/s/properties/p", json=1, params={"ttl": "0"}, headers=WRITER)
    assert_problem(r, 400)


# -- properties -------------------------------------------------------------------------


async def test_property_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.put(f"{S}/s/properties/a", json={"x": [1, 2]}, headers=WRITER)  # creates the session
    assert r.status_code == 204 and r.headers["etag"] == '"1"'
    r = await client.get(f"{S}/s/properties/a", headers=READER)
    assert r.status_code == 200 and r.json() == {"x": [1, 2]} and r.headers["etag"] == '"1"'
    assert r.content == b'{"x":[1,2]}'  # as stored
    r = await client.get(f"{S}/s/properties/a", headers={**READER, "If-None-Match": '"1"'})
    assert r.status_code == 304
    for name in ["with:colon", "ü ñ", "a:increment", ":lead", "x.y"]:
        r = await client.put(f"{S}/s/properties/{name}", json=name, headers=WRITER)
        assert r.status_code == 204, name
        assert (await client.get(f"{S}/s/properties/{name}", headers=READER)).json() == name
    assert_problem(await client.get(f"{S}/s/properties/zz", headers=READER), 404)
    assert_problem(await client.get(f"{S}/none/properties/a", headers=READER), 404)
    assert (await client.delete(f"{S}/s/properties/a", headers=WRITER)).status_code == 204
    assert (await client.delete(f"{S}/s/properties/a", headers=WRITER)).status_code == 204  # not there: no error
    assert_problem(await client.delete(f"{S}/none/properties/a", headers=WRITER), 404)  # nor is it created
    assert await props(client, "none") is None
    assert "a" not in (await props(client, "s") or {})
    for bad in [b"", b"{oops", b"[" * 70 + b"]" * 70]:
        assert_problem(await client.put(f"{S}/s/properties/b", content=bad, headers=WRITER), 400)


async def test_session_ids_with_action_suffixes(client: httpx.AsyncClient) -> None:
    """An id ending in ':touch' is a session like any other; POST ...:touch touches what comes before."""
    r = await put(client, "a:touch", {"v": 1})
    assert r.status_code == 201 and r.json()["sessionId"] == "a:touch"
    assert await props(client, "a:touch") == {"v": 1}
    assert (await client.post(f"{S}/a:touch:touch", headers=WRITER)).status_code == 204
    assert_problem(await client.post(f"{S}/a:touch", headers=WRITER), 404)  # session "a" does not exist
    assert_problem(await client.post(f"{S}/a", headers=WRITER), 405)
    assert (await client.delete(f"{S}/a:touch", headers=WRITER)).status_code == 204


async def test_increment(client: httpx.AsyncClient) -> None:
    results = await asyncio.gather(
        *(client.post(f"{S}/s/properties/n:increment", json={"by": 1}, headers=WRITER) for _ in range(50))
    )
    assert all(r.status_code == 200 for r in results)
    assert sorted(r.json()["value"] for r in results) == list(range(1, 51))  # each saw its own total
    assert (await client.get(f"{S}/s/properties/n", headers=READER)).json() == 50
    r = await client.post(f"{S}/s/properties/n:increment", json={"by": -0.5}, headers=WRITER)
    assert r.json() == {"value": 49.5} and r.headers["etag"] == '"51"'
    await client.put(f"{S}/s/properties/text", json="abc", headers=WRITER)
    assert_problem(await client.post(f"{S}/s/properties/text:increment", json={"by": 1}, headers=WRITER), 409)
    for bad in [
        b'{"by": "x"}',
        b'{"by": true}',
        b"{}",
        b'{"by": 1, "extra": 2}',
        b"",
        b"[1]",
        b'{"by": 1e999}',
        b'{"by": 99999999999999999999}',
    ]:
        r = await client.post(f"{S}/s/properties/n:increment", content=bad, headers=WRITER)
        assert_problem(r, 400)
    assert (await client.get(f"{S}/s/properties/n", headers=READER)).json() == 49.5


# -- listing and batch reads ----------------------------------------------------------------


async def test_list_with_cursor(client: httpx.AsyncClient) -> None:
    ids = sorted(f"s{i:02d}" for i in range(25))
    await asyncio.gather(*(put(client, i, {"n": 1}) for i in ids))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        r = await client.get(S, params=params, headers=READER)
        assert r.status_code == 200
        body = r.json()
        assert len(body["sessionIds"]) <= 10
        seen += body["sessionIds"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages >= 3 and sorted(seen) == ids and len(seen) == len(set(seen))
    r = await client.get(S, headers=READER)
    assert sorted(r.json()["sessionIds"]) == ids and r.json()["nextCursor"] is None
    for bad in [{"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 1001}, {"limit": "x"}]:
        assert_problem(await client.get(S, params=bad, headers=READER), 400)
    r = await client.get(f"/api/v1/tenants/{TENANT}/namespaces/empty/sessions", headers=READER)
    assert r.json() == {"sessionIds": [], "nextCursor": None}


async def test_batch_get(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await put(client, f"s{i}", {"i": i})
    r = await client.post(f"{S}:batchGet", json={"sessionIds": ["s2", "nope", "s0", "s1", "s2"]}, headers=READER)
    assert r.status_code == 200
    body = r.json()
    assert [s["sessionId"] for s in body["sessions"]] == ["s2", "s0", "s1"]
    assert [s["properties"] for s in body["sessions"]] == [{"i": 2}, {"i": 0}, {"i": 1}]
    assert body["sessions"][0]["metadata"]["version"] == 1
    assert body["missing"] == ["nope"]
    r = await client.post(f"{S}:batchGet", json={"sessionIds": []}, headers=READER)
    assert r.json() == {"sessions": [], "missing": []}
    r = await client.post(
        f"/api/v1/tenants/{TENANT}/namespaces/none/sessions:batchGet", json={"sessionIds": ["a"]}, headers=READER
    )
    assert r.json() == {"sessions": [], "missing": ["a"]}
    r = await client.post(f"{S}:batchGet", json={"sessionIds": [f"x{i}" for i in range(1000)]}, headers=READER)
    assert r.status_code == 200 and len(r.json()["missing"]) == 1000
    for bad in [
        {"sessionIds": [f"x{i}" for i in range(1001)]},
        {"sessionIds": "s0"},
        {"ids": ["s0"]},
        {"sessionIds": [1]},
    ]:
        assert_problem(await client.post(f"{S}:batchGet", json=bad, headers=READER), 400)
    assert_problem(await client.get(f"{S}:batchGet", headers=READER), 405)


async def test_batch_get_is_one_round_trip(redis: Any) -> None:
    """The sessions are read with one batch through the store's seam, not one command (and round trip) each."""
    async with serve_app(redis) as client:
        for i in range(20):
            await put(client, f"s{i}", {"i": i})
        calls: list[int] = []

        def counting(batch: Any) -> Any:
            async def counted(self: Any, commands: Any) -> Any:
                calls.append(len(commands))
                return await batch(self, commands)

            return counted

        with pytest.MonkeyPatch.context() as mp:
            for kind in (seam.EmbeddedSeam, seam.MultiplexedSeam, seam.ClusterSeam):
                mp.setattr(kind, "batch", counting(kind.__dict__["batch"]))
            r = await client.post(f"{S}:batchGet", json={"sessionIds": [f"s{i}" for i in range(20)]}, headers=READER)
        assert r.status_code == 200 and len(r.json()["sessions"]) == 20
        assert calls[-1] == 20 and len(calls) <= 2  # the namespace (with a guess of one session), then the 20


# -- errors, limits, auth ------------------------------------------------------------------------


async def test_problem_details_everywhere(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get(f"/api/v1/tenants/{TENANT}/nothing/here", headers=READER), 404)
    assert body["title"] == "Not Found"
    r = await client.post(f"{S}/s", headers=WRITER)
    assert_problem(r, 405)
    assert set(r.headers["allow"].split(", ")) >= {"GET", "PUT", "PATCH", "DELETE"}
    bad_names = [
        "/api/v1/tenants/bad%7Bt%7D/namespaces/ns/sessions/s",
        f"/api/v1/tenants/{TENANT}/namespaces/bad%20name/sessions/s",
        f"{S}/bad%01id",
        f"{S}/{'x' * 257}",
    ]
    for path in bad_names:
        assert_problem(await client.get(path, headers=key("all")), 400)


async def test_other_faces_data_is_visible_here(client: httpx.AsyncClient) -> None:
    r = await client.put(f"/sessions/new?tenantId={TENANT}", headers={**WRITER, "gkc_customerId": "c-1"})
    assert r.status_code == 200
    session_id = r.json()["response"]["sessionId"]
    r = await client.get(f"/api/v1/tenants/{TENANT}/namespaces/__genesys__/sessions/{session_id}", headers=READER)
    assert r.status_code == 200 and r.json()["properties"] == {"customerId": "c-1"}


async def test_auth(client: httpx.AsyncClient) -> None:
    await put(client, "s", {"a": 1})
    assert_problem(await client.get(f"{S}/s"), 401)
    assert_problem(await client.get(f"{S}/s", headers={"X-API-Key": "wrong"}), 401)
    assert (await client.get(f"{S}/s", headers={"Authorization": "Bearer " + "reader-secret"})).status_code == 200
    for method, path, kwargs in [
        ("PUT", f"{S}/s", {"json": {"properties": {}}}),
        ("PATCH", f"{S}/s", {"content": b"{}", "headers": {"Content-Type": "application/merge-patch+json"}}),
        ("DELETE", f"{S}/s", {}),
        ("POST", f"{S}/s:touch", {}),
        ("PUT", f"{S}/s/properties/p", {"json": 1}),
        ("DELETE", f"{S}/s/properties/a", {}),
        ("POST", f"{S}/s/properties/n:increment", {"json": {"by": 1}}),
    ]:
        headers = {**READER, **kwargs.pop("headers", {})}
        assert_problem(await client.request(method, path, headers=headers, **kwargs), 403)
    assert await props(client, "s") == {"a": 1}
    assert_problem(await client.get(f"{S}/s/events", headers={"X-API-Key": "wrong"}), 401)
    assert_problem(await client.get(f"{S}/s", headers=key("other")), 403)


async def test_tenant_isolation(client: httpx.AsyncClient) -> None:
    other = f"/api/v1/tenants/{OTHER_TENANT}/namespaces/ns/sessions"
    await put(client, "s", {"mine": 1})
    r = await client.put(f"{other}/s", json={"properties": {"theirs": 2}}, headers=key("other"))
    assert r.status_code == 201  # a session of its own, not a new version of ours
    assert await props(client, "s") == {"mine": 1}
    assert (await client.get(f"{other}/s", headers=key("other"))).json()["properties"] == {"theirs": 2}
    assert (await client.get(other, headers=key("other"))).json()["sessionIds"] == ["s"]
    r = await client.post(f"{other}:batchGet", json={"sessionIds": ["s"]}, headers=READER)
    assert_problem(r, 403)


async def test_limits(redis: Any) -> None:
    settings = Settings(max_body_bytes=2000, limits=Limits(max_chars=1000, max_properties=3))
    async with serve_app(redis, settings) as client:
        assert_problem(await put(client, "s", {"a": "x" * 3000}), 413)  # the body
        assert (await put(client, "s", {"a": "x" * 600})).status_code == 201
        assert_problem(await patch(client, "s", {"properties": {"b": "y" * 600}}), 413)  # the stored size
        assert_problem(await put(client, "t", {"a": 1, "b": 2, "c": 3, "d": 4}), 413)  # properties
        r = await client.post(f"{S}/s/properties/z:increment", json={"by": 1}, headers=WRITER)
        assert r.status_code == 200  # within the limits


async def test_storage_unavailable(redis: Any) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        async with serve_app(dead, Settings(request_deadline_s=1.0)) as client:
            assert_problem(await client.get(f"{S}/s", headers=READER), 503)
            assert_problem(await put(client, "s", {"a": 1}), 503)
            assert_problem(await client.get(f"{S}/s/events", headers=READER), 503)
    finally:
        await dead.aclose()


# -- shared storage ---------------------------------------------------------------------------------


async def test_same_sessions_as_the_liveperson_api(client: httpx.AsyncClient) -> None:
    lp = f"/v1/account/{TENANT}"
    await client.post(lp, json={"name": "shared"}, headers=key("admin"))
    await client.patch(f"{lp}/shared/s/properties", json={"from": "liveperson"}, headers=WRITER)
    native = f"/api/v1/tenants/{TENANT}/namespaces/shared/sessions"
    r = await client.get(f"{native}/s", headers=READER)
    assert r.json()["properties"] == {"from": "liveperson"} and r.headers["etag"] == '"1"'
    await client.patch(f"{native}/s", content=b'{"properties": {"from": null, "native": true}}', headers=MERGE)
    assert (await client.get(f"{lp}/shared/s/properties", headers=WRITER)).json() == {"native": True}
    assert (await client.get(f"{native}", headers=READER)).json()["sessionIds"] == ["s"]


# -- the event stream, through a real HTTP server ------------------------------------------------------


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handlers
        yield


@contextlib.asynccontextmanager
async def live_server(redis: Any, settings: Settings | None = None) -> AsyncIterator[str]:
    """The app under uvicorn on a free port of 127.0.0.1, in this event loop."""
    app = build_app(settings or Settings(), redis=redis, auth=AuthConfig.from_document(auth_document()))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), lifespan="on", ws="none", log_config=None, log_level="warning"
    )
    server = Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


class EventReader:
    """Reads a text/event-stream: one (field, value) per event or comment."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> tuple[str, str]:
        found: tuple[str, str] | None = None
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if found is not None:
                        return found
                    continue
                field, _, value = line.partition(":")
                found = (field or "comment", value.strip())
        raise AssertionError(f"the stream ended ({found})")

    async def event(self, timeout: float = 5.0) -> ChangeEvent:
        """The next event, keep-alive comments skipped."""
        while True:
            field, value = await self.next(timeout)
            if field == "data":
                return msgspec.json.decode(value, type=ChangeEvent)  # the documented type
            assert field == "comment", (field, value)


@contextlib.asynccontextmanager
async def follow(base: str, sid: str, headers: dict[str, str] = READER) -> AsyncIterator[EventReader]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", f"{S}/{sid}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = EventReader(response)
        assert await reader.next() == ("comment", "subscribed")
        yield reader


async def subscribers(redis: Any, sid: str) -> int:
    generation = int(await redis.hget(keys.namespace(TENANT, "ns"), "g"))
    channel = keys.session(TENANT, "ns", generation, sid).events
    if isinstance(redis, RedisCluster):  # a shard channel, on the node that owns its slot
        await redis.initialize()
        reply = await redis.execute_command("PUBSUB SHARDNUMSUB", channel, target_nodes=redis.get_node_from_key(channel))
        return int(reply[0][1] if isinstance(reply[0], (tuple, list)) else reply[1])
    [(_, count)] = await redis.pubsub_numsub(channel)
    return int(count)


async def test_events_of_a_liveperson_write_reach_a_native_subscriber(redis_factory: Any) -> None:
    """The acceptance test: a write through the LivePerson API, on another service
    instance, reaches a subscriber of the native API."""
    async with (
        live_server(redis_factory()) as base,
        serve_app(redis_factory()) as other,
        follow(base, "conv-1") as events,
    ):
        r = await other.patch(
            f"/v1/account/{TENANT}/ns/conv-1/properties", json={"intent": "refund", "n": 1}, headers=WRITER
        )
        assert r.status_code == 204
        assert await events.event() == ChangeEvent(1, ["intent", "n"], [])
        await other.delete(f"/v1/account/{TENANT}/ns/conv-1/properties/n", headers=WRITER)
        assert await events.event() == ChangeEvent(2, [], ["n"])
        # and the native API's own writes, each change in order
        await put(other, "conv-1", {"intent": "refund", "agent": "ann"})
        assert await events.event() == ChangeEvent(3, ["intent", "agent"], [])
        await patch(other, "conv-1", {"properties": {"intent": None}})
        assert await events.event() == ChangeEvent(4, [], ["intent"])
        await other.post(f"{S}/conv-1/properties/turns:increment", json={"by": 1}, headers=WRITER)
        assert await events.event() == ChangeEvent(5, ["turns"], [])
        await other.delete(f"{S}/conv-1", headers=WRITER)
        assert await events.event() == ChangeEvent(6, [], ["agent", "turns"])


async def test_events_only_for_changes_and_only_for_that_session(redis_factory: Any) -> None:
    async with live_server(redis_factory()) as base, serve_app(redis_factory()) as other:
        await put(other, "s", {"a": 1})
        async with follow(base, "s") as events, follow(base, "s") as second:
            await put(other, "another", {"a": 1})  # another session
            await other.delete(f"{S}/s/properties/missing", headers=WRITER)  # changes nothing
            await patch(other, "s", {"properties": {}}, params={"ttl": 60})  # only moves the expiry
            await other.post(f"{S}/s:touch", headers=WRITER)
            assert_problem(await put(other, "s", {"a": 2}, headers={"If-Match": '"9"'}), 412)  # fails
            await patch(other, "s", {"properties": {"b": 2}})
            # the first event either subscriber sees is the one real change
            assert await events.event() == ChangeEvent(2, ["b"], [])
            assert await second.event() == ChangeEvent(2, ["b"], [])


async def test_events_keep_alive_and_release_on_disconnect(redis_factory: Any) -> None:
    probe = redis_factory()
    async with live_server(redis_factory(), Settings(sse_keepalive_s=0.2)) as base:
        async with follow(base, "quiet") as events:
            assert await events.next() == ("comment", "keep-alive")
            assert await events.next() == ("comment", "keep-alive")
            assert await subscribers(probe, "quiet") == 1
        # the client went away: the subscription (and the pub/sub connection) is given back
        async with asyncio.timeout(5):
            while await subscribers(probe, "quiet") != 0:
                await asyncio.sleep(0.05)
        # and a new subscriber starts afresh
        async with follow(base, "quiet") as events, httpx.AsyncClient(base_url=base) as writer:
            await put(writer, "quiet", {"x": 1})
            assert await events.event() == ChangeEvent(1, ["x"], [])


async def test_events_survive_many_subscribers_coming_and_going(redis_factory: Any) -> None:
    async with live_server(redis_factory()) as base, serve_app(redis_factory()) as other:

        async def one(n: int) -> ChangeEvent:
            async with follow(base, f"s{n % 3}") as events:
                await put(other, f"s{n % 3}", {"n": n})
                # concurrent writers on the same session: one of them is this one
                while True:
                    event = await events.event()
                    if event.changed == ["n"]:
                        return event

        results = await asyncio.gather(*(one(n) for n in range(12)))
        assert all(e.changed == ["n"] for e in results)


async def test_the_stream_ends_when_redis_goes_away() -> None:
    """No event may be missed silently: when the pub/sub connection is lost, the stream ends."""
    if os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    server = RedisServer().start()
    client = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    try:
        async with live_server(client) as base, follow(base, "s") as events:
            server.stop()
            field, value = await events.next()
            assert (field, value) == ("comment", "stream ended: the pub/sub connection to Redis was lost")
            with pytest.raises(AssertionError, match="the stream ended"):
                await events.next()
    finally:
        await client.aclose()
        server.cleanup()


async def test_the_stream_ends_when_the_service_shuts_down(redis: Any) -> None:
    app = build_app(Settings(), redis=redis, auth=AuthConfig.from_document(auth_document()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # it buffers: the answer comes once the stream has ended
        async with httpx.AsyncClient(transport=transport, base_url="http://sessionstore") as client:
            answer = asyncio.ensure_future(client.get(f"{S}/s/events", headers=READER))
            await asyncio.sleep(0.2)
            assert not answer.done()
            app.state.shutting_down.set()
            async with asyncio.timeout(5):
                r = await answer
    assert r.status_code == 200
    assert r.text == ": subscribed\n\n: stream ended: the service is shutting down\n\n"
