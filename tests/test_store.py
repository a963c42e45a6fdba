"""The storage core directly: scripts, TTLs, listings, namespace deletion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from service.store import keys
from service.store.core import Changes, Existence, Limits, SessionStore, Status
from service.store.listings import decode_cursor

pytestmark = pytest.mark.anyio

T, NS = "t1", "ns"


def everywhere(redis: Any) -> dict[str, Any]:
    """Options that send a command like DBSIZE or KEYS to every primary of a
    Redis Cluster (not one node at random); none for one Redis."""
    return {"target_nodes": RedisCluster.PRIMARIES} if isinstance(redis, RedisCluster) else {}


async def props(store: SessionStore, sid: str, ns: str = NS) -> dict[str, bytes] | None:
    found = await store.read(T, ns, sid)
    return None if found is None else found.properties


async def generation(store: SessionStore, ns: str = NS) -> int:
    found = await store.namespace(T, ns)
    assert found is not None
    return found.generation


async def test_write_read_and_versions(store: SessionStore) -> None:
    r = await store.write(T, NS, "s", Changes().set("a", b"1").set(":odd", b'"colon"'))
    assert (r.status, r.version, r.created) == (Status.OK, 1, True)
    r = await store.write(T, NS, "s", Changes().set("b", b"[]"))
    assert (r.status, r.version, r.created) == (Status.OK, 2, False)
    found = await store.read(T, NS, "s")
    assert found is not None
    assert found.properties == {"a": b"1", ":odd": b'"colon"', "b": b"[]"}
    assert found.version == 2 and found.created_ms <= found.modified_ms
    assert (await store.read(T, NS, "s", ["a", ":odd", "zz"])).properties == {"a": b"1", ":odd": b'"colon"'}  # type: ignore[union-attr]
    assert await store.read(T, NS, "nobody") is None
    assert await store.read(T, "no-namespace", "s") is None


async def test_version_and_existence_checks(store: SessionStore) -> None:
    assert (await store.write(T, NS, "s", Changes().set("a", b"1"), existence=Existence.MUST)).status is Status.MISSING
    assert await props(store, "s") is None
    await store.write(T, NS, "s", Changes().set("a", b"1"))
    r = await store.write(T, NS, "s", Changes().set("a", b"2"), version=7)
    assert (r.status, r.version) == (Status.VERSION, 1)
    assert (await store.write(T, NS, "s", Changes().set("a", b"2"), existence=Existence.NONE)).status is Status.EXISTS
    assert (await store.write(T, NS, "s", Changes().set("a", b"3"), version=1)).status is Status.OK
    assert await props(store, "s") == {"a": b"3"}


async def test_changes_that_change_nothing_keep_the_version(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1"))
    r = await store.write(T, NS, "s", Changes().delete("zz"))
    assert (r.status, r.version) == (Status.OK, 1)


async def test_merge_patch_keeps_unchanged_values_verbatim(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("doc", b'{"a":{"b":1.10,"big":123456789012345678901},"keep":[],"e":{}}'))
    await store.write(T, NS, "s", Changes().merge("doc", b'{"a":{"c":"x","b":null},"n":{"m":null,"k":2}}'))
    assert (await props(store, "s")) == {"doc": b'{"a":{"big":123456789012345678901,"c":"x"},"keep":[],"e":{},"n":{"k":2}}'}
    await store.write(T, NS, "s", Changes().merge("doc", b'"replaced"'))
    assert (await props(store, "s")) == {"doc": b'"replaced"'}


async def test_set_in_delete_in_and_increment(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set_in("ctx", b'{"k":{"x":1},"q":"\\"quoted\\""}'))
    await store.write(T, NS, "s", Changes().delete_in("ctx", 'q').set_in("ctx", b'{"n":null}'))
    assert (await props(store, "s")) == {"ctx": b'{"k":{"x":1},"n":null}'}
    results = await asyncio.gather(*(store.write(T, NS, "s", Changes().increment("n", 1)) for _ in range(30)))
    assert sorted(int(r.value or b"0") for r in results) == list(range(1, 31))
    r = await store.write(T, NS, "s", Changes().increment("n", 0.5))
    assert r.value == b"30.5"
    assert (await store.write(T, NS, "s", Changes().increment("ctx", 1))).status is Status.NOT_A_NUMBER


async def test_property_ttl_expires_only_that_property(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("stays", b"1"))
    await store.write(T, NS, "s", Changes().set("goes", b"2"), property_ttl_ms=300)
    assert await props(store, "s") == {"stays": b"1", "goes": b"2"}
    await asyncio.sleep(0.4)
    assert await props(store, "s") == {"stays": b"1"}
    # a later write prunes it from the hash for good, with the size kept right
    await store.write(T, NS, "s", Changes().set("x", b"3"))
    raw = await store.redis.hgetall(keys.session(T, NS, await generation(store), "s").session)
    assert set(raw) == {b":", b"stays", b"x"}


async def test_all_properties_expiring_frees_the_key(store: SessionStore, redis: Any) -> None:
    await store.ensure_namespace(T, NS, ttl_s=1)
    await store.write(T, NS, "s", Changes().set("a", b"1"))
    key = keys.session(T, NS, await generation(store), "s").session
    assert 0 < await redis.pttl(key) <= 1000
    await asyncio.sleep(1.1)
    assert await redis.exists(key) == 0
    assert await store.list_sessions(T, NS, 10) == ([], None)


async def test_idle_ttl(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1"), idle_ttl_ms=600)
    s = await store.read(T, NS, "s")
    assert s is not None and s.idle_ms == 600 and s.expires_ms > s.modified_ms
    await asyncio.sleep(0.4)
    await store.session_settings(T, NS, "s")  # a touch
    await asyncio.sleep(0.4)
    assert await props(store, "s") == {"a": b"1"}
    await asyncio.sleep(0.4)
    assert await store.read(T, NS, "s") is None


async def test_limits(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_chars=20, max_properties=2))
    assert (await store.write(T, NS, "s", Changes().set("a", b'"0123456789"'))).status is Status.OK
    assert (await store.write(T, NS, "s", Changes().set("b", b'"0123456789"'))).status is Status.TOO_LARGE
    assert (await store.write(T, NS, "s", Changes().set("b", b"1").set("c", b"2"))).status is Status.TOO_MANY
    assert await props(store, "s") == {"a": b'"0123456789"'}


async def test_noscript_recovery(store: SessionStore, redis: Any) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1"))
    await redis.script_flush()
    before = store.scripts.reloads
    r = await store.write(T, NS, "s", Changes().set("b", b"2"))
    assert r.status is Status.OK and store.scripts.reloads == before + 1
    await redis.script_flush()
    assert (await store.list_sessions(T, NS, 10))[0] == ["s"]  # pipelined scripts recover too


async def test_listing_with_cursor(store: SessionStore) -> None:
    ids = sorted(f"id-{n}" for n in range(120))
    await asyncio.gather(*(store.write(T, NS, i, Changes().set("n", b"1")) for i in ids))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = await store.list_sessions(T, NS, 25, cursor)
        pages += 1
        seen += page
        if cursor is None:
            break
    assert sorted(seen) == ids and len(seen) == len(set(seen)) and pages >= 5
    paged = [i for p in range(7) for i in await store.page_sessions(T, NS, p, 20)]
    assert paged == seen
    with pytest.raises(ValueError):
        decode_cursor("not-a-cursor")


async def test_namespace_delete_is_constant_time_and_swept(store: SessionStore, redis: Any) -> None:
    await asyncio.gather(*(store.write(T, NS, f"s{n}", Changes().set("a", b"1")) for n in range(300)))
    await store.write(T, "kept", "s", Changes().set("a", b"1"))
    keys_before = await redis.dbsize(**everywhere(redis))
    dead = await generation(store)
    assert await store.delete_namespace(T, NS) is True
    assert await store.read(T, NS, "s1") is None
    assert [n.name for n in await store.list_namespaces(T)] == ["kept"]
    assert await redis.dbsize(**everywhere(redis)) == keys_before + 1  # nothing deleted in the request: one grave queued
    assert await store.sweep() == 300
    assert await store.sweep() == 0
    remaining = {k.decode() for k in await redis.keys("*", **everywhere(redis))}
    assert not any(k.startswith(f"ss:{{{T}/{NS}/{dead}/") for k in remaining)
    assert await props(store, "s", "kept") == {"a": b"1"}
    # deleting again, or something never made, is no error
    assert await store.delete_namespace(T, NS) is False


async def test_a_deleted_namespace_whose_record_is_lost_does_not_come_back(store: SessionStore, redis: Any) -> None:
    # An evicting policy may take the record a deleted namespace leaves (its
    # generation) before the sweeper reclaims the old sessions: the
    # namespace made again must not start at a generation that holds them.
    await store.write(T, NS, "s", Changes().set("secret", b"1"))
    assert await store.delete_namespace(T, NS) is True
    await redis.delete(keys.namespace(T, NS))  # what eviction does
    await store.write(T, NS, "other", Changes().set("a", b"1"))
    assert await store.read(T, NS, "s") is None
    listed, _ = await store.list_sessions(T, NS, 10)
    assert listed == ["other"]
    assert await store.sweep() == 1  # and the dead generation is still reclaimed


async def test_concurrent_writes_to_new_namespace(store: SessionStore) -> None:
    await asyncio.gather(*(store.write(T, "fresh", "s", Changes().set(f"k{n}", b"1")) for n in range(40)))
    s = await store.read(T, "fresh", "s")
    assert s is not None and len(s.properties) == 40 and s.version == 40


# -- on a Redis Cluster ------------------------------------------------------


@pytest.fixture
async def cluster_store(redis_factory: Any, backend: str) -> SessionStore:
    assert backend == "cluster"  # the tests that use it are marked cluster_only
    store = SessionStore(redis_factory())
    await store.redis.initialize()  # the slot map, for get_node_from_key
    return store


def node_of(redis: RedisCluster, key: str) -> str:
    return str(redis.get_node_from_key(key).name)


@pytest.mark.cluster_only
async def test_cluster_store_knows_it_runs_on_a_cluster(cluster_store: SessionStore) -> None:
    assert cluster_store.on_cluster and cluster_store.sharded_events
    assert len(cluster_store.redis.get_primaries()) == 3


@pytest.mark.cluster_only
async def test_a_namespace_spreads_over_every_primary(cluster_store: SessionStore) -> None:
    store, redis = cluster_store, cluster_store.redis
    ids = [f"s{n}" for n in range(60)]
    await asyncio.gather(*(store.write(T, NS, i, Changes().set("n", b"1")) for i in ids))
    held, g = {}, await generation(store)
    for node in redis.get_primaries():
        found = await redis.keys(f"ss:{{{T}/{NS}/{g}/*}}:s:*", target_nodes=node)
        held[node.name] = {k.decode().rpartition(":s:")[2] for k in found}
    assert all(held.values()) and len(held) == 3  # every primary holds some of the sessions
    assert set().union(*held.values()) == set(ids)
    for node, sids in held.items():
        assert all(node_of(redis, keys.session(T, NS, g, sid).session) == node for sid in sids)
    # and what reads many sessions at once gathers them from every node
    assert [s.session_id for s in await store.read_many(T, NS, ids) if s] == ids
    listed, cursor = await store.list_sessions(T, NS, 100)
    assert sorted(listed) == sorted(ids) and cursor is None
    assert sorted(await store.page_sessions(T, NS, 0, 100)) == sorted(ids)
    assert [n.name for n in await store.list_namespaces(T)] == [NS]
    assert await store.delete_namespace(T, NS) is True
    assert await store.sweep() == 60
    for node in redis.get_primaries():
        assert await redis.keys(f"ss:{{{T}/{NS}/{g}/*", target_nodes=node) == []


@pytest.mark.cluster_only
async def test_scripts_reload_per_node_after_noscript(cluster_store: SessionStore) -> None:
    store, redis = cluster_store, cluster_store.redis
    await store.load_scripts()
    ids = [f"s{n}" for n in range(30)]
    await asyncio.gather(*(store.write(T, NS, i, Changes().set("n", b"1")) for i in ids))
    by_node: dict[str, list[str]] = {}
    g = await generation(store)
    for sid in ids:
        by_node.setdefault(node_of(redis, keys.session(T, NS, g, sid).session), []).append(sid)
    assert len(by_node) == 3
    flushed, other = redis.get_primaries()[:2]
    # one primary forgets its scripts (a restart, a failover to a replica that never ran them)
    await redis.execute_command("SCRIPT FLUSH", target_nodes=flushed)
    before = store.scripts.reloads
    r = await store.write(T, NS, by_node[other.name][0], Changes().set("m", b"2"))
    assert r.status is Status.OK and store.scripts.reloads == before  # the other nodes still have them
    r = await store.write(T, NS, by_node[flushed.name][0], Changes().set("m", b"2"))
    assert r.status is Status.OK and store.scripts.reloads == before + 1  # loaded again, the write retried
    # every primary forgets them: a write, and a listing (scripts pipelined to every node), still work
    await redis.script_flush()
    for sid in (by_node[name][1] for name in by_node):
        assert (await store.write(T, NS, sid, Changes().set("m", b"3"))).status is Status.OK
    await redis.script_flush()
    listed, _ = await store.list_sessions(T, NS, 100)
    assert sorted(listed) == sorted(ids)


@pytest.mark.cluster_only
async def test_events_of_sessions_on_every_node(cluster_store: SessionStore) -> None:
    store, redis = cluster_store, cluster_store.redis
    g = (await store.ensure_namespace(T, NS)).generation
    chosen: dict[str, str] = {}
    for n in range(200):
        chosen.setdefault(node_of(redis, keys.session(T, NS, g, f"s{n}").events), f"s{n}")
    assert len(chosen) == 3
    subscriptions = [await store.subscribe(T, NS, sid) for sid in chosen.values()]
    try:
        for sid in chosen.values():
            await store.write(T, NS, sid, Changes().set("a", b"1"))
        for subscription, sid in zip(subscriptions, chosen.values(), strict=True):
            event = await subscription.next(timeout=5)
            assert event is not None and b'"changed":["a"]' in event, sid
    finally:
        for subscription in subscriptions:
            await subscription.aclose()
    assert store._hub is not None and store._hub.channels == 0


@pytest.mark.cluster_only
async def test_check_a_cluster(cluster_store: SessionStore) -> None:
    from service.store.checks import check

    report = await check(cluster_store.redis, cluster_store.scripts)
    assert report.ok and report.mode == "cluster" and report.scripts_loaded == len(cluster_store.scripts.all())


def test_cluster_urls() -> None:
    from service.store import clients

    url = "rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,redis-4"
    clients.validate_url(url)
    assert clients.cluster_nodes(url) == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002), ("redis-4", clients.DEFAULT_PORT)]
    assert clients.redact(url) == "rediss+cluster://app:***@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,redis-4"
    for bad in ("redis+cluster://h:port", "redis+cluster://h:1/3", "redis+cluster://", "cluster://h:1"):
        with pytest.raises(ValueError):
            clients.validate_url(bad)
