"""The retention (``--max-retention``): every session, whichever API wrote it,
expires at the latest that long after its last write, as LivePerson's
"max retention on context documents" of 13 months."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from service.cli import parser
from service.cli_serve import settings_from_args
from service.config import Settings
from service.store import keys
from service.store.core import RETENTION_13_MONTHS_S, Changes, Limits, SessionStore, now_ms
from service.store.transfer import import_sessions

from .conftest import TENANT, key, serve_app

pytestmark = pytest.mark.anyio


async def pttl(store: SessionStore, namespace: str, session_id: str) -> int:
    ns = await store.namespace(TENANT, namespace)
    assert ns is not None
    return int(await store.redis.pttl(keys.session(TENANT, namespace, ns.generation, session_id).session))


async def test_every_kind_of_write_is_capped(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_retention_s=60))
    # a plain write (LivePerson v1, v2 without ttlSeconds, native without ?ttl=)
    plain = await store.write(TENANT, "ns", "plain", Changes().set("a", b"1"), read_back=True)
    assert plain.session is not None and plain.session.expires_ms == plain.session.modified_ms + 60_000
    assert 59_000 < await pttl(store, "ns", "plain") <= 60_000
    # an idle TTL longer than the retention (Emporix's 30 days) is capped; a shorter one is kept
    await store.write(TENANT, "ns", "idle", Changes().set("a", b"1"), idle_ttl_ms=30 * 24 * 3600 * 1000)
    assert 59_000 < await pttl(store, "ns", "idle") <= 60_000
    await store.write(TENANT, "ns", "short", Changes().set("a", b"1"), idle_ttl_ms=5_000)
    assert 4_000 < await pttl(store, "ns", "short") <= 5_000
    # properties that all expire later than the retention: the retention comes first
    await store.write(TENANT, "ns", "stamped", Changes().set("a", b"1"), property_ttl_ms=3_600_000)
    assert 59_000 < await pttl(store, "ns", "stamped") <= 60_000
    # a read that creates (Genesys) and a settings change (v1's session TTL)
    made = await store.read_or_create(TENANT, "ns", "genesys", idle_ttl_ms=24 * 3600 * 1000)
    assert made.expires_ms == made.modified_ms + 60_000 and 59_000 < await pttl(store, "ns", "genesys") <= 60_000
    await store.session_settings(TENANT, "ns", "ttl-only", ttl_s=600, create=True)
    assert 59_000 < await pttl(store, "ns", "ttl-only") <= 60_000


async def test_the_retention_counts_from_the_last_write_not_a_touch(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_retention_s=60))
    first = await store.write(TENANT, "ns", "s", Changes().set("a", b"1"), idle_ttl_ms=3_600_000, read_back=True)
    assert first.session is not None
    await asyncio.sleep(0.05)
    await store.session_settings(TENANT, "ns", "s")  # a touch
    touched = await store.read(TENANT, "ns", "s")
    assert touched is not None and touched.expires_ms == first.session.modified_ms + 60_000
    await store.write(TENANT, "ns", "s", Changes().set("a", b"2"))
    written = await store.read(TENANT, "ns", "s")
    assert written is not None and written.expires_ms == written.modified_ms + 60_000 > touched.expires_ms


async def test_a_session_past_its_retention_is_gone(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_retention_s=1))
    await store.write(TENANT, "ns", "s", Changes().set("a", b"1"))
    assert (await store.list_sessions(TENANT, "ns", 10))[0] == ["s"]
    await asyncio.sleep(1.2)
    assert await store.read(TENANT, "ns", "s") is None
    await store.write(TENANT, "ns", "other", Changes().set("a", b"1"))  # prunes the bucket's id index
    assert (await store.list_sessions(TENANT, "ns", 10))[0] == ["other"]


async def test_imported_sessions_keep_the_retention(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_retention_s=60))
    now = now_ms()
    record = (
        b'{"type":"session","tenant":"%s","namespace":"ns","sessionId":"%s","version":1,"createdMs":%d,'
        b'"modifiedMs":%d,"properties":{"a":1}}\n'
    )
    data = b'{"format":"sessionstore-export","version":1}\n'
    data += record % (TENANT.encode(), b"recent", now - 10_000, now - 10_000)
    data += record % (TENANT.encode(), b"old", now - 120_000, now - 120_000)
    stats = await import_sessions(store, io.BytesIO(data))
    assert stats.failed == 0
    assert 49_000 < await pttl(store, "ns", "recent") <= 50_000  # 60 s from its last write, 10 s ago
    assert await store.read(TENANT, "ns", "old") is None  # past its retention already


async def test_the_faces_apply_it(redis: Any) -> None:
    async with serve_app(redis, Settings(limits=Limits(max_retention_s=1))) as client:
        r = await client.patch(f"/v1/account/{TENANT}/ns/s/properties", json={"a": 1}, headers=key("writer"))
        assert r.status_code == 204
        native = f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions/n"
        assert (await client.put(native, json={"properties": {"a": 1}}, headers=key("writer"))).status_code == 201
        await asyncio.sleep(1.2)
        assert (await client.get(f"/v1/account/{TENANT}/ns/s/properties", headers=key("reader"))).json() == {}
        assert (await client.get(native, headers=key("reader"))).status_code == 404


def test_the_option_and_its_default() -> None:
    assert settings_from_args(parser().parse_args(["serve"])).limits.max_retention_s == RETENTION_13_MONTHS_S
    assert Limits().max_retention_s == RETENTION_13_MONTHS_S == 396 * 24 * 3600
    args = parser().parse_args(["serve", "--max-retention", "0"])
    assert settings_from_args(args).limits.max_retention_s == 0


def test_the_option_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTORE_MAX_RETENTION", "3600")
    assert settings_from_args(parser().parse_args(["serve"])).limits.max_retention_s == 3600
