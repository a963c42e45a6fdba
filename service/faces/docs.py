"""The OpenAPI document of every face (``/openapi.json``) and a page that
renders it (``/docs``) with the Swagger UI files shipped in the swagger-ui-py
package and in service/static/: the page loads nothing from elsewhere, so it
works with no internet access."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from .. import __version__
from ..openapi import document
from ..operations import Content, Face, operation
from ..routing import Endpoint, build_routes
from ..web import Context

STATIC = Path(__file__).resolve().parent.parent / "static"
# /docs/{asset}: name -> (file, media type)
SWAGGER_FILES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
OWN_FILES = {"sessionstore-docs.js": "text/javascript; charset=utf-8"}
DESCRIPTION = """\
One Redis-backed session store, five APIs: sessionstore's own (native), and
ones compatible with the LivePerson (v1 and v2), Emporix and Genesys session
APIs. They share the storage: a namespace made through the LivePerson API is
the same one the native API shows, and a LivePerson v2 document is a v1
session.

Requests carry an API key in `X-API-Key`, `maven-api-key` or
`Authorization: Bearer` (LivePerson v2 also in `?access_token=`); each key
acts for one tenant (or all) with the
scopes `read`, `write` and `admin`. Without an auth file the service answers
everyone, on a loopback address only.
"""
FACE = Face("docs", "This document and a page that shows it.", storage=False)


def swagger_ui_dir() -> Path:
    """The static files of the swagger-ui-py package (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def openapi_document(routes: Iterable[BaseRoute]) -> bytes:
    """The OpenAPI document of an app's routes, as JSON: what /openapi.json
    answers, and what the documentation site (docs/hooks.py) renders."""
    return msgspec.json.encode(document(routes, title="sessionstore", version=__version__, description=DESCRIPTION))


def asset_path(name: str) -> tuple[Path, str] | None:
    if name in SWAGGER_FILES:
        return swagger_ui_dir() / name, SWAGGER_FILES[name]
    if name in OWN_FILES:
        return STATIC / name, OWN_FILES[name]
    return None


def routes(ctx: Context) -> list[Endpoint]:
    cache: dict[str, bytes] = {}

    @operation(
        "This OpenAPI document",
        description="OpenAPI 3.1, for every endpoint of every API; the schemas are made from the types the code "
        "decodes and encodes with.",
        responses={200: dict[str, Any]},
    )
    async def openapi_json(request: Request) -> Response:
        if "openapi" not in cache:
            cache["openapi"] = openapi_document(request.app.routes)
        return Response(cache["openapi"], media_type="application/json")

    @operation("A page that renders the OpenAPI document", responses={200: Content(str, "text/html")})
    async def docs_page(request: Request) -> Response:
        if "page" not in cache:
            cache["page"] = (STATIC / "docs.html").read_bytes()
        return Response(cache["page"], media_type="text/html; charset=utf-8")

    @operation(
        "The files of the documentation page",
        description="Swagger UI's script, style sheet and icons, and the script that starts it.",
        responses={200: Content(str, "application/octet-stream")},
        errors=(404,),
    )
    async def docs_asset(request: Request) -> Response:
        name = request.path_params["asset"]
        found = asset_path(name)
        if found is None:
            return Response(b"no such file\n", 404, media_type="text/plain")
        path, media_type = found
        if name not in cache:
            cache[name] = path.read_bytes()
        return Response(cache[name], media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return build_routes(
        [
            ("/openapi.json", "GET", openapi_json),
            ("/docs", "GET", docs_page),
            ("/docs/{asset}", "GET", docs_asset),
        ],
        FACE,
    )
