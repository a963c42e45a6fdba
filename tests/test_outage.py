"""Redis going away and coming back, under a running service."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.store.scripts import Scripts

from .conftest import TENANT, RedisServer, key, serve_app

pytestmark = pytest.mark.anyio
A = f"/v1/account/{TENANT}"
GONE_NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/gone-nat/sessions"


async def timed(client: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = await client.request(method, path, headers=key("writer"), **kwargs)  # type: ignore[arg-type]
    return r, time.monotonic() - start


async def test_redis_stopped_and_started_again(private_redis: RedisServer) -> None:
    async with serve_app(None, Settings(redis_url=private_redis.url)) as client:
        assert (await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=key("writer"))).status_code == 204
        private_redis.stop()
        for method, path, body in [("GET", f"{A}/ns/s/properties", None), ("PATCH", f"{A}/ns/s/properties", {"b": 2})]:
            r, took = await timed(client, method, path, json=body)
            assert r.status_code == 503 and r.json()["message"], r.text
            assert took < 2.0
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        private_redis.start()  # same port, empty, script cache empty
        r = await client.patch(f"{A}/ns/s/properties", json={"b": 2}, headers=key("writer"))
        assert r.status_code == 204
        assert (await client.get(f"{A}/ns/s/properties", headers=key("writer"))).json() == {"b": 2}
        assert (await client.get("/readyz")).status_code == 200


async def test_redis_hanging(private_redis: RedisServer) -> None:
    async with serve_app(None, Settings(redis_url=private_redis.url)) as client:
        assert (await client.patch(f"{A}/ns/s/properties", json={"a": 1}, headers=key("writer"))).status_code == 204
        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            r, took = await timed(client, "GET", f"{A}/ns/s/properties")
            assert r.status_code == 503 and took < 2.0
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        r = await client.get(f"{A}/ns/s/properties", headers=key("writer"))
        assert r.status_code == 200 and r.json() == {"a": 1}


async def test_redis_restarted_empty_under_load(private_redis: RedisServer) -> None:
    """Issue 16, point 5: Redis restarts with nothing (no persistence) while
    clients keep calling. No 500 at any time; the scripts are loaded again
    (EVALSHA's NOSCRIPT recovery); the namespaces that existed read as absent,
    each face's way, not as corrupted (the process's remembered generations
    are checked, not trusted); the service goes on without a restart."""
    native = f"/api/v1/tenants/{TENANT}/namespaces/nat/sessions"
    statuses: Counter[tuple[str, int]] = Counter()
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            sid = f"s{worker}-{n % 20}"
            for method, path, body in [  # an exception out of the app fails the test too
                ("PATCH", f"{A}/ns{n % 3}/{sid}/properties", {"n": n}),
                ("GET", f"{A}/ns{n % 3}/{sid}/properties", None),
                ("PUT", f"{native}/{sid}", {"properties": {"n": n}}),
                ("GET", f"{native}/{sid}", None),
            ]:
                r = await client.request(method, path, json=body, headers=key("writer"))
                statuses[method, r.status_code] += 1

    async with serve_app(None, Settings(redis_url=private_redis.url, redis_timeout_s=0.5)) as client:
        # namespaces that the load does not write: this process remembers their generations
        assert (await client.patch(f"{A}/gone/s/properties", json={"a": 1}, headers=key("writer"))).status_code == 204
        assert (await client.put(f"{GONE_NATIVE}/s", json={"properties": {"a": 1}}, headers=key("writer"))).status_code < 300
        assert (await client.get(f"{GONE_NATIVE}/s", headers=key("writer"))).status_code == 200
        async with asyncio.TaskGroup() as tasks:
            for worker in range(8):
                tasks.create_task(load(client, worker))
            await asyncio.sleep(1.0)
            before = sum(statuses.values())
            assert before > 0 and {status for _, status in statuses} <= {200, 201, 204}, statuses
            private_redis.stop()
            private_redis.start()  # the same port: empty, its script cache empty
            await asyncio.sleep(2.0)
            stop.set()
        assert sum(statuses.values()) > before
        # 503 only while it is down; 404 for a session whose write was refused then, read now from the empty Redis
        assert {status for _, status in statuses} <= {200, 201, 204, 404, 503}, statuses
        assert all(method == "GET" for method, status in statuses if status == 404), statuses
        # the scripts are back in the new Redis's cache
        redis = Redis.from_url(private_redis.url)
        try:
            assert (await redis.script_exists(Scripts().session_mutate.sha)) == [True]
        finally:
            await redis.aclose()
        assert (await client.get("/readyz")).status_code == 200
        # the namespaces from before the restart read as absent, each face's way
        r = await client.get(f"{A}/gone/s/properties", headers=key("writer"))
        assert r.status_code == 200 and r.json() == {}, r.text
        r = await client.get(f"{A}/gone/s/properties/a", headers=key("writer"))
        assert r.status_code == 404 and r.json()["code"] == 404, r.text
        names = (await client.get(f"{A}/namespace", headers=key("admin"))).json()
        assert "gone" not in names, names
        r = await client.get(f"{GONE_NATIVE}/s", headers=key("writer"))
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
        # and are made again, holding only what is written now
        assert (await client.patch(f"{A}/gone/s/properties", json={"b": 2}, headers=key("writer"))).status_code == 204
        assert (await client.get(f"{A}/gone/s/properties", headers=key("writer"))).json() == {"b": 2}
