"""``GET /metrics``: the service's metrics in the Prometheus text format
(see service/observability.py for what is counted)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..operations import Content, Face, operation
from ..routing import Endpoint, build_routes
from ..web import Context

FACE = Face("operations", "Metrics for Prometheus.", storage=False)


def routes(ctx: Context) -> list[Endpoint]:
    @operation(
        "Metrics in the Prometheus text format",
        description="Requests by route template, method and status; latency; Redis errors and reconnects; script "
        "reloads; open event streams. No API key is needed and no tenant data is in it; with several worker "
        "processes the counts are those of every worker.",
        responses={200: Content(str, "text/plain")},
    )
    async def metrics(request: Request) -> Response:
        body, media_type = request.app.state.metrics.render()
        return Response(body, media_type=media_type)

    return build_routes([("/metrics", "GET", metrics)], FACE)
