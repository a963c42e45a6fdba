"""The client's ``watch`` against ``sessionstore serve`` in processes of
their own on a private Redis: the change feed, and what the client does when
the stream breaks (the service killed and started again, or its pub/sub
connection to Redis lost): it subscribes again and reads the session."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis as redis_py

from service.client import (
    AsyncClient,
    ChangeEvent,
    Client,
    Forbidden,
    NetworkError,
    Resync,
    Retry,
    SessionStoreError,
    WatchEvent,
)

from .client_harness import in_process
from .conftest import OTHER_TENANT, TENANT, RedisServer, free_port, serve_process, stop_process

QUICK = Retry(attempts=3, backoff_s=0.05, max_backoff_s=0.5)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


def client(url: str, namespace: str) -> Client:
    return Client(url, tenant=TENANT, namespace=namespace, retry=QUICK)


def test_watch_reconnects_and_reads_again_after_a_restart(private_redis: RedisServer) -> None:
    port = free_port()
    watched, url = serve_process("--redis-url", private_redis.url, port=port)
    other, other_url = serve_process("--redis-url", private_redis.url)
    seen: queue.Queue[WatchEvent | SessionStoreError] = queue.Queue()
    try:
        with (
            client(url, "restart") as watcher,
            client(other_url, "restart") as writer,
            watcher.watch("s", reconnects=40) as events,  # subscribed when this returns
        ):

            def consume() -> None:
                try:
                    for n, event in enumerate(events, 1):
                        seen.put(event)
                        if n == 3:
                            return
                except SessionStoreError as exc:  # handed to the test's thread
                    seen.put(exc)

            thread = threading.Thread(target=consume, daemon=True)
            thread.start()
            writer.put("s", {"n": 1})
            assert seen.get(timeout=10) == ChangeEvent(1, ["n"], [])

            watched.kill()  # the stream breaks, with no word from the service
            stop_process(watched, terminate=False)
            writer.patch("s", {"m": 2})  # a change while the watcher has no stream
            watched, _ = serve_process("--redis-url", private_redis.url, port=port)

            resync = seen.get(timeout=30)
            assert isinstance(resync, Resync) and resync.session is not None, resync
            assert resync.session.version == 2 and resync.session.properties == {"n": 1, "m": 2}
            writer.put_property("s", "x", 3)
            assert seen.get(timeout=10) == ChangeEvent(3, ["x"], [])
            thread.join(10)
            assert not thread.is_alive()
    finally:
        stop_process(watched)
        stop_process(other)


@pytest.mark.anyio
async def test_async_watch_reads_again_when_the_service_loses_redis(private_redis: RedisServer) -> None:
    process, url = serve_process("--redis-url", private_redis.url)
    try:
        async with (
            AsyncClient(url, tenant=TENANT, namespace="lost", retry=QUICK) as watcher,
            AsyncClient(url, tenant=TENANT, namespace="lost", retry=QUICK) as writer,
            watcher.watch("t", read_first=True) as events,
        ):
            assert await anext(events) == Resync(None)  # read_first: it does not exist yet
            await writer.put("t", {"a": 1})
            assert await anext(events) == ChangeEvent(1, ["a"], [])

            with redis_py.Redis(port=private_redis.port) as admin:
                assert admin.client_kill_filter(_type="pubsub") >= 1  # the service's pub/sub connection
            resync = await anext(events)  # the stream ended: subscribed again, then read
            assert isinstance(resync, Resync) and resync.session is not None
            assert resync.session.version == 1 and resync.session.properties == {"a": 1}

            await writer.put_property("t", "b", 2)
            assert await anext(events) == ChangeEvent(2, ["b"], [])
            await writer.delete("t")
            assert await anext(events) == ChangeEvent(3, [], ["a", "b"])
    finally:
        stop_process(process)


@pytest.mark.anyio
async def test_watch_gives_up_when_it_cannot_reconnect() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url, tenant=TENANT, namespace="ns", retry=QUICK) as watcher:
        with pytest.raises(NetworkError, match="ConnectError"):
            async with watcher.watch("s", reconnects=2):
                pass
    with client(url, "ns") as sync_watcher, pytest.raises(NetworkError):
        next(sync_watcher.watch("s", reconnects=0))


@pytest.mark.anyio
async def test_watch_errors_are_not_retried() -> None:
    async with in_process(fakeredis.FakeAsyncRedis(), "async", key="writer") as h:
        other: Any = h.api.client.in_namespace("ns", tenant=OTHER_TENANT)
        with pytest.raises(Forbidden):
            async with other.watch("s"):
                pass
        assert len(h.wire.sent("GET")) == 1
