"""service.client against the real app in this process, on every backend,
with the AsyncClient and with the sync Client: the operations of the native
API, the If-None-Match cache, and the errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from service.client import (
    ApiError,
    BadRequest,
    BatchResult,
    ChangeEvent,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Session,
    SessionMetadata,
    SessionPage,
    SessionStoreError,
    Unauthorized,
)  # fmt: skip
from service.faces import native_wire

from .client_harness import KINDS, NS, Harness, in_process
from .conftest import OTHER_TENANT, SECRETS, TENANT

pytestmark = pytest.mark.anyio
PATH = f"/api/v1/tenants/{TENANT}/namespaces/{NS}/sessions"


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest, redis: Any) -> AsyncIterator[Harness]:
    async with in_process(redis, request.param) as h:
        yield h


async def test_session_round_trip(harness: Harness) -> None:
    api = harness.api
    before = datetime.now(UTC)
    created = await api.put("conv-42", {"intent": "refund", "cart": {"items": 2}}, ttl=1800)
    assert isinstance(created, Session)
    assert created.session_id == "conv-42" and created.version == 1 and created.etag == '"1"'
    assert created.properties == {"intent": "refund", "cart": {"items": 2}}
    meta = created.metadata
    assert abs(meta.created_at - before) < timedelta(seconds=5) and meta.created_at.tzinfo is not None
    assert meta.expires_at is not None and timedelta(seconds=1790) < meta.expires_at - meta.modified_at
    assert await api.get("conv-42") == created

    # a merge patch: objects merge, None deletes
    patched = await api.patch("conv-42", {"cart": {"coupon": "SPRING"}, "intent": None})
    assert patched.properties == {"cart": {"items": 2, "coupon": "SPRING"}} and patched.version == 2
    assert (await api.patch("conv-42", None)).properties == {}  # "properties": null: all gone
    assert (await api.put("conv-42", {"a": [1, None, "x"], "big": 2**70})).properties == {
        "a": [1, None, "x"],
        "big": 2**70,
    }
    await api.delete("conv-42")
    with pytest.raises(NotFound) as missing:
        await api.get("conv-42")
    assert missing.value.status == 404 and missing.value.title == "Not Found"
    assert missing.value.detail == "session not found" and missing.value.type == "about:blank"
    with pytest.raises(NotFound):
        await api.delete("conv-42")


async def test_get_asks_with_the_version_last_seen(harness: Harness) -> None:
    api, wire = harness.api, harness.wire
    await api.put("s", {"a": {"b": 1}})
    first = await api.get("s")
    get = wire.sent("GET")[-1]
    assert get.headers["if-none-match"] == '"1"' and get.status == 304  # the PUT's answer was seen
    first.properties["a"]["b"] = 99  # each read is an object of its own
    assert (await api.get("s")).properties == {"a": {"b": 1}}
    assert await api.get_property("s", "a") == {"b": 1}
    assert wire.sent("GET")[-1].status == 304

    # another writer: the next read is a whole answer again
    r = await harness.http.put(f"{PATH}/s", json={"properties": {"a": 2}}, headers={"X-API-Key": SECRETS["writer"]})
    assert r.status_code == 200
    assert await api.get_property("s", "a") == 2 and wire.sent("GET")[-1].status == 200
    again = await api.get("s")
    assert again.properties == {"a": 2} and again.version == 2 and wire.sent("GET")[-1].status == 200
    await api.get("s")
    assert wire.sent("GET")[-1].status == 304

    # a write that answers without the session drops what was seen of it
    await api.put_property("s", "c", 3)
    assert (await api.get("s")).properties == {"a": 2, "c": 3}
    assert "if-none-match" not in wire.sent("GET")[-1].headers


async def test_no_cache(redis: Any) -> None:
    async with in_process(redis, "async", cache_size=0) as h:
        await h.api.put("s", {"a": 1})
        await h.api.get("s")
        await h.api.get("s")
        assert [s.status for s in h.wire.sent("GET")] == [200, 200]
        assert all("if-none-match" not in s.headers for s in h.wire.sent("GET"))


async def test_conditional_writes(harness: Harness) -> None:
    api = harness.api
    created = await api.put("s", {"a": 1}, create_only=True)
    with pytest.raises(PreconditionFailed) as exists:
        await api.put("s", {"a": 2}, create_only=True)
    assert exists.value.status == 412 and "exists already" in exists.value.detail
    assert (await api.patch("s", {"b": 2}, if_match=created.version)).version == 2
    with pytest.raises(PreconditionFailed, match="at version 2"):
        await api.put("s", {}, if_match=1)
    with pytest.raises(PreconditionFailed):
        await api.patch("s", {"c": 1}, if_match=1)
    with pytest.raises(PreconditionFailed):
        await api.put_property("s", "c", 1, if_match=1)
    with pytest.raises(PreconditionFailed):
        await api.delete_property("s", "a", if_match=1)
    with pytest.raises(PreconditionFailed):
        await api.delete("s", if_match=1)
    assert (await api.get("s")).properties == {"a": 1, "b": 2}
    assert await api.put_property("s", "c", 3, if_match=2) == 3
    assert await api.delete_property("s", "a", if_match=3) == 4
    await api.delete("s", if_match=4)
    with pytest.raises(PreconditionFailed, match="does not exist"):
        await api.put("s", {}, if_match=4)
    with pytest.raises(ValueError, match="cannot both"):
        await api.put("s", {}, if_match=1, create_only=True)


async def test_properties_and_counters(harness: Harness) -> None:
    api = harness.api
    assert await api.put_property("s", "otp", "493021", ttl=300) == 1  # creates the session
    assert await api.get_property("s", "otp") == "493021"
    assert await api.increment("s", "turns") == 1
    assert await api.increment("s", "turns", 2) == 3
    assert await api.increment("s", "score", 0.5) == 0.5
    with pytest.raises(Conflict, match="not a number"):
        await api.increment("s", "otp")
    assert await api.delete_property("s", "otp") == 5
    assert await api.delete_property("s", "otp") == 5  # not there: no error, no new version
    with pytest.raises(NotFound, match="property 'otp' not found"):
        await api.get_property("s", "otp")
    with pytest.raises(NotFound, match="session not found"):
        await api.delete_property("missing", "x")
    assert (await api.get("s")).properties == {"turns": 3, "score": 0.5}


async def test_touch(harness: Harness) -> None:
    api = harness.api
    written = await api.put("s", {}, ttl=100)
    await api.touch("s")
    touched = await api.get("s")
    assert touched.version == written.version and touched.metadata.expires_at >= written.metadata.expires_at
    with pytest.raises(NotFound):
        await api.touch("missing")


async def test_batch_get_and_listing(harness: Harness) -> None:
    api = harness.api
    ids = [f"s{n:02}" for n in range(23)] + ["a:touch", "dots.and spaces", "ünïcode"]
    for session_id in ids:
        await api.put(session_id, {"id": session_id})
    listed = await api.all_ids(page_size=5)
    assert sorted(listed) == sorted(ids) and len(listed) == len(ids)  # each once, across pages
    page = await api.list_page(limit=4)
    assert isinstance(page, SessionPage) and len(page.session_ids) <= 4 and page.next_cursor is not None
    batch = await api.batch_get(["s01", "nope", "ünïcode", "s01"])
    assert isinstance(batch, BatchResult) and batch.missing == ["nope"]
    assert sorted(s.session_id for s in batch.sessions) == ["s01", "ünïcode"]
    assert [s.properties for s in batch.sessions if s.session_id == "ünïcode"] == [{"id": "ünïcode"}]
    # the action suffixes are a part of the name
    await api.touch("a:touch")
    assert (await api.get("a:touch")).properties == {"id": "a:touch"}
    assert await api.increment("a:touch", "n:increment") == 1
    assert await api.get_property("a:touch", "n:increment") == 1


async def test_errors_carry_the_problem_details(harness: Harness, redis: Any) -> None:
    api = harness.api
    with pytest.raises(BadRequest, match="invalid session id") as bad:
        await api.put("bad\nid", {})
    assert isinstance(bad.value, ApiError) and isinstance(bad.value, SessionStoreError)
    with pytest.raises(BadRequest, match="ttl"):
        await api.put("s", {}, ttl=0)
    with pytest.raises(ValueError, match="no '/'"):
        await api.get("a/b")
    with pytest.raises(Forbidden) as forbidden:
        await api.in_namespace(NS, tenant=OTHER_TENANT).get("s")
    assert forbidden.value.status == 403
    async with in_process(redis, "async", key="reader") as reader:
        with pytest.raises(Forbidden):
            await reader.api.put("s", {})
    async with in_process(redis, "async", key="") as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.api.get("s")


async def test_another_namespace_on_the_same_pool(harness: Harness) -> None:
    other = harness.api.in_namespace("other")
    await other.put("s", {"where": "other"})
    await harness.api.put("s", {"where": NS})
    assert (await other.get("s")).properties == {"where": "other"}
    assert (await harness.api.get("s")).properties == {"where": NS}
    assert harness.wire.sent("PUT")[0].path.endswith("/namespaces/other/sessions/s")


def test_the_models_name_the_fields_as_the_service_does() -> None:
    """The client's structs are its own (it imports nothing of the service), so check they keep up."""
    pairs = [
        (Session, native_wire.Session),
        (SessionMetadata, native_wire.SessionMetadata),
        (SessionPage, native_wire.SessionList),
        (BatchResult, native_wire.BatchGetResult),
        (ChangeEvent, native_wire.ChangeEvent),
    ]
    for ours, theirs in pairs:
        names = [f.encode_name for f in msgspec.structs.fields(ours)]
        assert names == [f.encode_name for f in msgspec.structs.fields(theirs)], ours
