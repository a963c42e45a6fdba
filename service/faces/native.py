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
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..operations import Content, Param, operation
from ..routing import Unmatched, Unserved, build_routes
from ..store.core import Changes, EventsLost, Existence, WriteResult
from ..store.customers import RESERVED_APIS
from ..web import ApiError, Context, EmptyResponse, JsonResponse, etag_header, int_param, query
from .native_conditions import Conditions, checked, conditional
from .native_directory import WHOAMI, Directory
from .native_events import EventStream
from .native_properties import Properties
from .native_requests import NativeRequests
from .native_wire import (
    ANSWERS,
    BATCH_BODY,
    ENCODER,
    ETAG_ONLY,
    FACE,
    IF_MATCH,
    IF_NONE_MATCH_WRITE,
    MERGE_PATCH_JSON,
    PATCH_BODY,
    PREFIX,
    REPLACE_BODY,
    SESSION_ANSWER,
    TTL,
    BatchGetResult,
    ChangeEvent,
    SessionList,
    problem,
    resource,
)


class NativeFace(NativeRequests):
    """The sessions: read, replace, merge-patch, delete, touch, list, read many; and their events."""

    # -- answers ----------------------------------------------------------------

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

    @staticmethod
    def _session_response(found: Any, status: int = 200) -> Response:
        return JsonResponse(ENCODER.encode(resource(found)), status, (etag_header(found.version),))

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
        tenant, namespace, session_id = self._where(request)
        conditions = Conditions(request)
        found = await self.store.read(tenant, namespace, session_id)
        if found is None:
            if conditions.if_match is not None:
                raise ApiError(412, "the session does not exist (If-Match)")
            raise ApiError(404, "session not found")
        if not conditions.read_matches(found.version):
            raise ApiError(412, f"the session is at version {found.version}, not one If-Match names")
        if conditions.not_modified(found.version):
            return EmptyResponse(304, (etag_header(found.version),))
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

        return self._written(await conditional(request, attempt, self.limits))

    @operation(
        "Create or replace a session",
        description="The session's properties become the body's. 201 when it was created, 200 when replaced. "
        "`?ttl=` sets the idle TTL. `customerId` ties the session to a customer (null unties it); left out, the "
        "session's tie stays as it is, so a client that knows nothing of ties never drops one.",
        scope="write",
        body=REPLACE_BODY.type,
        query=[TTL],
        headers=[IF_MATCH, IF_NONE_MATCH_WRITE],
        responses={200: SESSION_ANSWER, 201: SESSION_ANSWER},
        errors=(412,),
    )
    async def put_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        ttl = self._ttl(request)
        body = await self._body(request, REPLACE_BODY)
        changes = self._tie(Changes().clear(), namespace, body.customer_id)
        for name, value in body.properties.items():
            changes.set(self.ctx.identifier(name, "property name"), self._value(value))

        return await self._write_session(request, (tenant, namespace, session_id), changes, ttl)

    @operation(
        "Change a session with a JSON merge patch",
        description="RFC 7396 on the session: in `properties`, a member set to null is deleted, an object is merged "
        'into the property (its null members deleted), anything else replaces the property; `"properties": null` '
        "deletes every property. Atomic. A missing session is created (201). `?ttl=` sets the idle TTL. "
        "`customerId` ties the session to a customer, null unties it, left out the tie stays. "
        "The body must be sent as `application/merge-patch+json` (else 415).",
        scope="write",
        body=Content(PATCH_BODY.type, MERGE_PATCH_JSON),
        query=[TTL],
        headers=[IF_MATCH, IF_NONE_MATCH_WRITE],
        responses={200: SESSION_ANSWER, 201: SESSION_ANSWER},
        errors=(412, 415),
    )
    async def patch_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != MERGE_PATCH_JSON:
            return problem(415, f"send the patch as {MERGE_PATCH_JSON}", {"Accept-Patch": MERGE_PATCH_JSON})
        ttl = self._ttl(request)
        body = await self._body(request, PATCH_BODY)
        changes = self._tie(Changes(), namespace, body.customer_id)
        if body.properties is None:
            changes.clear()
        elif body.properties is not UNSET:
            for name, value in body.properties.items():
                name = self.ctx.identifier(name, "property name")
                text = self._value(value)
                if text == b"null":
                    changes.delete(name)
                else:
                    changes.merge(name, text)

        return await self._write_session(request, (tenant, namespace, session_id), changes, ttl)

    @operation(
        "Delete a session",
        scope="write",
        headers=[IF_MATCH],
        responses={204: None},
        errors=(400, 404, 412),
    )
    async def delete_session(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            return await self.store.delete_session(tenant, namespace, session_id, version=version)

        await conditional(request, attempt, self.limits, none_match=False)
        return EmptyResponse(204)

    @operation(
        "Touch a session",
        description="Moves the idle expiry to now + the session's idle TTL, without a write (no new version, no event).",
        scope="write",
        responses={204: None},
        errors=(400, 404),
    )
    async def touch(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        checked(await self.store.session_settings(tenant, namespace, session_id), self.limits)
        return EmptyResponse(204)

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
        tenant, namespace, _ = self._where(request, session=False)
        limit = int_param(request, "limit", 100, 1, 1000)
        assert limit is not None
        prefix = query(request, "prefix") or ""
        if prefix:
            self.ctx.identifier(prefix, "prefix")
        try:
            ids, cursor = await self.store.list_sessions(
                tenant, namespace, limit, query(request, "cursor") or None, prefix
            )
        except ValueError:
            raise ApiError(400, "invalid cursor") from None
        return JsonResponse(ENCODER.encode(SessionList(ids, cursor)))

    @operation(
        "Read many sessions at once",
        description="Up to 1,000 sessions of one namespace, in one round trip to Redis. "
        "`missing` lists the ids of those that do not exist.",
        scope="read",
        body=BATCH_BODY.type,
        responses={200: BatchGetResult},
    )
    async def batch_get(self, request: Request) -> Response:
        tenant, namespace, _ = self._where(request, session=False)
        body = await self._body(request, BATCH_BODY)
        limit = self.ctx.settings.max_list_items
        if len(body.session_ids) > limit:
            raise ApiError(400, f"at most {limit} session ids at once")
        ids = list(dict.fromkeys(self.ctx.identifier(i, "session id") for i in body.session_ids))
        found = await self.store.read_many(tenant, namespace, ids)
        result = BatchGetResult(
            [resource(s) for s in found if s is not None],
            [i for i, s in zip(ids, found, strict=True) if s is None],
        )
        return JsonResponse(ENCODER.encode(result))

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
        tenant, namespace, session_id = self._where(request, query_token=True)
        try:
            subscription = await self.store.subscribe(tenant, namespace, session_id)
        except EventsLost:
            raise ApiError(503, "storage unavailable, try again") from None
        shutting_down = getattr(request.app.state, "shutting_down", None) or asyncio.Event()
        metrics = getattr(request.app.state, "metrics", None)
        return EventStream(
            subscription,
            self.ctx.settings.sse_keepalive_s,
            shutting_down,
            self.ctx.settings.sse_send_timeout_s,
            on_drop=metrics.event_streams_dropped.inc if metrics is not None else lambda: None,
        )

    # -- routes -----------------------------------------------------------------

    def routes(self, more: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
        """The face's routes, with ``more`` (other calls under its paths, e.g.
        the customer calls) after its own, and last the prefix's unserved
        paths: a 404 in problem details (not in another face's format)."""
        sessions = PREFIX + "/{tenant}/namespaces/{namespace}/sessions"
        session = sessions + "/{sessionId}"
        prop = session + "/properties/{name}"
        directory = Directory(self.ctx)
        properties = Properties(self.ctx)
        table: list[tuple[str, str, Any]] = [
            # the busiest first; a session's path is tried before its ":touch"
            (session, "GET", self.get_session),
            (session, "PUT", self.put_session),
            (session, "PATCH", self.patch_session),
            (session, "DELETE", self.delete_session),
            (PREFIX + "/{tenant}/namespaces", "GET", directory.list_namespaces),
            (sessions, "GET", self.list_sessions),
            (sessions + ":batchGet", "POST", self.batch_get),
            (session + ":touch", "POST", self.touch),
            (session + "/events", "GET", self.events),
            (prop, "GET", properties.get_property),
            (prop, "PUT", properties.put_property),
            (prop, "DELETE", properties.delete_property),
            (prop + ":increment", "POST", properties.increment),
            (WHOAMI, "GET", directory.whoami),
        ]
        return [*build_routes(table, FACE, self.ctx, ANSWERS), *more, Unserved(PREFIX, Unmatched(ANSWERS))]


def routes(ctx: Context) -> list[BaseRoute]:
    # the customer calls (customers.py) are the native API's too, under its paths;
    # that module builds on this one, so it is imported here, not at the top
    from . import customers

    return NativeFace(ctx).routes(customers.routes(ctx))
