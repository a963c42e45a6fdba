"""A customer's data through the APIs (issue 15): sessions tied through
Emporix, Genesys and native (and a LivePerson one through native) are listed,
exported and erased, and nothing of another customer or tenant is touched;
the native ``customerId`` member; the audit lines; the command line."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from service.logs import JsonFormatter
from service.store import customers, keys
from service.store.core import Changes, SessionStore

from .conftest import serve_app

pytestmark = pytest.mark.anyio

T, OTHER_T = "acme", "globex"  # Emporix's tenant pattern: lowercase
SECRET = "customers-test-hmac-secret-of-48-bytes-0123456789"
C1, C2 = "cust-1, Ünïcode", "cust-2"  # a comma and non-ASCII in an id
KEYS = {"admin": (T, ["admin"]), "writer": (T, ["read", "write"]), "globex": (OTHER_T, ["admin"])}
MERGE = {"Content-Type": "application/merge-patch+json"}


def auth() -> dict[str, Any]:
    return {
        "keys": [
            {"id": name, "tenant": tenant, "sha256": hashlib.sha256(f"{name}-secret".encode()).hexdigest(), "scopes": scopes}
            for name, (tenant, scopes) in KEYS.items()
        ],
        "customer_tokens": {"algorithm": "HS256", "secret": SECRET},
    }


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": f"{name}-secret"}


ADMIN, WRITER, GLOBEX = key("admin"), key("writer"), key("globex")


def token(session: str, customer: str, tenant: str = T) -> str:
    claims = {"tenant": tenant, "sessionId": session, "customerId": customer, "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def customer_url(customer: str, tenant: str = T, tail: str = "") -> str:
    return f"/api/v1/tenants/{tenant}/customers/{quote(customer, safe='')}{tail}"


def native_url(namespace: str, session: str, tenant: str = T) -> str:
    return f"/api/v1/tenants/{tenant}/namespaces/{namespace}/sessions/{session}"


@pytest.fixture
async def api(redis: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(redis, auth=auth()) as client:
        yield client


async def ok(response: Any) -> httpx.Response:
    r: httpx.Response = await response
    assert r.status_code < 300, (r.status_code, r.text)
    return r


async def listing(api: httpx.AsyncClient, customer: str, tenant: str = T) -> set[tuple[str, str, str]]:
    r = await api.get(customer_url(customer, tenant, "/sessions"), headers=ADMIN if tenant == T else GLOBEX)
    assert r.status_code == 200, r.text
    return {(s["api"], s["namespace"], s["sessionId"]) for s in r.json()["sessions"]}


async def tie_everywhere(api: httpx.AsyncClient, customer: str, tag: str, tenant: str = T) -> set[tuple[str, str, str]]:
    """One session of the customer through each face; the listing entries they make."""
    made = set()
    writer = WRITER if tenant == T else GLOBEX
    # Emporix: a PUT naming the customer (with its token), and the customer's own /me write
    await ok(api.put(f"/session-context/{tenant}/context/e-{tag}?upsert=true", headers={**writer, "saas-token": token("x", customer, tenant)},
                     json={"customerId": customer, "siteCode": "main", "context": {"cart": [tag]}, "metadata": {"version": 1}}))  # fmt: skip
    await ok(api.patch(f"/session-context/{tenant}/me/context?upsert=true", headers={"Authorization": f"Bearer {token(f'm-{tag}', customer, tenant)}"},
                       json={"currency": "EUR", "metadata": {"version": 1}}))  # fmt: skip
    made |= {("emporix", "__emporix__", f"e-{tag}"), ("emporix", "__emporix__", f"m-{tag}")}
    # Genesys: create and associate with gkc_customerId
    header: dict[str, Any] = {**writer, "gkc_customerId": customer.encode()}  # UTF-8, as clients send it
    created = (await ok(api.put(f"/sessions/new?tenantId={tenant}", headers=header))).json()["response"]["sessionId"]
    await ok(api.post(f"/sessions/g-{tag}?tenantId={tenant}", headers=header))
    made |= {("genesys", "__genesys__", created), ("genesys", "__genesys__", f"g-{tag}")}
    # native
    await ok(api.put(native_url("ns", f"n-{tag}", tenant), headers=writer, json={"properties": {"name": tag}, "customerId": customer}))
    made.add(("native", "ns", f"n-{tag}"))
    # LivePerson (v1 and v2), tied through native: the same sessions
    await ok(api.patch(f"/v1/account/{tenant}/lp/l-{tag}/properties", headers=writer, json={"intent": tag}))
    await ok(api.patch(native_url("lp", f"l-{tag}", tenant), headers={**writer, **MERGE}, content=json.dumps({"customerId": customer})))
    await ok(api.post("/v2/context/document/create", headers=writer,
                      json={"accountId": tenant, "nameSpace": "lp2", "sessionId": f"v-{tag}", "payload": {"topic": tag}}))  # fmt: skip
    await ok(api.patch(native_url("lp2", f"v-{tag}", tenant), headers={**writer, **MERGE}, content=json.dumps({"customerId": customer})))
    made |= {("liveperson", "lp", f"l-{tag}"), ("liveperson", "lp2", f"v-{tag}")}
    return made


async def test_every_api_is_listed_exported_and_erased(api: httpx.AsyncClient, store: SessionStore) -> None:
    mine = await tie_everywhere(api, C1, "a")
    theirs = await tie_everywhere(api, C2, "b")
    elsewhere = await tie_everywhere(api, C1, "c", tenant=OTHER_T)  # the same customer id in another tenant
    await ok(api.put(native_url("ns", "untied"), headers=WRITER, json={"properties": {"x": 1}}))
    assert await listing(api, C1) == mine
    assert await listing(api, C2) == theirs
    assert await listing(api, C1, OTHER_T) == elsewhere

    r = await api.get(customer_url(C1, tail="/export"), headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    document = r.json()
    assert (document["tenant"], document["customerId"]) == (T, C1)
    assert {(s["api"], s["namespace"], s["sessionId"]) for s in document["sessions"]} == mine
    by_id = {s["sessionId"]: s for s in document["sessions"]}
    assert by_id["n-a"]["properties"] == {"name": "a"} and by_id["n-a"]["customerId"] == C1
    assert by_id["e-a"]["properties"]["context"] == {"cart": ["a"]} and by_id["e-a"]["metadata"]["version"] == 1
    assert by_id["l-a"]["properties"] == {"intent": "a"} and by_id["v-a"]["properties"] == {"topic": "a"}
    assert "b" not in json.dumps([s["properties"] for s in document["sessions"]])

    r = await api.delete(customer_url(C1), headers=ADMIN)
    assert (r.status_code, r.json()) == (200, {"erased": len(mine)})
    assert await listing(api, C1) == set()
    assert (await api.delete(customer_url(C1), headers=ADMIN)).json() == {"erased": 0}  # idempotent
    for _api, namespace, session in mine:
        assert await store.read(T, namespace, session) is None
    assert await listing(api, C2) == theirs and await listing(api, C1, OTHER_T) == elsewhere
    for _api, namespace, session in theirs:
        assert (await store.read(T, namespace, session)).customer_id == C2  # type: ignore[union-attr]
    assert (await api.get(native_url("ns", "untied"), headers=WRITER)).json()["properties"] == {"x": 1}
    r = await api.get(customer_url(C1, tail="/export"), headers=ADMIN)
    assert r.json() == {"tenant": T, "customerId": C1, "sessions": []}


async def test_an_erasure_publishes_the_deletions(api: httpx.AsyncClient, store: SessionStore) -> None:
    await ok(api.put(native_url("ns", "s"), headers=WRITER, json={"properties": {"a": 1, "b": 2}, "customerId": C1}))
    subscription = await store.subscribe(T, "ns", "s")
    try:
        assert (await api.delete(customer_url(C1), headers=ADMIN)).json() == {"erased": 1}
        event = await subscription.next(5)
        assert event is not None and sorted(json.loads(event)["deleted"]) == ["a", "b"]
    finally:
        await subscription.aclose()


async def test_the_native_customer_member(api: httpx.AsyncClient) -> None:
    url = native_url("ns", "s")
    r = await ok(api.put(url, headers=WRITER, json={"properties": {"a": 1}}))
    assert r.json()["customerId"] is None
    r = await ok(api.put(url, headers=WRITER, json={"properties": {"a": 2}, "customerId": C1}))
    assert (r.json()["customerId"], r.json()["metadata"]["version"]) == (C1, 2)
    r = await ok(api.put(url, headers=WRITER, json={"properties": {"a": 3}}))  # left out: kept, on a PUT too
    assert r.json()["customerId"] == C1
    r = await ok(api.patch(url, headers={**WRITER, **MERGE}, content=b'{"properties": {"b": 1}}'))
    assert r.json()["customerId"] == C1 and r.json()["properties"] == {"a": 3, "b": 1}
    assert (await api.get(url, headers=WRITER)).json()["customerId"] == C1
    assert await listing(api, C1) == {("native", "ns", "s")}
    r = await ok(api.patch(url, headers={**WRITER, **MERGE}, content=json.dumps({"customerId": C2})))
    assert r.json()["customerId"] == C2
    assert await listing(api, C1) == set() and await listing(api, C2) == {("native", "ns", "s")}
    r = await ok(api.patch(url, headers={**WRITER, **MERGE}, content=b'{"customerId": null}'))
    assert r.json()["customerId"] is None and await listing(api, C2) == set()
    version = r.json()["metadata"]["version"]
    r = await ok(api.patch(url, headers={**WRITER, **MERGE}, content=b'{"customerId": null}'))
    assert r.json()["metadata"]["version"] == version  # untying an untied session changes nothing
    batch = await ok(api.post("/api/v1/tenants/acme/namespaces/ns/sessions:batchGet", headers=WRITER, json={"sessionIds": ["s"]}))
    assert batch.json()["sessions"][0]["customerId"] is None


@pytest.mark.parametrize(
    ("namespace", "body", "message"),
    [
        ("__emporix__", {"properties": {}, "customerId": C1}, "__emporix__"),
        ("__genesys__", {"properties": {}, "customerId": None}, "__genesys__"),
        ("ns", {"properties": {}, "customerId": "a\nb"}, "customerId"),
        ("ns", {"properties": {}, "customerId": ""}, "customerId"),
        ("ns", {"properties": {}, "customerId": 7}, "customerId"),
    ],
)
async def test_bad_customer_members_are_refused(api: httpx.AsyncClient, namespace: str, body: Any, message: str) -> None:
    for method, headers in (("PUT", WRITER), ("PATCH", {**WRITER, **MERGE})):
        r = await api.request(method, native_url(namespace, "s"), headers=headers, content=json.dumps(body))
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
        assert message in r.json()["detail"]
        assert (await api.get(native_url(namespace, "s"), headers=WRITER)).status_code == 404  # nothing stored


async def test_an_emporix_put_without_a_customer_unties(api: httpx.AsyncClient) -> None:
    saas = {**WRITER, "saas-token": token("x", C1)}
    await ok(api.put(f"/session-context/{T}/context/e?upsert=true", headers=saas,
                     json={"customerId": C1, "metadata": {"version": 1}}))  # fmt: skip
    assert await listing(api, C1) == {("emporix", "__emporix__", "e")}
    await ok(api.put(f"/session-context/{T}/context/e", headers=saas, json={"siteCode": "x", "metadata": {"version": 1}}))
    assert await listing(api, C1) == set()
    # the customer's own write ties a context that is theirs (or that it creates)
    await ok(api.put(f"/session-context/{T}/context/e", headers=saas, json={"customerId": C1, "metadata": {"version": 2}}))
    me = {"Authorization": f"Bearer {token('e', C1)}"}
    await ok(api.patch(f"/session-context/{T}/me/context", headers=me, json={"language": "de", "metadata": {"version": 3}}))
    assert await listing(api, C1) == {("emporix", "__emporix__", "e")}


async def test_the_calls_need_the_admin_scope_of_the_tenant(api: httpx.AsyncClient) -> None:
    for method, tail in (("GET", "/sessions"), ("GET", "/export"), ("DELETE", "")):
        url = customer_url(C1, tail=tail)
        assert (await api.request(method, url)).status_code == 401
        assert (await api.request(method, url, headers=WRITER)).status_code == 403
        r = await api.request(method, url, headers=GLOBEX)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = await api.get(f"/api/v1/tenants/{T}/customers/a%0Ab/sessions", headers=ADMIN)
    assert r.status_code == 400 and "customer id" in r.json()["detail"]
    r = await api.post(customer_url(C1, tail="/sessions"), headers=ADMIN)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    r = await api.get(customer_url(C1, tail="/other"), headers=ADMIN)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    # the native API's own paths are untouched by the customer routes
    assert (await api.get(native_url("customers", "x"), headers=WRITER)).status_code == 404


async def test_audit_lines_name_no_customer_and_no_data(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    secret_data = "very-personal-data"
    await ok(api.put(native_url("ns", "s"), headers=WRITER, json={"properties": {"p": secret_data}, "customerId": C1}))
    caplog.set_level(logging.INFO, logger="sessionstore.audit")
    assert secret_data in (await api.get(customer_url(C1, tail="/export"), headers=ADMIN)).text
    await api.delete(customer_url(C1), headers=ADMIN)
    records = [r for r in caplog.records if r.name == "sessionstore.audit"]
    assert [r.audit["audit"] for r in records] == ["export", "erase"]  # type: ignore[attr-defined]
    digest = hashlib.sha256(C1.encode()).hexdigest()
    for record in records:
        line = JsonFormatter().format(record)
        fields = json.loads(line)
        assert fields["key"] == "admin" and fields["tenant"] == T and fields["customer_sha256"] == digest
        assert fields["complete"] is True and "time" in fields
        for text in (line, record.getMessage()):
            assert C1 not in text and C1.split(",")[0] not in text and secret_data not in text
    assert json.loads(JsonFormatter().format(records[0]))["sessions"] == 1
    assert json.loads(JsonFormatter().format(records[1]))["erased"] == 1


async def test_import_ties_and_indexes(store: SessionStore) -> None:
    import io

    from service.store import transfer

    await store.write(T, "ns", "s", Changes().set("a", b"1").tie(C1))
    await store.write(T, "__emporix__", "e", Changes().set("customerId", json.dumps(C2).encode()).tie(C2))
    out = io.BytesIO()
    await transfer.export_sessions(store, out, T)
    lines = out.getvalue().splitlines()
    assert any(b'"customerId":"cust-1' in line for line in lines)
    # a file from before the ties: an Emporix context is tied by its customerId property
    old = [line.replace(b',"customerId":"cust-2"', b"") if b'"sessionId":"e"' in line else line for line in lines]
    assert old != lines
    for ns, sid in (("ns", "s"), ("__emporix__", "e")):
        found = await store.namespace(T, ns)
        assert found is not None
        await store.redis.delete(keys.session(T, ns, found.generation, sid).session)
    for customer in (C1, C2):
        await store.redis.delete(keys.customer_index(T, customer))
    await transfer.import_sessions(store, old)
    assert [f.session.session_id for f in await customers.list_sessions(store, T, C1)] == ["s"]
    assert [f.session.session_id for f in await customers.list_sessions(store, T, C2)] == ["e"]


# -- the command line ---------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=120, check=False)


def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_cluster" if backend == "cluster" else "redis_server").url)


@pytest.mark.real_redis_only
async def test_the_customers_commands(store: SessionStore, backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = redis_url(backend, request)
    for n in range(30):
        await store.write(T, "ns" if n % 2 else "__genesys__", f"s{n}", Changes().set("p", b'"data"').tie(C1))
    await store.write(T, "ns", "theirs", Changes().set("p", b"1").tie(C2))
    listed = cli("customers", "list", "--tenant", T, "--customer", C1, "--redis-url", url)
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(entries) == 30 and {e["api"] for e in entries} == {"native", "genesys"}
    exported = cli("customers", "export", "--tenant", T, "--customer", C1, "--redis-url", url, "--out", str(tmp_path / "c.json"))
    assert exported.returncode == 0, exported.stderr
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["customerId"] == C1 and len(document["sessions"]) == 30
    erased = cli("customers", "erase", "--tenant", T, "--customer", C1, "--redis-url", url)
    assert erased.returncode == 0 and json.loads(erased.stdout) == {"erased": 30}, erased.stderr
    assert "erased 30 sessions" in erased.stderr  # the progress bar's last line
    for run in (exported, erased):
        audit_lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
        assert len(audit_lines) == 1 and audit_lines[0]["key"].startswith("cli")
        assert C1 not in run.stderr and "data" not in run.stderr.replace("sessionstore", "")
    assert await customers.list_sessions(store, T, C1) == []
    assert len(await customers.list_sessions(store, T, C2)) == 1
    bad = cli("customers", "erase", "--tenant", "a b", "--customer", C1, "--redis-url", url)
    assert bad.returncode == 2


@pytest.mark.real_redis_only
async def test_check_repair_rebuilds_a_wiped_index(store: SessionStore, backend: str, request: pytest.FixtureRequest) -> None:
    for n in range(12):
        await store.write(T, "ns", f"s{n}", Changes().set("p", b"1").tie(C1 if n % 3 else C2))
    await store.write(OTHER_T, "ns", "s", Changes().set("p", b"1").tie(C1))
    for tenant, customer in ((T, C1), (T, C2), (OTHER_T, C1)):
        await store.redis.delete(keys.customer_index(tenant, customer))
    await store.redis.zadd(keys.customer_index(T, "gone"), {keys.customer_member("ns", "nobody"): 1})  # a dead entry
    assert await customers.list_sessions(store, T, C1) == []
    repaired = cli("check", "--repair", "--no-progress", "--redis-url", redis_url(backend, request))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "13 tied ones indexed" in repaired.stdout and "1 dead entries dropped" in repaired.stdout
    assert len(await customers.list_sessions(store, T, C1)) == 8
    assert len(await customers.list_sessions(store, T, C2)) == 4
    assert len(await customers.list_sessions(store, OTHER_T, C1)) == 1
    assert await store.redis.exists(keys.customer_index(T, "gone")) == 0


async def test_the_export_is_written_a_batch_at_a_time(store: SessionStore) -> None:
    from service.faces.customers import Export

    for n in range(2 * customers.BATCH + 10):
        await store.write(T, "ns", f"s{n:03}", Changes().set("p", b'"x"').tie(C1))
    export = Export(store, T, C1)
    await export.start()
    chunks = [chunk async for chunk in export.document()]
    assert len(chunks) == 1 + 3 + 1  # the head, three batches of sessions, the end
    document = json.loads(b"".join(chunks))
    assert len(document["sessions"]) == export.sessions == 2 * customers.BATCH + 10 and export.complete


async def test_the_calls_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    base = "/api/v1/tenants/{tenant}/customers/{customerId}"
    for path, method in ((base + "/sessions", "get"), (base + "/export", "get"), (base, "delete")):
        operation = paths[path][method]
        assert operation["tags"] == ["native"] and {"apiKey": ["admin"]} in operation["security"]
        assert {p["name"] for p in operation["parameters"]} == {"tenant", "customerId"}
    schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("Session", "SessionReplace", "SessionPatch"):
        assert "customerId" in schemas[name]["properties"], name
