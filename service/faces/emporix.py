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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import orjson
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import customer_tokens
from ..customer_tokens import CustomerToken, InvalidCustomerToken
from ..openapi import Content, Face, Param, build_routes, operation
from ..store.core import Changes, Existence, Session, Status, WriteResult
from ..web import ApiError, Context, guarded, iso8601

NAMESPACE = "__emporix__"
TENANT_RE = re.compile(r"[a-z][a-z0-9]{2,15}")  # the vendor's ^[a-z][a-z0-9]+$, 3 to 16 characters
SESSION_ID = "sessionId"
CUSTOMER_ID = "customerId"
CONTEXT = "context"
SIMPLE_FIELDS = ("customerId", "siteCode", "currency", "cartId", "targetLocation", "language")
PATCH_FIELDS = ("siteCode", "currency", "targetLocation", "language")  # what PATCH /me/context takes
# Writes that must see what they checked (an owner, an attribute that is there)
# are pinned to the version read with the check; when another write comes in
# between, those without a client version start over, at most this many
# times, and then answer 503 (the server's own read and write kept colliding).
MAX_ATTEMPTS = 32
NO_CONTENT = 204

# -- the API's types (the vendor's schema names in the comments) ----------------

OptionalText = str | UnsetType | None  # null is taken as "not given"


class MetadataUpdate(msgspec.Struct):
    """MetadataUpdate: the version a change is made against (other members, such
    as an echoed createdAt, are ignored)."""

    version: int


class Metadata(msgspec.Struct):
    """Metadata."""

    version: int
    createdAt: str
    modifiedAt: str


class SessionContext(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_GET: fields that were never set are left out."""

    sessionId: str
    customerId: str | UnsetType = UNSET
    siteCode: str | UnsetType = UNSET
    currency: str | UnsetType = UNSET
    cartId: str | UnsetType = UNSET
    targetLocation: str | UnsetType = UNSET
    language: str | UnsetType = UNSET
    context: dict[str, Any] | UnsetType = UNSET
    metadata: Metadata


class SessionContextUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_PUT: replaces the stored fields. ``sessionId`` is the path's."""

    sessionId: OptionalText = UNSET
    customerId: OptionalText = UNSET
    siteCode: OptionalText = UNSET
    currency: OptionalText = UNSET
    cartId: OptionalText = UNSET
    targetLocation: OptionalText = UNSET
    language: OptionalText = UNSET
    context: dict[str, Any] | UnsetType | None = UNSET
    metadata: MetadataUpdate


class SessionContextPatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_PATCH: only these fields are taken, any other is ignored.
    ``context`` is merged key by key; a key set to null is removed."""

    siteCode: OptionalText = UNSET
    currency: OptionalText = UNSET
    targetLocation: OptionalText = UNSET
    language: OptionalText = UNSET
    context: dict[str, Any] | UnsetType | None = UNSET
    metadata: MetadataUpdate


class ContextAttribute(msgspec.Struct):
    """ContextAttribute: ``value`` is any JSON value."""

    key: str
    value: Any


class ErrorMessage(msgspec.Struct):
    """ErrorMessage: ``code`` is the HTTP status."""

    code: int
    message: str


class SessionNotFound(msgspec.Struct):
    """The 404 of a missing session context."""

    sessionId: str
    code: int
    message: str


UPSERT = Param("upsert", bool, "create the context when it does not exist")
SAAS_TOKEN = Param("saas-token", str, "the customer's token, needed when the context (or the body) has a customerId")
FACE = Face(
    "emporix",
    "The Emporix Session Context Service. `/context/...` takes an API key; `/me/context...` the customer's own "
    "token (a JWT) as `Authorization: Bearer`, whose session it works on.",
    error=Content(ErrorMessage),
    path_params={
        "tenant": "the tenant: a lowercase letter, then 2 to 15 lowercase letters or digits",
        "sessionId": "the session id",
        "attributeName": "the name of an attribute in the context",
    },
)
NOT_FOUND = Content(
    SessionNotFound,
    description="No such session context; or a version conflict: `metadata.version` is not the stored version, "
    "answered as Emporix does, `The context with sessionId <id> and version <v> has not been found.` (nothing changes)",
)
NO_ATTRIBUTE = Content(SessionNotFound, description="No such session context, or no such attribute in it")
BUSY = Content(
    ErrorMessage,
    description="Redis did not answer; or the context kept changing between this change's read of it and its "
    "write, too often in a row (nothing changed: try again)",
)
Body = TypeVar("Body", SessionContextUpdate, SessionContextPatch, ContextAttribute)
Check = Callable[[Session | None], None]
ENCODER = msgspec.json.Encoder()


def render_error(error: ApiError) -> Response:
    session_id = error.extra.get(SESSION_ID)
    body: ErrorMessage | SessionNotFound
    if isinstance(session_id, str):
        body = SessionNotFound(session_id, error.status, error.message)
    else:
        body = ErrorMessage(error.status, error.message)
    return Response(ENCODER.encode(body), error.status, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=NO_CONTENT)


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "Session not found", sessionId=session_id)


def version_conflict(session_id: str, version: int) -> ApiError:
    """A ``metadata.version`` that is not the stored one, answered as Emporix
    does: a 404 naming the version the request named."""
    return ApiError(
        404, f"The context with sessionId {session_id} and version {version} has not been found.", sessionId=session_id
    )


def attribute_not_found(session_id: str, name: str) -> ApiError:
    # not "has not been found": storefront code takes a 404 saying that (with "version") for a conflict
    message = f"The context with sessionId {session_id} has no attribute {name}."
    return ApiError(404, message, sessionId=session_id)


def busy() -> ApiError:
    return ApiError(503, "the session context kept changing while this change was applied; try again")


def text(value: OptionalText) -> str | None:
    return value if isinstance(value, str) else None


def owner_of(session: Session | None) -> str | None:
    """The customerId of a stored context (None: none)."""
    raw = None if session is None else session.properties.get(CUSTOMER_ID)
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, str) and value else None


def owner_may(token: CustomerToken, owner: str | None) -> None:
    """On /me: a context that belongs to a customer is that customer's only."""
    if owner and token.customer_id != owner:
        raise ApiError(403, "this session context belongs to another customer")


class OwnContext:
    """The check of a /me write (the owner rule, then ``more``), which keeps
    the owner it saw, so that the write can tie the context: to the token's
    customer, when the write creates the context (its customerId is set then)
    or the context is that customer's already."""

    def __init__(self, token: CustomerToken, more: Check | None = None) -> None:
        self.token = token
        self.more = more
        self.owner: str | None = None

    def __call__(self, stored: Session | None) -> None:
        self.owner = owner_of(stored)
        owner_may(self.token, self.owner)
        if self.more is not None:
            self.more(stored)

    def tie(self, changes: Changes, created: bool) -> Changes:
        customer = self.token.customer_id
        if customer and (created or self.owner == customer):
            changes.tie(customer)
        return changes


class EmporixFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        # Read and checked now: a bad [customer_tokens] section fails the app build.
        self.tokens = customer_tokens.from_auth(ctx.auth)
        self.idle_ttl_ms = ctx.settings.emporix_idle_ttl_s * 1000

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

    def _manager(self, request: Request, scope: str) -> tuple[str, str]:
        """Tenant and session id of a management call, its API key checked."""
        tenant = self._tenant(request)
        self.ctx.require(request, tenant, scope)
        return tenant, self._session_id(request)

    @staticmethod
    def _upsert(request: Request) -> bool:
        raw = request.query_params.get("upsert", "").lower()
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0", ""):
            return False
        raise ApiError(400, "query parameter upsert must be true or false")

    async def _body(self, request: Request, kind: type[Body]) -> Body:
        """The JSON body as ``kind``: 413 over the size limit, 400 when it is not
        JSON, nests too deep, is not an object or has a member of a wrong type."""
        value = await self.ctx.json_object(request)
        if kind is not ContextAttribute:
            metadata = value.get("metadata")
            if not isinstance(metadata, dict) or metadata.get("version") is None:
                raise ApiError(
                    400, "metadata.version is required: the version of the session context this change is made to"
                )
        try:
            return msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            raise ApiError(400, f"invalid body: {exc}") from None

    # -- customer tokens -------------------------------------------------------

    def _verify(self, token: str) -> CustomerToken:
        if self.tokens is None:
            raise InvalidCustomerToken(
                "customer tokens are not configured on this server (no [customer_tokens] in the auth file)"
            )
        return self.tokens.verify(token)

    def _customer(self, request: Request, tenant: str) -> tuple[CustomerToken, str]:
        """The customer token of a /me call, and its session id (401 otherwise).
        API keys are not accepted here."""
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            raise ApiError(401, "a customer access token is required: Authorization: Bearer <token>")
        try:
            token = self._verify(authorization[7:].strip())
        except InvalidCustomerToken as exc:
            raise ApiError(401, exc.message) from None
        if token.tenant != tenant:
            raise ApiError(401, "the customer token is for another tenant")
        session_id = token.session_id
        if session_id is None:
            raise ApiError(401, "the customer token names no session (claim sessionId, session_id or sid)")
        try:
            self.ctx.identifier(session_id, "session id")
        except ApiError:
            raise ApiError(401, "the customer token's session id is not a valid session id") from None
        return token, session_id

    def _saas_token(self, request: Request, tenant: str, owners: set[str]) -> None:
        """A management change to a customer's context needs that customer's
        token in ``saas-token``: 403 otherwise."""
        if not owners:
            return
        raw = request.headers.get("saas-token", "").strip()
        if raw[:7].lower() == "bearer ":
            raw = raw[7:].strip()
        if not raw:
            raise ApiError(
                403, "this session context belongs to a customer: send that customer's token in the saas-token header"
            )
        try:
            token = self._verify(raw)
        except InvalidCustomerToken as exc:
            raise ApiError(403, f"saas-token refused: {exc.message}") from None
        if token.tenant != tenant:
            raise ApiError(403, "saas-token refused: it is for another tenant")
        if any(token.customer_id != owner for owner in owners):
            raise ApiError(
                403, "saas-token refused: it is not the token of the customer this session context belongs to"
            )

    @staticmethod
    def _owner_may(token: CustomerToken, owner: str | None) -> None:
        owner_may(token, owner)

    # -- storage ---------------------------------------------------------------

    @staticmethod
    def _owner(session: Session | None) -> str | None:
        return owner_of(session)

    @staticmethod
    def _needs_attribute(session_id: str, name: str) -> Check:
        """A check that the stored context has the attribute ``name`` (404 otherwise)."""

        def check(stored: Session | None) -> None:
            raw = None if stored is None else stored.properties.get(CONTEXT)
            context = None if raw is None else orjson.loads(raw)
            if not isinstance(context, dict) or name not in context:
                raise attribute_not_found(session_id, name)

        return check

    @staticmethod
    def _written(result: WriteResult, session_id: str) -> WriteResult:
        if result.status is Status.MISSING:
            raise not_found(session_id)
        if result.status is Status.TOO_LARGE:
            raise ApiError(413, "the session context would be too large")
        if result.status is Status.TOO_MANY:
            raise ApiError(413, "the session context would have too many properties")
        return result

    async def _change(
        self,
        tenant: str,
        session_id: str,
        changes: Callable[[bool], Changes],
        *,
        check: Check | None = None,
        read: Sequence[str] = (CUSTOMER_ID,),
        version: int | None = None,
        upsert: bool = False,
    ) -> WriteResult:
        """Apply ``changes(created)`` to a context.

        With nothing to check (a management attribute POST) that is one write
        to a context that must exist. Otherwise the stored context (its
        ``read`` fields; None when there is none) is read first: ``check``
        may refuse the change (an owner rule, an attribute that is not
        there), and ``version``, the client's ``metadata.version``, must be
        the stored one (else 404 naming it, as Emporix answers a conflict).
        The check and the write must see the same context: between the read
        and the write another request could give the context to a customer,
        or remove the attribute. So the write is pinned to the version that
        was read (``version=`` of the one mutate script, which refuses the
        write when the version moved), and a write to a missing context must
        create it (Existence.NONE), not replace one made in between. A pinned
        write refused that way is a conflict of the client's version when it
        named one (that version is stale now); without one (attributes) it
        starts over with a fresh read, and after MAX_ATTEMPTS answers 503.
        """
        if check is None and version is None and not upsert:
            result = await self.store.write(
                tenant, NAMESPACE, session_id, changes(False), existence=Existence.MUST, idle_ttl_ms=self.idle_ttl_ms
            )
            return self._written(result, session_id)
        for _ in range(MAX_ATTEMPTS):
            stored = await self.store.read(tenant, NAMESPACE, session_id, read)
            if stored is None:
                if not upsert:
                    raise not_found(session_id)
                if check is not None:
                    check(None)
                result = await self.store.write(
                    tenant, NAMESPACE, session_id, changes(True), existence=Existence.NONE, idle_ttl_ms=self.idle_ttl_ms
                )
                if result.status is Status.EXISTS:
                    continue  # created in between: check it and its version
            else:
                if check is not None:
                    check(stored)
                if version is not None and version != stored.version:
                    raise version_conflict(session_id, version)
                result = await self.store.write(
                    tenant,
                    NAMESPACE,
                    session_id,
                    changes(False),
                    version=stored.version,
                    existence=Existence.MUST,
                    idle_ttl_ms=self.idle_ttl_ms,
                )
                if result.status is Status.VERSION:
                    if version is not None:
                        raise version_conflict(session_id, version)
                    continue
                if result.status is Status.MISSING:
                    continue  # expired or gone in between
            return self._written(result, session_id)
        raise busy()

    def _response(self, session: Session) -> Response:
        props = session.properties
        fields: dict[str, Any] = {}
        for name in SIMPLE_FIELDS:
            raw = props.get(name)
            if raw is not None and isinstance(value := orjson.loads(raw), str):
                fields[name] = value
        raw_context = props.get(CONTEXT)
        if raw_context is not None and isinstance(context := orjson.loads(raw_context), dict):
            fields[CONTEXT] = context
        body = SessionContext(
            sessionId=session.session_id,
            metadata=Metadata(session.version, iso8601(session.created_ms), iso8601(session.modified_ms)),
            **fields,
        )
        return Response(ENCODER.encode(body), 200, media_type="application/json")

    # -- management side -------------------------------------------------------

    @operation("Read a session context", scope="read", responses={200: SessionContext, 404: SessionNotFound}, errors=(400,))
    async def get_context(self, request: Request) -> Response:
        tenant, session_id = self._manager(request, "read")
        found = await self.store.read(tenant, NAMESPACE, session_id)
        if found is None:
            raise not_found(session_id)
        return self._response(found)

    @operation(
        "Replace a session context",
        description="`metadata.version` must be the stored version: else 404 `The context with sessionId <id> and "
        "version <v> has not been found.`, as Emporix answers a conflict, and nothing changes. Without "
        "`upsert=true` a missing context answers 404. A context that has a `customerId`, or a body that names "
        "one, needs that customer's token in `saas-token` (else 403).",
        scope="write",
        body=SessionContextUpdate,
        query=[UPSERT],
        headers=[SAAS_TOKEN],
        responses={204: None, 404: NOT_FOUND, 503: BUSY},
        errors=(400,),
    )
    async def put_context(self, request: Request) -> Response:
        tenant, session_id = self._manager(request, "write")
        upsert = self._upsert(request)
        body = await self._body(request, SessionContextUpdate)
        fields = [
            (name, orjson.dumps(value)) for name in SIMPLE_FIELDS if (value := text(getattr(body, name))) is not None
        ]
        if isinstance(body.context, dict):
            fields.append((CONTEXT, orjson.dumps(body.context)))
        fields.append((SESSION_ID, orjson.dumps(session_id)))
        new_owner = text(body.customerId)
        if new_owner:
            self.ctx.identifier(new_owner, "customerId")

        def authorize(stored: Session | None) -> None:
            self._saas_token(request, tenant, {o for o in (self._owner(stored), new_owner) if o})

        def changes(created: bool) -> Changes:
            out = Changes().clear().set_all(fields)
            return out.tie(new_owner) if new_owner else out.untie()

        await self._change(
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
        body=ContextAttribute,
        responses={204: None, 404: SessionNotFound},
        errors=(400,),
    )
    async def add_attribute(self, request: Request) -> Response:
        tenant, session_id = self._manager(request, "write")
        attribute = await self._body(request, ContextAttribute)
        name = self.ctx.identifier(attribute.key, "attribute key")
        members = orjson.dumps({name: attribute.value})
        await self._change(tenant, session_id, lambda created: Changes().set_in(CONTEXT, members))
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
        tenant, session_id = self._manager(request, "write")
        name = self._attribute(request)
        await self._change(
            tenant,
            session_id,
            lambda created: Changes().delete_in(CONTEXT, name),
            check=self._needs_attribute(session_id, name),
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
        token, session_id = self._customer(request, self._tenant(request))
        found = await self.store.read(token.tenant, NAMESPACE, session_id)
        if found is None:
            raise not_found(session_id)
        self._owner_may(token, self._owner(found))
        return self._response(found)

    @operation(
        "Change the customer's own session context",
        description="Takes siteCode, currency, targetLocation, language and context (merged key by key, a key set "
        "to null removed); `metadata.version` must be the stored version: else 404 `The context with sessionId "
        "<id> and version <v> has not been found.`, as Emporix answers a conflict, and nothing changes.",
        body=SessionContextPatch,
        query=[UPSERT],
        responses={204: None, 404: NOT_FOUND, 503: BUSY},
        errors=(400, 401, 403, 413),
    )
    async def patch_own(self, request: Request) -> Response:
        token, session_id = self._customer(request, self._tenant(request))
        upsert = self._upsert(request)
        body = await self._body(request, SessionContextPatch)
        simple = [
            (name, orjson.dumps(value)) for name in PATCH_FIELDS if (value := text(getattr(body, name))) is not None
        ]
        kept: dict[str, Any] = {}
        removed: list[str] = []
        if isinstance(body.context, dict):
            for key, value in body.context.items():
                if value is None:
                    removed.append(key)
                else:
                    kept[key] = value
        members = orjson.dumps(kept) if kept else None
        own = OwnContext(token)

        def changes(created: bool) -> Changes:
            out = own.tie(Changes().set_all(simple), created)
            if members is not None:
                out.set_in(CONTEXT, members)
            for key in removed:
                out.delete_in(CONTEXT, key)
            if created and token.customer_id:
                out.set(CUSTOMER_ID, orjson.dumps(token.customer_id))  # a customer's new context is theirs
            return out.set(SESSION_ID, orjson.dumps(session_id))

        await self._change(
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
        body=ContextAttribute,
        responses={201: Content(str, description="the attribute's name"), 404: SessionNotFound, 503: BUSY},
        errors=(400, 401, 403, 413),
    )
    async def add_own_attribute(self, request: Request) -> Response:
        token, session_id = self._customer(request, self._tenant(request))
        attribute = await self._body(request, ContextAttribute)
        name = self.ctx.identifier(attribute.key, "attribute key")
        members = orjson.dumps({name: attribute.value})
        own = OwnContext(token)
        await self._change(
            token.tenant, session_id, lambda created: own.tie(Changes().set_in(CONTEXT, members), created), check=own
        )
        return Response(orjson.dumps(name), 201, media_type="application/json")

    @operation(
        "Remove an attribute from the customer's own session context",
        description="An attribute that is not there answers 404.",
        responses={204: None, 404: NO_ATTRIBUTE, 503: BUSY},
        errors=(400, 401, 403),
    )
    async def delete_own_attribute(self, request: Request) -> Response:
        token, session_id = self._customer(request, self._tenant(request))
        name = self._attribute(request)
        own = OwnContext(token, self._needs_attribute(session_id, name))
        await self._change(
            token.tenant,
            session_id,
            lambda created: own.tie(Changes().delete_in(CONTEXT, name), created),
            check=own,
            read=(CUSTOMER_ID, CONTEXT),
        )
        return no_content()

    # -- routes ----------------------------------------------------------------

    def routes(self) -> list[Route]:
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
        return build_routes(table, FACE, lambda handler: guarded(handler, render_error))


def routes(ctx: Context) -> list[Route]:
    return EmporixFace(ctx).routes()
