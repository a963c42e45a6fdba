"""The LivePerson Maven Context Session Store API (v1), over the storage core.

The account id is the tenant. Namespace-level property paths are the session
``__default__``, as the vendor documents. ``/v1/brand/...`` is the same API
(every route of this face matches both ``/v1/account/`` and ``/v1/brand/``),
and a trailing slash is ignored (service/app.py). Every error is JSON
``{"code": <status>, "message": "..."}``; the vendor's own client reads
``message``.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from ..bodies import VendorBody, read
from ..operations import Content, Param, operation
from ..routing import Endpoint, build_routes
from ..store.core import ORIGIN_LIVEPERSON, Changes, Status, WriteResult
from ..web import ApiError, Context, JsonResponse, int_param, iso8601, query
from .liveperson_wire import (
    ANSWERS,
    DEFAULT_SESSION,
    FACE,
    MAX_TTL_S,
    NAMESPACE_BODY,
    PAGE,
    PROPERTIES_BODY,
    RESERVED_PREFIX,
    TTL_SECOND,
    TTL_SESSION_BODY,
    VALUE_BODY,
    LivePersonRoute,
    NamespaceCreate,
    NamespaceEntry,
    Properties,
    SessionPropertiesEntry,
    TtlSessionCreate,
    TtlSessionEntry,
    checked_namespace,
    encode,
    no_content,
    raw_properties,
)


class LivePersonFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # -- path parts ----------------------------------------------------------

    def _tenant(self, request: Request) -> str:
        return self.ctx.name(request.path_params["account"], "account id")

    def _namespace(self, request: Request) -> str:
        name = self.ctx.name(request.path_params["namespace"], "namespace")
        return checked_namespace(name, writing=self.ctx.writes(request))

    def _session(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params.get("session", DEFAULT_SESSION), "session id")

    def _property(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["property"], "property name")

    def _ttl(self, request: Request) -> int | None:
        return int_param(request, "ttlSecond", None, 1, MAX_TTL_S)

    def _where(self, request: Request) -> tuple[str, str, str]:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        session = self._session(request)
        self.ctx.require(request, tenant)
        return tenant, namespace, session

    def _written(self, result: WriteResult) -> Response:
        if result.status is Status.TOO_LARGE:
            raise ApiError(413, "document too large")
        if result.status is Status.TOO_MANY:
            raise ApiError(413, f"more than {self.ctx.settings.limits.max_properties} properties in one session")
        return no_content()

    # -- namespaces ----------------------------------------------------------

    async def _body(self, request: Request, body: VendorBody[Any]) -> Any:
        """The JSON body (with the shared limits), decoded by ``body``."""
        settings = self.ctx.settings
        return body.decode(await read(request, settings.max_body_bytes, self.ctx.bodies), settings.max_json_depth)

    @operation(
        "Create a namespace",
        description="Creating one that exists is no error; with `ttlSecond` its TTL is set: properties written in it "
        "from then on expire after that many seconds.",
        scope="admin",
        body=NamespaceCreate,
        query=[TTL_SECOND],
        responses={204: None},
    )
    async def create_namespace(self, request: Request) -> Response:
        tenant = self._tenant(request)
        ttl = self._ttl(request)
        self.ctx.require(request, tenant)
        body: NamespaceCreate = await self._body(request, NAMESPACE_BODY)
        name = checked_namespace(self.ctx.name(body.name, "namespace"), writing=True)
        await self.store.ensure_namespace(tenant, name, ttl)
        return no_content()

    @operation("List the namespaces", scope="read", responses={200: list[NamespaceEntry]}, errors=(400,))
    async def list_namespaces(self, request: Request) -> Response:
        tenant = self._tenant(request)
        self.ctx.require(request, tenant)
        listed = [
            NamespaceEntry(ns.name, iso8601(ns.created_ms), ns.ttl_s or UNSET)
            for ns in await self.store.list_namespaces(tenant)
            if not ns.name.startswith(RESERVED_PREFIX)
        ]
        return encode(listed)

    @operation(
        "Delete a namespace",
        description="With every session in it; deleting one that does not exist is no error.",
        scope="admin",
        responses={204: None},
        errors=(400,),
    )
    async def delete_namespace(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        self.ctx.require(request, tenant)
        await self.store.delete_namespace(tenant, namespace)
        return no_content()

    # -- properties ----------------------------------------------------------

    @operation(
        "Set properties",
        description="Each member of the body is set as a property (added or replaced); the others stay.",
        scope="write",
        body=PROPERTIES_BODY.type,
        responses={204: None},
    )
    async def patch_properties(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        body = await self._body(request, PROPERTIES_BODY)
        changes = Changes()
        for name, value in body.items():
            changes.set(self.ctx.identifier(name, "property name"), PROPERTIES_BODY.value(value))
        return self._written(
            await self.store.write(tenant, namespace, session, changes, drop_empty=True, origin=ORIGIN_LIVEPERSON)
        )

    @operation(
        "Set one property",
        description="The body is its value (any JSON).",
        scope="write",
        body=VALUE_BODY.type,
        responses={204: None},
    )
    async def put_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        name = self._property(request)
        value = await self._body(request, VALUE_BODY)
        changes = Changes().set(name, VALUE_BODY.value(value))
        return self._written(
            await self.store.write(tenant, namespace, session, changes, drop_empty=True, origin=ORIGIN_LIVEPERSON)
        )

    @operation(
        "Read the properties",
        description="All of them, or those that `include` names; a missing session reads as `{}`.",
        scope="read",
        query=[Param("include", str, "comma-separated property names")],
        responses={200: Properties},
        errors=(400,),
    )
    async def get_properties(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        include = query(request, "include")
        names = None
        if include:
            names = list(dict.fromkeys(n for n in include.split(",") if n))
            if len(names) > self.ctx.settings.max_list_items:
                raise ApiError(400, f"include= names at most {self.ctx.settings.max_list_items} properties")
            for n in names:
                self.ctx.identifier(n, "property name in include=")
        found = await self.store.read(tenant, namespace, session, names)
        return encode(raw_properties(found.properties)) if found else JsonResponse(b"{}")

    @operation(
        "Read one property",
        description="The body is the property's value itself, as stored (any JSON: `721`, `\"jeff@test.com\"`, "
        "`[...]`, `{...}`), as LivePerson's v1 documentation shows and its context-service SDK reads it.",
        scope="read",
        responses={200: Content(Any, description="the property's value")},
        errors=(400, 404),
    )
    async def get_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        name = self._property(request)
        found = await self.store.read(tenant, namespace, session, [name])
        if found is None or name not in found.properties:
            raise ApiError(404, f"property {name!r} not found")
        return JsonResponse(found.properties[name])

    @operation(
        "Delete one property",
        description="Deleting one that is not there is no error.",
        scope="write",
        responses={204: None},
        errors=(400,),
    )
    async def delete_property(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        name = self._property(request)
        await self.store.write(tenant, namespace, session, Changes().delete(name), drop_empty=True, create_namespace=False)
        return no_content()

    @operation(
        "Delete every property",
        description="The session goes with them.",
        scope="write",
        responses={204: None},
        errors=(400,),
    )
    async def delete_session(self, request: Request) -> Response:
        tenant, namespace, session = self._where(request)
        await self.store.write(tenant, namespace, session, Changes().clear(), drop_empty=True, create_namespace=False)
        return no_content()

    # -- sessions ------------------------------------------------------------

    def _page(self, request: Request) -> tuple[int, int]:
        page = int_param(request, "page", 0, 0)
        per_page = int_param(request, "perPage", 100, 1, 1000)
        assert page is not None and per_page is not None
        return page, per_page

    @operation("List the session ids", scope="read", query=PAGE, responses={200: list[str]}, errors=(400,))
    async def session_ids(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        page, per_page = self._page(request)
        self.ctx.require(request, tenant)
        return encode(await self.store.page_sessions(tenant, namespace, page, per_page))

    @operation(
        "List the sessions with their properties",
        scope="read",
        query=PAGE,
        responses={200: list[SessionPropertiesEntry]},
        errors=(400,),
    )
    async def session_properties(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        page, per_page = self._page(request)
        self.ctx.require(request, tenant)
        ids = await self.store.page_sessions(tenant, namespace, page, per_page)
        entries = [
            SessionPropertiesEntry(s.session_id, raw_properties(s.properties))
            for s in await self.store.read_many(tenant, namespace, ids)
            if s is not None
        ]
        return encode(entries)

    @operation(
        "Give a session a TTL",
        description="Properties written in the session from then on expire after `ttlSecond` seconds; the session is "
        "created when missing.",
        scope="admin",
        body=TtlSessionCreate,
        query=[Param("ttlSecond", TTL_SECOND.type, "TTL in seconds", required=True)],
        responses={204: None},
    )
    async def set_session_ttl(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        ttl = self._ttl(request)
        if ttl is None:
            raise ApiError(400, "query parameter ttlSecond is required")
        self.ctx.require(request, tenant)
        body: TtlSessionCreate = await self._body(request, TTL_SESSION_BODY)
        session = self.ctx.identifier(body.session_id, "session id")
        await self.store.session_settings(tenant, namespace, session, ttl_s=ttl, create=True, origin=ORIGIN_LIVEPERSON)
        return no_content()

    @operation("List the sessions that have a TTL", scope="read", responses={200: list[TtlSessionEntry]}, errors=(400,))
    async def ttl_sessions(self, request: Request) -> Response:
        tenant = self._tenant(request)
        namespace = self._namespace(request)
        self.ctx.require(request, tenant)
        entries = [
            TtlSessionEntry(s.session_id, iso8601(s.created_ms), s.ttl_s)
            for s in await self.store.ttl_sessions(tenant, namespace)
        ]
        return encode(entries)

    # -- routes --------------------------------------------------------------

    def routes(self) -> list[Endpoint]:
        base = "/v1/account/{account}"
        ns = base + "/{namespace}"
        session = ns + "/{session}"
        # Routes are tried in this order: the busiest (a session's properties)
        # early. Where two paths could match, the first wins: ".../namespace/
        # {ns}/session" is the session-TTL list, and "{ns}/properties/{name}"
        # a property of __default__ (not the properties of a session named
        # "properties").
        table: list[tuple[str, str, Any]] = [
            (base + "/namespace/{namespace}/session", "POST", self.set_session_ttl),
            (base + "/namespace/{namespace}/session", "GET", self.ttl_sessions),
            (ns + "/properties/{property}", "PUT", self.put_property),
            (ns + "/properties/{property}", "GET", self.get_property),
            (ns + "/properties/{property}", "DELETE", self.delete_property),
            (session + "/properties", "PATCH", self.patch_properties),
            (session + "/properties", "GET", self.get_properties),
            (session + "/properties", "DELETE", self.delete_session),
            (session + "/properties/{property}", "PUT", self.put_property),
            (session + "/properties/{property}", "GET", self.get_property),
            (session + "/properties/{property}", "DELETE", self.delete_property),
            (ns + "/properties", "PATCH", self.patch_properties),
            (ns + "/properties", "GET", self.get_properties),
            (ns + "/properties", "DELETE", self.delete_session),
            (base, "POST", self.create_namespace),
            (base, "GET", self.list_namespaces),
            (ns, "DELETE", self.delete_namespace),
            (ns + "/session-ids", "GET", self.session_ids),
            (ns + "/session-properties", "GET", self.session_properties),
        ]
        return build_routes(table, FACE, self.ctx, ANSWERS, LivePersonRoute)


def routes(ctx: Context) -> list[Endpoint]:
    return LivePersonFace(ctx).routes()
