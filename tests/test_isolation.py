"""Tenant isolation, as a property: for random tenants, namespaces, session ids
and property names, tenant A writes a unique marker through every API face;
then tenant B's key reads every endpoint, on B's own paths with A's names and
on A's paths, with B's customer token on Emporix /me: no response of any of
them carries A's marker (while A's own reads do, so the check is not empty).
Runs on the embedded store and on a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import build_app
from service.auth import AuthConfig
from service.config import Settings

from .conftest import fresh_redis

TOKEN_SECRET = "i" * 64
tenants = st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True)
names = st.text(alphabet="abcXYZ019-_.é", min_size=1, max_size=12).filter(lambda n: n not in (".", "..", "new"))


def auth(a: str, b: str) -> AuthConfig:
    def key(tenant: str) -> dict[str, Any]:
        return {"id": f"key-{tenant}", "tenant": tenant, "sha256": hashlib.sha256(f"secret-{tenant}".encode()).hexdigest(),
                "scopes": ["read", "write", "admin"]}  # fmt: skip

    return AuthConfig.from_document(
        {"keys": [key(a), key(b)], "customer_tokens": {"algorithm": "HS256", "secret": TOKEN_SECRET}}
    )


def token(tenant: str, session_id: str, customer: str | None) -> str:
    claims = {"tenant": tenant, "sessionId": session_id, "customerId": customer, "exp": int(time.time()) + 600}
    return jwt.encode(claims, TOKEN_SECRET, algorithm="HS256")


async def scenario(redis: Any, a: str, b: str, ns: str, sid: str, prop: str) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    ns = f"{ns}{uuid.uuid4().hex[:6]}"  # a namespace's name is data too
    app = build_app(Settings(), redis=redis, auth=auth(a, b))
    key_a, key_b = {"X-API-Key": f"secret-{a}"}, {"X-API-Key": f"secret-{b}"}
    merge = {"Content-Type": "application/merge-patch+json"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sessionstore"
    ) as api:

        async def ok(r: Any) -> httpx.Response:
            response = await r
            assert response.status_code < 300, (response.request.method, response.request.url, response.text)
            return response

        # -- A writes its marker through every face
        await ok(api.post(f"/v1/account/{a}", json={"name": ns}, headers=key_a))
        await ok(api.patch(f"/v1/account/{a}/{ns}/{sid}/properties", json={prop: marker}, headers=key_a))
        await ok(api.patch(f"/v1/account/{a}/{ns}/properties", json={prop: marker}, headers=key_a))
        await ok(api.post(f"/v1/account/{a}/namespace/{ns}/session?ttlSecond=600", json={"sessionId": sid + "t"}, headers=key_a))
        await ok(api.put(f"/api/v1/tenants/{a}/namespaces/{ns}/sessions/{sid}n", json={"properties": {prop: marker}}, headers=key_a))
        await ok(api.put(f"/session-context/{a}/context/{sid}?upsert=true",
                         json={"siteCode": marker, "context": {prop: marker}, "metadata": {"version": 1}}, headers=key_a))
        await ok(api.post(f"/session-context/{a}/context/{sid}/attributes", json={"key": prop, "value": marker}, headers=key_a))
        me_a = {"Authorization": f"Bearer {token(a, sid + 'm', None)}"}
        await ok(api.patch(f"/session-context/{a}/me/context?upsert=true",
                           json={"currency": marker, "metadata": {"version": 1}}, headers=me_a))
        await ok(api.post(f"/sessions/{sid}", params={"tenantId": a}, json={"visitId": marker},
                          headers={**key_a, "gkc_customerId": marker}))  # fmt: skip

        # -- the reads: on B's paths (with A's names) and on A's paths
        def reads(t: str) -> list[tuple[str, str, dict[str, Any]]]:
            lp, native = f"/v1/account/{t}", f"/api/v1/tenants/{t}/namespaces/{ns}/sessions"
            return [
                ("GET", lp, {}),
                ("GET", f"{lp}/{ns}/{sid}/properties", {}),
                ("GET", f"{lp}/{ns}/{sid}/properties/{prop}", {}),
                ("GET", f"{lp}/{ns}/{sid}/properties", {"params": {"include": prop}}),
                ("GET", f"{lp}/{ns}/properties", {}),
                ("GET", f"{lp}/{ns}/properties/{prop}", {}),
                ("GET", f"{lp}/{ns}/session-ids", {}),
                ("GET", f"{lp}/{ns}/session-properties", {}),
                ("GET", f"{lp}/namespace/{ns}/session", {}),
                ("GET", f"{native}/{sid}n", {}),
                ("GET", f"{native}/{sid}n/properties/{prop}", {}),
                ("GET", native, {}),
                ("POST", f"{native}:batchGet", {"json": {"sessionIds": [f"{sid}n", sid]}}),
                ("GET", f"/session-context/{t}/context/{sid}", {}),
                ("GET", f"/sessions/{sid}", {"params": {"tenantId": t}}),
                ("POST", f"/sessions/{sid}", {"params": {"tenantId": t}}),
                ("PUT", "/sessions/new", {"params": {"tenantId": t}}),
                # writes by B that must not reach A's data either
                ("PATCH", f"{native}/{sid}n", {"json": {"properties": {"other": 1}}, "headers": merge}),
                ("POST", f"{native}/{sid}n/properties/{prop}:increment", {"json": {"by": 1}}),
                ("PUT", f"/session-context/{t}/context/{sid}?upsert=true", {"json": {"metadata": {"version": 1}}}),
            ]

        for t in (b, a):
            for method, path, extra in reads(t):
                headers = {**key_b, **extra.pop("headers", {})}
                r = await api.request(method, path, headers=headers, **extra)
                assert marker not in r.text, (t, method, path, r.status_code, r.text)
                if t == a:
                    assert r.status_code == 403, (method, path, r.status_code, r.text)
            # Genesys with no tenantId: the key's own tenant
            r = await api.get(f"/sessions/{sid}", headers=key_b)
            assert r.status_code == 200 and marker not in r.text
        # B's customer tokens, for the same session ids, on B's tenant and on A's
        for t, session in [(b, sid + "m"), (a, sid + "m"), (b, sid)]:
            me_b = {"Authorization": f"Bearer {token(b, session, None)}"}
            r = await api.get(f"/session-context/{t}/me/context", headers=me_b)
            assert marker not in r.text, (t, r.status_code, r.text)
        # A's own reads see the marker everywhere it was written: the check above is not empty
        for path in [
            f"/v1/account/{a}/{ns}/{sid}/properties",
            f"/v1/account/{a}/{ns}/properties",
            f"/api/v1/tenants/{a}/namespaces/{ns}/sessions/{sid}n",
            f"/session-context/{a}/context/{sid}",
            f"/sessions/{sid}?tenantId={a}",
        ]:
            assert marker in (await api.get(path, headers=key_a)).text, path
        assert ns in (await api.get(f"/v1/account/{a}", headers=key_a)).text
        assert marker in (await api.get(f"/session-context/{a}/me/context", headers=me_a)).text


@pytest.mark.parametrize("store", ["fake", "real"])
def test_no_response_carries_another_tenants_data(store: str, request: pytest.FixtureRequest) -> None:
    if store == "real" and os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    url = request.getfixturevalue("redis_server").url if store == "real" else None

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(a=tenants, b=tenants, ns=st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True), sid=names, prop=names)
    def check(a: str, b: str, ns: str, sid: str, prop: str) -> None:
        if a == b or ns.startswith("__"):
            return

        async def run() -> None:
            redis = await fresh_redis(url)
            try:
                await scenario(redis, a, b, ns, sid, prop)
            finally:
                await redis.aclose()

        asyncio.run(run())

    check()
