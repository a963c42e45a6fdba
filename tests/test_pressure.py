"""Under pressure (issue 16): a Redis that is full.

With ``maxmemory`` reached and ``noeviction``, every write is refused by
Redis (OOM) before it changes anything: each face answers 507 Insufficient
Storage in its own error format, reads keep answering, /readyz stays 200,
a metric counts the refusals, and writes succeed again as soon as memory is
freed. (CONFIG SET maxmemory 1 makes Redis full at once; 0 frees it.)
Under a volatile-* eviction policy only sessions are evicted."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from service.store import keys
from service.store.core import Changes, SessionStore

from .conftest import TENANT, serve_app

pytestmark = [pytest.mark.anyio, pytest.mark.real_redis_only, pytest.mark.standalone_only("CONFIG SET on one Redis")]

EMPORIX_TENANT = "fulltenant"
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/full/sessions"
LIVEPERSON = f"/v1/account/{TENANT}/full"
EMPORIX = f"/session-context/{EMPORIX_TENANT}/context"
GENESYS = "/sessions"


async def writes(client: httpx.AsyncClient, sid: str) -> dict[str, httpx.Response]:
    """One write through each face."""
    json = {"Content-Type": "application/json"}
    return {
        "native": await client.put(f"{NATIVE}/{sid}", json={"properties": {"a": 1}}),
        "native-incr": await client.post(f"{NATIVE}/{sid}/properties/n:increment", json={"by": 1}),
        "liveperson": await client.patch(f"{LIVEPERSON}/{sid}/properties", json={"a": 1}),
        "emporix": await client.put(f"{EMPORIX}/{sid}?upsert=true", content=orjson.dumps({"siteCode": "main", "metadata": {"version": 1}}), headers=json),
        "genesys": await client.get(f"{GENESYS}/{sid}-new?tenantId={TENANT}"),  # made when missing: a write
    }


def refused_full(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("sessionstore_writes_refused_full_total ")]
    assert lines, [line for line in metrics.splitlines() if "refused" in line]
    return float(lines[0].split()[1])


async def test_redis_full_refuses_writes_with_507_and_serves_reads(redis: Any) -> None:
    async with serve_app(redis, open_access=True) as client:
        assert all(r.status_code < 300 for r in (await writes(client, "before")).values())
        stored = await redis.dbsize()
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", 1)  # full
        try:
            before = refused_full((await client.get("/metrics")).text)
            refused = await writes(client, "during")
            again = await writes(client, "before")  # existing sessions too
            for face, r in {**refused, **{k + " (existing)": v for k, v in again.items()}}.items():
                assert r.status_code == 507, (face, r.status_code, r.text)
                body = r.json()
                if face.startswith("native"):
                    assert r.headers["content-type"].startswith("application/problem+json") and body["status"] == 507
                else:
                    assert body["code"] == 507, (face, body)
            assert await redis.dbsize() == stored  # nothing partly written
            assert (await client.get(f"{NATIVE}/before")).status_code == 200  # reads keep answering
            assert (await client.get(f"{LIVEPERSON}/before/properties")).status_code == 200
            assert (await client.get(f"{EMPORIX}/before")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert refused_full((await client.get("/metrics")).text) == before + len(refused) + len(again)
        finally:
            await redis.config_set("maxmemory", 0)  # memory freed
        assert all(r.status_code < 300 for r in (await writes(client, "after")).values())



async def test_volatile_eviction_takes_sessions_only_never_the_records(redis: Any) -> None:
    """Under a volatile-* policy Redis evicts only keys with a TTL: sessions
    (each carries its retention). The namespace records, the session indexes
    and the sweeper's queue carry none, so they stay: no deleted namespace
    comes back, no live session is shadowed, and every session reads as it
    was written or as absent, never as another's."""
    store = SessionStore(redis)
    for n in range(20):
        await store.write(TENANT, "evicted", f"s{n}", Changes().set("n", str(n).encode()))
    await store.write(TENANT, "gone", "old", Changes().set("secret", b"1"))
    assert await store.delete_namespace(TENANT, "gone") is True  # its sessions wait for the sweeper
    await store.write(TENANT, "gone", "new", Changes().set("a", b"1"))  # made again, at a new generation
    await store.ensure_namespace(TENANT, "filler")
    evicted = await store.namespace(TENANT, "evicted")
    assert evicted is not None
    indexes = [keys.bucket(TENANT, "evicted", evicted.generation, b).ids for b in range(keys.BUCKETS)]
    records = [keys.tenant_namespaces(TENANT), keys.namespace(TENANT, "evicted"), keys.namespace(TENANT, "gone"), keys.GRAVES]
    records += [key for key in indexes if await redis.exists(key)]
    before = [await redis.dump(key) for key in records]
    assert all(before) and len(records) > 4
    info = await redis.info("memory")
    await redis.config_set("maxmemory-policy", "volatile-lru")
    await redis.config_set("maxmemory", int(info["used_memory"]) + 2 * 1024 * 1024)
    try:
        padding = b'"' + b"x" * 4000 + b'"'
        written = 0
        while int((await redis.info("stats"))["evicted_keys"]) == 0:
            await store.write(TENANT, "filler", f"f{written}", Changes().set("pad", padding))
            written += 1
            assert written < 5000, "nothing was evicted"
        for _ in range(200):  # and go on writing while Redis evicts
            await store.write(TENANT, "filler", f"f{written}", Changes().set("pad", padding))
            written += 1
    finally:
        await redis.config_set("maxmemory", 0)
        await redis.config_set("maxmemory-policy", "noeviction")
    assert int((await redis.info("stats"))["evicted_keys"]) > 0
    assert [await redis.dump(key) for key in records] == before  # the records without a TTL were not touched
    assert await store.read(TENANT, "gone", "old") is None
    for n in range(20):
        found = await store.read(TENANT, "evicted", f"s{n}")
        assert found is None or found.properties == {"n": str(n).encode()}
    # writes go on, to the live generation
    assert (await store.write(TENANT, "evicted", "s0", Changes().set("n", b"0"))).status.name == "OK"
