"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..operations import Face, operation
from ..routing import Endpoint, build_routes
from ..store.core import UNAVAILABLE
from ..web import Context, JsonResponse


class Health(msgspec.Struct, omit_defaults=True):
    status: str  # ok | ready | unavailable
    message: str | None = None


FACE = Face("health", "Liveness and readiness, for load balancers and orchestrators.", storage=False)


def answer(health: Health, status: int = 200) -> Response:
    return JsonResponse(msgspec.json.encode(health), status)


def routes(ctx: Context) -> list[Endpoint]:
    @operation("Liveness: the process answers", responses={200: Health})
    async def healthz(request: Request) -> Response:
        return answer(Health("ok"))

    @operation("Readiness: Redis answers", responses={200: Health, 503: Health})
    async def readyz(request: Request) -> Response:
        try:
            async with asyncio.timeout(ctx.settings.request_deadline_s):
                await ctx.store.ping()
        except UNAVAILABLE:
            return answer(Health("unavailable", "Redis does not answer"), 503)
        return answer(Health("ready"))

    return build_routes([("/healthz", "GET", healthz), ("/readyz", "GET", readyz)], FACE)
