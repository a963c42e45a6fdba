"""The auto-pipelining client (service/store/multiplex.py) on a real Redis:
replies reach the right callers, in order, whatever happens around them."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError, TimeoutError

from service.store import clients
from service.store.multiplex import MultiplexedRedis

from .conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def mux(redis_server: RedisServer) -> AsyncIterator[MultiplexedRedis]:
    client = clients.connect(redis_server.url, timeout_s=5)
    assert isinstance(client, MultiplexedRedis)
    await client.flushall()
    yield client
    await client.aclose()


async def test_replies_match_callers_under_concurrency(mux: MultiplexedRedis) -> None:
    await asyncio.gather(*(mux.set(f"k{n}", f"v{n}") for n in range(500)))
    await mux.hset("a-hash", "f", 1)
    calls = list(range(2000))
    random.Random(7).shuffle(calls)

    async def one(n: int) -> None:
        kind = n % 4
        if kind == 0:
            assert await mux.get(f"k{n % 500}") == f"v{n % 500}".encode()
        elif kind == 1:
            assert await mux.hset(f"h{n}", mapping={"a": n}) == 1
            assert await mux.hgetall(f"h{n}") == {b"a": str(n).encode()}
        elif kind == 2:
            assert await mux.incrby("counter", n) >= n
        else:
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await mux.incr("a-hash")  # errors go to their own caller only
            assert await mux.exists(f"k{n % 500}") == 1

    await asyncio.gather(*(one(n) for n in calls))
    assert int(await mux.get("counter")) == sum(n for n in calls if n % 4 == 2)
    assert mux.multiplexed_connections == 1  # all of it on one connection


async def test_cancelled_callers_leave_the_stream_in_step(mux: MultiplexedRedis) -> None:
    await asyncio.gather(*(mux.set(f"c{n}", n) for n in range(300)))
    tasks = [asyncio.ensure_future(mux.get(f"c{n}")) for n in range(300)]
    await asyncio.sleep(0)
    for task in tasks[::3]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for n, result in enumerate(results):
        if n % 3:
            assert result == str(n).encode()
        else:
            assert isinstance(result, asyncio.CancelledError)
    assert await mux.get("c42") == b"42"


async def test_error_classes_are_redis_pys(mux: MultiplexedRedis) -> None:
    with pytest.raises(NoScriptError):
        await mux.evalsha("0" * 40, 0)


async def test_dropped_connection_reconnects(mux: MultiplexedRedis, redis_server: RedisServer) -> None:
    assert await mux.ping()
    admin = Redis.from_url(redis_server.url)
    try:
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        await admin.aclose()
    await asyncio.sleep(0.1)
    assert await mux.set("after", "1") and await mux.get("after") == b"1"
    assert mux.multiplexed_connections == 2


async def test_hung_redis_fails_every_waiter_then_recovers() -> None:
    server = RedisServer().start()
    client = clients.connect(server.url, timeout_s=0.3)
    try:
        assert await client.set("k", "v")
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            results = await asyncio.gather(*(client.get("k") for _ in range(20)), return_exceptions=True)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert await client.get("k") == b"v"
        assert client.multiplexed_connections == 2
    finally:
        await client.aclose()
        server.cleanup()


async def test_pooled_commands_still_work(mux: MultiplexedRedis) -> None:
    pipe = mux.pipeline(transaction=True)
    pipe.set("t", 1).incr("t")
    assert await pipe.execute() == [True, 2]
    pubsub = mux.pubsub()
    await pubsub.subscribe("ch")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert await mux.publish("ch", "hello") == 1
    message = await pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"hello"
    await pubsub.aclose()


async def test_execute_many_answers_together(mux: MultiplexedRedis) -> None:
    await mux.set("s", "v")
    await mux.hset("h", "f", "1")
    assert await mux.execute_many(("GET", "s"), ("HGETALL", "h")) == [b"v", {b"f": b"1"}]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await mux.execute_many(("INCR", "h"), ("GET", "s"))
    assert await mux.get("s") == b"v"  # still in step
