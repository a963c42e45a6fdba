"""Builds the Starlette application from the API faces."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Lifespan, Receive, Scope, Send

from . import cors
from .auth import AuthConfig
from .auth_failures import AuthFailures
from .config import Settings
from .faces import console, docs, emporix, genesys, health, liveperson, liveperson_v2, metrics, native
from .observability import Metrics, Observe, watch_termination
from .rate_limits import RateLimiter
from .routing import PLAIN, Routes, Unmatched
from .store import clients
from .store.core import UNAVAILABLE, SessionStore
from .web import Context

log = logging.getLogger("sessionstore")

# The API faces; each module has routes(ctx) -> list of routes. Their paths do
# not overlap (the router, routing.Routes, tries only the routes of a path's
# first segment: /api, /v1, /v2, /session-context, /sessions...), and within a
# face the busiest come first.
FACES = (native, liveperson, liveperson_v2, emporix, genesys, health, metrics, docs, console)


class App(Starlette):
    """Starlette, with the middleware the service needs and no more. Every
    route is a routing.Endpoint, which answers its own errors (and every
    router its own 404: routing.Unmatched), so Starlette's exception
    middleware has nothing left to catch; its error middleware neither:
    Observe, outermost here, answers an unhandled error with a 500 (and logs
    it with the request id) before the server sees it.

    A trailing slash is dropped before routing (clients of several faces
    send one: LivePerson's SDK, Genesys' 8.5.0 index)."""

    def __init__(
        self, routes: Sequence[BaseRoute], middleware: Sequence[Middleware] = (), lifespan: Lifespan[Any] | None = None
    ) -> None:
        super().__init__(middleware=middleware, lifespan=lifespan)
        self.router = Routes(routes, lifespan=lifespan, default=Unmatched(PLAIN))

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = self.router.middleware_stack
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path[-1] == "/":
                scope["path"] = path[:-1]
                raw: bytes | None = scope.get("raw_path")
                if raw and raw[-1:] == b"/":
                    scope["raw_path"] = raw[:-1]
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


def tune_gc_for_serving() -> None:
    """Garbage collection for a serving process, called once its app is built.

    Every request makes many short-lived objects, while the heap that stays
    (modules, routes, the app) is large and settled: a full collection walks
    all of it, every 70,000 or so allocations by default, and stalls every
    request in flight. Freezing the settled heap out of the collector's sight
    and collecting less often took the p99 of reads at 64 connections from
    35 ms to 10 ms, and reads per second up by 40 %, in bench/ on 2 cores.
    Reference cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def forwarded(proxies: Sequence[str]) -> list[Middleware]:
    """The client as the trusted proxies name it (X-Forwarded-For), outermost:
    the address failed authentication counts against (auth_failures.py)."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(proxies))] if proxies else []


def build_app(
    settings: Settings, *, redis: Any = None, auth: AuthConfig | None = None, watch_signals: bool = False
) -> App:
    """The whole service. ``redis`` is the client to use (tests pass their
    own); without it one is made from ``settings.redis_url``.
    ``app.state.shutting_down`` (an asyncio.Event) is set when the service
    starts to shut down: with ``watch_signals`` (``sessionstore serve``) as
    soon as SIGTERM or SIGINT arrives, before in-flight requests are waited
    for; else at lifespan shutdown. Long responses (event streams) end when
    it is set. ``app.state.metrics`` is the app's observability.Metrics."""
    if auth is None and settings.auth_file:
        auth = AuthConfig.load(settings.auth_file)
    client = (
        redis
        if redis is not None
        else clients.connect(settings.redis_url, timeout_s=settings.redis_timeout_s, tls=settings.redis_tls())
    )
    store = SessionStore(client, limits=settings.limits, durability=settings.durability)
    metrics = Metrics(store)
    ctx = Context(settings, store, auth)
    if auth is not None and auth.rated:
        ctx.limiter = RateLimiter(store, metrics.rate_limited, metrics.rate_limit_errors)
    if auth is not None and settings.auth_failure_limit > 0:
        ctx.failures = AuthFailures(
            settings.auth_failure_limit, settings.auth_failure_window_s, settings.auth_failure_addresses,
            metrics.auth_failures, metrics.auth_refused,
        )  # fmt: skip
    shutting_down = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            await store.load_scripts()
        except UNAVAILABLE as exc:  # served as 503 until Redis answers; scripts load on first use
            log.warning("Redis does not answer yet (%s); starting anyway", type(exc).__name__)
        sweeper = asyncio.create_task(store.sweep_forever(settings.sweep_interval_s))
        unwatch = watch_termination(shutting_down) if watch_signals else None
        try:
            yield {"ctx": ctx, "shutting_down": shutting_down}
        finally:
            shutting_down.set()
            if unwatch is not None:
                unwatch()
            metrics.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if redis is None:
                await client.aclose(close_connection_pool=True)

    app = App(
        routes=[route for face in FACES for route in face.routes(ctx)],
        middleware=[
            *forwarded(settings.forwarded_allow_ips),
            Middleware(Observe, metrics=metrics, access_log=settings.access_log),
            # inside Observe: preflights are counted and logged, and carry a request id
            *cors.middleware(settings.cors_origins),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.shutting_down = shutting_down
    return app
