"""LivePerson's Conversation Context Service v2 (``/v2/context/document/...``),
over the storage core: the same data as the v1 face (liveperson.py).

A context document is a session of a namespace of the account (the tenant);
its ``payload`` is the session's properties. A document without a
``sessionId`` is the namespace-level one, which v1 calls the session
``__default__`` (its ``documentKey`` ends in ``:``, as the vendor's example
shows). ``ttlSeconds`` on a write makes the document expire that long after
it; a write without it leaves the document to the retention
(``--max-retention``, 13 months as the vendor's).

The key comes as v2 clients send their token, ``?access_token=``, or in any
header the other faces read. Errors are v1's ``{"code", "message"}``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from ..bodies import VendorBody, read
from ..operations import Content, Face, operation
from ..routing import Endpoint, build_routes
from ..store.core import ORIGIN_LIVEPERSON, Changes, Session, Status
from ..web import ApiError, Context, JsonResponse, iso8601
from .liveperson_wire import ANSWERS, DEFAULT_SESSION, ErrorBody, checked_namespace

PREFIX = "/v2/context/document"
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_]+")  # the v2 page: letters, numbers and underscore only
TOO_LARGE = "document too large"  # the vendor's 413 message
MAX_TTL_S = 10 * 366 * 24 * 3600


class DocumentRef(msgspec.Struct, rename="camel", kw_only=True):
    """Which document a request is about."""

    account_id: str
    name_space: str
    session_id: str | None | UnsetType = UNSET  # none (or null, or ""): the namespace-level document


class DocumentCreate(DocumentRef, kw_only=True):
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)] | None | UnsetType = UNSET
    payload: Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="property name -> any JSON value")]


class PropertiesRead(DocumentRef, kw_only=True):
    filter: list[str]


class DocumentDelete(DocumentRef, kw_only=True):
    # names to delete; without it, property/delete removes the whole document (the vendor's table)
    property_to_delete: list[str] | None | UnsetType = UNSET


class Written(msgspec.Struct, rename="camel"):
    document_key: str
    tenant_id: str
    success: bool = True


class Document(msgspec.Struct, rename="camel", kw_only=True):
    """The document envelope, members in the vendor's example's order."""

    account_id: str
    document_key: str
    document_type: str = "CONTEXT"
    name_space: str
    payload: Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="property name -> any JSON value")]
    session_id: str | UnsetType = UNSET  # only for a session's document
    tenant_id: str
    ttl: str | None  # when the document expires (ISO 8601 UTC); null: never (--max-retention 0 and no ttlSeconds)


FACE = Face(
    "liveperson-v2",
    "LivePerson's Conversation Context Service v2 (context documents), over the same data as the v1 API: "
    "a document is a v1 session, the namespace-level document (no `sessionId`) is v1's session `__default__`.",
    error=Content(ErrorBody),
    path_params={
        "account": "the LivePerson account id (the tenant)",
        "namespace": "the namespace: letters, digits and '_'",
        "session": "the session id",
    },
    security=("accessToken", "bearer", "mavenApiKey", "apiKey"),
)
ENCODE = msgspec.json.Encoder().encode
CREATE_BODY: VendorBody[DocumentCreate] = VendorBody(DocumentCreate)
READ_BODY: VendorBody[PropertiesRead] = VendorBody(PropertiesRead)
DELETE_PROPERTIES_BODY: VendorBody[DocumentDelete] = VendorBody(DocumentDelete)
DELETE_BODY: VendorBody[DocumentRef] = VendorBody(DocumentRef)


class LivePersonV2Face:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # -- who and what ----------------------------------------------------------

    def _namespace(self, name: str, *, writing: bool) -> str:
        limit = self.ctx.settings.max_name_chars
        if not NAMESPACE_RE.fullmatch(name) or len(name) > limit:
            raise ApiError(400, f"invalid nameSpace: use 1 to {limit} letters, digits or '_'")
        return checked_namespace(name, writing=writing)

    def _session(self, session_id: str | None | UnsetType) -> str | None:
        if session_id is UNSET or session_id is None or session_id == "":
            return None
        return self.ctx.identifier(session_id, "sessionId")

    async def _body(self, request: Request, decoder: VendorBody[Any]) -> Any:
        settings = self.ctx.settings
        try:
            body = await read(request, settings.max_body_bytes, self.ctx.bodies)
        except ApiError as exc:
            if exc.status == 413:
                raise ApiError(413, TOO_LARGE) from None
            raise
        return decoder.decode(body, settings.max_json_depth)

    async def _document(self, request: Request, decoder: VendorBody[Any]) -> tuple[Any, str, str, str | None]:
        """The body, and the tenant, namespace and session (None: namespace level) it names.
        The key is that of ``?access_token=`` (what v2 clients send) or of a header:
        an unknown one is refused before the body is read."""
        self.ctx.caller(request, query_token=True)
        body = await self._body(request, decoder)
        tenant = self.ctx.name(body.account_id, "accountId")
        namespace = self._namespace(body.name_space, writing=self.ctx.writes(request))
        session = self._session(body.session_id)
        self.ctx.require(request, tenant, query_token=True)
        return body, tenant, namespace, session

    @staticmethod
    def _key(tenant: str, namespace: str, session: str | None) -> str:
        return f"{tenant}:{namespace}:{session or ''}"

    def _written(self, tenant: str, namespace: str, session: str | None, status: int = 200) -> Response:
        return JsonResponse(ENCODE(Written(self._key(tenant, namespace, session), tenant)), status)

    # -- writes ----------------------------------------------------------------

    @operation(
        "Create or update a document",
        description="Upsert: each member of `payload` is set (added or replaced), the document's other properties "
        "stay. With `ttlSeconds` the document expires that long after this write; without it, after the retention "
        "(`--max-retention`, 13 months by default). A document over 800,000 characters is refused (413 "
        "`document too large`) and nothing is stored.",
        scope="write",
        body=CREATE_BODY.type,
        responses={201: Written},
    )
    async def create(self, request: Request) -> Response:
        body, tenant, namespace, session = await self._document(request, CREATE_BODY)
        changes = Changes()
        for name, value in body.payload.items():
            changes.set(self.ctx.identifier(name, "property name in payload"), CREATE_BODY.value(value))
        ttl = body.ttl_seconds if isinstance(body.ttl_seconds, int) else 0
        result = await self.store.write(
            tenant, namespace, session or DEFAULT_SESSION, changes, idle_ttl_ms=ttl * 1000, origin=ORIGIN_LIVEPERSON
        )
        if result.status is Status.TOO_LARGE:
            raise ApiError(413, TOO_LARGE)
        if result.status is Status.TOO_MANY:
            raise ApiError(413, f"more than {self.ctx.settings.limits.max_properties} properties in one document")
        return self._written(tenant, namespace, session, 201)

    @operation(
        "Create or update a document (PATCH)",
        description="The same as `POST .../create`: LivePerson's dynamic-routing guide shows this call with PATCH.",
        scope="write",
        body=CREATE_BODY.type,
        responses={201: Written},
    )
    async def create_by_patch(self, request: Request) -> Response:
        return await self.create(request)

    @operation(
        "Delete properties of a document",
        description="Removes the properties named in `propertyToDelete` (plain names); without `propertyToDelete` "
        "the whole document, as the vendor's table has it. A document left with no property is gone. Deleting "
        "what is not there is no error.",
        scope="write",
        body=DELETE_PROPERTIES_BODY.type,
        responses={200: Written},
    )
    async def delete_properties(self, request: Request) -> Response:
        body, tenant, namespace, session = await self._document(request, DELETE_PROPERTIES_BODY)
        changes = Changes()
        if isinstance(body.property_to_delete, list):
            if len(body.property_to_delete) > self.ctx.settings.max_list_items:
                raise ApiError(400, f"propertyToDelete names at most {self.ctx.settings.max_list_items} properties")
            for name in body.property_to_delete:
                changes.delete(self.ctx.identifier(name, "property name in propertyToDelete"))
        else:
            changes.clear()
        await self.store.write(
            tenant, namespace, session or DEFAULT_SESSION, changes, drop_empty=True, create_namespace=False
        )
        return self._written(tenant, namespace, session)

    @operation(
        "Delete a document",
        description="Every property of the document (of the session, or the namespace-level one without "
        "`sessionId`). Deleting one that is not there is no error.",
        scope="write",
        body=DELETE_BODY.type,
        responses={200: Written},
    )
    async def delete_document(self, request: Request) -> Response:
        _body, tenant, namespace, session = await self._document(request, DELETE_BODY)
        await self.store.write(
            tenant, namespace, session or DEFAULT_SESSION, Changes().clear(), drop_empty=True, create_namespace=False
        )
        return self._written(tenant, namespace, session)

    # -- reads -----------------------------------------------------------------

    async def _read(self, request: Request, session: str | None) -> Response:
        self.ctx.caller(request, query_token=True)
        tenant = self.ctx.name(request.path_params["account"], "accountId")
        namespace = self._namespace(request.path_params["namespace"], writing=False)
        self.ctx.require(request, tenant, query_token=True)
        found = await self.store.read(tenant, namespace, session or DEFAULT_SESSION)
        document_key = self._key(tenant, namespace, session)
        if found is None:
            raise ApiError(404, f"document {document_key} not found")
        return JsonResponse(ENCODE(envelope(found, tenant, namespace, session, document_key)))

    @operation(
        "Read the namespace-level document",
        description="The document without a session (v1's session `__default__`).",
        scope="read",
        responses={200: Document},
        errors=(400, 404),
    )
    async def get_namespace_document(self, request: Request) -> Response:
        return await self._read(request, None)

    @operation("Read a session's document", scope="read", responses={200: Document}, errors=(400, 404))
    async def get_document(self, request: Request) -> Response:
        return await self._read(request, self.ctx.identifier(request.path_params["session"], "sessionId"))

    @operation(
        "Read chosen properties",
        description="`filter` names properties as `<nameSpace>.<property>`; the answer is a flat object keyed by the "
        "same strings, without those the document does not have (`{}` when there is no document). A name that "
        "matches no property exactly matches one that differs only in case, as the vendor's example "
        "(`myNamespace.property2` reading `Property2`) shows.",
        scope="read",
        body=READ_BODY.type,
        responses={200: Annotated[dict[str, Any], msgspec.Meta(description="`<nameSpace>.<property>` -> its value")]},
    )
    async def read_properties(self, request: Request) -> Response:
        body, tenant, namespace, session = await self._document(request, READ_BODY)
        if len(body.filter) > self.ctx.settings.max_list_items:
            raise ApiError(400, f"filter names at most {self.ctx.settings.max_list_items} properties")
        prefix = namespace + "."
        wanted: list[tuple[str, str]] = []
        for entry in body.filter:
            if not entry.startswith(prefix):
                raise ApiError(400, f"filter entries are '{prefix}<property>'; {entry!r} is not")
            wanted.append((entry, self.ctx.identifier(entry[len(prefix) :], "property name in filter")))
        found = await self.store.read(tenant, namespace, session or DEFAULT_SESSION)
        out: dict[str, msgspec.Raw] = {}
        if found is not None:
            folded: dict[str, str | None] = {}
            for name in found.properties:
                folded[name.casefold()] = None if name.casefold() in folded else name  # None: ambiguous
            for entry, name in wanted:
                stored = name if name in found.properties else folded.get(name.casefold())
                if stored is not None:
                    out[entry] = msgspec.Raw(found.properties[stored])
        return JsonResponse(ENCODE(out))

    # -- routes ----------------------------------------------------------------

    def routes(self) -> list[Endpoint]:
        table: list[tuple[str, str, Any]] = [
            (PREFIX + "/create", "POST", self.create),
            (PREFIX + "/create", "PATCH", self.create_by_patch),
            (PREFIX + "/properties", "POST", self.read_properties),
            (PREFIX + "/property/delete", "DELETE", self.delete_properties),
            (PREFIX + "/delete", "DELETE", self.delete_document),
            (PREFIX + "/{account}/{namespace}", "GET", self.get_namespace_document),
            (PREFIX + "/{account}/{namespace}/{session}", "GET", self.get_document),
        ]
        return build_routes(table, FACE, self.ctx, ANSWERS)


def envelope(found: Session, tenant: str, namespace: str, session: str | None, document_key: str) -> Document:
    return Document(
        account_id=tenant,
        document_key=document_key,
        name_space=namespace,
        payload={name: msgspec.Raw(value) for name, value in found.properties.items()},
        session_id=UNSET if session is None else session,
        tenant_id=tenant,
        ttl=iso8601(found.expires_ms) if found.expires_ms else None,
    )


def routes(ctx: Context) -> list[Endpoint]:
    return LivePersonV2Face(ctx).routes()
