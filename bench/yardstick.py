"""The yardstick: a bare Starlette endpoint returning a fixed small JSON body.

Served by the benchmark with exactly the service's uvicorn settings (one
worker, uvloop, httptools), so that every figure of the service can be quoted
as a ratio to it; shared machines are too noisy for absolute figures.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"sessionId":"yardstick","ok":true,"version":1}'


async def fixed(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/", fixed, methods=["GET"])])
