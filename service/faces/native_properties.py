"""The native API's properties, one at a time: read, write (with a TTL of
its own), delete, and add to a number atomically. Each answers with the
session's ETag."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..operations import Content, Param, operation
from ..store.core import Changes, Existence, WriteResult
from ..web import ApiError, EmptyResponse, JsonResponse, etag_header
from .native_conditions import Conditions, checked, conditional
from .native_requests import NativeRequests
from .native_wire import ENCODER, ETAG_ONLY, IF_MATCH, INCREMENT_BODY, MAX_TTL_S, VALUE_BODY, IncrementResult


class Properties(NativeRequests):
    """A session's properties, one at a time."""

    @operation(
        "Read one property",
        description="The body is the property's value. The ETag is the session's.",
        scope="read",
        headers=[Param("If-None-Match", str, "the ETag last seen: 304 when the session is still at that version")],
        responses={200: Content(Any, headers={"ETag": "the session's version, quoted"}), 304: ETAG_ONLY},
        errors=(400, 404),
    )
    async def get_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        name = self._property(request)
        found = await self.store.read(tenant, namespace, session_id, [name])
        if found is None:
            raise ApiError(404, "session not found")
        if name not in found.properties:
            raise ApiError(404, f"property {name!r} not found")
        if Conditions(request).not_modified(found.version):
            return EmptyResponse(304, (etag_header(found.version),))
        return JsonResponse(found.properties[name], 200, (etag_header(found.version),))

    @operation(
        "Write one property",
        description="The body is the new value (any JSON). `?ttl=` gives this property alone a TTL: it disappears "
        "after that many seconds unless written again. A missing session is created.",
        scope="write",
        body=VALUE_BODY.type,
        query=[Param("ttl", Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)], "TTL of this property, in seconds")],
        headers=[IF_MATCH],
        responses={204: ETAG_ONLY},
        errors=(412,),
    )
    async def put_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        name = self._property(request)
        ttl = self._ttl(request)
        value = self._value(await self._body(request, VALUE_BODY), outer=0)
        changes = Changes().set(name, value)

        async def attempt(version: int | None, existence: Existence) -> WriteResult:
            return await self.store.write(
                tenant, namespace, session_id, changes, version=version, existence=existence,
                property_ttl_ms=None if ttl is None else ttl * 1000,
            )  # fmt: skip

        result = await conditional(request, attempt, self.limits, none_match=False)
        return EmptyResponse(204, (etag_header(result.version),))

    @operation(
        "Delete one property",
        description="Deleting a property that is not there is no error (204).",
        scope="write",
        headers=[IF_MATCH],
        responses={204: ETAG_ONLY},
        errors=(400, 404, 412),
    )
    async def delete_property(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
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

        result = await conditional(request, attempt, self.limits, none_match=False)
        return EmptyResponse(204, (etag_header(result.version),))

    @operation(
        "Add to a number property",
        description="Atomic: concurrent increments all count. A missing property (or session) starts at 0. "
        "409 when the stored value is not a number.",
        scope="write",
        body=INCREMENT_BODY.type,
        responses={200: Content(IncrementResult, headers={"ETag": "the session's version, quoted"})},
        errors=(409,),
    )
    async def increment(self, request: Request) -> Response:
        tenant, namespace, session_id = self._where(request)
        name = self._property(request)
        body = await self._body(request, INCREMENT_BODY)
        written = await self.store.write(tenant, namespace, session_id, Changes().increment(name, body.by))
        result = checked(written, self.limits)
        value = msgspec.json.decode(result.value or b"0", type=int | float)
        return JsonResponse(ENCODER.encode(IncrementResult(value)), 200, (etag_header(result.version),))
