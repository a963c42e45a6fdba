"""The console: a web page at ``/console`` for the people who run
sessionstore, to look at what is stored (tenant, namespaces, sessions, one
session's properties), change it with ``If-Match`` and follow a session live.

It is a page for people, not an API: these routes serve the page and its
files, all from service/console/ (plain HTML, CSS and JavaScript of our own,
nothing from elsewhere and no build step); the page itself calls the native
API (``/api/v1/whoami``, ``…/namespaces``, ``…/sessions``) with the API key
the person signs in with, which it keeps in the tab's sessionStorage. In the
OpenAPI document its operations carry the tag ``console`` and ``x-console:
true``. The files are read once, when the app is built, so a wheel that lacks
them fails at start, not on the first visit.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..operations import Content, Face, operation
from ..routing import Endpoint, build_routes
from ..web import Context

FILES = Path(__file__).resolve().parent.parent / "console"
# /console/{asset}: name -> media type
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
FACE = Face(
    "console",
    "The console: a web page for people, at /console, not an API. These routes serve the page and its files; "
    "the page calls the native API with the API key one signs in with.",
    storage=False,
    extensions={"x-console": True},
)
# The page runs only its own files, talks only to this service and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# the page names its files with ?v=<version>: a new version is fetched anew
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}


def routes(ctx: Context) -> list[Endpoint]:
    page = (
        (FILES / "index.html")
        .read_bytes()
        .replace(b"__VERSION__", __version__.encode())
        # with no auth file the page needs no key, and says so without asking first
        .replace(b"__OPEN_ACCESS__", b"true" if ctx.auth is None else b"false")
    )
    assets = {name: (FILES / name).read_bytes() for name in ASSETS}

    @operation(
        "The console page",
        description="A web page for people, not an API: sign in with an API key, browse the tenant's namespaces "
        "and sessions, change them, follow one live. Needs no key to load; the page asks for one.",
        responses={200: Content(str, "text/html")},
    )
    async def console_page(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @operation(
        "The console's files",
        description="Its script, style sheet and icon.",
        responses={200: Content(str, "application/octet-stream"), 404: Content(str, "text/plain")},
    )
    async def console_asset(request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in assets:
            return Response(b"no such file\n", 404, media_type="text/plain")
        return Response(assets[name], media_type=ASSETS[name], headers=ASSET_HEADERS)

    return build_routes([("/console", "GET", console_page), ("/console/{asset}", "GET", console_asset)], FACE)
