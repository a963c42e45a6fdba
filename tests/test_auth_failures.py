"""Failed authentication (issue 16, point 3): counted per client address,
and an address that fails too often is refused (429, Retry-After) for a
window, whatever key it then presents; other addresses are not; the
addresses remembered are bounded. Also: a rate limiter whose Redis does
not answer lets requests through (fail open), and counts them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from service.app import build_app
from service.auth import ApiKey, AuthConfig, Rate
from service.auth_failures import AuthFailures, address_of
from service.config import Settings
from service.rate_limits import RateLimiter

from .conftest import TENANT, auth_document

pytestmark = pytest.mark.anyio

PATH = f"/v1/account/{TENANT}/ns/s/properties"
GOOD = {"maven-api-key": "writer-secret"}
BAD = {"maven-api-key": "guessed"}


def client_from(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://sessionstore")


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_an_address_that_fails_too_often_is_refused_for_a_while(redis: Any) -> None:
    settings = Settings(auth_failure_limit=3, auth_failure_window_s=60)
    app = build_app(settings, redis=redis, auth=AuthConfig.from_document(auth_document()))
    async with app.router.lifespan_context(app), client_from(app, "203.0.113.7") as attacker, client_from(app, "198.51.100.1") as other:
        assert (await attacker.get(PATH, headers=GOOD)).status_code == 200  # successes count for nothing
        assert (await attacker.get(PATH)).status_code == 401  # no key: not a guess, not counted
        for _ in range(3):
            r = await attacker.get(PATH, headers=BAD)
            assert r.status_code == 401 and r.json()["message"] == "unknown API key"
        for headers in (BAD, GOOD):  # refused now, whatever key it presents
            r = await attacker.get(PATH, headers=headers)
            assert r.status_code == 429, r.text
            assert r.json()["code"] == 429 and "failed authentications" in r.json()["message"]
            assert 59 <= int(r.headers["retry-after"]) <= 60
        # the v2 face's ?access_token= too, and the native face in its own format
        r = await attacker.get(f"/v2/context/document/{TENANT}/ns/s", params={"access_token": "writer-secret"})
        assert r.status_code == 429
        r = await attacker.get(f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions/s", headers=GOOD)
        assert r.status_code == 429 and r.json()["status"] == 429 and "retry-after" in r.headers
        assert (await other.get(PATH, headers=GOOD)).status_code == 200  # another address is not refused
        assert (await other.get(PATH, headers=BAD)).status_code == 401
        assert (await attacker.get("/healthz")).status_code == 200  # nor what needs no key
        text = (await other.get("/metrics")).text
        assert metric(text, "sessionstore_auth_failures_total") == 4
        assert metric(text, "sessionstore_auth_failures_refused_total") == 4


async def test_behind_a_trusted_proxy_the_forwarded_client_counts(redis: Any) -> None:
    settings = Settings(auth_failure_limit=2, forwarded_allow_ips=("10.0.0.5",))
    app = build_app(settings, redis=redis, auth=AuthConfig.from_document(auth_document()))
    async with app.router.lifespan_context(app), client_from(app, "10.0.0.5") as proxy:
        for _ in range(2):
            assert (await proxy.get(PATH, headers={**BAD, "X-Forwarded-For": "203.0.113.9"})).status_code == 401
        assert (await proxy.get(PATH, headers={**GOOD, "X-Forwarded-For": "203.0.113.9"})).status_code == 429
        assert (await proxy.get(PATH, headers={**GOOD, "X-Forwarded-For": "198.51.100.2"})).status_code == 200
        assert (await proxy.get(PATH, headers=GOOD)).status_code == 200  # the proxy itself was never refused


async def test_no_limit_means_failures_are_never_refused(redis: Any) -> None:
    app = build_app(Settings(auth_failure_limit=0), redis=redis, auth=AuthConfig.from_document(auth_document()))
    async with app.router.lifespan_context(app), client_from(app, "203.0.113.7") as client:
        for _ in range(30):
            assert (await client.get(PATH, headers=BAD)).status_code == 401
        assert (await client.get(PATH, headers=GOOD)).status_code == 200


class Count:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def labels(self, *_: str) -> Count:
        return self


def test_the_window_ends_and_memory_is_bounded() -> None:
    now = [1000.0]
    failures = AuthFailures(3, 60, 100, Count(), Count(), clock=lambda: now[0])
    scope = {"client": ("203.0.113.7", 1)}
    for _ in range(3):
        assert failures.refusal(scope) is None
        failures.failed(scope)
    refused = failures.refusal(scope)
    assert refused is not None and refused.status == 429 and refused.headers == {"Retry-After": "60"}
    now[0] += 59.5
    assert failures.refusal(scope) is not None and failures.refusal(scope).headers == {"Retry-After": "1"}  # type: ignore[union-attr]
    now[0] += 1
    assert failures.refusal(scope) is None and not failures.blocked  # the window is over
    # two failures, then the window passes: counting starts again
    failures.failed(scope)
    failures.failed(scope)
    now[0] += 61
    failures.failed(scope)
    assert not failures.blocked
    # an attacker with many addresses: at most `capacity` remembered, blocked or not
    for n in range(10_000):
        address = {"client": (f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 1)}
        for _ in range(1 + n % 3):
            failures.failed(address)
    assert len(failures.failures) <= 100 and len(failures.blocked) <= 100
    assert failures.counted.value == 3 + 2 + 1 + sum(1 + n % 3 for n in range(10_000))


def test_an_ipv6_client_counts_by_its_64() -> None:
    assert address_of({"client": ("2001:db8:1:2:aaaa::1", 5)}) == address_of({"client": ("2001:db8:1:2:bbbb::9", 6)})
    assert address_of({"client": ("2001:db8:1:2::1", 5)}) == "2001:db8:1:2::/64"
    assert address_of({"client": ("192.0.2.1", 5)}) == "192.0.2.1"
    assert address_of({}) is None


class Unreachable:
    async def run(self, *_: Any) -> Any:
        raise RedisConnectionError("no route to Redis")


async def test_a_limiter_that_cannot_reach_redis_lets_requests_through(redis: Any) -> None:
    app = build_app(Settings(), redis=redis, auth=AuthConfig.from_document(auth_document()))
    store = app.state.metrics.store
    errors = Count()
    limiter = RateLimiter(store, Count(), errors)
    limiter.seam = Unreachable()  # type: ignore[assignment]
    key = ApiKey("k", "*", frozenset({"read"}), Rate(1, 3600))
    assert [await limiter.retry_after_s(key) for _ in range(3)] == [0, 0, 0]
    assert errors.value == 3
