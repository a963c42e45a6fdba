"""Per-API-key rate limits (issue 16, point 3): ``rate`` in a key entry of
the auth file, one budget shared by every service instance through Redis,
refused with 429 and Retry-After in each face's error format; a key without
a rate is never limited and costs no Redis call. On every backend (the
embedded store, a redis-server, a cluster)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest

from service.auth import AuthConfig, AuthFileError, Rate
from service.store import keys

from .conftest import TENANT, auth_document, serve_app

pytestmark = pytest.mark.anyio

LIMITED = "limited-secret"
EMPORIX_TENANT = "ratetenant"
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/rated/sessions"
LIVEPERSON = f"/v1/account/{TENANT}/rated"


def rated_auth(rate: str, key_id: str = "limited") -> dict[str, Any]:
    """The tests' keys (none rated), and one more, for every tenant, with ``rate``."""
    document = auth_document()
    entry = {"id": key_id, "tenant": "*", "sha256": hashlib.sha256(LIMITED.encode()).hexdigest(), "scopes": ["admin"], "rate": rate}
    document["keys"].append(entry)
    return document


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


# -- the grammar ------------------------------------------------------------------


def test_rates_are_requests_per_period() -> None:
    assert Rate.parse("200/s") == Rate(200, 1) and str(Rate.parse("200/s")) == "200/s"
    assert Rate.parse("1000/m") == Rate(1000, 60) and Rate.parse(" 5 / h ") == Rate(5, 3600)
    assert Rate.parse("50/10s") == Rate(50, 10) and str(Rate(50, 10)) == "50/10s"
    assert Rate.parse("3/s").interval_us == 333_334
    for bad in ("", "200", "0/s", "200/0s", "200/d", "-1/s", "1.5/s", "200/ss", "many/s"):
        with pytest.raises(ValueError, match="<requests>/<period>"):
            Rate.parse(bad)


def test_a_bad_rate_in_the_auth_file_says_which_key() -> None:
    with pytest.raises(AuthFileError, match=r"key 6 \(limited\): rate '20 per second'"):
        AuthConfig.from_document(rated_auth("20 per second"))
    document = rated_auth("20/s")
    document["keys"][-1]["rate"] = 20
    with pytest.raises(AuthFileError, match=r"key 6 \(limited\): 'rate' must be a string"):
        AuthConfig.from_document(document)
    config = AuthConfig.from_document(rated_auth("20/s"))
    assert config.rated and config.find(LIMITED) is not None and config.find(LIMITED).rate == Rate(20, 1)  # type: ignore[union-attr]
    assert not AuthConfig.from_document(auth_document()).rated


# -- one budget for every instance ---------------------------------------------------


async def burst(clients: list[httpx.AsyncClient], requests: int) -> tuple[int, int, float]:
    """``requests`` reads with the limited key, as fast as they go, spread
    over the instances in turn: (admitted, refused, seconds the burst took)."""
    started = time.monotonic()
    statuses = []
    for n in range(0, requests, 10):  # ten at a time, each to the next instance
        replies = await asyncio.gather(*(
            clients[(n + i) % len(clients)].get(f"{LIVEPERSON}/s{i}/properties", headers={"maven-api-key": LIMITED})
            for i in range(10)
        ))  # fmt: skip
        statuses += [r.status_code for r in replies]
    elapsed = time.monotonic() - started
    assert set(statuses) <= {200, 429}, statuses
    return statuses.count(200), statuses.count(429), elapsed


async def test_the_budget_is_shared_by_every_instance(redis_factory: Callable[[], Any]) -> None:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(serve_app(redis_factory(), auth=rated_auth("20/s"))) for _ in (1, 2)]
        admitted, refused, elapsed = await burst(clients, 200)
        # 20 at once, then 20 a second: one budget, not one per instance (which would admit 40 at once)
        assert 20 <= admitted <= 20 + 20 * elapsed + 2, (admitted, refused, elapsed)
        assert refused == 200 - admitted
        texts = [(await c.get("/metrics")).text for c in clients]
        counted = sum(metric(text, 'sessionstore_rate_limited_total{key="limited"}') for text in texts)
        assert counted == refused


async def test_a_slow_rate_admits_its_burst_once_across_instances(redis_factory: Callable[[], Any]) -> None:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(serve_app(redis_factory(), auth=rated_auth("20/m"))) for _ in (1, 2)]
        admitted, _refused, elapsed = await burst(clients, 60)
        assert 20 <= admitted <= 20 + elapsed / 3 + 1, (admitted, elapsed)  # one more every 3 s


async def test_a_key_without_a_rate_is_never_limited_and_costs_no_redis_key(redis: Any) -> None:
    async with serve_app(redis, auth=rated_auth("1/h")) as client:
        for _ in range(5):
            replies = await asyncio.gather(*(
                client.get(f"{LIVEPERSON}/s/properties", headers={"maven-api-key": "writer-secret"}) for _ in range(40)
            ))  # fmt: skip
            assert {r.status_code for r in replies} == {200}
        assert [k async for k in redis.scan_iter(match="ss:{rate/*")] == []
    async with serve_app(redis) as client:  # no key has a rate: no limiter at all
        assert all(getattr(route, "limiter", None) is None for route in client._transport.app.routes)  # type: ignore[attr-defined]


async def test_the_limiter_key_is_the_keys_own_and_expires_when_idle(redis: Any) -> None:
    async with serve_app(redis, auth=rated_auth("10/s", key_id="odd{id}%")) as client:
        assert (await client.get(f"{LIVEPERSON}/s/properties", headers={"maven-api-key": LIMITED})).status_code == 200
    name = keys.rate_limit("odd{id}%")
    assert name == "ss:{rate/odd%7Bid%7D%25}:limit"
    assert 0 < await redis.pttl(name) <= 100  # one request of 10/s: whole again in 100 ms


# -- the 429 of each face -------------------------------------------------------------


async def test_each_face_answers_429_with_retry_after_in_its_format(redis: Any) -> None:
    key = {"maven-api-key": LIMITED}
    async with serve_app(redis, auth=rated_auth("1/h")) as client:
        assert (await client.get(f"{NATIVE}/s", headers=key)).status_code == 404  # the budget: one request an hour
        json = {**key, "Content-Type": "application/json"}
        refused = {
            "native": await client.put(f"{NATIVE}/s", json={"properties": {"a": 1}}, headers=key),
            "liveperson": await client.patch(f"{LIVEPERSON}/s/properties", json={"a": 1}, headers=key),
            "liveperson-v2": await client.get(f"/v2/context/document/{TENANT}/rated/s", params={"access_token": LIMITED}),
            "emporix": await client.put(
                f"/session-context/{EMPORIX_TENANT}/context/s?upsert=true",
                content=orjson.dumps({"siteCode": "main", "metadata": {"version": 1}}), headers=json,
            ),
            "genesys": await client.get(f"/sessions/s?tenantId={TENANT}", headers=key),
        }  # fmt: skip
        for face, r in refused.items():
            assert r.status_code == 429, (face, r.status_code, r.text)
            retry = int(r.headers["retry-after"])
            assert 1 <= retry <= 3600, (face, retry)
            body = r.json()
            if face == "native":
                assert r.headers["content-type"].startswith("application/problem+json")
                assert body["status"] == 429 and body["title"] == "Too Many Requests" and "rate limit" in body["detail"]
            elif face == "genesys":
                assert body["code"] == 429 and "rate limit" in body["description"]
            else:
                assert body["code"] == 429 and "rate limit (1/h)" in body["message"], (face, body)
        assert await redis.dbsize() == 1  # the limiter's key: nothing written by the refused requests
        assert metric((await client.get("/metrics")).text, 'sessionstore_rate_limited_total{key="limited"}') == 5
        # other keys are not limited, nor are routes that need no key
        assert (await client.get(f"{NATIVE}/s", headers={"maven-api-key": "writer-secret"})).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
