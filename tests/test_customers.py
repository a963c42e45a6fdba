"""The customer tie and index in the storage core (service/store/customers.py):
the metadata layout, ties and unties, listing, erasure, the index's bounds
and its repair, on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.faces import emporix, genesys
from service.store import customers, keys
from service.store.core import META_NAMES, ORIGIN_LIVEPERSON, Changes, SessionStore, Status
from service.store.scripts import lua_dir

pytestmark = pytest.mark.anyio

T, OTHER_T, NS = "t1", "t2", "ns"
ODD = "c,1/{x}%7D é"  # commas, braces, a slash, an escape look-alike, non-ASCII


def test_meta_names_are_lib_luas() -> None:
    source = (Path(lua_dir()) / "lib.lua").read_text()
    found = re.search(r"local META_NAMES = \{([^}]*)\}", source)
    assert found is not None
    assert tuple(re.findall(r"'(\w+)'", found.group(1))) == META_NAMES


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
    meta = await store.redis.hget(keys.session(T, ns, 0, sid).session, keys.META_FIELD)
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
