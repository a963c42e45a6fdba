"""LivePerson's Conversation Context Service v2, operation by operation, on
every backend: the vendor's own examples (from ../shared/reference/
liveperson-ccs.md, verbatim where they are requests), every status and error,
and one store with the v1 and native APIs."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.store.core import RETENTION_13_MONTHS_S, Limits

from .conftest import OTHER_TENANT, SECRETS, TENANT, key, serve_app

pytestmark = pytest.mark.anyio

D = "/v2/context/document"
TOKEN = {"access_token": SECRETS["writer"]}
READ_TOKEN = {"access_token": SECRETS["reader"]}
V1 = f"/v1/account/{TENANT}"
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces"


def doc(**fields: Any) -> dict[str, Any]:
    return {"accountId": TENANT, "nameSpace": "myNamespace", **fields}


async def create(client: httpx.AsyncClient, body: dict[str, Any], params: Any = None) -> httpx.Response:
    return await client.post(f"{D}/create", json=body, params=TOKEN if params is None else params)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the vendor's examples ------------------------------------------------------------


async def test_the_vendors_create_read_filter_and_delete_examples(client: httpx.AsyncClient) -> None:
    # POST create, as the vendor's curl sends it (its body with our account)
    body = (
        f'{{"accountId":"{TENANT}","nameSpace":"myNamespace","sessionId":"mySessionId","ttlSeconds":3600,'
        '"payload":{"property1":100,"Property2":"abc"}}'
    )
    r = await client.post(
        f"{D}/create",
        params=TOKEN,
        content=body,
        headers={"accept": "application/json", "Content-Type": "application/json"},
    )
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert r.content == b'{"documentKey":"%s:myNamespace:mySessionId","tenantId":"%s","success":true}' % (
        TENANT.encode(),
        TENANT.encode(),
    )
    # GET the session's document: the envelope, members in the vendor's order
    r = await client.get(f"{D}/{TENANT}/myNamespace/mySessionId", params=TOKEN, headers={"accept": "application/json"})
    assert r.status_code == 200
    got = r.json()
    assert list(got) == [
        "accountId", "documentKey", "documentType", "nameSpace", "payload", "sessionId", "tenantId", "ttl"
    ]  # fmt: skip
    assert got["accountId"] == got["tenantId"] == TENANT and got["documentKey"] == f"{TENANT}:myNamespace:mySessionId"
    assert got["documentType"] == "CONTEXT" and got["nameSpace"] == "myNamespace" and got["sessionId"] == "mySessionId"
    assert got["payload"] == {"property1": 100, "Property2": "abc"}
    # ttl: the expiry instant, ISO 8601 UTC with milliseconds, an hour from now
    assert len(got["ttl"]) == len("2021-05-11T22:37:39.176Z") and got["ttl"].endswith("Z")
    left = instant(got["ttl"]) - datetime.now().astimezone()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    # POST properties: the vendor's filter, which asks for "property2" of the stored "Property2"
    r = await client.post(
        f"{D}/properties",
        params=TOKEN,
        json=doc(sessionId="mySessionId", filter=["myNamespace.property1", "myNamespace.property2"]),
    )
    assert r.status_code == 200 and r.json() == {"myNamespace.property1": 100, "myNamespace.property2": "abc"}
    # DELETE property/delete with propertyToDelete: that property goes
    r = await client.request(
        "DELETE",
        f"{D}/property/delete",
        params=TOKEN,
        json=doc(sessionId="mySessionId", propertyToDelete=["property1"]),
    )
    assert r.status_code == 200
    assert r.json() == {"documentKey": f"{TENANT}:myNamespace:mySessionId", "tenantId": TENANT, "success": True}
    r = await client.get(f"{D}/{TENANT}/myNamespace/mySessionId", params=TOKEN)
    assert r.json()["payload"] == {"Property2": "abc"}
    # DELETE delete: the whole document
    r = await client.request("DELETE", f"{D}/delete", params=TOKEN, json=doc(sessionId="mySessionId"))
    assert r.status_code == 200 and r.json()["success"] is True
    r = await client.get(f"{D}/{TENANT}/myNamespace/mySessionId", params=TOKEN)
    assert r.status_code == 404 and r.json()["code"] == 404


async def test_create_is_an_upsert(client: httpx.AsyncClient) -> None:
    await create(client, doc(sessionId="s", payload={"a": 1, "b": {"x": [1]}}))
    r = await create(client, doc(sessionId="s", payload={"b": "new", "c": None}))
    assert r.status_code == 201
    r = await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)
    assert r.json()["payload"] == {"a": 1, "b": "new", "c": None}
    # the dynamic-routing guide sends the same call with PATCH
    r = await client.patch(f"{D}/create", params=TOKEN, json=doc(sessionId="s", payload={"preferences": ["aisle"]}))
    assert r.status_code == 201
    assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["payload"]["preferences"] == ["aisle"]


async def test_the_namespace_level_document_is_v1s_default_session(client: httpx.AsyncClient) -> None:
    r = await create(client, doc(payload={"storeHours": "9-5"}))
    assert r.status_code == 201 and r.json()["documentKey"] == f"{TENANT}:myNamespace:"
    for no_session in ({"sessionId": None}, {"sessionId": ""}):
        assert (await create(client, doc(payload={"n": 1}, **no_session))).json()["documentKey"].endswith(":")
    r = await client.get(f"{D}/{TENANT}/myNamespace", params=TOKEN)
    assert r.status_code == 200
    got = r.json()
    assert "sessionId" not in got and got["documentKey"] == f"{TENANT}:myNamespace:"
    assert got["payload"] == {"storeHours": "9-5", "n": 1}
    # v1 reads it as the session __default__, and its namespace-level path
    assert (await client.get(f"{V1}/myNamespace/__default__/properties", headers=key("reader"))).json() == got[
        "payload"
    ]
    assert (await client.get(f"{V1}/myNamespace/properties/storeHours", headers=key("reader"))).json() == "9-5"
    # deleting the namespace-level document
    r = await client.request("DELETE", f"{D}/property/delete", params=TOKEN, json=doc())  # no propertyToDelete
    assert r.status_code == 200 and r.json()["documentKey"] == f"{TENANT}:myNamespace:"
    assert (await client.get(f"{D}/{TENANT}/myNamespace", params=TOKEN)).status_code == 404


async def test_missing_properties_are_left_out(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{D}/properties", params=TOKEN, json=doc(sessionId="none", filter=["myNamespace.a"]))
    assert r.status_code == 200 and r.json() == {}
    await create(client, doc(sessionId="s", payload={"a": 1, "Case": 2, "case": 3}))
    r = await client.post(
        f"{D}/properties",
        params=TOKEN,
        json=doc(sessionId="s", filter=["myNamespace.a", "myNamespace.zz", "myNamespace.case", "myNamespace.CASE"]),
    )
    # an exact name wins; one that matches two names only by case matches neither
    assert r.json() == {"myNamespace.a": 1, "myNamespace.case": 3}


async def test_deleting_what_is_not_there_is_no_error(client: httpx.AsyncClient) -> None:
    for path, body in (("property/delete", doc(sessionId="x", propertyToDelete=["p"])), ("delete", doc(sessionId="x"))):
        r = await client.request("DELETE", f"{D}/{path}", params=TOKEN, json=body)
        assert r.status_code == 200 and r.json()["success"] is True, path
    await create(client, doc(sessionId="s", payload={"a": 1}))
    r = await client.request(
        "DELETE", f"{D}/property/delete", params=TOKEN, json=doc(sessionId="s", propertyToDelete=[])
    )
    assert r.status_code == 200
    assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["payload"] == {"a": 1}
    # the last property deleted: the document is gone, as in v1
    await client.request(
        "DELETE", f"{D}/property/delete", params=TOKEN, json=doc(sessionId="s", propertyToDelete=["a"])
    )
    assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).status_code == 404


# -- one store: v2, v1 and native ----------------------------------------------------


async def test_written_through_v2_read_through_v1_and_native(client: httpx.AsyncClient) -> None:
    await create(client, doc(nameSpace="shared", sessionId="conv-1", payload={"intent": "refund", "turns": 3}))
    r = await client.get(f"{V1}/shared/conv-1/properties", headers=key("reader"))
    assert r.status_code == 200 and r.json() == {"intent": "refund", "turns": 3}
    assert (await client.get(f"{V1}/shared/conv-1/properties/intent", headers=key("reader"))).json() == "refund"
    r = await client.get(f"{NATIVE}/shared/sessions/conv-1", headers=key("reader"))
    assert r.status_code == 200 and r.json()["properties"] == {"intent": "refund", "turns": 3}


async def test_written_through_v1_and_native_read_through_v2(client: httpx.AsyncClient) -> None:
    r = await client.patch(f"{V1}/shared/conv-2/properties", json={"a": [1, 2]}, headers=key("writer"))
    assert r.status_code == 204
    r = await client.put(
        f"{NATIVE}/shared/sessions/conv-3", json={"properties": {"b": {"c": True}}}, headers=key("writer")
    )
    assert r.status_code == 201
    r = await client.get(f"{D}/{TENANT}/shared/conv-2", params=TOKEN)
    assert r.status_code == 200 and r.json()["payload"] == {"a": [1, 2]}
    r = await client.post(
        f"{D}/properties", params=TOKEN, json=doc(nameSpace="shared", sessionId="conv-3", filter=["shared.b"])
    )
    assert r.json() == {"shared.b": {"c": True}}
    # and a v2 delete is seen by both
    await client.request("DELETE", f"{D}/delete", params=TOKEN, json=doc(nameSpace="shared", sessionId="conv-3"))
    assert (await client.get(f"{NATIVE}/shared/sessions/conv-3", headers=key("reader"))).status_code == 404


# -- expiry -----------------------------------------------------------------------------


async def test_ttl_seconds_on_each_write_and_the_retention_without_it(client: httpx.AsyncClient) -> None:
    await create(client, doc(sessionId="s", ttlSeconds=1, payload={"a": 1}))
    first = (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["ttl"]
    await asyncio.sleep(0.02)
    await create(client, doc(sessionId="s", ttlSeconds=1, payload={"b": 2}))  # each write moves the expiry on
    assert instant((await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["ttl"]) > instant(first)
    await asyncio.sleep(1.3)
    assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).status_code == 404
    assert (await client.get(f"{V1}/myNamespace/s/properties", headers=key("reader"))).json() == {}
    # no ttlSeconds: the retention, 13 months by default, from this write
    await create(client, doc(sessionId="kept", payload={"a": 1}))
    got = (await client.get(f"{D}/{TENANT}/myNamespace/kept", params=TOKEN)).json()
    left = instant(got["ttl"]) - datetime.now().astimezone()
    assert timedelta(seconds=RETENTION_13_MONTHS_S - 60) < left <= timedelta(seconds=RETENTION_13_MONTHS_S)
    # a later write without ttlSeconds gives a document that had one the retention again
    await create(client, doc(sessionId="short", ttlSeconds=60, payload={"a": 1}))
    await create(client, doc(sessionId="short", payload={"a": 2}))
    got = (await client.get(f"{D}/{TENANT}/myNamespace/short", params=TOKEN)).json()
    assert instant(got["ttl"]) - datetime.now().astimezone() > timedelta(days=300)


async def test_no_retention_and_no_ttl_seconds_is_no_expiry(redis: Any) -> None:
    settings = Settings(limits=Limits(max_retention_s=0))
    async with serve_app(redis, settings) as client:
        await create(client, doc(sessionId="s", payload={"a": 1}))
        assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["ttl"] is None


async def test_too_large_is_413_and_nothing_is_stored(redis: Any) -> None:
    async with serve_app(redis, Settings(max_body_bytes=3000, limits=Limits(max_chars=1000))) as client:
        await create(client, doc(sessionId="s", payload={"a": "x"}))
        for payload in ({"big": "x" * 1000}, {"huge": "x" * 5000}):  # over the characters; over the body limit
            r = await create(client, doc(sessionId="s", payload=payload))
            assert r.status_code == 413 and r.json() == {"code": 413, "message": "document too large"}
        assert (await client.get(f"{D}/{TENANT}/myNamespace/s", params=TOKEN)).json()["payload"] == {"a": "x"}


async def test_the_vendors_limit_is_800000_characters(client: httpx.AsyncClient) -> None:
    # counted in characters, not bytes (the body, 900,000 bytes, is within --max-body-bytes)
    r = await create(client, doc(sessionId="s", payload={"p": "é" * 100_000 + "x" * 699_990}))
    assert r.status_code == 201, r.text
    r = await create(client, doc(sessionId="s", payload={"q": "x" * 100}))
    assert r.status_code == 413 and r.json()["message"] == "document too large"


# -- authentication ------------------------------------------------------------------


async def test_keys_come_as_access_token_or_bearer(client: httpx.AsyncClient) -> None:
    await create(client, doc(sessionId="s", payload={"a": 1}))
    path = f"{D}/{TENANT}/myNamespace/s"
    assert (await client.get(path, params=READ_TOKEN)).status_code == 200
    assert (await client.get(path, headers={"Authorization": f"Bearer {SECRETS['reader']}"})).status_code == 200
    r = await client.get(path)
    assert r.status_code == 401 and r.json() == {"code": 401, "message": "missing API key"}
    r = await client.get(path, params={"access_token": "nope"})
    assert r.status_code == 401 and r.json()["message"] == "unknown API key"
    # accountId must be the key's tenant, in the path and in a body
    r = await client.get(f"{D}/{OTHER_TENANT}/myNamespace/s", params=READ_TOKEN)
    assert r.status_code == 403 and r.json()["code"] == 403
    r = await create(client, {**doc(sessionId="s", payload={"a": 2}), "accountId": OTHER_TENANT})
    assert r.status_code == 403
    # a read-only key reads but does not write
    assert (
        await client.post(f"{D}/properties", params=READ_TOKEN, json=doc(sessionId="s", filter=[]))
    ).status_code == 200
    assert (await create(client, doc(sessionId="s", payload={"a": 3}), params=READ_TOKEN)).status_code == 403
    r = await client.request("DELETE", f"{D}/delete", params=READ_TOKEN, json=doc(sessionId="s"))
    assert r.status_code == 403
    assert (await client.get(path, params=READ_TOKEN)).json()["payload"] == {"a": 1}


async def test_an_unknown_key_is_refused_before_the_body_is_read(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{D}/create", params={"access_token": "nope"}, content=b"{not json")
    assert r.status_code == 401


# -- bad requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "a JSON body is required"),
        (b"{", "malformed JSON"),
        (b"[]", "invalid body"),
        (b'{"nameSpace":"n","payload":{}}', "accountId"),
        (b'{"accountId":"%s","payload":{}}' % TENANT.encode(), "nameSpace"),
        (b'{"accountId":"%s","nameSpace":"n"}' % TENANT.encode(), "payload"),
        (b'{"accountId":"%s","nameSpace":"n","payload":[1]}' % TENANT.encode(), "payload"),
        (b'{"accountId":"%s","nameSpace":"n","payload":{},"ttlSeconds":0}' % TENANT.encode(), "ttlSeconds"),
        (b'{"accountId":"%s","nameSpace":"n","payload":{},"ttlSeconds":"60"}' % TENANT.encode(), "ttlSeconds"),
        (b'{"accountId":"%s","nameSpace":"n","payload":{},"sessionId":7}' % TENANT.encode(), "sessionId"),
        (b'{"accountId":"%s","nameSpace":"my-ns","payload":{}}' % TENANT.encode(), "nameSpace"),
        (b'{"accountId":"%s","nameSpace":"","payload":{}}' % TENANT.encode(), "nameSpace"),
        (b'{"accountId":"%s","nameSpace":"n","payload":{"":1}}' % TENANT.encode(), "property name"),
        (b'{"accountId":"%s","nameSpace":"n","payload":{},"sessionId":"a\\nb"}' % TENANT.encode(), "sessionId"),
        (b'{"accountId":"%s","nameSpace":"__emporix__","payload":{}}' % TENANT.encode(), "reserved"),
    ],
)
async def test_a_bad_create_is_400_and_stores_nothing(client: httpx.AsyncClient, body: bytes, words: str) -> None:
    r = await client.post(f"{D}/create", params=TOKEN, content=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400 and words in r.json()["message"]
    assert (await client.get(V1, headers=key("admin"))).json() == []


@pytest.mark.parametrize("name", ["consumer", "operational", "conversation", "faas", "custom", "sde", "Consumer"])
async def test_reserved_namespaces_are_refused(client: httpx.AsyncClient, name: str) -> None:
    r = await create(client, doc(nameSpace=name, payload={"a": 1}))
    assert r.status_code == 400 and "reserved" in r.json()["message"]
    r = await client.request("DELETE", f"{D}/delete", params=TOKEN, json=doc(nameSpace=name))
    assert r.status_code == 400
    # reading one is no error: there is nothing in it
    assert (await client.get(f"{D}/{TENANT}/{name}", params=TOKEN)).status_code == 404


async def test_bad_filters_and_names(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{D}/properties", params=TOKEN, json=doc(filter=["otherNamespace.a"]))
    assert r.status_code == 400 and "myNamespace.<property>" in r.json()["message"]
    r = await client.post(f"{D}/properties", params=TOKEN, json=doc(filter="myNamespace.a"))
    assert r.status_code == 400
    r = await client.post(f"{D}/properties", params=TOKEN, json=doc())
    assert r.status_code == 400 and "filter" in r.json()["message"]
    r = await client.post(f"{D}/properties", params=TOKEN, json=doc(filter=["myNamespace.a"] * 1001))
    assert r.status_code == 400
    r = await client.request("DELETE", f"{D}/property/delete", params=TOKEN, json=doc(propertyToDelete="a"))
    assert r.status_code == 400
    assert (await client.get(f"{D}/{TENANT}/my.ns", params=TOKEN)).status_code == 400
    assert (await client.get(f"{D}/bad%20account/ns", params=TOKEN)).status_code == 400


async def test_wrong_methods_and_paths_answer_in_the_faces_format(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{D}/create", params=TOKEN)
    assert r.status_code == 405 and r.json()["code"] == 405
    r = await client.put(f"{D}/{TENANT}/myNamespace/s", params=TOKEN, json={})
    assert r.status_code == 405
    r = await client.get(f"{D}/{TENANT}/a/b/c", params=TOKEN)
    assert r.status_code == 404 and r.json()["code"] == 404


async def test_the_access_log_names_the_access_tokens_key(redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="sessionstore.access")
    async with serve_app(redis, Settings(access_log=True)) as client:
        await client.get(f"{D}/{TENANT}/myNamespace/s", params=READ_TOKEN)
        await client.get(f"{D}/{TENANT}/myNamespace/s", params={"access_token": "wrong-secret"})
    lines = [r.getMessage() for r in caplog.records if r.name == "sessionstore.access"]
    assert "key=reader" in lines[0] and "key=unknown" in lines[1]
    assert all(SECRETS["reader"] not in line and "wrong-secret" not in line for line in lines)
    assert json.dumps(lines)  # printable
