"""Cross-origin requests (CORS), for the callers that run in a browser: a
storefront calling Emporix's ``/me/context`` from the shopper's page, an agent
desktop following a session's events.

Starlette's CORSMiddleware does the work, for every route and method, with one
change: a request from an origin that is not allowed gets no CORS header at
all (Starlette's still adds ``Access-Control-Expose-Headers`` to it, and the
allowed methods and headers to a refused preflight), only ``Vary: Origin``.
Credentials (cookies) are never allowed: the APIs take keys and tokens in
headers, so ``*`` (any origin) is safe to offer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Send

ANY_ORIGIN = "*"
METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")
# every request header some face reads (Content-Type, Accept... are safelisted by Starlette)
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "maven-api-key",
    "X-API-Key",
    "saas-token",
    "If-Match",
    "If-None-Match",
    "X-Request-Id",
    # the Genesys face's associations come in headers too
    "gkc_customerId",
    "gkc_agentId",
)
EXPOSED_HEADERS = ("ETag", "Location", "X-Request-Id")
MAX_AGE_S = 600
ORIGIN_RE = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")


def check_origin(origin: str) -> str:
    """The origin as browsers send it (``scheme://host[:port]``, lower case), or
    ``*``; ValueError saying what is wrong otherwise."""
    value = origin.strip()
    if value == ANY_ORIGIN:
        return value
    lowered = value.lower()
    if not ORIGIN_RE.fullmatch(lowered):
        raise ValueError(
            f"--cors-origin {origin!r} is not an origin: give scheme://host[:port] (http or https, no path, "
            "no trailing slash), or * for any origin"
        )
    return lowered


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(check_origin(o) for o in origins if o.strip()))


class Cors(CORSMiddleware):
    """Starlette's CORS middleware; an origin not allowed gets no CORS header."""

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(request_headers["origin"]):
            return PlainTextResponse("Disallowed CORS origin", 400, headers={"Vary": "Origin"})
        return super().preflight_response(request_headers)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin):
            await super().send(message, send, request_headers)
            return
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        await send(message)


def middleware(origins: Sequence[str]) -> list[Middleware]:
    """The CORS middleware for these origins; none at all without any."""
    if not origins:
        return []
    return [
        Middleware(
            Cors,
            allow_origins=check_origins(origins),
            allow_methods=METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=MAX_AGE_S,
        )
    ]
