"""The Genesys Knowledge Center Session Management API, over the storage core.

    PUT  /sessions/new?tenantId=T          a new session (a fresh UUID)
    GET  /sessions/{sessionId}?tenantId=T  the session; a missing one is created
    POST /sessions/{sessionId}?tenantId=T  associate customer, agent and visit ids

The customer and agent ids come in the ``gkc_customerId`` and ``gkc_agentId``
headers, the visit ids in the optional body ``{"visitId", "globalVisitId"}``.
Success is ``{"response": SessionInfo}``, an error ``{"code", "description"}``
with the same HTTP status.

A tenant's Genesys sessions are the sessions of its reserved namespace
``__genesys__`` in the storage core (so the native API sees them), each id a
property holding a JSON string; the customer id given ties the session to
that customer (service/store/customers.py). They expire after
``genesys_idle_ttl_s`` with no read or write. Create, read (with auto-create) and associate are each one
Lua script. ``tenantId`` may be left out when the API key is for one tenant.
The path ``/sessions/new`` is the create operation only: GET or POST of it
answers 405, so no client can land in a session named "new" that every other
such client would share.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..auth import ANY_TENANT
from ..bodies import VendorBody, blank, must_be_object, read
from ..operations import Content, Face, Param, operation
from ..routing import Answers, Bound, Endpoint, describe
from ..store.core import Changes, Existence, Session, Status
from ..web import ApiError, Context, JsonResponse, iso8601, query, raw_headers

NAMESPACE = "__genesys__"
NEW = "new"  # PUT /sessions/new creates; never a session id here
CUSTOMER, AGENT, VISIT, GLOBAL_VISIT = "customerId", "agentId", "visitId", "globalVisitId"
HEADERS = (("gkc_customerId", CUSTOMER), ("gkc_agentId", AGENT))
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
CREATE_ATTEMPTS = 3  # fresh UUIDs tried when one is taken (it never is)


class VisitBody(msgspec.Struct):
    """The optional body of create and associate; other members are ignored."""

    visitId: str | msgspec.UnsetType = msgspec.UNSET
    globalVisitId: str | msgspec.UnsetType = msgspec.UNSET


class SessionInfo(msgspec.Struct, kw_only=True):
    """A session as the API shows it; ids that are not set are left out."""

    sessionId: str
    customerId: str | msgspec.UnsetType = msgspec.UNSET
    agentId: str | msgspec.UnsetType = msgspec.UNSET
    visitId: str | msgspec.UnsetType = msgspec.UNSET
    globalVisitId: str | msgspec.UnsetType = msgspec.UNSET
    createdAt: str  # ISO 8601, UTC, milliseconds
    modifiedAt: str


class SessionResponse(msgspec.Struct):
    response: SessionInfo


class ErrorBody(msgspec.Struct):
    code: int  # the HTTP status
    description: str


ENCODER = msgspec.json.Encoder()
VISIT_BODY: VendorBody[VisitBody] = VendorBody(VisitBody, must_be_object)


def json_body(value: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(ENCODER.encode(value), status, raw_headers(headers))


TENANT_ID = Param("tenantId", str, "the tenant; may be left out with an API key of one tenant")
ID_HEADERS = [
    Param("gkc_customerId", str, "the customer to associate with the session"),
    Param("gkc_agentId", str, "the agent to associate with the session"),
]
FACE = Face(
    "genesys",
    "The Genesys Knowledge Center Session Management API. Sessions expire after an idle time "
    "(default 24 hours) that every read and write moves on.",
    error=Content(ErrorBody),
    path_params={"sessionId": "the session id (1 to 256 characters, no control characters)"},
)


def render_error(error: ApiError) -> Response:
    return JsonResponse(ENCODER.encode(ErrorBody(error.status, error.message)), error.status, raw_headers(error.headers))


def session_info(session: Session) -> SessionInfo:
    ids: dict[str, Any] = {}
    for name in (CUSTOMER, AGENT, VISIT, GLOBAL_VISIT):
        raw = session.properties.get(name)
        if raw is not None:
            value = orjson.loads(raw)
            if isinstance(value, str):  # anything else was written by another API: not an id
                ids[name] = value
    return SessionInfo(
        sessionId=session.session_id,
        createdAt=iso8601(session.created_ms),
        modifiedAt=iso8601(session.modified_ms),
        **ids,
    )


def not_allowed(allow: str) -> ApiError:
    return ApiError(405, f"method not allowed here (allowed: {allow})", {"Allow": allow})


ANSWERS = Answers(render_error, not_allowed)


class GenesysFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.idle_ms = max(0, ctx.settings.genesys_idle_ttl_s) * 1000

    # -- request parts -------------------------------------------------------

    def _tenant(self, request: Request) -> str:
        """The tenant from ``tenantId``, or the API key's own when left out."""
        key = self.ctx.caller(request)
        given = query(request, "tenantId")
        if given is not None:
            tenant = self.ctx.name(given, "tenantId")
        elif key.tenant == ANY_TENANT:
            raise ApiError(400, "query parameter tenantId is required: the caller may act for every tenant")
        else:
            tenant = self.ctx.name(key.tenant, "tenant of the API key")
        self.ctx.require(request, tenant)
        return tenant

    def _session_id(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["sessionId"], "sessionId")

    def _header_ids(self, request: Request) -> dict[str, str]:
        ids: dict[str, str] = {}
        for header, name in HEADERS:
            value = request.headers.get(header)
            if value is not None:
                try:  # HTTP hands header bytes over as Latin-1; clients send UTF-8
                    value = value.encode("latin-1").decode("utf-8")
                except UnicodeError:
                    raise ApiError(400, f"invalid {header} header: not UTF-8") from None
                ids[name] = self.ctx.identifier(value, f"{header} header")
        return ids

    async def _body_ids(self, request: Request) -> dict[str, str]:
        settings = self.ctx.settings
        body = await read(request, settings.max_body_bytes, self.ctx.bodies)
        if blank(body):
            return {}  # the body is optional
        visit = VISIT_BODY.decode(body, settings.max_json_depth)
        ids: dict[str, str] = {}
        for name in (VISIT, GLOBAL_VISIT):
            given = getattr(visit, name)
            if given is not msgspec.UNSET:
                ids[name] = self.ctx.identifier(given, name)
        return ids

    async def _write_and_read(
        self, tenant: str, session_id: str, ids: dict[str, str], existence: Existence
    ) -> Session | None:
        """Write ``ids`` and get the session as that write left it (one
        script); None when the session exists and ``existence`` is NONE."""
        changes = Changes().set_all((name, orjson.dumps(value)) for name, value in ids.items())
        if CUSTOMER in ids:  # the session's customer is its tie (service/store/customers.py)
            changes.tie(ids[CUSTOMER])
        result = await self.store.write(
            tenant, NAMESPACE, session_id, changes, existence=existence, idle_ttl_ms=self.idle_ms, read_back=True
        )
        if result.status is Status.EXISTS:
            return None
        if result.status in (Status.TOO_LARGE, Status.TOO_MANY):
            raise ApiError(413, "session too large")
        if result.status is not Status.OK or result.session is None:
            raise ApiError(503, f"storage answered {result.status.value}, try again")
        return result.session

    # -- operations ----------------------------------------------------------

    @operation(
        "Create a session",
        description="A new session with a fresh id (a UUID); named when `gkc_customerId` or `gkc_agentId` is given.",
        scope="write",
        body=VisitBody,
        query=[TENANT_ID],
        headers=ID_HEADERS,
        responses={200: SessionResponse},
        errors=(400,),
    )
    async def create(self, request: Request) -> Response:
        tenant = self._tenant(request)
        ids = self._header_ids(request) | await self._body_ids(request)
        for _ in range(CREATE_ATTEMPTS):
            found = await self._write_and_read(tenant, str(uuid.uuid4()), ids, Existence.NONE)
            if found is not None:
                return json_body(SessionResponse(session_info(found)))
        raise ApiError(503, "could not make a fresh session id, try again")  # three UUID collisions: never

    @operation(
        "Read a session",
        description="A session that does not exist is created (empty) and returned, as the latest "
        "Genesys document describes. Moves the idle expiry.",
        scope="read",
        query=[TENANT_ID],
        responses={200: SessionResponse},
        errors=(400, 405),  # 405: the id "new" (only PUT /sessions/new, the create, is served there)
    )
    async def read(self, request: Request) -> Response:
        tenant = self._tenant(request)
        session_id = self._session_id(request)
        # gkc_ headers on a read are the caller's, not data to store: a read key must not write them.
        found = await self.store.read_or_create(tenant, NAMESPACE, session_id, idle_ttl_ms=self.idle_ms)
        return json_body(SessionResponse(session_info(found)))

    @operation(
        "Associate a customer, agent or visit with a session",
        description="Creates the session when missing; fields not given keep their stored values.",
        scope="write",
        body=VisitBody,
        query=[TENANT_ID],
        headers=ID_HEADERS,
        responses={200: SessionResponse},
        errors=(400, 405),  # 405: the id "new" (only PUT /sessions/new, the create, is served there)
    )
    async def associate(self, request: Request) -> Response:
        tenant = self._tenant(request)
        session_id = self._session_id(request)
        ids = self._header_ids(request) | await self._body_ids(request)
        found = await self._write_and_read(tenant, session_id, ids, Existence.ANY)
        assert found is not None  # only Existence.NONE finds one in the way
        return json_body(SessionResponse(session_info(found)))

    # -- routes --------------------------------------------------------------

    def routes(self) -> list[Endpoint]:
        handlers = {"GET": self.read, "POST": self.associate, "PUT": self.create}
        route = SessionsRoute("/sessions/{sessionId}", handlers, FACE, self.ctx, ANSWERS)
        return [describe(route, FACE, {"GET": self.read, "POST": self.associate, "PUT /sessions/new": self.create})]


class SessionsRoute(Endpoint):
    """One route for the whole path, so /sessions/new and /sessions/{id}
    never shadow each other and every answer is in this API's format."""

    def choose(self, request: Request) -> Bound:
        method = request.scope["method"]
        if method not in METHODS:
            return super().choose(request)
        if request.path_params["sessionId"] == NEW:
            if method != "PUT":
                raise not_allowed("PUT")
        elif method not in ("GET", "HEAD", "POST"):
            raise not_allowed("GET, POST")
        return super().choose(request)


def routes(ctx: Context) -> list[Endpoint]:
    return GenesysFace(ctx).routes()
