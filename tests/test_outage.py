"""Redis going away and coming back, under a running service."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from service.config import Settings

from .conftest import TENANT, RedisServer, key, serve_app

pytestmark = pytest.mark.anyio
A = f"/v1/account/{TENANT}"


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
