"""A write in one round trip (service/store/writes.py): the namespace's
generation and TTL guessed, checked in the same round trip, and the write
done again on the live generation, never twice on one live session, when
the guess was wrong. On the embedded store, a real Redis and the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from service.store import keys
from service.store.core import Changes, SessionStore, Status, now_ms

pytestmark = pytest.mark.anyio

T, NS = "acme", "ns"


class RoundTrips:
    """Counts what a store sends through its seam (and sends it on)."""

    def __init__(self, store: SessionStore) -> None:
        self.count = 0
        seam = store.seam
        for name in ("call", "batch"):  # run and run_many send through batch
            setattr(seam, name, self._counting(getattr(seam, name)))

    def _counting(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await method(*args, **kwargs)

        return counted


async def generation(store: SessionStore) -> int:
    """The namespace's generation as it is now (a namespace made afresh starts at the time in ms)."""
    return int(await store.seam.call("HGET", keys.namespace(T, NS), "g"))


async def raw_session(store: SessionStore, generation: int, sid: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await store.seam.call("HGETALL", keys.session(T, NS, generation, sid).session)
    return found


async def test_a_write_to_a_known_namespace_is_one_round_trip(store: SessionStore) -> None:
    await store.write(T, NS, "s", Changes().set("a", b"1"))  # the namespace is seen: from now on it is guessed
    trips = RoundTrips(store)
    result = await store.write(T, NS, "s", Changes().increment("n", 1))
    assert result.status is Status.OK and result.version == 2 and result.value == b"1"
    assert trips.count == 1
    other = SessionStore(store.redis)  # a second instance: it reads once, then it knows the namespace too
    await other.read(T, NS, "s")
    trips = RoundTrips(other)
    assert (await other.write(T, NS, "s", Changes().increment("n", 1))).value == b"2"
    assert trips.count == 1


async def test_namespace_made_again_under_a_stale_guess(redis_factory: Callable[[], Any]) -> None:
    a, b = SessionStore(redis_factory()), SessionStore(redis_factory())
    await a.write(T, NS, "s", Changes().set("n", b"5"))  # a guesses this generation from now on
    first = await generation(b)
    assert await b.delete_namespace(T, NS)
    await b.ensure_namespace(T, NS)  # the next generation, empty
    assert await generation(b) == first + 1
    result = await a.write(T, NS, "s", Changes().increment("n", 1))
    assert result.status is Status.OK and result.value == b"1" and result.version == 1 and result.created
    live = await b.read(T, NS, "s")
    assert live is not None and live.properties == {"n": b"1"} and live.version == 1  # applied once
    assert (await raw_session(b, first, "s"))[b":n"[1:]] == b"6"  # the deleted generation's, left to the sweeper
    await b.sweep()
    assert (await a.write(T, NS, "t", Changes().increment("n", 1))).value == b"1"
    assert await raw_session(b, first, "t") == {}  # a session made in a dead generation does not stay there


async def test_namespace_deleted_under_a_stale_guess(redis_factory: Callable[[], Any]) -> None:
    a, b = SessionStore(redis_factory()), SessionStore(redis_factory())
    await a.write(T, NS, "s", Changes().set("n", b"1"))
    first = await generation(b)
    await b.delete_namespace(T, NS)
    refused = await a.write(T, NS, "new", Changes().increment("n", 1), create_namespace=False)
    assert refused.status is Status.MISSING
    assert await b.namespace(T, NS) is None and await raw_session(b, first, "new") == {}
    made = await a.write(T, NS, "new", Changes().increment("n", 1))
    assert made.status is Status.OK and made.value == b"1"
    ns = await b.namespace(T, NS)
    assert ns is not None and ns.generation == first + 1
    assert (await b.read(T, NS, "new")) is not None


@pytest.mark.parametrize("before, after", [(0, 100), (100, 0), (100, 300)])
async def test_namespace_ttl_changed_under_a_stale_guess(
    redis_factory: Callable[[], Any], before: int, after: int
) -> None:
    a, b = SessionStore(redis_factory()), SessionStore(redis_factory())
    await a.ensure_namespace(T, NS, ttl_s=before)
    await a.write(T, NS, "s", Changes().set("first", b"1"))
    await b.ensure_namespace(T, NS, ttl_s=after)
    events = await b.subscribe(T, NS, "s")
    start = now_ms()
    writes = [a.write(T, NS, "s", Changes().set(f"p{i}", b"true").increment("n", 1)) for i in range(40)]
    results = await asyncio.gather(*writes)
    assert all(r.status is Status.OK for r in results)
    assert sorted(r.version for r in results) == list(range(2, 42))  # one version each: none applied twice
    raw = await raw_session(b, await generation(b), "s")
    assert raw[b"n"].endswith(b"40")
    for i in range(40):
        value = raw[f"p{i}".encode()]
        if after:
            assert value[:1] == b"@" and start + after * 1000 <= int(value[1:14]) <= now_ms() + after * 1000
        else:
            assert value == b"true"
    seen = [await events.next(5) for _ in range(40)]
    assert None not in seen and await events.next(0.2) is None  # one event a write
    await events.aclose()


async def test_namespace_made_again_while_writes_run(redis_factory: Callable[[], Any]) -> None:
    """Increments race namespace deletes: in the live session, the counter
    equals the number of writes whose mark it holds (each write sets its own
    mark with its increment): no increment is applied twice, none is lost."""
    a, b = SessionStore(redis_factory()), SessionStore(redis_factory())
    await a.write(T, NS, "s", Changes().set("start", b"0"))

    churned = asyncio.Event()

    async def churn() -> None:
        for _ in range(5):
            await asyncio.sleep(0.02)
            await b.delete_namespace(T, NS)
            await b.ensure_namespace(T, NS)
        churned.set()

    async def writer(w: int) -> int:
        written = 0
        while True:
            last = churned.is_set()  # one more write after the churn, so the live session has some
            result = await a.write(T, NS, "s", Changes().increment("n", 1).set(f"w{w}-{written}", b"1"))
            assert result.status is Status.OK
            written += 1
            if last:
                return written

    done = await asyncio.gather(churn(), *(writer(w) for w in range(8)))
    assert sum(done[1:]) > 40  # the writes ran while the namespace was deleted and made again
    live = await b.read(T, NS, "s")
    assert live is not None
    marks = [name for name in live.properties if name.startswith("w")]
    assert live.properties["n"] == str(len(marks)).encode()
    assert live.version == len(marks)  # the session was made by the first of them: one version each
