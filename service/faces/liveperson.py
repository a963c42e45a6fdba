"""The LivePerson Maven Context Session Store API (v1), over the storage core.

The account id is the tenant. Namespace-level property paths are the session
``__default__``, as the vendor documents. ``/v1/brand/...`` is the same API
(the app rewrites it to ``/v1/account/...``), and a trailing slash is ignored.
Every error is JSON ``{"code": <status>, "message": "..."}``; the vendor's own
client reads ``message``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..store.core import Changes, Status, WriteResult
from ..web import ApiError, Context, guarded, int_param, iso8601, json_response, object_of_raw, raw_json_response

DEFAULT_SESSION = "__default__"
RESERVED_PREFIX = "__"  # namespaces of the other faces (__emporix__, __genesys__)
MAX_TTL_S = 10 * 366 * 24 * 3600
NO_CONTENT = 204


def render_error(error: ApiError) -> Response:
    return json_response({"code": error.status, "message": error.message, **error.extra}, error.status)


def no_content() -> Response:
    return Response(status_code=NO_CONTENT)


class LivePersonFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # -- path parts ----------------------------------------------------------

    def _tenant(self, request: Request) -> str:
        return self.ctx.name(request.path_params["account"], "account id")

    def _namespace(self, request: Request) -> str:
        name = self.ctx.name(request.path_params["namespace"], "namespace")
        if name.startswith(RESERVED_PREFIX):
            raise ApiError(400, f"namespace names starting with {RESERVED_PREFIX} are reserved")
        return name

    def _session(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params.get("session", DEFAULT_SESSION), "session id")

    def _property(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["property"], "property name")

    def _ttl(self, request: Request) -> int | None:
        return int_param(request, "ttlSecond", None, 1, MAX_TTL_S)

    def _where(self, request: Request, scope: str) -> tuple[str, str, str]:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        session = self._session(request)
        self.ctx.require(request, tenant, scope)
        return tenant, namespace, session

    def _written(self, result: WriteResult) -> Response:
        if result.status is Status.TOO_LARGE:
            raise ApiError(413, "document too large")
        if result.status is Status.TOO_MANY:
            raise ApiError(413, f"more than {self.ctx.settings.limits.max_properties} properties in one session")
        return no_content()

    # -- namespaces ----------------------------------------------------------

    async def create_namespace(self, request: Request) -> Response:
        tenant = self._tenant(request)
        ttl = self._ttl(request)
        self.ctx.require(request, tenant, "admin")
        body = await self.ctx.json_object(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise ApiError(400, "the body needs a string 'name'")
        name = self.ctx.name(name, "namespace")
        if name.startswith(RESERVED_PREFIX):
            raise ApiError(400, f"namespace names starting with {RESERVED_PREFIX} are reserved")
        await self.store.ensure_namespace(tenant, name, ttl)
        return no_content()

    async def list_namespaces(self, request: Request) -> Response:
        tenant = self._tenant(request)
        self.ctx.require(request, tenant, "read")
        listed: list[dict[str, Any]] = []
        for ns in await self.store.list_namespaces(tenant):
            if ns.name.startswith(RESERVED_PREFIX):
                continue
            entry: dict[str, Any] = {"name": ns.name, "createdAt": iso8601(ns.created_ms)}
            if ns.ttl_s:
                entry["ttlSecond"] = ns.ttl_s
            listed.append(entry)
        return json_response(listed)

    async def delete_namespace(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        self.ctx.require(request, tenant, "admin")
        await self.store.delete_namespace(tenant, namespace)
        return no_content()

    # -- properties ----------------------------------------------------------

    async def patch_properties(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "write")
        body = await self.ctx.json_object(request)
        changes = Changes()
        for name, value in body.items():
            changes.set(self.ctx.identifier(name, "property name"), orjson.dumps(value))
        return self._written(await self.store.write(tenant, namespace, session, changes, drop_empty=True))

    async def put_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "write")
        name = self._property(request)
        value = await self.ctx.json(request)
        changes = Changes().set(name, orjson.dumps(value))
        return self._written(await self.store.write(tenant, namespace, session, changes, drop_empty=True))

    async def get_properties(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "read")
        include = request.query_params.get("include")
        names = None
        if include:
            names = list(dict.fromkeys(n for n in include.split(",") if n))
            if len(names) > self.ctx.settings.max_list_items:
                raise ApiError(400, f"include= names at most {self.ctx.settings.max_list_items} properties")
            for n in names:
                self.ctx.identifier(n, "property name in include=")
        found = await self.store.read(tenant, namespace, session, names)
        return raw_json_response(object_of_raw(found.properties) if found else b"{}")

    async def get_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "read")
        name = self._property(request)
        found = await self.store.read(tenant, namespace, session, [name])
        if found is None or name not in found.properties:
            raise ApiError(404, f"property {name!r} not found")
        return raw_json_response(object_of_raw({name: found.properties[name]}))

    async def delete_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "write")
        name = self._property(request)
        await self.store.write(tenant, namespace, session, Changes().delete(name), drop_empty=True, create_namespace=False)
        return no_content()

    async def delete_session(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request, "write")
        await self.store.write(tenant, namespace, session, Changes().clear(), drop_empty=True, create_namespace=False)
        return no_content()

    # -- sessions ------------------------------------------------------------

    def _page(self, request: Request) -> tuple[int, int]:
        page = int_param(request, "page", 0, 0)
        per_page = int_param(request, "perPage", 100, 1, 1000)
        assert page is not None and per_page is not None
        return page, per_page

    async def session_ids(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        page, per_page = self._page(request)
        self.ctx.require(request, tenant, "read")
        return json_response(await self.store.page_sessions(tenant, namespace, page, per_page))

    async def session_properties(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        page, per_page = self._page(request)
        self.ctx.require(request, tenant, "read")
        ids = await self.store.page_sessions(tenant, namespace, page, per_page)
        parts = [
            b'{"sessionId":' + orjson.dumps(s.session_id) + b',"property":' + object_of_raw(s.properties) + b"}"
            for s in await self.store.read_many(tenant, namespace, ids)
            if s is not None
        ]
        return raw_json_response(b"[" + b",".join(parts) + b"]")

    async def set_session_ttl(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        ttl = self._ttl(request)
        if ttl is None:
            raise ApiError(400, "query parameter ttlSecond is required")
        self.ctx.require(request, tenant, "admin")
        body = await self.ctx.json_object(request)
        session = body.get("sessionId")
        if not isinstance(session, str):
            raise ApiError(400, "the body needs a string 'sessionId'")
        self.ctx.identifier(session, "session id")
        await self.store.session_settings(tenant, namespace, session, ttl_s=ttl, create=True)
        return no_content()

    async def ttl_sessions(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        self.ctx.require(request, tenant, "read")
        return json_response(
            [
                {"sessionId": s.session_id, "createdAt": iso8601(s.created_ms), "ttlSecond": s.ttl_s}
                for s in await self.store.ttl_sessions(tenant, namespace)
            ]
        )

    # -- routes --------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = "/v1/account/{account}"
        ns = base + "/{namespace}"
        session = ns + "/{session}"
        table: list[tuple[str, str, Any]] = [
            (base + "/namespace/{namespace}/session", "POST", self.set_session_ttl),
            (base + "/namespace/{namespace}/session", "GET", self.ttl_sessions),
            (base, "POST", self.create_namespace),
            (base, "GET", self.list_namespaces),
            (ns, "DELETE", self.delete_namespace),
            (ns + "/session-ids", "GET", self.session_ids),
            (ns + "/session-properties", "GET", self.session_properties),
            (ns + "/properties", "PATCH", self.patch_properties),
            (ns + "/properties", "GET", self.get_properties),
            (ns + "/properties", "DELETE", self.delete_session),
            (ns + "/properties/{property}", "PUT", self.put_property),
            (ns + "/properties/{property}", "GET", self.get_property),
            (ns + "/properties/{property}", "DELETE", self.delete_property),
            (session + "/properties", "PATCH", self.patch_properties),
            (session + "/properties", "GET", self.get_properties),
            (session + "/properties", "DELETE", self.delete_session),
            (session + "/properties/{property}", "PUT", self.put_property),
            (session + "/properties/{property}", "GET", self.get_property),
            (session + "/properties/{property}", "DELETE", self.delete_property),
        ]
        deadline = self.ctx.settings.request_deadline_s
        by_path: dict[str, dict[str, Any]] = {}
        for path, method, handler in table:
            by_path.setdefault(path, {})[method] = handler
        return [
            Route(path, _dispatch({m: guarded(h, render_error, deadline) for m, h in handlers.items()}), methods=list(handlers))
            for path, handlers in by_path.items()
        ]


def _dispatch(handlers: dict[str, Any]) -> Any:
    """One endpoint for several methods on one path."""
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method) or handlers["GET"]  # HEAD is GET without a body
        response: Response = await handler(request)
        return response

    return endpoint


def routes(ctx: Context) -> list[Route]:
    return LivePersonFace(ctx).routes()
