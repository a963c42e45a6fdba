"""The customer tie and index in the storage core (service/store/customers.py):
the metadata layout, ties and unties, listing, erasure, the index's bounds
and its repair, on every backend."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.faces import emporix, genesys
from service.store import customers, keys
from service.store.core import META_NAMES, ORIGIN_LIVEPERSON, Changes, SessionStore, Status

from .conftest import fresh_redis

pytestmark = pytest.mark.anyio

T, OTHER_T, NS = "t1", "t2", "ns"
ODD = "c,1/{x}%7D é"  # commas, braces, a slash, an escape look-alike, non-ASCII


def test_reserved_namespaces_are_the_faces() -> None:
    assert customers.RESERVED_APIS == {emporix.NAMESPACE: "emporix", genesys.NAMESPACE: "genesys"}


def test_index_keys_escape_the_customer() -> None:
    for customer in ("a", ODD, "}", "%", "a/c/b", "{T}"):
        key = keys.customer_index(T, customer)
        assert key.count("{") == 1 and key.count("}") == 1  # the whole customer id inside the one tag
        assert keys.parse_customer_index(key) == (T, customer)
    assert keys.customer_index(T, "a") != keys.customer_index(T, "A") != keys.customer_index(OTHER_T, "A")
    assert keys.parse_customer_index(keys.session(T, NS, 0, "x/c/y}:customer").session) is None


async def raw_meta(store: SessionStore, sid: str, ns: str = NS) -> bytes:
    found = await store.namespace(T, ns)
    assert found is not None
    meta = await store.redis.hget(keys.session(T, ns, found.generation, sid).session, keys.META_FIELD)
    assert isinstance(meta, bytes)
    return meta


async def test_the_tie_in_the_metadata(store: SessionStore) -> None:
    r = await store.write(T, NS, "s", Changes().set("a", b"1"))
    assert (await raw_meta(store, "s")).count(b",") == len(META_NAMES) - 1  # no tail: the layout of old
    r = await store.write(T, NS, "s", Changes().tie(ODD))
    assert (r.status, r.version) == (Status.OK, 2)  # a new tie is a change
    found = await store.read(T, NS, "s")
    assert found is not None and found.customer_id == ODD and found.properties == {"a": b"1"}
    assert (await store.write(T, NS, "s", Changes().tie(ODD))).version == 2  # the same tie: nothing changes
    r = await store.write(T, NS, "s", Changes().set("b", b"2"))  # keep
    found = await store.read(T, NS, "s", ["b"])
    assert found is not None and found.customer_id == ODD and found.version == 3
    r = await store.write(T, NS, "s", Changes().clear().set("c", b"3").tie("other"), read_back=True)
    assert r.session is not None and r.session.customer_id == "other" and r.session.properties == {"c": b"3"}
    r = await store.write(T, NS, "s", Changes().untie())
    assert r.version == 5
    assert (await raw_meta(store, "s")).count(b",") == len(META_NAMES) - 1
    assert (await store.read(T, NS, "s")).customer_id is None  # type: ignore[union-attr]


async def test_the_tie_survives_every_script(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1").tie(ODD), property_ttl_ms=60_000)
    await store.session_settings(T, NS, "s", ttl_s=30)
    await store.write(T, NS, "s", Changes().increment("n", 2).merge("m", b'{"x":1}'))
    found = await store.read(T, NS, "s")
    assert found is not None and found.customer_id == ODD and found.ttl_s == 30
    await store.write(T, "__genesys__", "g", Changes().tie(ODD))
    assert (await store.read_or_create(T, "__genesys__", "g", idle_ttl_ms=60_000)).customer_id == ODD


async def test_the_origin_is_recorded_on_creation_only(store: SessionStore) -> None:
    await store.write(T, NS, "lp", Changes().set("a", b"1"), origin=ORIGIN_LIVEPERSON)
    await store.session_settings(T, NS, "ttl", ttl_s=10, create=True, origin=ORIGIN_LIVEPERSON)
    await store.write(T, NS, "native", Changes().set("a", b"1"))
    await store.write(T, NS, "native", Changes().set("b", b"1"), origin=ORIGIN_LIVEPERSON)  # not created now
    await store.write(T, NS, "lp", Changes().tie(ODD))
    origins = {sid: (await store.read(T, NS, sid)).origin for sid in ("lp", "ttl", "native")}  # type: ignore[union-attr]
    assert origins == {"lp": ORIGIN_LIVEPERSON, "ttl": ORIGIN_LIVEPERSON, "native": ""}
    assert (await store.read(T, NS, "lp")).customer_id == ODD  # type: ignore[union-attr]
    assert (await raw_meta(store, "lp")).endswith(b",l," + ODD.encode())


async def test_a_delete_that_must_be_tied(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1").tie("c1"))
    assert (await store.delete_session(T, NS, "s", tied_to="c2")).status is Status.UNTIED
    assert (await store.delete_session(T, NS, "s", tied_to="c1")).status is Status.OK
    assert (await store.delete_session(T, NS, "s", tied_to="c1")).status is Status.MISSING
    await store.write(T, NS, "u", Changes().set("a", b"1"))
    assert (await store.delete_session(T, NS, "u", tied_to="c1")).status is Status.UNTIED
    assert (await store.delete_session(T, NS, "u")).status is Status.OK


# -- the index --------------------------------------------------------------------

C = "customer-1"


async def index(store: SessionStore, customer: str = C, tenant: str = T) -> dict[str, int]:
    found = await store.redis.zrange(keys.customer_index(tenant, customer), 0, -1, withscores=True)
    return {member.decode(): int(score) for member, score in found}


async def test_a_tying_write_indexes_and_an_untie_leaves_the_entry(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1"))
    assert await index(store) == {}
    await store.write(T, NS, "s", Changes().tie(C))
    entry = keys.customer_member(NS, "s")
    assert list(await index(store)) == [entry]
    await store.write(T, NS, "s", Changes().untie())
    assert list(await index(store)) == [entry]  # left for a reader to drop
    assert await customers.list_sessions(store, T, C) == []
    assert list(await index(store)) == [entry]  # touched less than the guard ago: kept


async def test_an_entry_is_dropped_only_when_dead_untouched_and_older_than_the_guard(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customers, "GUARD_MS", 200)
    await store.write(T, NS, "live", Changes().set("a", b"1").tie(C))
    await store.write(T, NS, "untied", Changes().set("a", b"1").tie(C))
    await store.write(T, NS, "untied", Changes().untie())
    # a writer that has touched its entry but whose script has not run yet
    await store.touch_customer(T, C, NS, "coming")
    assert [f.session.session_id for f in await customers.list_sessions(store, T, C)] == ["live"]
    assert len(await index(store)) == 3  # all within the guard
    await asyncio.sleep(0.3)
    read = {e.session_id: e for batch in [b async for b in customers.entry_batches(store, T, C)] for e in batch}
    await store.touch_customer(T, C, NS, "untied")  # touched again since it was read: not dropped
    dead = [read["untied"], read["coming"]]
    assert await customers.drop(store, T, C, dead) == 1  # "coming" (its session never came)
    assert sorted(await index(store)) == sorted(keys.customer_member(NS, s) for s in ("live", "untied"))


async def test_a_touch_of_a_large_index_verifies_its_oldest_entries(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customers, "GUARD_MS", 100)
    key = keys.customer_index(T, C)
    for n in range(customers.VERIFY_ABOVE):
        await store.write(T, NS, f"s{n}", Changes().set("a", b"1").tie(C))
    await asyncio.sleep(0.15)  # older than the guard now
    dead = [keys.customer_member(NS, f"gone{n}") for n in range(3)]
    await store.redis.zadd(key, {member: n + 1 for n, member in enumerate(dead)})  # old entries of sessions gone
    oldest_live = keys.customer_member(NS, "s0")
    before = (await index(store))[oldest_live]
    await store.write(T, NS, "new", Changes().set("a", b"1").tie(C))  # 68 entries: verifies the 2 oldest
    assert [m for m in dead if m in await index(store)] == [dead[2]]
    await store.write(T, NS, "new", Changes().set("b", b"1").tie(C))
    found = await index(store)
    assert dead[2] not in found and found[oldest_live] > before  # the live one touched again: to the back
    assert len(found) == customers.VERIFY_ABOVE + 1


async def test_the_index_stays_bounded_as_sessions_expire(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customers, "GUARD_MS", 300)
    sizes = []
    for round_ in range(8):
        for n in range(20):
            await store.write(T, NS, f"r{round_}-{n}", Changes().set("a", b"1").tie(C), idle_ttl_ms=100)
        sizes.append(len(await index(store)))
        await asyncio.sleep(0.4)
    # 160 sessions tied and expired; nobody listed them
    assert max(sizes) <= customers.VERIFY_ABOVE + 20 + customers.VERIFY_FEW, sizes
    assert await customers.list_sessions(store, T, C) == []
    assert await index(store) == {}
    assert await store.redis.exists(keys.customer_index(T, C)) == 0


# -- erasure ----------------------------------------------------------------------


async def test_erasure_under_16_concurrent_writers(store: SessionStore, redis_factory: Any) -> None:
    """Every session tied when the erasure starts is gone when it answers:
    whatever survives holds no write that had completed before it started.
    Every session tied afterwards is listed."""
    pool = [(ns, f"s{n}") for ns in (NS, "__emporix__", "__genesys__") for n in range(10)]
    for ns, sid in pool:
        await store.write(T, ns, sid, Changes().set("seed", b"1").tie(C))
    instances = [SessionStore(redis_factory()) for _ in range(4)]
    before: set[str] = {"seed"}  # properties written by writes that completed before the erasure started
    started = stop = False
    counter = iter(range(10**9))
    during = 0  # writes that completed while the erasure ran

    async def writer(number: int) -> None:
        nonlocal during
        rnd = random.Random(number)
        while not stop:
            ns, sid = rnd.choice(pool)
            name = f"p{next(counter)}"
            changes = Changes().set(name, b"1")
            if rnd.random() < 0.8:
                changes.tie(C)
            await instances[number % 4].write(T, ns, sid, changes)
            if not started:
                before.add(name)
            elif not stop:
                during += 1
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(n)) for n in range(16)]
    # until the writers are well under way (a cluster's new clients first read its slot map)
    async with asyncio.timeout(30):
        while len(before) <= 64:
            await asyncio.sleep(0.05)
    started = True
    erased = await customers.erase(store, T, C)
    stop = True
    await asyncio.gather(*writers)
    assert erased >= 1 and len(before) > 16 and during >= 16, (erased, len(before), during)
    listed = {(f.namespace, f.session.session_id) for f in await customers.list_sessions(store, T, C)}
    for ns, sid in pool:
        found = await store.read(T, ns, sid)
        if found is None:
            continue
        assert not before & set(found.properties), (ns, sid, sorted(before & set(found.properties))[:5])
        if found.customer_id == C:
            assert (ns, sid) in listed  # a write after the erasure: tied and listed
    for ns, sid in pool:
        await store.write(T, ns, sid, Changes().set("after", b"1").tie(C))
    assert {(f.namespace, f.session.session_id) for f in await customers.list_sessions(store, T, C)} == set(pool)
    for instance in instances:
        await instance.redis.aclose()


# -- a property test over random writes -------------------------------------------------

TENANTS, CUSTOMERS_, NAMESPACES, SESSIONS = ("t1", "t2"), ("c1", "c,2"), (NS, "__emporix__", "__genesys__"), ("a", "b", "c")
operations = st.lists(
    st.tuples(
        st.sampled_from(["tie", "tie", "untie", "keep", "delete", "erase"]),
        st.sampled_from(TENANTS),
        st.sampled_from(NAMESPACES),
        st.sampled_from(SESSIONS),
        st.sampled_from(CUSTOMERS_),
    ),
    min_size=1,
    max_size=30,
)


async def replay(store: SessionStore, ops: list[tuple[str, str, str, str, str]]) -> None:
    model: dict[tuple[str, str, str], str | None] = {}  # the sessions that exist -> their customer
    for kind, tenant, ns, sid, customer in ops:
        where = (tenant, ns, sid)
        if kind == "delete":
            await store.delete_session(tenant, ns, sid)
            model.pop(where, None)
        elif kind == "erase":
            mine = [w for w, c in model.items() if w[0] == tenant and c == customer]
            assert await customers.erase(store, tenant, customer) == len(mine)
            for w in mine:
                del model[w]
        else:
            changes = Changes().set("p", f'"{kind}"'.encode())
            if kind == "tie":
                changes.tie(customer)
            elif kind == "untie":
                changes.untie()
            await store.write(tenant, ns, sid, changes)
            model[where] = customer if kind == "tie" else None if kind == "untie" else model.get(where)
    for tenant in TENANTS:
        for customer in CUSTOMERS_:
            want = {(w[1], w[2]) for w, c in model.items() if w[0] == tenant and c == customer}
            listed = await customers.list_sessions(store, tenant, customer)
            assert {(f.namespace, f.session.session_id) for f in listed} == want
            assert all(f.api == customers.RESERVED_APIS.get(f.namespace, "native") for f in listed)
            exported = [f async for batch in customers.tied_batches(store, tenant, customer, whole=True) for f in batch]
            assert {(f.namespace, f.session.session_id) for f in exported} == want
            assert all(f.session.properties == {"p": b'"tie"'} or f.session.properties for f in exported)
    for (tenant, ns, sid), customer in model.items():
        found = await store.read(tenant, ns, sid)
        assert found is not None and found.customer_id == customer


def test_random_writes_list_and_erase_exactly_the_customers_sessions(backend: str, request: pytest.FixtureRequest) -> None:
    url = None if backend == "fake" else request.getfixturevalue("redis_cluster" if backend == "cluster" else "redis_server").url

    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(ops=operations)
    def check(ops: list[tuple[str, str, str, str, str]]) -> None:
        async def run() -> None:
            redis = await fresh_redis(url)
            try:
                await replay(SessionStore(redis), ops)
            finally:
                await redis.aclose()

        asyncio.run(run())

    check()
