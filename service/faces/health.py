"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..store.core import UNAVAILABLE
from ..web import Context, json_response


def routes(ctx: Context) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            async with asyncio.timeout(ctx.settings.request_deadline_s):
                await ctx.store.ping()
        except UNAVAILABLE:
            return json_response({"status": "unavailable", "message": "Redis does not answer"}, 503)
        return json_response({"status": "ready"})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
