"""/openapi.json (valid OpenAPI 3.1, every route of every face in it, schemas
that real answers validate against) and the /docs page with its files."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import fakeredis
import httpx
import msgspec
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.routing import BaseRoute

from service.app import FACES
from service.config import Settings
from service.faces import native_wire
from service.openapi import REF, route_methods, undocumented
from service.store.core import SessionStore
from service.web import Context

from .conftest import TENANT, key, serve_app

pytestmark = pytest.mark.anyio

READER, WRITER, ADMIN = key("reader"), key("writer"), key("admin")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app on the embedded store: the document does not depend on the backend."""
    async with serve_app(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())) as c:
        yield c


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()  # type: ignore[no-any-return]


def face_routes(face: ModuleType) -> list[BaseRoute]:
    store = SessionStore(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    return face.routes(Context(Settings(), store, None))  # type: ignore[no-any-return]


async def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any error
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("face", FACES, ids=lambda face: face.__name__.rsplit(".", 1)[-1])
async def test_every_route_of_every_face_is_in_the_document(doc: dict[str, Any], face: ModuleType) -> None:
    found = list(route_methods(face_routes(face)))
    assert found, "the face has no routes"
    assert undocumented(face_routes(face)) == [], "declare these with service.openapi (see its docstring)"
    missing = [f"{r.method} {r.path}" for r in found if r.method.lower() not in doc["paths"].get(r.path, {})]
    assert missing == []


async def test_the_document_names_only_routes_of_the_app(client: httpx.AsyncClient, doc: dict[str, Any]) -> None:
    served = {(r.path, r.method.lower()) for face in FACES for r in route_methods(face_routes(face))}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented <= served


async def test_schemas_are_the_code_types(doc: dict[str, Any]) -> None:
    _, components = msgspec.json.schema_components(
        [native_wire.Session, native_wire.SessionPatch, native_wire.Problem, native_wire.ChangeEvent], ref_template=REF
    )
    for name, schema in components.items():
        assert doc["components"]["schemas"][name] == schema, name
    patch = doc["paths"]["/api/v1/tenants/{tenant}/namespaces/{namespace}/sessions/{sessionId}"]["patch"]
    assert list(patch["requestBody"]["content"]) == ["application/merge-patch+json"]
    assert patch["responses"]["412"]["content"]["application/problem+json"]["schema"] == {
        "$ref": REF.format(name="Problem")
    }
    events = doc["paths"]["/api/v1/tenants/{tenant}/namespaces/{namespace}/sessions/{sessionId}/events"]["get"]
    stream = events["responses"]["200"]["content"]["text/event-stream"]
    assert stream["x-event-data"] == {"$ref": REF.format(name="ChangeEvent")}
    assert events["security"] == [{"apiKey": ["read"]}, {"mavenApiKey": ["read"]}, {"bearer": ["read"]}]


def operation_for(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The documented operation serving ``method path`` (the most specific template)."""
    candidates = []
    for template, ops in doc["paths"].items():
        if method.lower() not in ops:
            continue
        pattern = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"({[^}]+})", template)
        )
        if re.fullmatch(pattern, path):
            candidates.append((len(re.sub(r"{[^}]+}", "", template)), template))
    assert candidates, f"no documented operation for {method} {path}"
    return doc["paths"][max(candidates)[1]][method.lower()]  # type: ignore[no-any-return]


async def test_answers_validate_against_their_documented_schemas(
    client: httpx.AsyncClient, doc: dict[str, Any]
) -> None:
    s = f"/api/v1/tenants/{TENANT}/namespaces/ns/sessions"
    merge = {**WRITER, "Content-Type": "application/merge-patch+json"}
    lp = f"/v1/account/{TENANT}"
    calls: list[tuple[str, str, dict[str, Any], int]] = [
        ("PUT", f"{s}/a", {"json": {"properties": {"x": {"y": [1, None]}, "n": 1}}, "headers": WRITER}, 201),
        ("PUT", f"{s}/a", {"json": {"properties": {"x": 1}}, "headers": WRITER}, 200),
        ("PATCH", f"{s}/a", {"content": b'{"properties": {"y": 2}}', "headers": merge}, 200),
        ("PATCH", f"{s}/a", {"json": {}, "headers": WRITER}, 415),
        ("PUT", f"{s}/a", {"json": {"properties": {}}, "headers": {**WRITER, "If-Match": '"1"'}}, 412),
        ("GET", f"{s}/a", {"headers": READER}, 200),
        ("GET", f"{s}/zz", {"headers": READER}, 404),
        ("GET", f"{s}/a", {"headers": {}}, 401),
        ("PUT", f"{s}/a", {"json": {"properties": {}}, "headers": READER}, 403),
        ("GET", s, {"headers": READER}, 200),
        ("GET", s, {"headers": READER, "params": {"cursor": "bad"}}, 400),
        ("POST", f"{s}:batchGet", {"json": {"sessionIds": ["a", "b"]}, "headers": READER}, 200),
        ("POST", f"{s}/a/properties/c:increment", {"json": {"by": 2.5}, "headers": WRITER}, 200),
        ("POST", f"{s}/a/properties/x:increment", {"json": {"by": 1}, "headers": WRITER}, 200),
        ("PUT", f"{s}/a/properties/t", {"json": "text", "headers": WRITER}, 204),
        ("POST", f"{s}/a/properties/t:increment", {"json": {"by": 1}, "headers": WRITER}, 409),
        ("GET", f"{s}/a/properties/t", {"headers": READER}, 200),
        ("POST", lp, {"json": {"name": "ns"}, "params": {"ttlSecond": 60}, "headers": ADMIN}, 204),
        ("GET", lp, {"headers": ADMIN}, 200),
        ("PATCH", f"{lp}/ns/s/properties", {"json": {"a": {"b": 1}}, "headers": WRITER}, 204),
        ("GET", f"{lp}/ns/s/properties", {"headers": WRITER}, 200),
        ("GET", f"{lp}/ns/s/properties/a", {"headers": WRITER}, 200),
        ("GET", f"{lp}/ns/s/properties/zz", {"headers": WRITER}, 404),
        ("GET", f"{lp}/ns/session-ids", {"headers": WRITER}, 200),
        ("GET", f"{lp}/ns/session-properties", {"headers": WRITER}, 200),
        (
            "POST",
            f"{lp}/namespace/ns/session",
            {"json": {"sessionId": "s"}, "params": {"ttlSecond": 9}, "headers": ADMIN},
            204,
        ),
        ("GET", f"{lp}/namespace/ns/session", {"headers": ADMIN}, 200),
        ("POST", lp, {"json": {"nom": "x"}, "headers": ADMIN}, 400),
        ("GET", "/healthz", {}, 200),
        ("GET", "/readyz", {}, 200),
        ("GET", "/openapi.json", {}, 200),
    ]
    for method, path, kwargs, status in calls:
        r = await client.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.text)
        answer = operation_for(doc, method, path)["responses"].get(str(status))
        assert answer is not None, f"{method} {path}: {status} is not documented"
        content = answer.get("content")
        if not content:
            assert r.content == b"", (method, path)
            continue
        media_type = r.headers["content-type"].split(";")[0]
        assert media_type in content, (method, path, media_type, list(content))
        schema = {**content[media_type]["schema"], "components": doc["components"]}
        OAS31Validator(schema).validate(r.json())
        for header in answer.get("headers", {}):
            assert header.lower() in r.headers, (method, path, header)


async def test_the_document_needs_no_api_key(doc: dict[str, Any]) -> None:
    assert doc["paths"]["/openapi.json"]["get"].get("security") is None
    assert "X-API-Key" in str(doc["components"]["securitySchemes"])


async def test_docs_page_loads_everything_from_the_service(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert len(links) >= 3
    scripts = []
    for link in links:
        assert link.startswith("/docs/"), link  # nothing from elsewhere
        asset = await client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 0, link
        if link.endswith(".js"):
            assert asset.headers["content-type"].startswith("text/javascript")
            scripts.append(asset.text)
        elif link.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")
            assert "url(http" not in asset.text
    assert any("SwaggerUIBundle" in js and len(js) > 100_000 for js in scripts)  # Swagger UI itself
    starter = next(js for js in scripts if '"/openapi.json"' in js)
    assert "validatorUrl: null" in starter  # no badge from the validator's site
    assert (await client.get("/docs/nothing.js")).status_code == 404
    assert (await client.get("/docs/..%2Fpyproject.toml")).status_code == 404
