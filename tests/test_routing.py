"""service/routing.py: the scope an operation declares is the one enforced;
routing.Routes finds the route Starlette's own Router would; web.query reads
a query string as Starlette does."""

from __future__ import annotations

from typing import Any

import fakeredis
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Router

from service.app import App, build_app
from service.auth import AuthConfig
from service.config import Settings
from service.operations import Face, operation
from service.routing import Endpoint, build_routes
from service.store.core import SessionStore
from service.web import Context, JsonResponse, query

from .conftest import SECRETS, auth_document

pytestmark = pytest.mark.anyio
FACE = Face("test", "routes of a test")


async def test_the_declared_scope_is_the_one_checked() -> None:
    ctx_holder: list[Context] = []

    @operation("needs write", scope="write")
    async def writes(request: Request) -> Response:
        ctx_holder[0].require(request, "739483")
        return JsonResponse(b"{}")

    @operation("declares read, checks nothing", scope="read")
    async def forgets(request: Request) -> Response:
        return JsonResponse(b"{}")

    auth = AuthConfig.from_document(auth_document())
    ctx = Context(Settings(), SessionStore(fakeredis.FakeAsyncRedis()), auth)
    ctx_holder.append(ctx)
    app = App(build_routes([("/w", "POST", writes), ("/f", "GET", forgets)], FACE, ctx))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/w", headers={"X-API-Key": SECRETS["writer"]})).status_code == 200
        r = await client.post("/w", headers={"X-API-Key": SECRETS["reader"]})
        assert r.status_code == 403 and r.json() == {"code": 403, "message": "this API key lacks the 'write' scope"}
        assert (await client.post("/w")).json() == {"code": 401, "message": "missing API key"}
        assert (await client.get("/w")).status_code == 405
        # a handler that declares a scope and answers without checking it is a bug, not an open door
        assert (await client.get("/f", headers={"X-API-Key": SECRETS["reader"]})).status_code == 500


PATHS = [
    "/v1/account/a/ns/s/properties",
    "/v1/brand/a/ns/s/properties",
    "/v1/account/a/ns/properties/properties",
    "/v1/account/a/namespace/properties/session",
    "/v1/account/a",
    "/v1/nothing",
    "/api/v1/tenants/t/namespaces/n/sessions/s",
    "/api/v1/tenants/t/namespaces/n/sessions/a:touch",
    "/api/v1/tenants/t/namespaces/n/sessions:batchGet",
    "/api/v1/tenants/t/customers/c/export",
    "/api/v1/tenants/t/unknown",
    "/api/v1/whoami",
    "/v2/context/document/a/n/s",
    "/session-context/t/context/c/attributes/a/b",
    "/sessions/new",
    "/healthz",
    "/docs/swagger-ui.css",
    "/console",
    "/",
    "/nowhere/at/all",
]


def chosen(routes: list[Any], scope: dict[str, Any]) -> Any:
    """The route a Starlette router hands the request to: the first full match, else the first partial one."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_routes_finds_the_route_starlettes_router_finds(method: str) -> None:
    app = build_app(Settings(), redis=fakeredis.FakeAsyncRedis())
    starlette = Router(app.routes)
    for path in PATHS:
        scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        expected = chosen(starlette.routes, scope)
        candidates = app.router.candidates.get(path.split("/")[1], app.router.anywhere)  # type: ignore[attr-defined]
        assert chosen(candidates, scope) is expected, (method, path)
        assert expected is None or isinstance(expected, Endpoint) or type(expected).__name__ == "Unserved"


@pytest.mark.parametrize(
    "raw", [b"", b"a=1", b"a=1&a=2", b"a", b"a=", b"b=1&a=x&c", b"a=%41", b"a=b+c", b"a=\xe9", b"&&a=1&", b"a==1", b"A=1"]
)
def test_query_reads_as_starlette_does(raw: bytes) -> None:
    request = Request({"type": "http", "query_string": raw, "headers": []})
    assert query(request, "a") == request.query_params.get("a")
