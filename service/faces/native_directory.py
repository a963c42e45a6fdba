"""The native API's directory: who is asking (the API key's tenant and
scopes) and what a tenant holds (its namespaces, the other faces' reserved
ones included). The console (service/faces/console.py) starts from these;
native.py serves them under its own error format."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..auth import SCOPES
from ..operations import operation
from ..web import Context, JsonResponse, iso8601

WHOAMI = "/api/v1/whoami"
# the namespaces the other faces keep their data in, and what they hold
RESERVED = {"__emporix__": "emporix", "__genesys__": "genesys"}


class Caller(msgspec.Struct, rename="camel"):
    key_id: Annotated[str, msgspec.Meta(description="the key's label in the auth file (never its secret)")]
    tenant: Annotated[str, msgspec.Meta(description='the tenant the key may act for; "*": every tenant')]
    scopes: Annotated[list[str], msgspec.Meta(description="of read, write, admin")]
    open_access: Annotated[
        bool, msgspec.Meta(description="true when the service runs with no auth file (no key needed)")
    ] = False


class NamespaceInfo(msgspec.Struct, rename="camel"):
    name: str
    created_at: str
    ttl_seconds: Annotated[
        int | None, msgspec.Meta(description="properties written in it expire after this long; null: never")
    ]
    face: Annotated[
        str | None,
        msgspec.Meta(description='a reserved namespace: the API whose data it holds ("emporix", "genesys"); else null'),
    ]


class NamespaceList(msgspec.Struct):
    namespaces: list[NamespaceInfo]


class Directory:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @operation(
        "Who is asking",
        description="The API key the request carries: its id, its tenant and its scopes, so that a client (the "
        "console) can show only what the key may do. Any valid key may ask.",
        responses={200: Caller},
        errors=(401,),
    )
    async def whoami(self, request: Request) -> Response:
        key = self.ctx.caller(request)
        caller = Caller(key.id, key.tenant, [s for s in SCOPES if s in key.scopes], self.ctx.auth is None)
        return JsonResponse(msgspec.json.encode(caller))

    @operation(
        "List a tenant's namespaces",
        description="Every namespace, with its creation time and TTL, in name order; the reserved ones, where the "
        "Emporix contexts (`__emporix__`) and the Genesys sessions (`__genesys__`) are kept, included.",
        scope="read",
        responses={200: NamespaceList},
        errors=(400,),
    )
    async def list_namespaces(self, request: Request) -> Response:
        tenant = self.ctx.name(request.path_params["tenant"], "tenant")
        self.ctx.require(request, tenant)
        listed = [
            NamespaceInfo(ns.name, iso8601(ns.created_ms), ns.ttl_s or None, RESERVED.get(ns.name))
            for ns in await self.ctx.store.list_namespaces(tenant)
        ]
        return JsonResponse(msgspec.json.encode(NamespaceList(listed)))
