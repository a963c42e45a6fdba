"""The Emporix-compatible Session Context API, over the storage core.

Each tenant's session contexts live in the tenant's reserved namespace
``__emporix__``, one storage-core session per Emporix ``sessionId``. Every
top-level SessionContext field is one property (``context`` an object
property; ``sessionId`` is stored too, so that every PUT and PATCH changes
something and moves the version); ``metadata.version`` is the core's session
version, ``createdAt``/``modifiedAt`` its creation and modification times.

Management side (``/context/{sessionId}``): an API key, ``read`` for GET and
``write`` for the rest. A context that has a ``customerId`` (stored, or named
by a PUT body) is replaced (PUT) only with that customer's token in
``saas-token``; attribute changes need the API key alone.
Customer side (``/me/context``): a customer token (see customer_tokens.py) in
``Authorization: Bearer``; the session is the token's.

A context is tied to the customer of its ``customerId`` (service/store/customers.py),
by the same script call that writes it: a PUT with a ``customerId`` ties it, a
PUT without one unties it; a ``/me`` write ties it to the token's customer when
it creates the context or the context is that customer's already.

Every error is ``{"code": <status>, "message": "..."}`` (the vendor's
ErrorMessage), with ``sessionId`` in front on a 404: no such context, no such
attribute, or a version conflict, which Emporix answers as a 404 naming the
version (``The context with sessionId <id> and version <v> has not been
found.``; clients tell a conflict from that message).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..bodies import VendorBody, read
from ..operations import Content, operation
from ..routing import Endpoint, build_routes
from ..store.core import Changes, Session
from ..web import ApiError, Context, EmptyResponse, JsonResponse, query
from .emporix_checks import Customers, OwnContext, needs_attribute, owner_may, owner_of
from .emporix_wire import (
    ANSWERS,
    ATTRIBUTE_BODY,
    BUSY,
    CONTEXT,
    CUSTOMER_ID,
    ENCODER,
    FACE,
    NAMESPACE,
    NO_ATTRIBUTE,
    NOT_FOUND,
    PATCH_BODY,
    SAAS_TOKEN,
    SESSION_ID,
    SIMPLE_FIELDS,
    UPDATE_BODY,
    UPSERT,
    ContextAttribute,
    SessionContext,
    SessionNotFound,
    context_response,
    members,
    not_found,
    text,
)
from .emporix_writes import Contexts

TENANT_RE = re.compile(r"[a-z][a-z0-9]{2,15}")  # the vendor's ^[a-z][a-z0-9]+$, 3 to 16 characters
PATCH_FIELDS = ("siteCode", "currency", "targetLocation", "language")  # what PATCH /me/context takes


def no_content() -> Response:
    return EmptyResponse(204)


class EmporixFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.customers = Customers(ctx)
        self.contexts = Contexts(ctx.store, ctx.settings.emporix_idle_ttl_s * 1000)

    # -- request parts ---------------------------------------------------------

    def _tenant(self, request: Request) -> str:
        tenant: str = request.path_params["tenant"]
        if not TENANT_RE.fullmatch(tenant):
            raise ApiError(400, "invalid tenant: 3 to 16 lowercase letters and digits, starting with a letter")
        return tenant

    def _session_id(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["sessionId"], "session id")

    def _attribute(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["attributeName"], "attribute name")

    def _manager(self, request: Request) -> tuple[str, str]:
        """Tenant and session id of a management call, its API key checked."""
        tenant = self._tenant(request)
        self.ctx.require(request, tenant)
        return tenant, self._session_id(request)

    @staticmethod
    def _upsert(request: Request) -> bool:
        raw = (query(request, "upsert") or "").lower()
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0", ""):
            return False
        raise ApiError(400, "query parameter upsert must be true or false")

    async def _body(self, request: Request, body: VendorBody[Any]) -> Any:
        settings = self.ctx.settings
        return body.decode(await read(request, settings.max_body_bytes, self.ctx.bodies), settings.max_json_depth)

    # -- management side -------------------------------------------------------

    @operation(
        "Read a session context", scope="read", responses={200: SessionContext, 404: SessionNotFound}, errors=(400,)
    )
    async def get_context(self, request: Request) -> Response:
        tenant, session_id = self._manager(request)
        found = await self.store.read(tenant, NAMESPACE, session_id)
        if found is None:
            raise not_found(session_id)
        return context_response(found)

    @operation(
        "Replace a session context",
        description="`metadata.version` must be the stored version: else 404 `The context with sessionId <id> and "
        "version <v> has not been found.`, as Emporix answers a conflict, and nothing changes. Without "
        "`upsert=true` a missing context answers 404. A context that has a `customerId`, or a body that names "
        "one, needs that customer's token in `saas-token` (else 403).",
        scope="write",
        body=UPDATE_BODY.type,
        query=[UPSERT],
        headers=[SAAS_TOKEN],
        responses={204: None, 404: NOT_FOUND, 503: BUSY},
        errors=(400,),
    )
    async def put_context(self, request: Request) -> Response:
        tenant, session_id = self._manager(request)
        upsert = self._upsert(request)
        body = await self._body(request, UPDATE_BODY)
        fields = [
            (name, ENCODER.encode(value)) for name in SIMPLE_FIELDS if (value := text(getattr(body, name))) is not None
        ]
        if isinstance(body.context, dict):
            fields.append((CONTEXT, members(body.context)))
        fields.append((SESSION_ID, ENCODER.encode(session_id)))
        new_owner = text(body.customerId)
        if new_owner:
            self.ctx.identifier(new_owner, "customerId")

        def authorize(stored: Session | None) -> None:
            self.customers.saas_token(request, tenant, {o for o in (owner_of(stored), new_owner) if o})

        def changes(created: bool) -> Changes:
            out = Changes().clear().set_all(fields)
            return out.tie(new_owner) if new_owner else out.untie()

        await self.contexts.change(
            tenant,
            session_id,
            changes,
            check=authorize,
            version=body.metadata.version,
            upsert=upsert,
        )
        return no_content()

    @operation(
        "Set an attribute of a session context",
        description="No version is checked, and no customer token needed (the API key's `write` scope is).",
        scope="write",
        body=ATTRIBUTE_BODY.type,
        responses={204: None, 404: SessionNotFound},
        errors=(400,),
    )
    async def add_attribute(self, request: Request) -> Response:
        tenant, session_id = self._manager(request)
        attribute: ContextAttribute = await self._body(request, ATTRIBUTE_BODY)
        name = self.ctx.identifier(attribute.key, "attribute key")
        added = members({name: attribute.value})
        await self.contexts.change(tenant, session_id, lambda created: Changes().set_in(CONTEXT, added))
        return no_content()

    @operation(
        "Remove an attribute from a session context",
        description="No version is checked, and no customer token needed (the API key's `write` scope is). An "
        "attribute that is not there answers 404.",
        scope="write",
        responses={204: None, 404: NO_ATTRIBUTE, 503: BUSY},
        errors=(400,),
    )
    async def delete_attribute(self, request: Request) -> Response:
        tenant, session_id = self._manager(request)
        name = self._attribute(request)
        await self.contexts.change(
            tenant,
            session_id,
            lambda created: Changes().delete_in(CONTEXT, name),
            check=needs_attribute(session_id, name),
            read=(CONTEXT,),
        )
        return no_content()

    # -- the customer's own context --------------------------------------------

    @operation(
        "Read the customer's own session context",
        responses={200: SessionContext, 404: SessionNotFound},
        errors=(400, 401, 403),
    )
    async def get_own(self, request: Request) -> Response:
        token, session_id = self.customers.own(request, self._tenant(request))
        found = await self.store.read(token.tenant, NAMESPACE, session_id)
        if found is None:
            raise not_found(session_id)
        owner_may(token, owner_of(found))
        return context_response(found)

    @operation(
        "Change the customer's own session context",
        description="Takes siteCode, currency, targetLocation, language and context (merged key by key, a key set "
        "to null removed); `metadata.version` must be the stored version: else 404 `The context with sessionId "
        "<id> and version <v> has not been found.`, as Emporix answers a conflict, and nothing changes.",
        body=PATCH_BODY.type,
        query=[UPSERT],
        responses={204: None, 404: NOT_FOUND, 503: BUSY},
        errors=(400, 401, 403, 413),
    )
    async def patch_own(self, request: Request) -> Response:
        token, session_id = self.customers.own(request, self._tenant(request))
        upsert = self._upsert(request)
        body = await self._body(request, PATCH_BODY)
        simple = [
            (name, ENCODER.encode(value)) for name in PATCH_FIELDS if (value := text(getattr(body, name))) is not None
        ]
        kept: dict[str, msgspec.Raw] = {}
        removed: list[str] = []
        if isinstance(body.context, dict):
            for key, value in body.context.items():
                if bytes(value) == b"null":
                    removed.append(key)
                else:
                    kept[key] = value
        merged = members(kept) if kept else None
        own = OwnContext(token)

        def changes(created: bool) -> Changes:
            out = own.tie(Changes().set_all(simple), created)
            if merged is not None:
                out.set_in(CONTEXT, merged)
            for key in removed:
                out.delete_in(CONTEXT, key)
            if created and token.customer_id:
                out.set(CUSTOMER_ID, ENCODER.encode(token.customer_id))  # a customer's new context is theirs
            return out.set(SESSION_ID, ENCODER.encode(session_id))

        await self.contexts.change(
            token.tenant,
            session_id,
            changes,
            check=own,
            version=body.metadata.version,
            upsert=upsert,
        )
        return no_content()

    @operation(
        "Set an attribute of the customer's own session context",
        body=ATTRIBUTE_BODY.type,
        responses={201: Content(str, description="the attribute's name"), 404: SessionNotFound, 503: BUSY},
        errors=(400, 401, 403, 413),
    )
    async def add_own_attribute(self, request: Request) -> Response:
        token, session_id = self.customers.own(request, self._tenant(request))
        attribute: ContextAttribute = await self._body(request, ATTRIBUTE_BODY)
        name = self.ctx.identifier(attribute.key, "attribute key")
        added = members({name: attribute.value})
        own = OwnContext(token)
        await self.contexts.change(
            token.tenant, session_id, lambda created: own.tie(Changes().set_in(CONTEXT, added), created), check=own
        )
        return JsonResponse(ENCODER.encode(name), 201)

    @operation(
        "Remove an attribute from the customer's own session context",
        description="An attribute that is not there answers 404.",
        responses={204: None, 404: NO_ATTRIBUTE, 503: BUSY},
        errors=(400, 401, 403),
    )
    async def delete_own_attribute(self, request: Request) -> Response:
        token, session_id = self.customers.own(request, self._tenant(request))
        name = self._attribute(request)
        own = OwnContext(token, needs_attribute(session_id, name))
        await self.contexts.change(
            token.tenant,
            session_id,
            lambda created: own.tie(Changes().delete_in(CONTEXT, name), created),
            check=own,
            read=(CUSTOMER_ID, CONTEXT),
        )
        return no_content()

    # -- routes ----------------------------------------------------------------

    def routes(self) -> list[Endpoint]:
        base = "/session-context/{tenant}"
        table: list[tuple[str, str, Any]] = [
            (base + "/context/{sessionId}", "GET", self.get_context),
            (base + "/context/{sessionId}", "PUT", self.put_context),
            (base + "/context/{sessionId}/attributes", "POST", self.add_attribute),
            (base + "/context/{sessionId}/attributes/{attributeName:path}", "DELETE", self.delete_attribute),
            (base + "/me/context", "GET", self.get_own),
            (base + "/me/context", "PATCH", self.patch_own),
            (base + "/me/context/attributes", "POST", self.add_own_attribute),
            (base + "/me/context/attributes/{attributeName:path}", "DELETE", self.delete_own_attribute),
        ]
        return build_routes(table, FACE, self.ctx, ANSWERS)


def routes(ctx: Context) -> list[Endpoint]:
    return EmporixFace(ctx).routes()
