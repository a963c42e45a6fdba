"""The client's ``update`` (read, apply, write with If-Match, again on a 412),
with the AsyncClient and the sync Client, on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.client import NotFound, PreconditionFailed
from service.store import keys

from .client_harness import KINDS, NS, Harness, in_process
from .conftest import SECRETS, TENANT

pytestmark = pytest.mark.anyio
PATH = f"/api/v1/tenants/{TENANT}/namespaces/{NS}/sessions"
WRITER = {"X-API-Key": SECRETS["writer"]}


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest, redis: Any) -> AsyncIterator[Harness]:
    async with in_process(redis, request.param) as h:
        yield h


def add(item: str) -> Any:
    def change(properties: dict[str, Any]) -> dict[str, Any]:
        properties.setdefault("items", []).append(item)
        return properties

    return change


async def test_twenty_concurrent_updates_lose_nothing(harness: Harness) -> None:
    """20 callers at once (with the sync Client: 20 threads on one Client),
    each adding one item: every one is there, once."""
    await harness.api.put("cart", {"items": [], "owner": "ann"})
    written = await asyncio.gather(*(harness.api.update("cart", add(f"item-{n}"), tries=60) for n in range(20)))
    final = await harness.api.get("cart")
    assert sorted(final.properties["items"]) == sorted(f"item-{n}" for n in range(20))
    assert final.properties["owner"] == "ann" and final.version == 21
    assert sorted(s.version for s in written) == list(range(2, 22))  # each wrote a version of its own
    conflicts = [s for s in harness.wire.sent() if s.status == 412]
    assert conflicts, "the callers never met: this test proves nothing"


async def test_update_writes_only_what_changed(harness: Harness, redis: Any) -> None:
    api, wire = harness.api, harness.wire
    await api.put("s", {"cart": {"items": 2, "coupon": "X"}, "intent": "refund", "n": 1})
    await api.put_property("s", "otp", "123456", ttl=300)

    def change(p: dict[str, Any]) -> dict[str, Any]:
        p["cart"]["items"] = 3
        del p["cart"]["coupon"]
        del p["intent"]
        p["n"] = 1.0  # 1.0 is not 1
        p["new"] = {"a": [None]}
        return p

    written = await api.update("s", change)
    assert written.properties == {"cart": {"items": 3}, "n": 1.0, "otp": "123456", "new": {"a": [None]}}
    patch = wire.sent("PATCH")[-1]
    assert patch.headers["if-match"] == '"2"' and patch.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(patch.body) == {
        "properties": {"cart": {"items": 3, "coupon": None}, "intent": None, "n": 1.0, "new": {"a": [None]}}
    }
    # the property it left alone kept its own TTL (a PUT would have written it again, without)
    generation = int(await redis.hget(keys.namespace(TENANT, NS), "g"))
    stored = await redis.hget(keys.session(TENANT, NS, generation, "s").session, "otp")
    assert stored.startswith(b"@") and stored.endswith(b'"123456"')

    # nothing changed: nothing written
    sends = len(wire.log)
    assert (await api.update("s", lambda p: p)).version == written.version
    assert [s.method for s in wire.log[sends:]] == ["GET"]

    # a value set to null cannot be said in a merge patch: the whole session is sent
    nulled = await api.update("s", lambda p: {**p, "cart": None})
    assert nulled.properties["cart"] is None
    put = wire.sent("PUT")[-1]
    assert put.headers["if-match"] == f'"{written.version}"' and json.loads(put.body)["properties"]["cart"] is None


async def other_writer(harness: Harness, properties: dict[str, Any]) -> None:
    r = await harness.http.patch(
        f"{PATH}/s",
        content=json.dumps({"properties": properties}),
        headers={**WRITER, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200


async def test_update_tries_again_on_a_conflict(harness: Harness) -> None:
    await harness.api.put("s", {"items": []})
    calls = 0

    async def first_write_is_late(request: Any) -> None:
        if request.method == "PATCH" and calls == 1:  # between the first read and its write
            await other_writer(harness, {"other": True})

    def change(p: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        p["items"].append(calls)
        return p

    harness.wire.before = first_write_is_late
    written = await harness.api.update("s", change)
    assert calls == 2 and written.properties == {"items": [2], "other": True}
    assert [s.status for s in harness.wire.sent("PATCH")] == [412, 200]


async def test_update_gives_up_after_its_tries(harness: Harness) -> None:
    await harness.api.put("s", {"n": 0})

    async def always_late(request: Any) -> None:
        if request.method == "PATCH":  # someone else always gets there first
            await other_writer(harness, {"n": 100})

    harness.wire.before = always_late
    with pytest.raises(PreconditionFailed, match="after 3 tries of update") as failed:
        await harness.api.update("s", lambda p: {"n": p["n"] + 1}, tries=3)
    assert failed.value.status == 412
    assert [s.status for s in harness.wire.sent("PATCH")] == [412, 412, 412]


async def test_update_of_a_missing_session(harness: Harness) -> None:
    api = harness.api
    with pytest.raises(NotFound):
        await api.update("new", add("a"))
    created = await api.update("new", add("a"), create=True, ttl=60)
    assert created.properties == {"items": ["a"]} and created.version == 1 and created.metadata.expires_at
    assert harness.wire.sent("PUT")[-1].headers["if-none-match"] == "*"
    assert (await api.update("new", add("b"), create=True)).properties == {"items": ["a", "b"]}
