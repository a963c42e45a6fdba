"""sessionstore's own API (v1): sessions as HTTP resources, with conditional
requests (ETag, If-Match, If-None-Match), JSON merge patch (RFC 7396), atomic
counters, batch reads, listing with a cursor, and a live change feed
(Server-Sent Events).

Every path is under ``/api/v1/tenants/{tenant}/namespaces/{namespace}/sessions``;
a namespace is the same one the LivePerson API shows, and the other faces'
data is here too: the Emporix contexts of a tenant in its namespace
``__emporix__``, the Genesys sessions in ``__genesys__``. A session's ETag is its version,
quoted; every write that changes it makes a new version, checked inside the
same Lua script that writes, never read first. Errors are RFC 9457 problem
details (``application/problem+json``), unknown paths and methods under
``/api/v1/tenants/`` included.

Session ids and property names may hold any character but ``/`` and control
characters. The actions ``:touch``, ``:increment`` and ``:batchGet`` share the
last path segment with a name: ``POST …/sessions/a:touch`` touches session
``a`` (and ``POST …/sessions/a:touch:touch`` session ``a:touch``), while
``GET``, ``PUT``, ``PATCH`` and ``DELETE …/sessions/a:touch`` are session
``a:touch`` itself; likewise ``…/properties/{name}:increment``.

A session's ``customerId`` is the customer it is tied to (null: none; see
service/store/customers.py, and faces/customers.py for the calls that find,
export and erase a customer's sessions): PUT and merge PATCH set it, null
unties, and a body without it keeps the tie (on PUT too). The ties of the
``__emporix__`` and ``__genesys__`` sessions are their faces' (400 here).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

import anyio
import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from ..openapi import Content, Face, Param, build_routes, operation
from ..store.core import Changes, EventsLost, Existence, Status, Subscription, WriteResult
from ..store.core import Session as StoredSession
from ..store.customers import RESERVED_APIS
from ..web import ApiError, Context, guarded, int_param, iso8601, within_depth
from .native_directory import WHOAMI, Directory

PREFIX = "/api/v1/tenants"
MAX_TTL_S = 10 * 366 * 24 * 3600
MAX_CONDITIONAL_TRIES = 4
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH_JSON = "application/merge-patch+json"
KEEPALIVE = b": keep-alive\n\n"
T = TypeVar("T")


# -- the wire types (the OpenAPI schemas are made from these) -------------------


class Problem(msgspec.Struct):
    """An error, as RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


class SessionMetadata(msgspec.Struct, rename="camel"):
    version: Annotated[int, msgspec.Meta(description="moves on with every change; the ETag is this, quoted")]
    created_at: str
    modified_at: str
    expires_at: Annotated[
        str | None, msgspec.Meta(description="when the session expires, with an idle TTL (?ttl=); null: never")
    ]


CustomerMember = Annotated[
    str | None | UnsetType,
    msgspec.Meta(
        description="tie the session to this customer (null: untie it; left out: the tie stays as it is). "
        "Not in __emporix__ and __genesys__, whose faces own their sessions' ties (400)."
    ),
]


class Session(msgspec.Struct, rename="camel"):
    session_id: str
    customer_id: Annotated[str | None, msgspec.Meta(description="the customer the session is tied to; null: none")]
    properties: Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="name -> any JSON value")]
    metadata: SessionMetadata


class SessionReplace(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """PUT: the new properties, and the customer tie when ``customerId`` is
    given (left out, the tie stays). ``sessionId`` and ``metadata`` may be
    sent back as they were read; they are ignored."""

    properties: dict[str, Any]
    customer_id: CustomerMember = UNSET
    session_id: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class SessionPatch(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """PATCH: a JSON merge patch (RFC 7396) of the session: in ``properties``
    a member set to null is deleted, an object is merged into the property,
    anything else replaces it; ``"properties": null`` deletes them all."""

    properties: dict[str, Any] | None | UnsetType = UNSET
    customer_id: CustomerMember = UNSET
    session_id: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class SessionList(msgspec.Struct, rename="camel"):
    session_ids: list[str]
    next_cursor: Annotated[str | None, msgspec.Meta(description="pass as ?cursor= for the next page; null: no more")]


class BatchGetRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    # at most Settings.max_list_items (1,000 by default: checked by the handler, so it can be configured)
    session_ids: Annotated[list[str], msgspec.Meta(description="at most 1,000 by default (--max-list-items)")]


class BatchGetResult(msgspec.Struct):
    sessions: list[Session]
    missing: list[str]


class IncrementRequest(msgspec.Struct, forbid_unknown_fields=True):
    # numbers are doubles in the store: integers exact up to 2^53
    by: Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)] | float


class IncrementResult(msgspec.Struct):
    value: int | float


class ChangeEvent(msgspec.Struct):
    """The data of one event of GET …/events (published by the Lua script that made the change)."""

    version: int
    changed: list[str]
    deleted: list[str]


# -- errors ---------------------------------------------------------------------


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = Problem("about:blank", HTTPStatus(status).phrase, status, detail)
    return Response(msgspec.json.encode(body), status, headers, media_type=PROBLEM_JSON)


def render_problem(error: ApiError) -> Response:
    if not error.extra:
        return problem(error.status, error.message)
    body = {
        **msgspec.structs.asdict(Problem("about:blank", HTTPStatus(error.status).phrase, error.status, error.message)),
        **error.extra,
    }
    return Response(msgspec.json.encode(body), error.status, media_type=PROBLEM_JSON)


class ProblemRoute(Route):
    """A route whose 405 is problem details too."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(self.methods))
            await problem(405, f"use {allowed} here", {"Allow": allowed})(scope, receive, send)
        else:
            await super().handle(scope, receive, send)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await problem(404, "no such resource")(scope, receive, send)


# -- conditional requests -----------------------------------------------------------

ANY_TAG = "*"
TAG_RE = re.compile(r'\s*(?:(W/)?"([^"]*)"|(\*)|([^,\s]+))\s*(?:,|$)')


def entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """The (weak, tag) of an If-Match / If-None-Match value; None for ``*``.
    An unquoted tag is taken as a strong one."""
    tags: list[tuple[bool, str]] = []
    for weak, quoted, star, bare in TAG_RE.findall(header):
        if star:
            return None
        tags.append((bool(weak), quoted if not bare else bare))
    return tags


def tag_version(tag: str) -> int | None:
    return int(tag) if tag.isdigit() and len(tag) < 19 else None


def etag(version: int) -> str:
    return f'"{version}"'


class Conditions:
    """The preconditions of a request, as the store can check them."""

    def __init__(self, request: Request) -> None:
        self.if_match = request.headers.get("if-match")
        self.if_none_match = request.headers.get("if-none-match")
        self.match_any = False
        self.versions: list[int] | None = None  # If-Match: the versions any one of which will do
        self.none_match_any = False
        self.none_match_versions: list[int] = []
        if self.if_match is not None:
            tags = entity_tags(self.if_match)
            if tags is None:
                self.match_any = True
            else:  # strong comparison: a weak tag never matches
                self.versions = [v for weak, tag in tags if not weak and (v := tag_version(tag)) is not None]
        if self.if_none_match is not None:
            tags = entity_tags(self.if_none_match)
            if tags is None:
                self.none_match_any = True
            else:  # weak comparison
                self.none_match_versions = [v for _weak, tag in tags if (v := tag_version(tag)) is not None]

    def read_matches(self, version: int) -> bool:
        """If-Match on a read: whether the stored version is one named."""
        return self.if_match is None or self.match_any or version in (self.versions or ())

    def not_modified(self, version: int) -> bool:
        return self.none_match_any or version in self.none_match_versions


# -- the face -------------------------------------------------------------------

SESSION_ANSWER = Content(Session, headers={"ETag": "the session's version, quoted"})
ETAG_ONLY = Content(None, headers={"ETag": "the session's version, quoted"})
IF_MATCH = Param(
    "If-Match", str, 'only if the session is at one of these versions ("3", or a list); * = only if it exists'
)
IF_NONE_MATCH_WRITE = Param("If-None-Match", str, "* = only if the session does not exist yet (create only)")
TTL = Param(
    "ttl",
    Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)],
    "idle TTL in seconds: from now on every write moves expiresAt to now + TTL",
)
FACE = Face(
    "native",
    "sessionstore's own API: sessions as resources with ETags and conditional requests, JSON merge patch, "
    "atomic counters, batch reads, listing with a cursor and a live change feed. Errors are RFC 9457 problem details.",
    error=Content(Problem, PROBLEM_JSON),
    path_params={
        "tenant": "the tenant (LivePerson: the account id)",
        "namespace": "the namespace: letters, digits, '_', '.', '-'",
        "sessionId": "the session id: any text without '/' or control characters",
        "name": "the property name: any text without '/' or control characters",
    },
)


class NativeFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # -- request parts ----------------------------------------------------------

    def _where(
        self, request: Request, scope: str, session: bool = True, *, query_token: bool = False
    ) -> tuple[str, str, str]:
        tenant = self.ctx.name(request.path_params["tenant"], "tenant")
        namespace = self.ctx.name(request.path_params["namespace"], "namespace")
        session_id = self.ctx.identifier(request.path_params["sessionId"], "session id") if session else ""
        self.ctx.require(request, tenant, scope, query_token=query_token)
        return tenant, namespace, session_id

    def _property(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["name"], "property name")

    def _ttl(self, request: Request) -> int | None:
        return int_param(request, "ttl", None, 1, MAX_TTL_S)

    async def _decode(self, request: Request, type_: type[T]) -> T:
        body = await self.ctx.body(request)
        if not body.strip():
            raise ApiError(400, "a JSON body is required")
        try:
            value = msgspec.json.decode(body, type=type_)
        except msgspec.ValidationError as exc:
            raise ApiError(400, f"invalid body: {exc}") from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, f"JSON nested deeper than {self.ctx.settings.max_json_depth} levels") from None
        return value

    def _json(self, value: Any, outer: int = 2) -> bytes:
        """A property value as the compact JSON text the store keeps. ``outer``:
        the levels of the body around it (a session body's object and its
        ``properties``), which count towards the body's nesting limit."""
        if not within_depth(value, self.ctx.settings.max_json_depth - outer):
            raise ApiError(400, f"JSON nested deeper than {self.ctx.settings.max_json_depth} levels")
        return msgspec.json.encode(value)

    # -- answers ----------------------------------------------------------------

    def _check(self, result: WriteResult, conditions: Conditions | None = None) -> WriteResult:
        status = result.status
        if status is Status.OK:
            return result
        if status is Status.MISSING:
            if conditions is not None and conditions.if_match is not None:
                raise ApiError(412, "the session does not exist (If-Match)")
            raise ApiError(404, "session not found")
        if status is Status.EXISTS:
            raise ApiError(412, "the session exists already (If-None-Match: *)")
        if status is Status.VERSION:
            raise ApiError(
                412, f"the session is at version {result.version} (ETag {etag(result.version)}), not one If-Match names"
            )
        if status is Status.TOO_LARGE:
            raise ApiError(413, f"the session would hold more than {self.ctx.settings.limits.max_chars} characters")
        if status is Status.TOO_MANY:
            raise ApiError(
                413, f"the session would hold more than {self.ctx.settings.limits.max_properties} properties"
            )
        if status is Status.NOT_A_NUMBER:
            raise ApiError(409, "the property's value is not a number")
        raise AssertionError(status)

    async def _conditional(
        self,
        request: Request,
        attempt: Callable[[int | None, Existence], Awaitable[WriteResult]],
        *,
        none_match: bool = True,
    ) -> WriteResult:
        """Run a write under the request's If-Match / If-None-Match: each
        attempt is one script that checks the version it is given. With
        several versions named, a miss whose stored version is another of them
        is tried again with that one."""
        conditions = Conditions(request)
        existence = Existence.ANY
        version = None
        if conditions.if_match is not None:
            existence = Existence.MUST
            if conditions.versions is not None:
                if not conditions.versions:
                    raise ApiError(412, "If-Match names no version this session can have")
                version = conditions.versions[0]
        if conditions.if_none_match is not None:
            if not none_match or not conditions.none_match_any:
                raise ApiError(
                    400,
                    "on a write, If-None-Match takes only * (create only)"
                    if none_match
                    else "If-None-Match is not taken here",
                )
            if conditions.if_match is not None:
                raise ApiError(412, "If-Match and If-None-Match: * cannot both hold")
            existence = Existence.NONE
        result = await attempt(version, existence)
        for _ in range(MAX_CONDITIONAL_TRIES - 1):
            if not (
                result.status is Status.VERSION
                and result.version in (conditions.versions or ())
                and result.version != version
            ):
                break
            version = result.version
            result = await attempt(version, existence)
        return self._check(result, conditions)

    def _resource(self, found: StoredSession) -> Session:
        return resource(found)

    def _tie(self, changes: Changes, namespace: str, customer: str | None | UnsetType) -> Changes:
        """The ``customerId`` member of a PUT or PATCH, on the changes."""
        if customer is UNSET:
            return changes
        if namespace in RESERVED_APIS:
            raise ApiError(
                400,
                f"the customer of a session in {namespace} is set through the {RESERVED_APIS[namespace]} API "
                "(its customerId): leave customerId out here",
            )
        if customer is None:
            return changes.untie()
        return changes.tie(self.ctx.identifier(customer, "customerId"))

    def _session_response(self, found: StoredSession, status: int = 200) -> Response:
        return Response(
            msgspec.json.encode(self._resource(found)),
            status,
            {"ETag": etag(found.version)},
            media_type="application/json",
        )

    def _written(self, result: WriteResult) -> Response:
        assert result.session is not None  # read back by the same script
        return self._session_response(result.session, 201 if result.created else 200)

    # -- sessions ---------------------------------------------------------------

    @operation(
        "Read a session",
        description="Its properties and metadata. `If-None-Match` with the current ETag answers 304 without a body. "
        "Reading does not move the idle expiry.",
        scope="read",
        headers=[
            Param("If-None-Match", str, "the ETag last seen: 304 when the session is still at that version"),
            Param("If-Match", str, "412 unless the session is at one of these versions"),
        ],
        responses={200: SESSION_ANSWER, 304: ETAG_ONLY},
        errors=(400, 404, 412),
    )
    async def get_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "read")
        conditions = Conditions(request)
        found = await self.store.read(tenant, namespace, session_id)
        if found is None:
            if conditions.if_match is not None:
                raise ApiError(412, "the session does not exist (If-Match)")
            raise ApiError(404, "session not found")
        if not conditions.read_matches(found.version):
            raise ApiError(412, f"the session is at version {found.version}, not one If-Match names")
        if conditions.not_modified(found.version):
            return Response(status_code=304, headers={"ETag": etag(found.version)})
        return self._session_response(found)

    async def _write_session(
        self, request: Request, where: tuple[str, str, str], changes: Changes, ttl: int | None
    ) -> Response:
        """A PUT or PATCH of a whole session: the changes in one write, under
        the request's conditions; answers with the session as written."""
        tenant, namespace, session_id = where

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            return await self.store.write(
                tenant, namespace, session_id, changes, version=version, existence=existence,
                idle_ttl_ms=None if ttl is None else ttl * 1000, read_back=True,
            )  # fmt: skip

        return self._written(await self._conditional(request, attempt))

    @operation(
        "Create or replace a session",
        description="The session's properties become the body's. 201 when it was created, 200 when replaced. "
        "`?ttl=` sets the idle TTL. `customerId` ties the session to a customer (null unties it); left out, the "
        "session's tie stays as it is, so a client that knows nothing of ties never drops one.",
        scope="write",
        body=SessionReplace,
        query=[TTL],
        headers=[IF_MATCH, IF_NONE_MATCH_WRITE],
        responses={200: SESSION_ANSWER, 201: SESSION_ANSWER},
        errors=(412,),
    )
    async def put_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        ttl = self._ttl(request)
        body = await self._decode(request, SessionReplace)
        changes = self._tie(Changes().clear(), namespace, body.customer_id)
        for name, value in body.properties.items():
            changes.set(self.ctx.identifier(name, "property name"), self._json(value))

        return await self._write_session(request, (tenant, namespace, session_id), changes, ttl)

    @operation(
        "Change a session with a JSON merge patch",
        description="RFC 7396 on the session: in `properties`, a member set to null is deleted, an object is merged "
        'into the property (its null members deleted), anything else replaces the property; `"properties": null` '
        "deletes every property. Atomic. A missing session is created (201). `?ttl=` sets the idle TTL. "
        "`customerId` ties the session to a customer, null unties it, left out the tie stays. "
        "The body must be sent as `application/merge-patch+json` (else 415).",
        scope="write",
        body=Content(SessionPatch, MERGE_PATCH_JSON),
        query=[TTL],
        headers=[IF_MATCH, IF_NONE_MATCH_WRITE],
        responses={200: SESSION_ANSWER, 201: SESSION_ANSWER},
        errors=(412, 415),
    )
    async def patch_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != MERGE_PATCH_JSON:
            return problem(415, f"send the patch as {MERGE_PATCH_JSON}", {"Accept-Patch": MERGE_PATCH_JSON})
        ttl = self._ttl(request)
        body = await self._decode(request, SessionPatch)
        changes = self._tie(Changes(), namespace, body.customer_id)
        if body.properties is None:
            changes.clear()
        elif body.properties is not UNSET:
            for name, value in body.properties.items():
                name = self.ctx.identifier(name, "property name")
                if value is None:
                    changes.delete(name)
                else:
                    changes.merge(name, self._json(value))

        return await self._write_session(request, (tenant, namespace, session_id), changes, ttl)

    @operation(
        "Delete a session",
        scope="write",
        headers=[IF_MATCH],
        responses={204: None},
        errors=(400, 404, 412),
    )
    async def delete_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            return await self.store.delete_session(tenant, namespace, session_id, version=version)

        await self._conditional(request, attempt, none_match=False)
        return Response(status_code=204)

    @operation(
        "Touch a session",
        description="Moves the idle expiry to now + the session's idle TTL, without a write (no new version, no event).",
        scope="write",
        responses={204: None},
        errors=(400, 404),
    )
    async def touch(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        self._check(await self.store.session_settings(tenant, namespace, session_id))
        return Response(status_code=204)

    @operation(
        "List session ids",
        description="In pages of up to `limit` ids; each page names the cursor of the next. With `prefix`, "
        "only the ids that start with it.",
        scope="read",
        query=[
            Param("limit", Annotated[int, msgspec.Meta(ge=1, le=1000)], "most ids to return (default 100)"),
            Param("cursor", str, "nextCursor of the page before"),
            Param("prefix", str, "only the ids that start with this (give the same one with the cursor)"),
        ],
        responses={200: SessionList},
        errors=(400,),
    )
    async def list_sessions(self, request: Request) -> Response:
        tenant, namespace, _ = self._where(request, "read", session=False)
        limit = int_param(request, "limit", 100, 1, 1000)
        assert limit is not None
        prefix = request.query_params.get("prefix") or ""
        if prefix:
            self.ctx.identifier(prefix, "prefix")
        try:
            ids, cursor = await self.store.list_sessions(
                tenant, namespace, limit, request.query_params.get("cursor") or None, prefix
            )
        except ValueError:
            raise ApiError(400, "invalid cursor") from None
        return Response(msgspec.json.encode(SessionList(ids, cursor)), media_type="application/json")

    @operation(
        "Read many sessions at once",
        description="Up to 1,000 sessions of one namespace, in one round trip to Redis. "
        "`missing` lists the ids of those that do not exist.",
        scope="read",
        body=BatchGetRequest,
        responses={200: BatchGetResult},
    )
    async def batch_get(self, request: Request) -> Response:
        tenant, namespace, _ = self._where(request, "read", session=False)
        body = await self._decode(request, BatchGetRequest)
        limit = self.ctx.settings.max_list_items
        if len(body.session_ids) > limit:
            raise ApiError(400, f"at most {limit} session ids at once")
        ids = list(dict.fromkeys(self.ctx.identifier(i, "session id") for i in body.session_ids))
        found = await self.store.read_many(tenant, namespace, ids)
        result = BatchGetResult(
            [self._resource(s) for s in found if s is not None],
            [i for i, s in zip(ids, found, strict=True) if s is None],
        )
        return Response(msgspec.json.encode(result), media_type="application/json")

    # -- properties -------------------------------------------------------------

    @operation(
        "Read one property",
        description="The body is the property's value. The ETag is the session's.",
        scope="read",
        headers=[Param("If-None-Match", str, "the ETag last seen: 304 when the session is still at that version")],
        responses={200: Content(Any, headers={"ETag": "the session's version, quoted"}), 304: ETAG_ONLY},
        errors=(400, 404),
    )
    async def get_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "read")
        name = self._property(request)
        found = await self.store.read(tenant, namespace, session_id, [name])
        if found is None:
            raise ApiError(404, "session not found")
        if name not in found.properties:
            raise ApiError(404, f"property {name!r} not found")
        if Conditions(request).not_modified(found.version):
            return Response(status_code=304, headers={"ETag": etag(found.version)})
        return Response(found.properties[name], headers={"ETag": etag(found.version)}, media_type="application/json")

    @operation(
        "Write one property",
        description="The body is the new value (any JSON). `?ttl=` gives this property alone a TTL: it disappears "
        "after that many seconds unless written again. A missing session is created.",
        scope="write",
        body=Any,
        query=[Param("ttl", Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)], "TTL of this property, in seconds")],
        headers=[IF_MATCH],
        responses={204: ETAG_ONLY},
        errors=(412,),
    )
    async def put_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        name = self._property(request)
        ttl = self._ttl(request)
        value = self._json(await self._decode(request, Any), outer=0)
        changes = Changes().set(name, value)

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            return await self.store.write(
                tenant, namespace, session_id, changes, version=version, existence=existence,
                property_ttl_ms=None if ttl is None else ttl * 1000,
            )  # fmt: skip

        result = await self._conditional(request, attempt, none_match=False)
        return Response(status_code=204, headers={"ETag": etag(result.version)})

    @operation(
        "Delete one property",
        description="Deleting a property that is not there is no error (204).",
        scope="write",
        headers=[IF_MATCH],
        responses={204: ETAG_ONLY},
        errors=(400, 404, 412),
    )
    async def delete_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        name = self._property(request)
        changes = Changes().delete(name)

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            # a delete never creates the session (nor the namespace)
            return await self.store.write(
                tenant,
                namespace,
                session_id,
                changes,
                version=version,
                existence=Existence.MUST,
                create_namespace=False,
            )

        result = await self._conditional(request, attempt, none_match=False)
        return Response(status_code=204, headers={"ETag": etag(result.version)})

    @operation(
        "Add to a number property",
        description="Atomic: concurrent increments all count. A missing property (or session) starts at 0. "
        "409 when the stored value is not a number.",
        scope="write",
        body=IncrementRequest,
        responses={200: Content(IncrementResult, headers={"ETag": "the session's version, quoted"})},
        errors=(409,),
    )
    async def increment(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "write")
        name = self._property(request)
        body = await self._decode(request, IncrementRequest)
        result = self._check(await self.store.write(tenant, namespace, session_id, Changes().increment(name, body.by)))
        value = msgspec.json.decode(result.value or b"0", type=int | float)
        return Response(
            msgspec.json.encode(IncrementResult(value)),
            headers={"ETag": etag(result.version)},
            media_type="application/json",
        )

    # -- events -----------------------------------------------------------------

    @operation(
        "Follow a session's changes",
        description="Server-Sent Events: after each committed change to the session, made through any API by any "
        'instance, one event whose `data` is a ChangeEvent `{"version", "changed", "deleted"}` (a delete of the '
        "session lists every property it had as deleted). A comment line every 15 s keeps an idle stream open. "
        "The subscription is in place before the response starts, so no change after that is missed: if the "
        "service loses its connection to Redis the stream ends instead (reconnect, then read the session again). "
        "The session need not exist yet. The key may also come as `?access_token=<key>`, for a browser's "
        "EventSource, which cannot send headers.",
        scope="read",
        query=[Param("access_token", str, "the API key, where no header can carry it (EventSource)")],
        responses={200: Content(str, "text/event-stream", event_data=ChangeEvent)},
        errors=(400,),
    )
    async def events(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request, "read", query_token=True)
        try:
            subscription = await self.store.subscribe(tenant, namespace, session_id)
        except EventsLost:
            raise ApiError(503, "storage unavailable, try again") from None
        shutting_down = getattr(request.app.state, "shutting_down", None) or asyncio.Event()
        return EventStream(subscription, self.ctx.settings.sse_keepalive_s, shutting_down)

    # -- routes -----------------------------------------------------------------

    def routes(self, more: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
        """The face's one Mount, with ``more`` (other calls under its paths,
        e.g. the customer calls) inside it after its own routes: so a request
        passes one Mount check, whichever face it is for."""
        sessions = "/{tenant}/namespaces/{namespace}/sessions"
        session = sessions + "/{sessionId}"
        prop = session + "/properties/{name}"
        directory = Directory(self.ctx)
        table: list[tuple[str, str, Any]] = [
            ("/{tenant}/namespaces", "GET", directory.list_namespaces),
            (sessions, "GET", self.list_sessions),
            (sessions + ":batchGet", "POST", self.batch_get),
            (session, "GET", self.get_session),
            (session, "PUT", self.put_session),
            (session, "PATCH", self.patch_session),
            (session, "DELETE", self.delete_session),
            (session + ":touch", "POST", self.touch),
            (session + "/events", "GET", self.events),
            (prop, "GET", self.get_property),
            (prop, "PUT", self.put_property),
            (prop, "DELETE", self.delete_property),
            (prop + ":increment", "POST", self.increment),
        ]
        inner = build_routes(
            table, FACE, lambda handler: guarded(handler, render_problem), route_class=ProblemRoute
        )
        mount = Mount(PREFIX, app=Router([*inner, *more], redirect_slashes=False, default=not_found))
        # Starlette's Mount matches the rest of the path with ".*", which stops at a
        # newline: a %0A in a name would fall out of the face (a 404 not in its format)
        # instead of reaching the name checks (400 problem).
        mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
        wrap = lambda handler: guarded(handler, render_problem)
        return [mount, *build_routes([(WHOAMI, "GET", directory.whoami)], FACE, wrap, route_class=ProblemRoute)]


def resource(found: StoredSession) -> Session:
    """A stored session as this API shows it."""
    return Session(
        found.session_id,
        found.customer_id,
        {name: msgspec.Raw(value) for name, value in found.properties.items()},
        SessionMetadata(
            found.version,
            iso8601(found.created_ms),
            iso8601(found.modified_ms),
            iso8601(found.expires_ms) if found.expires_ms else None,
        ),
    )


class EventStream(StreamingResponse):
    """The Server-Sent Events of one subscription; it is closed however the
    response ends (the client gone included). The stream ends, with a comment
    saying so, when the service starts to shut down."""

    def __init__(self, subscription: Subscription, keepalive_s: float, shutting_down: asyncio.Event) -> None:
        self.subscription = subscription
        self.shutting_down = shutting_down
        super().__init__(
            self._events(keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, keepalive_s: float) -> AsyncIterator[bytes]:
        yield b": subscribed\n\n"  # the subscription is confirmed: changes from now on are sent
        stop = asyncio.ensure_future(self.shutting_down.wait())
        try:
            while True:
                following = asyncio.ensure_future(self.subscription.next(keepalive_s))
                await asyncio.wait((following, stop), return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    yield b": stream ended: the service is shutting down\n\n"
                    return
                try:
                    event = following.result()
                except EventsLost as exc:
                    yield f": stream ended: {exc}\n\n".encode()
                    return
                yield KEEPALIVE if event is None else b"data: " + event + b"\n\n"
        finally:
            stop.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.subscription.aclose()


def routes(ctx: Context) -> list[BaseRoute]:
    # the customer calls (customers.py) are the native API's too, under its paths;
    # that module builds on this one, so it is imported here, not at the top
    from . import customers

    return NativeFace(ctx).routes(customers.routes(ctx))
