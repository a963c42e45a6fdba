"""A customer's data in every API, for the requests people make of it (see,
export, erase: GDPR articles 15, 17 and 20): part of the native API, under
``/api/v1/tenants/{tenant}/customers/{customerId}``, with the ``admin`` scope.

    GET    …/sessions   every session tied to the customer, of every API (metadata only)
    GET    …/export     all of it, session by session, as one JSON document, streamed
    DELETE …            erase every such session (deletion events published); {"erased": N}

The store side (the index, and why an erasure misses no session) is
service/store/customers.py. Each export and erasure writes an audit line
(service/audit.py). Errors are problem details, as in the rest of the native API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import audit
from ..operations import Face, operation
from ..routing import Endpoint, build_routes
from ..store import customers
from ..store.core import UNAVAILABLE, SessionStore
from ..store.customers import Api
from ..web import Context, JsonResponse, iso8601
from .native_wire import ANSWERS, PREFIX, SessionMetadata, resource
from .native_wire import FACE as NATIVE

API_DESCRIPTION = (
    "the API the session belongs to: emporix and genesys for their namespaces (__emporix__, __genesys__); in the "
    "namespaces that LivePerson and the native API share, liveperson for a session created through LivePerson "
    "(v1 or v2), native for the others"
)


class CustomerSession(msgspec.Struct, rename="camel"):
    api: Annotated[Api, msgspec.Meta(description=API_DESCRIPTION)]
    namespace: str
    session_id: str
    created_at: str
    modified_at: str
    expires_at: Annotated[str | None, msgspec.Meta(description="null: it does not expire")]


class CustomerSessions(msgspec.Struct):
    sessions: list[CustomerSession]


class ExportedSession(msgspec.Struct, rename="camel"):
    """One session in an export: as the native API shows it, with its API and namespace."""

    api: Annotated[Api, msgspec.Meta(description=API_DESCRIPTION)]
    namespace: str
    session_id: str
    customer_id: str
    properties: Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="name -> any JSON value")]
    metadata: SessionMetadata


class CustomerExport(msgspec.Struct, rename="camel"):
    tenant: str
    customer_id: str
    sessions: list[ExportedSession]


class Erased(msgspec.Struct):
    erased: Annotated[int, msgspec.Meta(description="how many sessions were deleted (0 when there were none)")]


FACE = Face(
    NATIVE.name,
    NATIVE.description,
    error=NATIVE.error,
    path_params={
        **NATIVE.path_params,
        "customerId": "the customer id, as the session was tied with it: any text without '/' or control characters",
    },
)
ENCODER = msgspec.json.Encoder()


def listed(found: customers.Found) -> CustomerSession:
    s = found.session
    return CustomerSession(
        found.api,
        found.namespace,
        s.session_id,
        iso8601(s.created_ms),
        iso8601(s.modified_ms),
        iso8601(s.expires_ms) if s.expires_ms else None,
    )


def exported(found: customers.Found, customer: str) -> bytes:
    shown = resource(found.session)
    return ENCODER.encode(
        ExportedSession(
            found.api,
            found.namespace,
            shown.session_id,
            customer,
            shown.properties,
            shown.metadata,
        )
    )


class Export:
    """One customer's export document (CustomerExport), a batch of sessions at
    a time: ``await start()`` reads the first batch, then ``document()``
    yields the document's bytes. ``sessions``: how many were written so far;
    ``complete``: whether the document was written to its end."""

    def __init__(self, store: SessionStore, tenant: str, customer: str) -> None:
        self.tenant = tenant
        self.customer = customer
        self.batches = customers.tied_batches(store, tenant, customer, whole=True)
        self.first: list[customers.Found] | None = None
        self.sessions = 0
        self.complete = False

    async def start(self) -> None:
        self.first = await anext(self.batches, None)

    async def document(self) -> AsyncIterator[bytes]:
        yield ENCODER.encode({"tenant": self.tenant, "customerId": self.customer})[:-1] + b',"sessions":['
        batch = self.first
        while batch is not None:
            parts = [exported(f, self.customer) for f in batch]
            yield (b"," if self.sessions else b"") + b",".join(parts)
            self.sessions += len(parts)
            batch = await anext(self.batches, None)
        yield b"]}"
        self.complete = True


class CustomersFace:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def _where(self, request: Request) -> tuple[str, str, str]:
        """Tenant, customer id and the caller's key id, the admin scope checked."""
        tenant = self.ctx.name(request.path_params["tenant"], "tenant")
        customer = self.ctx.identifier(request.path_params["customerId"], "customer id")
        key = self.ctx.require(request, tenant)
        return tenant, customer, key.id

    @operation(
        "List a customer's sessions",
        description="Every session tied to the customer, in every API: Emporix contexts by their `customerId`, "
        "Genesys sessions by their associated customer, native (and so LivePerson) sessions by their "
        "`customerId` member. Metadata only: `…/export` has the data.",
        scope="admin",
        responses={200: CustomerSessions},
        errors=(400,),
    )
    async def list_sessions(self, request: Request) -> Response:
        tenant, customer, _key = self._where(request)
        found = await customers.list_sessions(self.store, tenant, customer)
        body = CustomerSessions([listed(f) for f in found])
        return JsonResponse(ENCODER.encode(body))

    @operation(
        "Export a customer's data",
        description="Every session tied to the customer, in every API, with all its properties, as one JSON "
        "document sent as it is read (a customer with many sessions is never held in memory whole). If the "
        "storage fails once the document has started, the response is cut off before its end (not valid JSON): "
        "ask again. Writes an audit line.",
        scope="admin",
        responses={200: CustomerExport},
        errors=(400,),
    )
    async def export(self, request: Request) -> Response:
        tenant, customer, key = self._where(request)
        started = time.monotonic()
        export = Export(self.store, tenant, customer)
        await export.start()  # a storage failure before the document starts is a 503

        async def streamed() -> AsyncIterator[bytes]:
            try:
                async for chunk in export.document():
                    yield chunk
            finally:
                audit.record("export", key=key, tenant=tenant, customer=customer, started=started,
                             sessions=export.sessions, complete=export.complete)  # fmt: skip

        return StreamingResponse(streamed(), media_type="application/json")

    @operation(
        "Erase a customer's data",
        description="Deletes every session tied to the customer, in every API, publishing each deletion's event "
        "(`…/events` streams see it). Every session tied to the customer when the erasure starts is gone when it "
        "answers, on a cluster and under concurrent writes too; a write that lands after its session was erased "
        "makes a new session (tied, if the write ties it, and then listed). Idempotent: again, it answers "
        '`{"erased": 0}`. Writes an audit line.',
        scope="admin",
        responses={200: Erased},
        errors=(400,),
    )
    async def erase(self, request: Request) -> Response:
        tenant, customer, key = self._where(request)
        started = time.monotonic()
        try:
            erased = await customers.erase(self.store, tenant, customer)
        except UNAVAILABLE:
            audit.record("erase", key=key, tenant=tenant, customer=customer, started=started, complete=False)
            raise
        audit.record("erase", key=key, tenant=tenant, customer=customer, started=started,
                     erased=erased, complete=True)  # fmt: skip
        return JsonResponse(ENCODER.encode(Erased(erased)))

    def routes(self) -> list[Endpoint]:
        customer = PREFIX + "/{tenant}/customers/{customerId}"
        table: list[tuple[str, str, Any]] = [
            (customer + "/sessions", "GET", self.list_sessions),
            (customer + "/export", "GET", self.export),
            (customer, "DELETE", self.erase),
        ]
        return build_routes(table, FACE, self.ctx, ANSWERS)


def routes(ctx: Context) -> list[Endpoint]:
    """The customer calls: native.routes puts them with its own, before the
    Mount that answers the prefix's unknown paths."""
    return CustomersFace(ctx).routes()
