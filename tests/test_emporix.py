"""The Emporix-compatible Session Context API, endpoint by endpoint, on both backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service import cli
from service.app import build_app
from service.auth import AuthConfig, AuthFileError
from service.config import Settings
from service.customer_tokens import CustomerTokenConfigError
from service.faces import emporix_writes
from service.store.core import Changes, Limits, SessionStore

from .conftest import free_port, serve_app

pytestmark = pytest.mark.anyio

T = "acme"  # the vendor's tenant pattern: lowercase, 3 to 16 characters
OTHER = "globex"
SECRET = "emporix-test-hmac-secret-of-48-bytes-0123456789"
KEYS = {
    "writer": (T, ["read", "write"]),
    "reader": (T, ["read"]),
    "manage": (T, ["sessioncontext.context_manage"]),
    "manage-old": (T, ["session_context.context_manage"]),
    "globex": (OTHER, ["read", "write"]),
}
HS256 = {"algorithm": "HS256", "secret": SECRET}


def auth(tokens: dict[str, Any] | None = HS256) -> dict[str, Any]:
    document: dict[str, Any] = {
        "keys": [
            {
                "id": name,
                "tenant": tenant,
                "sha256": hashlib.sha256(f"{name}-secret".encode()).hexdigest(),
                "scopes": scopes,
            }
            for name, (tenant, scopes) in KEYS.items()
        ]
    }
    if tokens is not None:
        document["customer_tokens"] = tokens
    return document


def key(name: str) -> dict[str, str]:
    """An API key, sent as Emporix management clients send their token."""
    return {"Authorization": f"Bearer {name}-secret"}


WRITER = key("writer")


def token(
    session: str | None = "s1",
    customer: str | None = None,
    *,
    tenant: Any = T,
    claim: str = "sessionId",
    expires_in: int | None = 3600,
    signing_key: Any = SECRET,
    algorithm: str = "HS256",
    **extra: Any,
) -> str:
    claims: dict[str, Any] = dict(extra)
    if tenant is not None:
        claims["tenant"] = tenant
    if session is not None:
        claims[claim] = session
    if customer is not None:
        claims["customerId"] = customer
    if expires_in is not None:
        claims["exp"] = int(time.time()) + expires_in
    return jwt.encode(claims, signing_key, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def saas(value: str, headers: dict[str, str] = WRITER) -> dict[str, str]:
    return {**headers, "saas-token": value}


def url(session: str = "s1", tenant: str = T) -> str:
    return f"/session-context/{tenant}/context/{session}"


def me(tenant: str = T) -> str:
    return f"/session-context/{tenant}/me/context"


@pytest.fixture
async def api(redis: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(redis, auth=auth()) as client:
        yield client


async def get(api: httpx.AsyncClient, session: str = "s1") -> dict[str, Any]:
    r = await api.get(url(session), headers=WRITER)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def version(api: httpx.AsyncClient, session: str = "s1") -> int:
    return int((await get(api, session))["metadata"]["version"])


async def create(api: httpx.AsyncClient, session: str = "s1", **fields: Any) -> None:
    body = {**fields, "metadata": {"version": 0}}
    r = await api.put(
        url(session), params={"upsert": "true"}, json=body, headers=saas(token(customer=fields.get("customerId")))
    )
    assert r.status_code == 204, r.text


def assert_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]
    assert r.headers["content-type"] == "application/json"
    return body


def assert_conflict(r: httpx.Response, session: str, named: int) -> None:
    """Emporix's answer to a stale metadata.version: a 404 naming the version."""
    assert_error(r, 404)
    assert list(r.json()) == ["sessionId", "code", "message"]
    assert r.json() == {
        "sessionId": session,
        "code": 404,
        "message": f"The context with sessionId {session} and version {named} has not been found.",
    }


def looks_like_a_conflict(r: httpx.Response) -> bool:
    """How storefront code tells a version conflict from the vendor's answers."""
    message = r.json().get("message", "") if r.headers.get("content-type") == "application/json" else ""
    return r.status_code == 404 and "version" in message and "has not been found" in message


# -- management side ----------------------------------------------------------------


async def test_upsert_then_get(api: httpx.AsyncClient) -> None:
    body = {
        "sessionId": "ignored, the path's is used",
        "siteCode": "main",
        "currency": "EUR",
        "targetLocation": "DE",
        "context": {"customObject": {"property1": "value1"}, "customProperty": "customValue"},
        "metadata": {"version": 7},  # upsert of a missing context: whatever version
    }
    r = await api.put(url(), params={"upsert": "true"}, json=body, headers=WRITER)
    assert r.status_code == 204 and r.content == b""
    got = await get(api)
    metadata = got.pop("metadata")
    assert got == {
        "sessionId": "s1",
        "siteCode": "main",
        "currency": "EUR",
        "targetLocation": "DE",
        "context": {"customObject": {"property1": "value1"}, "customProperty": "customValue"},
    }
    assert list(got) == ["sessionId", "siteCode", "currency", "targetLocation", "context"]  # never set: left out
    assert metadata["version"] == 1 and set(metadata) == {"version", "createdAt", "modifiedAt"}
    assert metadata["createdAt"].endswith("Z")
    assert (
        len(metadata["createdAt"]) == len("2026-02-04T16:36:44.047Z")
        and metadata["modifiedAt"] == metadata["createdAt"]
    )


async def test_get_missing(api: httpx.AsyncClient) -> None:
    r = await api.get(url("62528895-b561-4518-bfdc-2cbf52a07845"), headers=WRITER)
    body = assert_error(r, 404)
    assert (
        list(body) == ["sessionId", "code", "message"] and body["sessionId"] == "62528895-b561-4518-bfdc-2cbf52a07845"
    )


async def test_put_needs_a_context_or_upsert(api: httpx.AsyncClient) -> None:
    for params in [{}, {"upsert": "false"}, {"upsert": "FALSE"}]:
        r = await api.put(url(), params=params, json={"siteCode": "main", "metadata": {"version": 1}}, headers=WRITER)
        assert assert_error(r, 404)["sessionId"] == "s1"
    assert_error(await api.get(url(), headers=WRITER), 404)
    r = await api.put(url(), params={"upsert": "True"}, json={"metadata": {"version": 1}}, headers=WRITER)
    assert r.status_code == 204
    assert set(await get(api)) == {"sessionId", "metadata"}  # nothing else was ever set


async def test_put_replaces_with_the_right_version(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main", currency="EUR", cartId="c1", context={"a": 1, "b": 2})
    r = await api.put(url(), json={"currency": "USD", "context": {"b": 3}, "metadata": {"version": 1}}, headers=WRITER)
    assert r.status_code == 204
    got = await get(api)
    assert {k: v for k, v in got.items() if k != "metadata"} == {
        "sessionId": "s1",
        "currency": "USD",
        "context": {"b": 3},
    }
    assert got["metadata"]["version"] == 2 and got["metadata"]["modifiedAt"] >= got["metadata"]["createdAt"]
    # an older version: a 404 naming it (Emporix's conflict), nothing changes
    r = await api.put(url(), json={"currency": "CHF", "metadata": {"version": 1}}, headers=WRITER)
    assert_conflict(r, "s1", 1)
    assert await get(api) == got
    # upsert of an existing context still checks the version
    r = await api.put(
        url(), params={"upsert": "true"}, json={"currency": "CHF", "metadata": {"version": 5}}, headers=WRITER
    )
    assert_conflict(r, "s1", 5)
    r = await api.put(
        url(), params={"upsert": "true"}, json={"currency": "CHF", "metadata": {"version": 2}}, headers=WRITER
    )
    assert r.status_code == 204
    assert (await get(api))["currency"] == "CHF" and await version(api) == 3
    # a PUT that changes nothing still moves the version: every accepted PUT does
    r = await api.put(url(), json={"currency": "CHF", "metadata": {"version": 3}}, headers=WRITER)
    assert r.status_code == 204 and await version(api) == 4


async def test_a_version_conflict_is_a_404_naming_the_version(api: httpx.AsyncClient) -> None:
    """Emporix answers a stale metadata.version with a 404 naming the version the
    request named (its spec lists only 204 and 404 for PUT), on every write that
    checks one: PUT with and without upsert, PATCH /me/context with and without."""
    await create(api, siteCode="main", context={"a": 1})
    assert (await api.post(url() + "/attributes", json={"key": "b", "value": 2}, headers=WRITER)).status_code == 204
    before = await get(api)
    assert before["metadata"]["version"] == 2
    anonymous = bearer(token("s1"))
    writes = [
        ("PUT", url(), {}, WRITER),
        ("PUT", url(), {"upsert": "true"}, WRITER),
        ("PATCH", me(), {}, anonymous),
        ("PATCH", me(), {"upsert": "true"}, anonymous),
    ]
    for method, path, params, headers in writes:
        for named in [1, 3, 0, -1, 2**40]:
            body = {"siteCode": "x", "context": {"c": 3}, "metadata": {"version": named}}
            r = await api.request(method, path, params=params, json=body, headers=headers)
            assert_conflict(r, "s1", named)
            assert looks_like_a_conflict(r)
    assert await get(api) == before  # nothing changed, not even the version or modifiedAt
    # a missing context keeps its own 404, which no client takes for a conflict
    for r in [
        await api.put(url("nope"), json={"metadata": {"version": 1}}, headers=WRITER),
        await api.patch(me(), json={"metadata": {"version": 1}}, headers=bearer(token("nope"))),
        await api.get(url("nope"), headers=WRITER),
    ]:
        assert r.json() == {"sessionId": "nope", "code": 404, "message": "Session not found"}
        assert not looks_like_a_conflict(r)


async def test_the_storefront_retry_on_a_conflict(api: httpx.AsyncClient) -> None:
    """Storefront code retries a write once with a fresh read when the answer is
    a 404 whose message has "version" and "has not been found"."""
    await create(api, siteCode="main")
    headers = bearer(token("s1"))
    stale = (await api.get(me(), headers=headers)).json()
    r = await api.patch(me(), json={"currency": "EUR", "metadata": stale["metadata"]}, headers=headers)
    assert r.status_code == 204
    for method, path, h in [("PATCH", me(), headers), ("PUT", url(), WRITER)]:
        body = {"siteCode": "main", "language": "DE", "metadata": stale["metadata"]}
        r = await api.request(method, path, json=body, headers=h)
        assert looks_like_a_conflict(r)
        fresh = (await api.get(me(), headers=headers)).json()
        r = await api.request(method, path, json={**body, "metadata": fresh["metadata"]}, headers=h)
        assert r.status_code == 204, r.text
    assert (await get(api))["language"] == "DE" and await version(api) == 4


async def test_the_native_api_keeps_412_on_the_same_context(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main")
    native = f"/api/v1/tenants/{T}/namespaces/__emporix__/sessions/s1"
    r = await api.get(native, headers=WRITER)
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    assert (await api.put(url(), json={"siteCode": "x", "metadata": {"version": 1}}, headers=WRITER)).status_code == 204
    r = await api.patch(
        native,
        content=b'{"properties": {"siteCode": "y"}}',
        headers={**WRITER, "Content-Type": "application/merge-patch+json", "If-Match": '"1"'},
    )
    assert r.status_code == 412 and r.json()["status"] == 412
    assert (await get(api))["siteCode"] == "x"


async def test_echoed_metadata_and_nulls_are_accepted(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main", currency="EUR")
    current = await get(api)
    # what clients send back: the whole GET body, nulls for unset fields
    r = await api.put(url(), json={**current, "currency": "USD", "cartId": None, "context": None}, headers=WRITER)
    assert r.status_code == 204
    got = await get(api)
    assert got["currency"] == "USD" and "cartId" not in got and "context" not in got


async def test_bad_bodies_are_400_and_change_nothing(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main")
    before = await get(api)
    ok_meta = {"metadata": {"version": 1}}
    bad: list[dict[str, Any]] = [
        {"json": {"siteCode": "x"}},  # no metadata
        {"json": {"siteCode": "x", "metadata": {}}},
        {"json": {"siteCode": "x", "metadata": {"version": None}}},
        {"json": {"siteCode": "x", "metadata": None}},
        {"json": {"siteCode": "x", "metadata": 1}},
        {"json": {"siteCode": "x", "metadata": {"version": "1"}}},
        {"json": {"siteCode": "x", "metadata": {"version": 1.5}}},
        {"json": {"siteCode": "x", "metadata": {"version": True}}},
        {"json": {"context": "not an object", **ok_meta}},
        {"json": {"context": [1, 2], **ok_meta}},
        {"json": {"siteCode": 5, **ok_meta}},
        {"json": {"customerId": {"id": 1}, **ok_meta}},
        {"json": [ok_meta]},
        {"json": "a string"},
        {"content": b"{not json"},
        {"content": b""},
        {"content": b'{"siteCode": "\xff\xfe", "metadata": {"version": 1}}'},
        {"content": b'{"context": ' + b"[" * 70 + b"]" * 70 + b', "metadata": {"version": 1}}'},
        {"json": {"siteCode": "x", **ok_meta}, "params": {"upsert": "maybe"}},
    ]
    for kwargs in bad:
        r = await api.put(url(), headers=WRITER, **kwargs)
        assert_error(r, 400)
    assert await get(api) == before


async def test_attributes(api: httpx.AsyncClient) -> None:
    await create(api, context={"keep": True})
    attributes = url() + "/attributes"
    r = await api.post(
        attributes, json={"key": "additional attribute name", "value": "61079711ce0eb90861357045"}, headers=WRITER
    )
    assert r.status_code == 204 and r.content == b""
    assert (
        await api.post(attributes, json={"key": "obj", "value": {"n": [1, 2.5, None]}}, headers=WRITER)
    ).status_code == 204
    assert (
        await api.post(attributes, json={"key": "obj", "value": {"n": 2}}, headers=WRITER)
    ).status_code == 204  # replaced
    got = await get(api)
    assert got["context"] == {"keep": True, "additional attribute name": "61079711ce0eb90861357045", "obj": {"n": 2}}
    assert got["metadata"]["version"] == 4  # every change moves the version
    r = await api.delete(attributes + "/" + quote("additional attribute name"), headers=WRITER)
    assert r.status_code == 204 and r.content == b""
    got = await get(api)
    assert got["context"] == {"keep": True, "obj": {"n": 2}} and got["metadata"]["version"] == 5
    # an attribute that is not there: 404, nothing changes
    assert_error(await api.delete(attributes + "/nothing", headers=WRITER), 404)
    assert await get(api) == got
    # a PUT made against an older version cannot undo the attribute changes
    assert_conflict(await api.put(url(), json={"context": {}, "metadata": {"version": 3}}, headers=WRITER), "s1", 3)
    # attributes on a context with no context object yet
    await create(api, "s2")
    assert (
        await api.post(url("s2") + "/attributes", json={"key": "k", "value": "v"}, headers=WRITER)
    ).status_code == 204
    assert (await get(api, "s2"))["context"] == {"k": "v"}


async def test_deleting_a_missing_attribute_is_404(api: httpx.AsyncClient) -> None:
    """As the vendor answers (storefront code expects and tolerates it), on the
    management side and on /me; nothing changes."""
    await create(api)  # no context object at all yet
    management, own = url() + "/attributes/", me() + "/attributes/"
    anonymous = bearer(token("s1"))

    async def absent(name: str) -> None:
        before = await get(api)
        for path, headers in [(management, WRITER), (own, anonymous)]:
            r = await api.delete(path + quote(name, safe=""), headers=headers)
            assert_error(r, 404)
            assert r.json() == {
                "sessionId": "s1",
                "code": 404,
                "message": f"The context with sessionId s1 has no attribute {name}.",
            }
            assert not looks_like_a_conflict(r)
        assert await get(api) == before  # not even the version or modifiedAt

    await absent("nothing")
    for path, headers in [(management, WRITER), (own, anonymous)]:
        for attribute in [{"key": "a/b", "value": 1}, {"key": "c", "value": 2}]:
            assert (await api.post(url() + "/attributes", json=attribute, headers=WRITER)).status_code == 204
        assert (await api.delete(path + quote("a/b", safe=""), headers=headers)).status_code == 204
        await absent("a/b")
        assert (await get(api))["context"] == {"c": 2}
    # a PATCH that removes a key that is not there is no error (a merge, not a DELETE)
    body = {"context": {"zz": None}, "metadata": {"version": await version(api)}}
    r = await api.patch(me(), json=body, headers=anonymous)
    assert r.status_code == 204
    # a missing context keeps its own 404
    for path, headers in [(url("nope") + "/attributes/a", WRITER), (own + "a", bearer(token("nope")))]:
        assert (await api.delete(path, headers=headers)).json() == {
            "sessionId": "nope",
            "code": 404,
            "message": "Session not found",
        }


async def test_a_change_that_keeps_colliding_answers_503(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attribute changes that check the stored context (the owner on /me, an
    attribute that must be there) write pinned to the version they read and
    start over when it moved. Made to collide every time, they give up with a
    503 (a conflict of the server's own read and write, not of any version the
    client named) and change nothing; a PUT, whose client version is stale
    then, answers the conflict."""
    await create(api, context={"x": 0})
    real_read = SessionStore.read
    collisions = 0

    async def read_then_collide(
        self: SessionStore, tenant: str, namespace: str, session_id: str, names: Any = None
    ) -> Any:
        nonlocal collisions
        found = await real_read(self, tenant, namespace, session_id, names)
        if namespace == "__emporix__" and names is not None:  # the read of a change, not a GET
            collisions += 1
            another = Changes().set_in("context", orjson.dumps({"n": collisions}))
            await self.write(tenant, namespace, session_id, another)
        return found

    monkeypatch.setattr(SessionStore, "read", read_then_collide)
    anonymous = bearer(token("s1"))
    gave_up = [
        await api.post(me() + "/attributes", json={"key": "k", "value": 1}, headers=anonymous),
        await api.delete(url() + "/attributes/x", headers=WRITER),
        await api.delete(me() + "/attributes/x", headers=anonymous),
    ]
    for r in gave_up:
        assert assert_error(r, 503) == {
            "code": 503,
            "message": "the session context kept changing while this change was applied; try again",
        }
    assert collisions == 3 * emporix_writes.MAX_ATTEMPTS
    current = await version(api)
    r = await api.put(url(), json={"context": {}, "metadata": {"version": current}}, headers=WRITER)
    assert_conflict(r, "s1", current)
    r = await api.patch(me(), json={"context": {}, "metadata": {"version": current + 1}}, headers=anonymous)
    assert_conflict(r, "s1", current + 1)
    # a management attribute POST reads nothing first: it goes through
    assert (await api.post(url() + "/attributes", json={"key": "m", "value": 1}, headers=WRITER)).status_code == 204
    monkeypatch.undo()
    got = await get(api)
    assert got["context"] == {"x": 0, "n": collisions, "m": 1}  # none of the refused changes landed
    assert got["metadata"]["version"] == 1 + collisions + 1


async def test_attribute_names_with_odd_characters(api: httpx.AsyncClient) -> None:
    await create(api)
    names = ['quote"back\\slash', "ünïcødé ✓", "a/b", "with space", "tab\\t", "x" * 256]
    for name in names:
        r = await api.post(url() + "/attributes", json={"key": name, "value": name}, headers=WRITER)
        assert r.status_code == 204, name
    assert (await get(api))["context"] == {n: n for n in names}
    for name in names:
        r = await api.delete(url() + "/attributes/" + quote(name, safe=""), headers=WRITER)
        assert r.status_code == 204, name
    assert (await get(api))["context"] == {}


async def test_attributes_on_a_missing_context(api: httpx.AsyncClient) -> None:
    r = await api.post(url("nope") + "/attributes", json={"key": "k", "value": "v"}, headers=WRITER)
    assert assert_error(r, 404)["sessionId"] == "nope"
    r = await api.delete(url("nope") + "/attributes/k", headers=WRITER)
    assert assert_error(r, 404)["sessionId"] == "nope"
    assert_error(await api.get(url("nope"), headers=WRITER), 404)


async def test_bad_attribute_bodies(api: httpx.AsyncClient) -> None:
    await create(api)
    cases: list[dict[str, Any]] = [
        {"json": {"key": "k"}},
        {"json": {"value": "v"}},
        {"json": {"key": 5, "value": "v"}},
        {"json": {"key": "", "value": "v"}},
        {"json": {"key": "a\nb", "value": "v"}},
        {"json": {"key": "x" * 257, "value": "v"}},
        {"json": [{"key": "k", "value": "v"}]},
        {"content": b"{"},
    ]
    for kwargs in cases:
        assert_error(await api.post(url() + "/attributes", headers=WRITER, **kwargs), 400)
    assert "context" not in await get(api) and await version(api) == 1


async def test_api_keys_and_scopes(api: httpx.AsyncClient) -> None:
    await create(api)
    body = {"siteCode": "x", "metadata": {"version": 1}}
    assert_error(await api.get(url()), 401)
    assert_error(await api.get(url(), headers=bearer("wrong")), 401)
    # a customer token is no API key
    assert_error(await api.get(url(), headers=bearer(token())), 401)
    assert (await api.get(url(), headers=key("reader"))).status_code == 200
    assert_error(await api.put(url(), json=body, headers=key("reader")), 403)
    assert_error(await api.post(url() + "/attributes", json={"key": "k", "value": 1}, headers=key("reader")), 403)
    assert_error(await api.delete(url() + "/attributes/k", headers=key("reader")), 403)
    assert_error(await api.get(url(tenant=OTHER), headers=WRITER), 403)
    # the vendor's OAuth scope names, old and new spelling, are read and write
    for name in ["manage", "manage-old"]:
        v = await version(api)
        assert (await api.get(url(), headers=key(name))).status_code == 200
        r = await api.put(url(), json={"siteCode": name, "metadata": {"version": v}}, headers=key(name))
        assert r.status_code == 204
        assert (
            await api.post(url() + "/attributes", json={"key": name, "value": 1}, headers=key(name))
        ).status_code == 204
    # the other ways of sending a key work too
    assert (await api.get(url(), headers={"x-api-key": "reader-secret"})).status_code == 200


async def test_tenant_names(api: httpx.AsyncClient) -> None:
    for tenant in ["AB", "ab", "Acme", "1abc", "a" * 17, "ab-c", "ab_c", "a.bc"]:
        assert_error(await api.get(url(tenant=tenant), headers=WRITER), 400)
        assert_error(await api.get(me(tenant), headers=bearer(token(tenant=tenant))), 400)
    r = await api.get(url(tenant="a" * 16), headers=WRITER)
    assert_error(r, 403)  # a valid name, but not this key's tenant


async def test_tenant_isolation(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="acme-site")
    r = await api.put(
        url(tenant=OTHER),
        params={"upsert": "true"},
        json={"siteCode": "globex-site", "metadata": {"version": 1}},
        headers=key("globex"),
    )
    assert r.status_code == 204
    assert (await get(api))["siteCode"] == "acme-site"
    r = await api.get(url(tenant=OTHER), headers=key("globex"))
    assert r.json()["siteCode"] == "globex-site" and r.json()["metadata"]["version"] == 1
    assert_error(await api.get(url(tenant=OTHER), headers=WRITER), 403)
    # a customer token of one tenant is not valid on another
    assert_error(await api.get(me(OTHER), headers=bearer(token())), 401)
    assert (await api.get(me(OTHER), headers=bearer(token(tenant=OTHER)))).json()["siteCode"] == "globex-site"


async def test_not_visible_to_the_liveperson_face(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main")
    assert (await api.get(f"/v1/account/{T}", headers=WRITER)).json() == []
    r = await api.patch(f"/v1/account/{T}/__emporix__/s1/properties", json={"siteCode": "x"}, headers=WRITER)
    assert r.status_code == 400
    assert (await get(api))["siteCode"] == "main"


async def test_unknown_routes_and_methods(api: httpx.AsyncClient) -> None:
    assert_error(await api.delete(url(), headers=WRITER), 405)
    assert_error(await api.post(me(), headers=bearer(token())), 405)
    assert_error(await api.get(f"/session-context/{T}/contexts", headers=WRITER), 404)


# -- the saas-token rule ---------------------------------------------------------------


async def test_saas_token_for_a_customer_context(api: httpx.AsyncClient) -> None:
    body = {"customerId": "C1", "siteCode": "main", "metadata": {"version": 0}}
    upsert = {"upsert": "true"}
    refused = [
        WRITER,
        saas("", WRITER),
        saas("garbage"),
        saas(token(customer="C2")),
        saas(token()),  # anonymous
        saas(token(customer="C1", tenant=OTHER)),
        saas(token(customer="C1", expires_in=-60)),
        saas(token(customer="C1", signing_key=SECRET + "x")),
    ]
    for headers in refused:
        assert_error(await api.put(url(), params=upsert, json=body, headers=headers), 403)
    assert_error(await api.get(url(), headers=WRITER), 404)  # nothing was made
    r = await api.put(url(), params=upsert, json=body, headers=saas(token(customer="C1")))
    assert r.status_code == 204
    assert (await get(api))["customerId"] == "C1"  # reading needs no customer token

    # every PUT of C1's context needs C1's token; refused PUTs change nothing
    put = {"siteCode": "other", "metadata": {"version": 1}}
    for headers in refused:
        assert_error(await api.put(url(), json={**put, "customerId": "C1"}, headers=headers), 403)
        assert_error(await api.put(url(), json=put, headers=headers), 403)  # would drop the customer
        # also when the version is stale: the owner rule is checked first
        assert_error(await api.put(url(), json={**put, "metadata": {"version": 9}}, headers=headers), 403)
    got = await get(api)
    assert got["siteCode"] == "main" and got["metadata"]["version"] == 1
    # handing it to another customer needs a token of both: impossible
    for customer in ["C1", "C2"]:
        r = await api.put(url(), json={**put, "customerId": "C2"}, headers=saas(token(customer=customer)))
        assert_error(r, 403)
    # with C1's token (as a bare token or "Bearer ..."), the PUT goes through
    r = await api.put(url(), json={**put, "customerId": "C1"}, headers=saas(token(customer="C1")))
    assert r.status_code == 204
    assert (await get(api))["siteCode"] == "other"
    bearer_form = saas("Bearer " + token(customer="C1"))
    r = await api.put(url(), json={**put, "customerId": "C1", "metadata": {"version": 2}}, headers=bearer_form)
    assert r.status_code == 204
    # a stale version with the right token: the conflict, nothing changes
    before = await get(api)
    r = await api.put(url(), json={**put, "customerId": "C1", "siteCode": "x"}, headers=saas(token(customer="C1")))
    assert_conflict(r, "s1", 1)
    assert await get(api) == before
    # a customer token with session_id of another session still names the customer: accepted
    r = await api.put(
        url(), json={**put, "customerId": "C1", "metadata": {"version": 3}}, headers=saas(token("elsewhere", "C1"))
    )
    assert r.status_code == 204


async def test_attributes_of_a_customer_context_need_the_api_key_only(api: httpx.AsyncClient) -> None:
    """The spec declares saas-token on PUT only, and the vendor's tutorial adds an
    attribute to a logged-in customer's context with the management token."""
    await create(api, customerId="C1", siteCode="main")
    headers_tried = [WRITER, saas("garbage"), saas(token(customer="C2")), saas(token()), key("manage")]
    for n, headers in enumerate(headers_tried):
        r = await api.post(url() + "/attributes", json={"key": f"k{n}", "value": n}, headers=headers)
        assert r.status_code == 204 and r.content == b"", r.text
    got = await get(api)
    assert got["context"] == {f"k{n}": n for n in range(len(headers_tried))} and got["customerId"] == "C1"
    assert got["metadata"]["version"] == 1 + len(headers_tried)
    for n, headers in enumerate(headers_tried):
        r = await api.delete(url() + f"/attributes/k{n}", headers=headers)
        assert r.status_code == 204 and r.content == b"", r.text
    got = await get(api)
    assert got["context"] == {} and got["customerId"] == "C1"
    assert got["metadata"]["version"] == 1 + 2 * len(headers_tried)
    # the write scope is still needed, and the context stays C1's: PUT keeps the owner rule
    assert_error(await api.post(url() + "/attributes", json={"key": "k", "value": 1}, headers=key("reader")), 403)
    assert_error(await api.delete(url() + "/attributes/k", headers=key("reader")), 403)
    assert_error(await api.put(url(), json={"customerId": "C1", "metadata": {"version": 11}}, headers=WRITER), 403)
    assert await get(api) == got
    # on /me, a context that is C1's stays C1's only
    r = await api.post(me() + "/attributes", json={"key": "k", "value": 1}, headers=bearer(token("s1", "C2")))
    assert_error(r, 403)
    assert await get(api) == got


async def test_anonymous_contexts_need_no_saas_token(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="main")
    assert (await api.post(url() + "/attributes", json={"key": "k", "value": 1}, headers=WRITER)).status_code == 204
    assert (await api.delete(url() + "/attributes/k", headers=WRITER)).status_code == 204
    # an invalid saas-token is ignored when none is needed
    r = await api.put(url(), json={"siteCode": "x", "metadata": {"version": 3}}, headers=saas("garbage"))
    assert r.status_code == 204
    # giving the context to a customer needs that customer's token
    assert_error(await api.put(url(), json={"customerId": "C9", "metadata": {"version": 4}}, headers=WRITER), 403)
    r = await api.put(url(), json={"customerId": "C9", "metadata": {"version": 4}}, headers=saas(token(customer="C9")))
    assert r.status_code == 204


# -- the customer's own context ----------------------------------------------------------


async def test_me_lifecycle(api: httpx.AsyncClient) -> None:
    anonymous = bearer(token("s1"))
    r = await api.get(me(), headers=anonymous)
    assert assert_error(r, 404)["sessionId"] == "s1"
    # PATCH without upsert: no context, 404
    assert_error(await api.patch(me(), json={"siteCode": "main", "metadata": {"version": 1}}, headers=anonymous), 404)
    # the storefront sends ?upsert=true
    body = {
        "siteCode": "main",
        "currency": "EUR",
        "customerId": "ignored",
        "cartId": "ignored",
        "language": "DE",
        "context": {"a": 1, "gone": None},
        "metadata": {"version": 0},
    }
    r = await api.patch(me(), params={"upsert": "true"}, json=body, headers=anonymous)
    assert r.status_code == 204 and r.content == b""
    got = (await api.get(me(), headers=anonymous)).json()
    assert {k: v for k, v in got.items() if k != "metadata"} == {
        "sessionId": "s1",
        "siteCode": "main",
        "currency": "EUR",
        "language": "DE",
        "context": {"a": 1},
    }
    assert got["metadata"]["version"] == 1
    assert got == await get(api)  # the same context on the management side
    # merge: keys set, null removes, other fields untouched
    r = await api.patch(
        me(),
        json={"targetLocation": "AT", "context": {"b": {"x": 1}, "a": None}, "metadata": {"version": 1}},
        headers=anonymous,
    )
    assert r.status_code == 204
    got = (await api.get(me(), headers=anonymous)).json()
    assert got["context"] == {"b": {"x": 1}} and got["targetLocation"] == "AT" and got["currency"] == "EUR"
    assert got["metadata"]["version"] == 2
    # a stale version: a 404 naming it, and nothing changes
    r = await api.patch(me(), json={"currency": "USD", "metadata": {"version": 1}}, headers=anonymous)
    assert_conflict(r, "s1", 1)
    assert (await api.get(me(), headers=anonymous)).json() == got
    # attributes
    r = await api.post(me() + "/attributes", json={"key": "attr1", "value": {"deep": ["x"]}}, headers=anonymous)
    assert r.status_code == 201 and r.json() == "attr1" and r.headers["content-type"] == "application/json"
    r = await api.delete(me() + "/attributes/b", headers=anonymous)
    assert r.status_code == 204 and r.content == b""
    got = (await api.get(me(), headers=anonymous)).json()
    assert got["context"] == {"attr1": {"deep": ["x"]}} and got["metadata"]["version"] == 4


async def test_me_b2b_showcase_flow(api: httpx.AsyncClient) -> None:
    """The public storefront: GET /me/context, then PATCH ?upsert=true with
    {...context, metadata: current.metadata}."""
    headers = bearer(token("s1", "C1"))
    await create(api, siteCode="main", customerId="C1", cartId="cart-1")
    current = (await api.get(me(), headers=headers)).json()
    r = await api.patch(me(), params={"upsert": "true"}, json={**current, "currency": "USD"}, headers=headers)
    assert r.status_code == 204
    got = (await api.get(me(), headers=headers)).json()
    assert got["currency"] == "USD" and got["cartId"] == "cart-1" and got["customerId"] == "C1"
    assert got["metadata"]["version"] == current["metadata"]["version"] + 1


async def test_me_session_claims_and_owner(api: httpx.AsyncClient) -> None:
    for claim in ["sessionId", "session_id", "sid"]:
        headers = bearer(token(f"{claim}-session", claim=claim))
        r = await api.patch(
            me(), params={"upsert": "true"}, json={"siteCode": claim, "metadata": {"version": 1}}, headers=headers
        )
        assert r.status_code == 204, claim
        assert (await get(api, f"{claim}-session"))["siteCode"] == claim
    # a customer's token makes the new context the customer's
    customer = bearer(token("c-session", "C1"))
    r = await api.patch(me(), params={"upsert": "true"}, json={"metadata": {"version": 1}}, headers=customer)
    assert r.status_code == 204
    assert (await get(api, "c-session"))["customerId"] == "C1"
    # that context is C1's only: not another customer's, nor an anonymous token's of the same session
    for headers in [bearer(token("c-session")), bearer(token("c-session", "C2"))]:
        assert_error(await api.get(me(), headers=headers), 403)
        assert_error(await api.patch(me(), json={"siteCode": "x", "metadata": {"version": 1}}, headers=headers), 403)
        assert_error(await api.post(me() + "/attributes", json={"key": "k", "value": 1}, headers=headers), 403)
        assert_error(await api.delete(me() + "/attributes/k", headers=headers), 403)
    assert (await api.get(me(), headers=customer)).status_code == 200
    assert await version(api, "c-session") == 1


async def test_me_tokens(api: httpx.AsyncClient) -> None:
    await create(api)
    header, _payload, signature = token().split(".")
    unsigned = jwt.encode({"tenant": T, "sessionId": "s1"}, "", algorithm="none")
    cases: dict[str, Any] = {
        "no header": {},
        "basic": {"Authorization": "Basic abc"},
        "empty bearer": {"Authorization": "Bearer "},
        "api key": key("writer"),
        "api key header": {"x-api-key": "writer-secret"},
        "garbage": bearer("not.a.token"),
        "one part": bearer("abc"),
        "non-ascii": {"Authorization": "Bearer é".encode()},
        "alg none": bearer(unsigned),
        "alg none, no signature": bearer(unsigned.rstrip(".") + "."),
        "wrong secret": bearer(token(signing_key=SECRET + "!")),
        "tampered": bearer(f"{header}.{token('s2').split('.')[1]}.{signature}"),
        "expired": bearer(token(expires_in=-60)),
        "not yet valid": bearer(token(nbf=int(time.time()) + 600)),
        "no tenant": bearer(token(tenant=None)),
        "other tenant": bearer(token(tenant=OTHER)),
        "tenant not a string": bearer(token(tenant=5)),
        "no session": bearer(token(session=None)),
        "session not a string": bearer(token(session=None, sessionId=["s1"])),
        "session with control characters": bearer(token("s\n1")),
        "customer not a string": bearer(token(customerId={"id": 1})),
        "HS512 token": bearer(token(signing_key=SECRET + SECRET, algorithm="HS512")),
    }
    for name, headers in cases.items():
        r = await api.get(me(), headers=headers)
        assert r.status_code == 401 and r.json()["code"] == 401, name
        for method, path in [("PATCH", me()), ("POST", me() + "/attributes"), ("DELETE", me() + "/attributes/k")]:
            r = await api.request(
                method, path, json={"key": "k", "value": 1, "metadata": {"version": 1}}, headers=headers
            )
            assert r.status_code == 401, (name, method)
    assert await version(api) == 1
    # no exp claim: accepted (exp is checked when present)
    assert (await api.get(me(), headers=bearer(token(expires_in=None)))).status_code == 200
    # a numeric customerId claim is taken as text
    await create(api, "numeric", customerId="123")
    assert (await api.get(me(), headers=bearer(token("numeric", customerId=123)))).json()["customerId"] == "123"


async def test_me_bad_bodies(api: httpx.AsyncClient) -> None:
    headers = bearer(token())
    await create(api, siteCode="main")
    cases: list[dict[str, Any]] = [
        {"json": {"siteCode": "x"}},
        {"json": {"siteCode": "x", "metadata": {}}},
        {"json": {"metadata": {"version": "1"}}},
        {"json": {"context": "x", "metadata": {"version": 1}}},
        {"json": {"context": [], "metadata": {"version": 1}}},
        {"json": {"currency": 1, "metadata": {"version": 1}}},
        {"json": [{"metadata": {"version": 1}}]},
        {"content": b"nope"},
        {"json": {"metadata": {"version": 1}}, "params": {"upsert": "yes please"}},
    ]
    for kwargs in cases:
        assert_error(await api.patch(me(), headers=headers, **kwargs), 400)
    # fields PATCH does not take are ignored, whatever their type
    r = await api.patch(
        me(), json={"cartId": 5, "customerId": ["x"], "sessionId": None, "metadata": {"version": 1}}, headers=headers
    )
    assert r.status_code == 204
    got = await get(api)
    assert "cartId" not in got and "customerId" not in got and got["siteCode"] == "main"
    attribute_cases: list[dict[str, Any]] = [{"json": {"key": "k"}}, {"json": {"key": "", "value": 1}}, {"json": ["k"]}]
    for kwargs in attribute_cases:
        assert_error(await api.post(me() + "/attributes", headers=headers, **kwargs), 400)
    r = await api.post(me() + "/attributes", json={"key": "k", "value": 1}, headers=bearer(token("missing")))
    assert assert_error(r, 404)["sessionId"] == "missing"
    assert (
        assert_error(await api.delete(me() + "/attributes/k", headers=bearer(token("missing"))), 404)["sessionId"]
        == "missing"
    )


async def test_without_customer_tokens_configured(redis: Any) -> None:
    async with serve_app(redis, auth=auth(tokens=None)) as api:
        r = await api.get(me(), headers=bearer(token()))
        assert "customer_tokens" in assert_error(r, 401)["message"]
        # management works; a customer's context cannot be changed (no token can be checked)
        await create(api, siteCode="main")
        r = await api.put(
            url(), json={"customerId": "C1", "metadata": {"version": 1}}, headers=saas(token(customer="C1"))
        )
        assert "customer_tokens" in assert_error(r, 403)["message"]
        assert (
            await api.put(url(), json={"siteCode": "x", "metadata": {"version": 1}}, headers=WRITER)
        ).status_code == 204


# -- asymmetric keys and the configuration ---------------------------------------------------


def pem_public(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem_private(private: Any) -> str:
    return str(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


async def test_rs256_and_es256_tokens(redis: Any, tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other_ec = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "rsa.pem").write_text(pem_public(rsa_key))
    setups = [
        ({"algorithm": "RS256", "public_key_file": str(tmp_path / "rsa.pem")}, rsa_key, "RS256"),
        (
            {"algorithm": "ES256", "public_key": pem_public(ec_key), "issuer": "https://idp.test", "audience": "shop"},
            ec_key,
            "ES256",
        ),
    ]
    for config, private, algorithm in setups:
        extra: dict[str, Any] = {"iss": "https://idp.test", "aud": "shop"} if "issuer" in config else {}
        async with serve_app(redis, auth=auth(config)) as api:
            good = bearer(token("asym", "C1", signing_key=private, algorithm=algorithm, **extra))
            r = await api.patch(
                me(), params={"upsert": "true"}, json={"siteCode": algorithm, "metadata": {"version": 1}}, headers=good
            )
            assert r.status_code == 204, r.text
            assert (await api.get(me(), headers=good)).json()["siteCode"] == algorithm
            # the saas-token is checked with the same key
            r = await api.put(
                url("asym"),
                json={"customerId": "C1", "metadata": {"version": await version(api, "asym")}},
                headers=saas(good["Authorization"]),
            )
            assert r.status_code == 204
            refused = [
                token("asym", "C1", signing_key=other_ec, algorithm="ES256", **extra),  # another key
                forged_hs256({"tenant": T, "sessionId": "asym", "customerId": "C1", **extra}, pem_public(private)),
                token("asym", "C1", signing_key=SECRET, algorithm="HS256", **extra),
            ]
            if extra:
                refused += [
                    token("asym", "C1", signing_key=private, algorithm=algorithm, iss="https://evil.test", aud="shop"),
                    token("asym", "C1", signing_key=private, algorithm=algorithm, iss="https://idp.test", aud="other"),
                    token("asym", "C1", signing_key=private, algorithm=algorithm),
                ]
            for bad in refused:
                assert_error(await api.get(me(), headers=bearer(bad)), 401)
        await redis.flushall()


def forged_hs256(claims: dict[str, Any], secret: str) -> str:
    """An HS256 token keyed with the public key's PEM text (algorithm confusion);
    PyJWT refuses to make one, so it is made by hand."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def bad_configs(tmp_path: Path) -> list[dict[str, Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return [
        {"algorithm": "none"},
        {"algorithm": "hs256", "secret": SECRET},
        {"algorithm": "HS256"},
        {"algorithm": "HS256", "secret": ""},
        {"algorithm": "HS256", "secret": "too short"},
        {"algorithm": "HS256", "secret": SECRET, "secert": "typo"},
        {"algorithm": "HS256", "secret": SECRET, "public_key": pem_public(ec_key)},
        {"algorithm": "HS256", "secret": pem_public(rsa_key)},
        {"algorithm": "RS256", "secret": SECRET},
        {"algorithm": "RS256"},
        {"algorithm": "RS256", "public_key": "not a pem"},
        {"algorithm": "RS256", "public_key": pem_public(ec_key)},  # key of the wrong kind
        {"algorithm": "ES256", "public_key": pem_public(rsa_key)},
        {"algorithm": "RS256", "public_key": pem_private(rsa_key)},  # a private key does not belong here
        {"algorithm": "RS256", "public_key": pem_public(small_rsa)},
        {"algorithm": "RS256", "public_key_file": str(tmp_path / "missing.pem")},
        {"algorithm": "RS256", "public_key_file": "x", "public_key": pem_public(rsa_key)},
        {"algorithm": "HS256", "secret": SECRET, "leeway_s": -1},
        {"algorithm": "HS256", "secret": SECRET, "leeway_s": "5"},
        {"algorithm": "HS256", "secret": SECRET, "issuer": 5},
    ]


async def test_bad_customer_token_configs_fail_the_build(redis: Any, tmp_path: Path) -> None:
    for config in bad_configs(tmp_path):
        with pytest.raises(CustomerTokenConfigError, match=r"\[customer_tokens\]"):
            build_app(Settings(), redis=redis, auth=AuthConfig.from_document(auth(config)))
    document = auth()
    document["customer_tokens"] = "HS256"
    with pytest.raises(AuthFileError):
        build_app(Settings(), redis=redis, auth=AuthConfig.from_document(document))


def test_serve_refuses_a_bad_customer_tokens_section(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text('[customer_tokens]\nalgorithm = "HS256"\nsecret = "short"\n')
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", str(free_port()), "--auth-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "[customer_tokens]" in result.stderr and "Traceback" not in result.stderr


# -- limits, concurrency, expiry, outages ---------------------------------------------------


async def test_body_and_document_limits(redis: Any) -> None:
    async with serve_app(redis, Settings(max_body_bytes=1000, limits=Limits(max_chars=1500)), auth=auth()) as api:
        await create(api)
        r = await api.put(url(), json={"context": {"a": "x" * 2000}, "metadata": {"version": 1}}, headers=WRITER)
        assert_error(r, 413)

        async def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 200

        assert_error(await api.post(url() + "/attributes", content=chunks(), headers=WRITER), 413)
        assert_error(await api.patch(me(), content=b" " * 1001, headers=bearer(token())), 413)
        # within the body limit, but the stored context would grow too large
        for n in range(3):
            r = await api.post(url() + "/attributes", json={"key": f"k{n}", "value": "y" * 600}, headers=WRITER)
        assert_error(r, 413)
        got = await get(api)
        assert set(got["context"]) == {"k0", "k1"} and got["metadata"]["version"] == 3


async def test_twenty_concurrent_puts_with_one_version(api: httpx.AsyncClient) -> None:
    await create(api, siteCode="start")
    start = await version(api)

    async def put(n: int) -> int:
        r = await api.put(url(), json={"siteCode": f"site{n}", "metadata": {"version": start}}, headers=WRITER)
        if r.status_code == 404:
            assert_conflict(r, "s1", start)
        return r.status_code

    statuses = await asyncio.gather(*(put(n) for n in range(20)))
    assert sorted(statuses) == [204] + [404] * 19
    got = await get(api)
    assert got["metadata"]["version"] == start + 1
    assert got["siteCode"] == f"site{statuses.index(204)}"


async def test_concurrent_upserts_make_one_context(api: httpx.AsyncClient) -> None:
    async def put(n: int) -> int:
        r = await api.put(
            url("new"),
            params={"upsert": "true"},
            json={"siteCode": f"s{n}", "metadata": {"version": 1}},
            headers=WRITER,
        )
        if r.status_code == 404:
            assert_conflict(r, "new", 1)
        return r.status_code

    statuses = await asyncio.gather(*(put(n) for n in range(20)))
    # one creates it (version 1), then one of those naming version 1 updates it; the rest: conflicts
    assert sorted(statuses) == [204] * 2 + [404] * 18
    assert await version(api, "new") == 2


async def test_concurrent_attribute_changes_all_land(api: httpx.AsyncClient) -> None:
    await create(api, customerId="C1")
    headers = saas(token(customer="C1"))
    results = await asyncio.gather(
        *(api.post(url() + "/attributes", json={"key": f"k{n}", "value": n}, headers=headers) for n in range(20)),
        *(
            api.post(me() + "/attributes", json={"key": f"m{n}", "value": n}, headers=bearer(token("s1", "C1")))
            for n in range(10)
        ),
    )
    assert [r.status_code for r in results] == [204] * 20 + [201] * 10
    got = await get(api)
    assert got["context"] == {**{f"k{n}": n for n in range(20)}, **{f"m{n}": n for n in range(10)}}
    assert got["metadata"]["version"] == 31


async def test_idle_expiry(redis: Any) -> None:
    async with serve_app(redis, Settings(emporix_idle_ttl_s=1), auth=auth()) as api:
        await create(api, "kept")
        await create(api, "dropped")
        await asyncio.sleep(0.6)
        # every write refreshes the expiry
        assert (
            await api.post(url("kept") + "/attributes", json={"key": "k", "value": 1}, headers=WRITER)
        ).status_code == 204
        r = await api.patch(me(), json={"metadata": {"version": 2}}, headers=bearer(token("kept")))
        assert r.status_code == 204
        await asyncio.sleep(0.6)
        assert (await get(api, "kept"))["context"] == {"k": 1}
        assert_error(await api.get(url("dropped"), headers=WRITER), 404)
        await asyncio.sleep(1.1)
        assert_error(await api.get(url("kept"), headers=WRITER), 404)
        assert_error(await api.get(me(), headers=bearer(token("kept"))), 404)


async def test_default_idle_expiry_is_thirty_days(api: httpx.AsyncClient, redis: Any) -> None:
    await create(api)
    [name] = [k async for k in redis.scan_iter(match="ss:{acme/__emporix__/*:s:s1")]
    ttl_ms = await redis.pttl(name)
    assert 30 * 86400 * 1000 - 60_000 < ttl_ms <= 30 * 86400 * 1000


async def test_storage_unavailable_is_503() -> None:
    dead = Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with serve_app(dead, Settings(request_deadline_s=1.0), auth=auth()) as api:
            assert_error(await api.get(url(), headers=WRITER), 503)
            assert_error(
                await api.put(url(), params={"upsert": "true"}, json={"metadata": {"version": 1}}, headers=WRITER), 503
            )
            assert_error(await api.get(me(), headers=bearer(token())), 503)
            assert_error(
                await api.post(me() + "/attributes", json={"key": "k", "value": 1}, headers=bearer(token())), 503
            )
    finally:
        await dead.aclose()


async def test_odd_requests_never_fail_the_server(api: httpx.AsyncClient) -> None:
    await create(api, context={"a": 1})
    odd: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", url(), {"json": {"context": {"": 1, "\u0000": None}, "metadata": {"version": 1}}}),
        ("PUT", url(), {"json": {"metadata": {"version": 2**70}}}),
        ("PUT", url(), {"json": {"metadata": {"version": -1}}}),
        ("PUT", url(), {"content": b'{"metadata": {"version": 1e400}}'}),
        ("PUT", url(), {"content": b'{"metadata": {"version": 99999999999999999999999}}'}),
        ("PUT", url(), {"json": {"context": {"big": 2**63, "f": 1.5e300}, "metadata": {"version": 1}}}),
        ("PUT", url("%00"), {"json": {"metadata": {"version": 1}}}),
        ("PUT", url("x" * 300), {"json": {"metadata": {"version": 1}}, "params": {"upsert": "true"}}),
        ("POST", url() + "/attributes", {"json": {"key": "k", "value": {"deep": [[[[]]]]}}}),
        ("POST", url() + "/attributes", {"json": {"key": "k", "value": None}}),
        ("DELETE", url() + "/attributes/%0A", {}),
        ("DELETE", url() + "/attributes/" + "y" * 300, {}),
        ("GET", url(), {"headers": {"saas-token": "x" * 10_000}}),
        ("PATCH", me(), {"json": {"context": {"k": None}, "metadata": {"version": 1}}, "headers": bearer("." * 5000)}),
        ("PATCH", me(), {"json": {"context": {"x": {"y": None}}, "metadata": {"version": 0}}}),
    ]
    for method, path, kwargs in odd:
        headers = kwargs.pop("headers", {})
        r = await api.request(
            method,
            path,
            headers={**WRITER, **headers} if not path.startswith(me()) else {**bearer(token()), **headers},
            **kwargs,
        )
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        assert r.status_code in (200, 201, 204) or r.json()["code"] == r.status_code
    r = await api.get(url(), headers=WRITER)
    assert r.status_code == 200


def test_idle_ttl_option(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.parser().parse_args(["serve"]).emporix_idle_ttl == 30 * 24 * 3600
    assert cli.parser().parse_args(["serve", "--emporix-idle-ttl", "60"]).emporix_idle_ttl == 60
    monkeypatch.setenv("SESSIONSTORE_EMPORIX_IDLE_TTL", "0")
    assert cli.parser().parse_args(["serve"]).emporix_idle_ttl == 0
