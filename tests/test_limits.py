"""Every limit of README's "Limits" table, at its default and one past it, on
every API face where it applies: the one past is a clear 4xx in the face's
error format and stores nothing; the default itself is accepted. Plus: each
limit is a setting (a smaller one is what is enforced)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from service.config import Settings

from .conftest import SECRETS, serve_app

pytestmark = pytest.mark.anyio

KEY = {"X-API-Key": SECRETS["all"]}  # every tenant, every scope
T = "acme"  # fits every face's tenant pattern (Emporix: ^[a-z][a-z0-9]+$)
LP = f"/v1/account/{T}"
NATIVE = f"/api/v1/tenants/{T}/namespaces/ns/sessions"
EMPORIX = f"/session-context/{T}/context"
MERGE = {**KEY, "Content-Type": "application/merge-patch+json"}


def nested(levels: int) -> Any:
    """A JSON value of ``levels`` nested arrays: nested(2) == [[0]]."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def refused(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body.get("message") or body.get("detail") or body.get("description"), body


async def stored(api: httpx.AsyncClient) -> dict[str, Any]:
    """What each face shows of its test session (tenant T): to check nothing was stored."""
    lp = (await api.get(f"{LP}/ns/s/properties", headers=KEY)).json()
    native = await api.get(f"{NATIVE}/s", headers=KEY)
    emporix = await api.get(f"{EMPORIX}/s", headers=KEY)
    return {
        "lp": lp,
        "native": native.json()["properties"] if native.status_code == 200 else None,
        "emporix": emporix.json() if emporix.status_code == 200 else None,
    }


async def test_the_limits_are_settings_with_the_documented_defaults() -> None:
    settings = Settings()
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.limits.max_chars == 800_000
    assert settings.limits.max_properties == 10_000
    assert settings.max_name_chars == 256
    assert settings.max_json_depth == 64
    assert settings.max_list_items == 1000


async def test_json_nesting_64_levels_on_every_face(redis: Any) -> None:
    async with serve_app(redis) as api:
        empty = await stored(api)

        def attempts(levels: int) -> list[tuple[Callable[[], Awaitable[httpx.Response]], int]]:
            return [
                # the body itself is the first level
                (lambda: api.put(f"{LP}/ns/s/properties/p", content=orjson.dumps(nested(levels)), headers=KEY), 204),
                (lambda: api.patch(f"{LP}/ns/s/properties", content=orjson.dumps({"p": nested(levels - 1)}), headers=KEY), 204),
                (lambda: api.put(f"{NATIVE}/s/properties/p", content=orjson.dumps(nested(levels)), headers=KEY), 204),
                (lambda: api.put(f"{NATIVE}/s", content=orjson.dumps({"properties": {"p": nested(levels - 2)}}), headers=KEY), 201),
                (lambda: api.patch(f"{NATIVE}/s2", content=orjson.dumps({"properties": {"p": nested(levels - 2)}}), headers=MERGE), 201),
                (lambda: api.put(f"{EMPORIX}/s?upsert=true", content=orjson.dumps(
                    {"context": {"p": nested(levels - 2)}, "metadata": {"version": 1}}), headers=KEY), 204),
                (lambda: api.post("/sessions/g", params={"tenantId": T}, content=orjson.dumps(
                    {"visitId": "v", "extra": nested(levels - 1)}), headers=KEY), 200),
            ]  # fmt: skip
        for levels, ok in ((64, True), (65, False)):
            for call, _status in attempts(levels):
                r = await call()
                if ok:
                    assert r.status_code < 300, (levels, r.request.url, r.text)
                else:
                    refused(r, 400)
                    assert "nested deeper than 64" in r.text, r.text
            if ok:  # start again from nothing, for the refusals
                await api.delete(f"{LP}/ns", headers=KEY)
                await api.delete(f"{EMPORIX}/s/attributes/p", headers=KEY)
                await redis.flushall()
        assert await stored(api) == empty
        # attributes (Emporix) nest one level below the body
        await api.put(f"{EMPORIX}/s?upsert=true", json={"metadata": {"version": 1}}, headers=KEY)
        r = await api.post(f"{EMPORIX}/s/attributes", json={"key": "a", "value": nested(63)}, headers=KEY)
        assert r.status_code == 204, r.text
        refused(await api.post(f"{EMPORIX}/s/attributes", json={"key": "b", "value": nested(64)}, headers=KEY), 400)
        assert set((await api.get(f"{EMPORIX}/s", headers=KEY)).json().get("context", {})) == {"a"}


async def test_json_nesting_is_a_setting(redis: Any) -> None:
    async with serve_app(redis, Settings(max_json_depth=3)) as api:
        assert (await api.put(f"{LP}/ns/s/properties/p", json=nested(3), headers=KEY)).status_code == 204
        refused(await api.put(f"{LP}/ns/s/properties/q", json=nested(4), headers=KEY), 400)
        refused(await api.put(f"{NATIVE}/s/properties/q", json=nested(4), headers=KEY), 400)
        assert (await api.get(f"{LP}/ns/s/properties", headers=KEY)).json() == {"p": nested(3)}


NAME_CASES = [
    # (what, make a request with this name) -> the request; the 256-character name must be accepted
    ("LP tenant", lambda api, n: api.put(f"/v1/account/{n}/ns/s/properties/p", json=1, headers=KEY)),
    ("LP namespace", lambda api, n: api.put(f"{LP}/{n}/s/properties/p", json=1, headers=KEY)),
    ("LP session", lambda api, n: api.put(f"{LP}/ns/{n}/properties/p", json=1, headers=KEY)),
    ("LP property", lambda api, n: api.put(f"{LP}/ns/s/properties/{n}", json=1, headers=KEY)),
    ("LP property in a body", lambda api, n: api.patch(f"{LP}/ns/s/properties", json={n: 1}, headers=KEY)),
    ("native tenant", lambda api, n: api.put(f"/api/v1/tenants/{n}/namespaces/ns/sessions/s/properties/p", json=1, headers=KEY)),
    ("native namespace", lambda api, n: api.put(f"/api/v1/tenants/{T}/namespaces/{n}/sessions/s/properties/p", json=1, headers=KEY)),
    ("native session", lambda api, n: api.put(f"{NATIVE}/{n}/properties/p", json=1, headers=KEY)),
    ("native property", lambda api, n: api.put(f"{NATIVE}/s/properties/{n}", json=1, headers=KEY)),
    ("native property in a body", lambda api, n: api.put(f"{NATIVE}/s", json={"properties": {n: 1}}, headers=KEY)),
    ("Emporix session", lambda api, n: api.put(f"{EMPORIX}/{n}?upsert=true", json={"metadata": {"version": 1}}, headers=KEY)),
    ("Emporix attribute", lambda api, n: api.post(f"{EMPORIX}/s/attributes", json={"key": n, "value": 1}, headers=KEY)),
    ("Genesys session", lambda api, n: api.post(f"/sessions/{n}", params={"tenantId": T}, headers=KEY)),
    ("Genesys tenant", lambda api, n: api.post("/sessions/g", params={"tenantId": n}, headers=KEY)),
]  # fmt: skip


@pytest.mark.parametrize("what, call", NAME_CASES, ids=[c[0] for c in NAME_CASES])
async def test_names_of_256_characters(redis: Any, what: str, call: Any) -> None:
    async with serve_app(redis) as api:
        await api.put(f"{EMPORIX}/s?upsert=true", json={"metadata": {"version": 1}}, headers=KEY)
        before = await stored(api)
        refused(await call(api, "n" * 257), 400)
        assert await stored(api) == before
        r = await call(api, "n" * 256)
        assert r.status_code < 300, (what, r.status_code, r.text)


async def test_name_length_is_a_setting(redis: Any) -> None:
    async with serve_app(redis, Settings(max_name_chars=5)) as api:
        assert (await api.put(f"{LP}/ns/sssss/properties/p", json=1, headers=KEY)).status_code == 204
        refused(await api.put(f"{LP}/ns/ssssss/properties/p", json=1, headers=KEY), 400)
        refused(await api.put(f"{NATIVE}/ssssss/properties/p", json=1, headers=KEY), 400)


async def test_include_and_batch_sizes_of_1000(redis: Any) -> None:
    async with serve_app(redis) as api:
        await api.patch(f"{LP}/ns/s/properties", json={"n1": 1, "n999": 2}, headers=KEY)
        names = [f"n{i}" for i in range(1000)]
        r = await api.get(f"{LP}/ns/s/properties", params={"include": ",".join(names)}, headers=KEY)
        assert r.status_code == 200 and r.json() == {"n1": 1, "n999": 2}
        r = await api.get(f"{LP}/ns/s/properties", params={"include": ",".join([*names, "n1000"])}, headers=KEY)
        refused(r, 400)

        await api.put(f"{NATIVE}/s1", json={"properties": {"a": 1}}, headers=KEY)
        ids = [f"s{i}" for i in range(1000)]
        r = await api.post(f"{NATIVE}:batchGet", json={"sessionIds": ids}, headers=KEY)
        assert r.status_code == 200 and [s["sessionId"] for s in r.json()["sessions"]] == ["s1"]
        assert len(r.json()["missing"]) == 999
        refused(await api.post(f"{NATIVE}:batchGet", json={"sessionIds": [*ids, "s1000"]}, headers=KEY), 400)
    async with serve_app(redis, Settings(max_list_items=1500)) as api:  # a setting: more than the default
        ids = [f"s{i}" for i in range(1500)]
        assert (await api.post(f"{NATIVE}:batchGet", json={"sessionIds": ids}, headers=KEY)).status_code == 200
        refused(await api.post(f"{NATIVE}:batchGet", json={"sessionIds": [*ids, "x"]}, headers=KEY), 400)
        names = [f"n{i}" for i in range(1500)]
        r = await api.get(f"{LP}/ns/s/properties", params={"include": ",".join(names)}, headers=KEY)
        assert r.status_code == 200


async def test_10000_properties_per_session(redis: Any) -> None:
    async with serve_app(redis) as api:
        many = {f"p{i}": i for i in range(10_000)}
        r = await api.put(f"{NATIVE}/s", json={"properties": many}, headers=KEY)
        assert r.status_code == 201
        refused(await api.put(f"{NATIVE}/s/properties/one-more", json=1, headers=KEY), 413)
        refused(await api.patch(f"{LP}/ns/s/properties", json={"one-more": 1}, headers=KEY), 413)
        # a write that replaces, or removes, is still allowed at the limit
        assert (await api.put(f"{LP}/ns/s/properties/p0", json="x", headers=KEY)).status_code == 204
        body = (await api.get(f"{NATIVE}/s", headers=KEY)).json()
        assert len(body["properties"]) == 10_000 and "one-more" not in body["properties"]
        # one over, all at once: nothing stored
        refused(await api.put(f"{NATIVE}/t", json={"properties": {**many, "x": 1}}, headers=KEY), 413)
        refused(await api.patch(f"{LP}/ns/t/properties", json={**many, "x": 1}, headers=KEY), 413)
        assert (await api.get(f"{NATIVE}/t", headers=KEY)).status_code == 404
        assert (await api.get(f"{LP}/ns/t/properties", headers=KEY)).json() == {}


async def test_800000_characters_per_session(redis: Any) -> None:
    # characters of names and values, as JSON text: the name "p", the value's two quotes
    fits = "x" * (800_000 - 1 - 2)
    async with serve_app(redis) as api:
        for face, put, get in [
            ("lp", lambda v: api.put(f"{LP}/ns/s/properties/p", json=v, headers=KEY),
             lambda: api.get(f"{LP}/ns/s/properties", headers=KEY)),
            ("native", lambda v: api.put(f"{NATIVE}/s/properties/p", json=v, headers=KEY),
             lambda: api.get(f"{NATIVE}/s", headers=KEY)),
        ]:  # fmt: skip
            refused(await put(fits + "y"), 413)
            r = await get()
            assert r.status_code in (200, 404) and "p" not in (r.json() if face == "lp" else {}), face
            assert (await put(fits)).status_code == 204, face
            refused(await put(fits + "y"), 413)
        # Emporix: the context is one property, "context" (its JSON text)
        await api.put(f"{EMPORIX}/s?upsert=true", json={"metadata": {"version": 1}}, headers=KEY)
        r = await api.post(f"{EMPORIX}/s/attributes", json={"key": "a", "value": "x" * 800_000}, headers=KEY)
        refused(r, 413)
        assert "context" not in (await api.get(f"{EMPORIX}/s", headers=KEY)).json()


async def test_body_of_1_mib_on_every_face(redis: Any) -> None:
    over = b" " * (1024 * 1024 + 1)
    async with serve_app(redis) as api:
        before = await stored(api)
        for method, path, headers in [
            ("PUT", f"{LP}/ns/s/properties/p", KEY),
            ("PATCH", f"{LP}/ns/s/properties", KEY),
            ("PUT", f"{NATIVE}/s", KEY),
            ("PATCH", f"{NATIVE}/s", MERGE),
            ("POST", f"{NATIVE}:batchGet", KEY),
            ("PUT", f"{EMPORIX}/s?upsert=true", KEY),
            ("POST", f"{EMPORIX}/s/attributes", KEY),
            ("POST", f"/sessions/g?tenantId={T}", KEY),
            ("PUT", f"/sessions/new?tenantId={T}", KEY),
        ]:
            refused(await api.request(method, path, content=over, headers=headers), 413)
        assert await stored(api) == before
        # exactly 1 MiB is within the limit (blanks around a small JSON value)
        exact = b"1" + b" " * (1024 * 1024 - 1)
        assert (await api.put(f"{LP}/ns/s/properties/p", content=exact, headers=KEY)).status_code == 204
        assert (await api.put(f"{NATIVE}/s/properties/p", content=exact, headers=KEY)).status_code == 204
