"""The native endpoints the console starts from: who is asking
(``GET /api/v1/whoami``), a tenant's namespaces with the reserved ones, and
session ids listed by prefix; and the console's own routes (the page and its
files, in the OpenAPI document as the console, not an API)."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

import fakeredis
import httpx
import pytest

from service.faces import console

from .conftest import OTHER_TENANT, TENANT, key, serve_app

pytestmark = pytest.mark.anyio

NS = f"/api/v1/tenants/{TENANT}/namespaces"


def problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail: str = r.json()["detail"]
    return detail


# -- whoami ------------------------------------------------------------------------------------


async def test_whoami_names_the_key_s_tenant_and_scopes(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/whoami", headers=key("reader"))
    assert r.status_code == 200
    assert r.json() == {"keyId": "reader", "tenant": TENANT, "scopes": ["read"], "openAccess": False}
    r = await client.get("/api/v1/whoami", headers={"X-API-Key": "all-tenants-secret"})
    assert r.json() == {"keyId": "all", "tenant": "*", "scopes": ["read", "write", "admin"], "openAccess": False}
    r = await client.get("/api/v1/whoami", headers={"Authorization": "Bearer other-secret"})
    assert r.json()["tenant"] == OTHER_TENANT
    assert "missing API key" in problem(await client.get("/api/v1/whoami"), 401)
    assert "unknown API key" in problem(await client.get("/api/v1/whoami", headers={"X-API-Key": "nope"}), 401)
    assert "use GET" in problem(await client.post("/api/v1/whoami", headers=key("reader")), 405)


async def test_whoami_with_no_auth_file(redis: Any) -> None:
    async with serve_app(redis, open_access=True) as client:
        r = await client.get("/api/v1/whoami")
        assert r.json() == {"keyId": "open-access", "tenant": "*", "scopes": ["read", "write", "admin"],
                            "openAccess": True}  # fmt: skip


# -- namespaces --------------------------------------------------------------------------------


async def test_namespaces_are_listed_with_their_ttl_and_creation_time(client: httpx.AsyncClient) -> None:
    before = time.time()
    lp = f"/v1/account/{TENANT}"
    r = await client.post(lp, json={"name": "bot"}, params={"ttlSecond": 600}, headers=key("admin"))
    assert r.status_code == 204
    assert (await client.patch(f"{lp}/agents/s/properties", json={"a": 1}, headers=key("writer"))).status_code == 204
    r = await client.get(NS, headers=key("reader"))
    assert r.status_code == 200
    listed = {n["name"]: n for n in r.json()["namespaces"]}
    assert list(listed) == ["agents", "bot"]
    assert listed["bot"]["ttlSeconds"] == 600 and listed["bot"]["face"] is None
    assert listed["agents"]["ttlSeconds"] is None
    created = calendar.timegm(time.strptime(listed["bot"]["createdAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 2 <= created <= time.time() + 1


async def test_the_reserved_namespaces_are_listed_and_marked(client: httpx.AsyncClient) -> None:
    tenant, everything = "acme", {"X-API-Key": "all-tenants-secret"}
    r = await client.put(f"/session-context/{tenant}/context/c1?upsert=true", json={"metadata": {"version": 1}},
                         headers=everything)  # fmt: skip
    assert r.status_code == 204, r.text
    assert (await client.put("/sessions/new", params={"tenantId": tenant}, headers=everything)).status_code == 200
    r = await client.get(f"/v1/account/{tenant}", headers=everything)
    assert r.status_code == 200 and r.json() == []  # the LivePerson face hides them
    r = await client.get(f"/api/v1/tenants/{tenant}/namespaces", headers=everything)
    assert {n["name"]: n["face"] for n in r.json()["namespaces"]} == {"__emporix__": "emporix", "__genesys__": "genesys"}


async def test_namespaces_need_the_tenant_s_read_scope(client: httpx.AsyncClient) -> None:
    assert "may not act for this tenant" in problem(await client.get(NS, headers=key("other")), 403)
    assert problem(await client.get(NS), 401)
    assert "invalid tenant" in problem(await client.get("/api/v1/tenants/b%20d/namespaces", headers=key("admin")), 400)
    assert (await client.get(f"/api/v1/tenants/{OTHER_TENANT}/namespaces", headers=key("other"))).json() == {
        "namespaces": []
    }


# -- listing by prefix -------------------------------------------------------------------------


async def test_session_ids_by_prefix_page_with_the_cursor(client: httpx.AsyncClient) -> None:
    base = f"{NS}/desk/sessions"
    ids = [f"conv-{n:02d}" for n in range(23)] + ["con", "conv", "conversation", "other-1", "CONV-9", "conv\u00e9", "c"]
    for session_id in ids:
        r = await client.put(f"{base}/{session_id}", json={"properties": {"n": 1}}, headers=key("writer"))
        assert r.status_code == 201
    wanted = sorted(i for i in ids if i.startswith("conv"))
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"prefix": "conv", "limit": 5, **({"cursor": cursor} if cursor else {})}
        r = await client.get(base, params=params, headers=key("reader"))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["sessionIds"]) <= 5 and all(i.startswith("conv") for i in page["sessionIds"])
        found += page["sessionIds"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(found) == wanted and len(found) == len(set(found)) and pages >= 6
    r = await client.get(base, params={"prefix": "conv\u00e9"}, headers=key("reader"))
    assert r.json()["sessionIds"] == ["conv\u00e9"]
    r = await client.get(base, params={"prefix": "zzz"}, headers=key("reader"))
    assert r.json() == {"sessionIds": [], "nextCursor": None}
    r = await client.get(base, params={"prefix": ""}, headers=key("reader"))
    assert len(r.json()["sessionIds"]) == len(ids)
    # a cursor of a listing without the prefix: still only ids with the prefix
    r = await client.get(base, params={"limit": 1}, headers=key("reader"))
    r = await client.get(base, params={"prefix": "other", "cursor": r.json()["nextCursor"]}, headers=key("reader"))
    assert set(r.json()["sessionIds"]) <= {"other-1"}
    assert "invalid prefix" in problem(await client.get(base, params={"prefix": "a\nb"}, headers=key("reader")), 400)


# -- the console's routes ----------------------------------------------------------------------


@pytest.fixture
async def embedded() -> Any:
    async with serve_app(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())) as c:
        yield c


async def test_the_console_page_and_its_files(embedded: httpx.AsyncClient) -> None:
    r = await embedded.get("/console")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assets = re.findall(r'(?:src|href)="(/console/[^"?]+)', r.text)
    assert sorted(a.rsplit("/", 1)[1] for a in assets) == sorted(console.ASSETS)
    total = len(r.content)
    for asset in assets:
        f = await embedded.get(asset)
        assert f.status_code == 200 and f.headers["content-type"] == console.ASSETS[asset.rsplit("/", 1)[1]]
        total += len(f.content)
    assert total < 100_000  # light: the whole console, uncompressed
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    assert (await embedded.get("/console/")).status_code == 200
    r = await embedded.get("/console/nothing.js")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/plain")
    assert (await embedded.get("/console/..%2Fconsole.py")).status_code == 404


async def test_the_console_is_in_the_document_as_the_console(embedded: httpx.AsyncClient) -> None:
    doc = (await embedded.get("/openapi.json")).json()
    tag = next(t for t in doc["tags"] if t["name"] == "console")
    assert "not an API" in tag["description"]
    ops = [(p, m, op) for p, ops in doc["paths"].items() for m, op in ops.items() if p.startswith("/console")]
    assert {(p, m) for p, m, _ in ops} == {("/console", "get"), ("/console/{asset}", "get")}
    for _path, _method, op in ops:
        assert op["tags"] == ["console"] and op["x-console"] is True and "security" not in op
