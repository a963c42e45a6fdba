"""What the native API's handlers read from a request: the names in its
path (the caller's scope checked with them), the TTL, the body and the
property values in it."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from ..bodies import Body, read
from ..web import Context, int_param
from .native_wire import MAX_TTL_S, VALUE_BODY

SESSION_OUTER = 2  # the levels around a property value in a session body: its object and "properties"


class NativeRequests:
    """The request parts every native handler reads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.limits = ctx.settings.limits

    # -- request parts ----------------------------------------------------------

    def _where(self, request: Request, session: bool = True, *, query_token: bool = False) -> tuple[str, str, str]:
        params = request.path_params
        tenant = self.ctx.name(params["tenant"], "tenant")
        namespace = self.ctx.name(params["namespace"], "namespace")
        session_id = self.ctx.identifier(params["sessionId"], "session id") if session else ""
        self.ctx.require(request, tenant, query_token=query_token)
        return tenant, namespace, session_id

    def _property(self, request: Request) -> str:
        return self.ctx.identifier(request.path_params["name"], "property name")

    def _ttl(self, request: Request) -> int | None:
        return int_param(request, "ttl", None, 1, MAX_TTL_S)

    async def _body(self, request: Request, body: Body[Any]) -> Any:
        settings = self.ctx.settings
        return body.decode(await read(request, settings.max_body_bytes, self.ctx.bodies), settings.max_json_depth)

    def _value(self, raw: msgspec.Raw, outer: int = SESSION_OUTER) -> bytes:
        """A property value as the compact JSON text the store keeps; ``outer``:
        the levels of the body around it, which count towards the nesting limit."""
        return VALUE_BODY.nested_value(raw, self.ctx.settings.max_json_depth, outer)
