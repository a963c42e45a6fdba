"""The faces' routes, built from their declarations (service/operations.py).

One :class:`Endpoint` per path, dispatching on the method: it sets the scope
the operation declares where ``Context.require`` finds it, calls the
handler, and answers everything a client (or an unreachable Redis) can make
go wrong in the face's own error format. It does in one step what a
Starlette Route, its request-response wrapper, the exception middleware and
a dispatch function did in four::

    FACE = Face("liveperson", "The LivePerson Maven Context Session Store API", error=Content(ErrorBody))

    def routes(ctx):
        return build_routes([(path, "GET", get_session), ...], FACE, ctx, Answers(render_error))

A face that chooses the handler itself (one path, many meanings) subclasses
Endpoint and overrides :meth:`Endpoint.choose`, and names its handlers with
:func:`describe`, each under ``"METHOD"`` or ``"METHOD /other/path"``; the
route is then documented by exactly those.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import OutOfMemoryError
from starlette._utils import get_route_path
from starlette.convertors import PathConvertor, StringConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from .auth import Denied
from .operations import Face, documented
from .rate_limits import RateLimiter
from .store.core import UNAVAILABLE, NotDurable

INSUFFICIENT_STORAGE = 507
FULL = "the store is full: the write was refused and nothing was stored; try again later"
TOO_MANY_REQUESTS = 429
RATE_LIMITED = "this API key's rate limit ({}) is reached; retry after {} s"
from .web import AUTHORIZED, NEEDED_SCOPE, ApiError, Context, json_response

log = logging.getLogger("sessionstore.web")

Handler = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[ApiError], Response]
DOCUMENTED = "openapi_operations"  # the attribute an endpoint carries for the document: {key: Documented}
COMPLETE = "openapi_complete"  # set by describe(): the endpoint's operations are exactly those named
NO_MATCH: tuple[Match, Scope] = (Match.NONE, {})


def plain_error(error: ApiError) -> Response:
    """``{"code": <status>, "message": "..."}``: the error body of the routes
    that have no format of their own, and of paths that no face serves."""
    return json_response({"code": error.status, "message": error.message}, error.status, error.headers)


def method_not_allowed(allowed: str) -> ApiError:
    return ApiError(405, "method not allowed here", {"Allow": allowed})


@dataclass(frozen=True)
class Answers:
    """How a face answers what goes wrong: ``render`` makes its error body,
    ``not_allowed`` the error of a method its path does not take."""

    render: ErrorRenderer = plain_error
    not_allowed: Callable[[str], ApiError] = method_not_allowed


PLAIN = Answers()


@dataclass(frozen=True, slots=True)
class Bound:
    """One method of an endpoint: its handler and the scope it declares."""

    handler: Handler
    scope: str | None


class Endpoint(Route):
    """One path of a face: ``handlers`` by method (HEAD served by GET)."""

    def __init__(
        self, path: str, handlers: Mapping[str, Handler], face: Face, ctx: Context | None, answers: Answers
    ) -> None:
        self.bound: dict[str, Bound] = {}
        found = {}
        for method, handler in handlers.items():
            declared = documented(face, handler, method.lower())
            if declared is not None:
                found[method] = declared
            self.bound[method] = Bound(handler, declared.operation.scope if declared else None)
        if "GET" in self.bound:
            self.bound.setdefault("HEAD", self.bound["GET"])
        self.ctx = ctx
        self.limiter = ctx.limiter if ctx is not None else None  # None: no key has a rate limit
        self.answers = answers
        super().__init__(path, self.endpoint_function(), methods=list(self.bound))
        self.allow = ", ".join(sorted(self.methods or ()))
        setattr(self.endpoint, DOCUMENTED, found)
        # a {name:path} parameter is ".*", which stops at a newline: a %0A in it would
        # match no route (a 404 outside the face's error format) instead of the name checks
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)
        # every parameter a plain string (no int or float convertor): matched as it is
        self.plain = all(type(c) in (StringConvertor, PathConvertor) for c in self.param_convertors.values())

    def endpoint_function(self) -> Handler:
        """The route's endpoint, for whatever calls it as one (the document
        reads its declarations; requests go through :meth:`handle`)."""

        async def endpoint(request: Request) -> Response:
            chosen = self.choose(request)
            return await chosen.handler(request)

        return endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not self.plain:
            return super().matches(scope)
        if scope["type"] != "http":
            return NO_MATCH
        match = self.path_regex.match(get_route_path(scope))
        if match is None:
            return NO_MATCH
        params = match.groupdict()
        outer = scope.get("path_params")
        if outer:
            params = {**outer, **params}
        child = {"endpoint": self.endpoint, "path_params": params}
        return (Match.FULL if scope["method"] in self.bound else Match.PARTIAL), child

    def choose(self, request: Request) -> Bound:
        """The method's handler; the face's 405 when the path does not take it."""
        found = self.bound.get(request.scope["method"])
        if found is None:
            raise self.answers.not_allowed(self.allow)
        return found

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            chosen = self.choose(request)
            scope[NEEDED_SCOPE] = chosen.scope
            if self.limiter is not None and chosen.scope is not None:
                await self.rate_limit(request, self.limiter)
            response = await chosen.handler(request)
        except ApiError as exc:
            response = self.refused(request, exc)
        except Denied as exc:
            response = self.refused(request, ApiError(exc.status, exc.message, exc.headers))
        except OutOfMemoryError:  # maxmemory reached under noeviction: Redis refused the write before it changed anything
            log.warning("Redis is full: write refused on %s %s", request.method, scope["path"])
            response = self.refused(request, ApiError(INSUFFICIENT_STORAGE, FULL))
        except NotDurable as exc:  # --durable-writes: too few replicas confirmed the write in time
            log.warning("write not confirmed by replicas on %s %s", request.method, scope["path"])
            response = self.refused(request, ApiError(503, str(exc)))
        except UNAVAILABLE as exc:
            log.warning("storage unavailable on %s %s: %s", request.method, scope["path"], type(exc).__name__)
            response = self.refused(request, ApiError(503, "storage unavailable, try again"))
        else:
            if chosen.scope is not None and AUTHORIZED not in scope and response.status_code < 400:
                raise AssertionError(f"{chosen.handler!r} declares the {chosen.scope!r} scope but never checked it")
        await response(scope, receive, send)

    async def rate_limit(self, request: Request, limiter: RateLimiter) -> None:
        """The face's 429, with Retry-After, when the request's key is over its rate."""
        assert self.ctx is not None  # a limiter comes with a context
        key = self.ctx.rated_key(request)
        if key is None or key.rate is None:
            return
        seconds = await limiter.retry_after_s(key)
        if seconds:
            raise ApiError(TOO_MANY_REQUESTS, RATE_LIMITED.format(key.rate, seconds), {"Retry-After": str(seconds)})

    def refused(self, request: Request, error: ApiError) -> Response:
        """The error answer. The access log names the caller's key even when
        the request failed before the handler asked for it (a bad name)."""
        if self.ctx is not None and self.ctx.auth is not None and request.scope.get(NEEDED_SCOPE) is not None:
            try:
                self.ctx.caller(request)
            except Denied:
                pass
        return self.answers.render(error)


class Unmatched:
    """The answer of a router that no route matched (its ``default``): the face's 404."""

    def __init__(self, answers: Answers, message: str = "no such resource") -> None:
        self.answers = answers
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answers.render(ApiError(404, self.message))(scope, receive, send)


class Unserved(Mount):
    """The paths under ``path`` that no route serves, answered by ``app`` (a
    face's own 404). It matches them only partially, as a route of another
    method does: a route that serves the path, or takes it with another
    method (405), comes first wherever it is."""

    def __init__(self, path: str, app: Unmatched) -> None:
        super().__init__(path, app=app)
        # Starlette's Mount matches the rest of the path with ".*", which stops at a newline
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        return (Match.PARTIAL if match is Match.FULL else match), child


class Routes(Router):
    """Starlette's Router, which tries only the routes that can match a
    path's first segment (``/v1``, ``/api``, ``/session-context``...), in
    their order, instead of every route of every face. A route whose first
    segment is a parameter is tried for every path; a path that none of its
    candidates serves gets the Router's own ending (its redirects, its
    ``default``)."""

    def __init__(self, routes: Sequence[BaseRoute], **options: Any) -> None:
        super().__init__(routes, **options)
        self.candidates: dict[str, list[BaseRoute]] = {}
        self.anywhere: list[BaseRoute] = []
        for route in self.routes:
            segment = first_segment(route.path) if isinstance(route, Route | Mount) else "{"
            if "{" in segment:
                self.anywhere.append(route)
                for listed in self.candidates.values():
                    listed.append(route)
            else:
                self.candidates.setdefault(segment, list(self.anywhere)).append(route)

    def app(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        """The matched route's handling, to be awaited by the caller: a plain
        function, one coroutine fewer on every request's stack (each one is
        passed through again whenever the request resumes from a wait)."""
        if scope["type"] != "http":
            return super().app(scope, receive, send)
        if "router" not in scope:
            scope["router"] = self
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self.candidates.get(first_segment(get_route_path(scope)), self.anywhere):
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child)
                return route.handle(scope, receive, send)
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child
        if partial is None:
            return super().app(scope, receive, send)  # no candidate: a redirect, or the default
        scope["route"] = partial
        scope.update(partial_scope)
        return partial.handle(scope, receive, send)


def first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:end] if end > 0 else path[1:]


def build_routes(
    table: Iterable[tuple[str, str, Handler]],
    face: Face,
    ctx: Context | None = None,
    answers: Answers = PLAIN,
    endpoint_class: type[Endpoint] = Endpoint,
) -> list[Endpoint]:
    """One endpoint per path of ``(path, method, handler)`` rows, in their order."""
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, handler in table:
        by_path.setdefault(path, {})[method.upper()] = handler
    return [endpoint_class(path, handlers, face, ctx, answers) for path, handlers in by_path.items()]


def describe(route: Endpoint, face: Face, handlers: Mapping[str, Handler]) -> Endpoint:
    """Document an endpoint that chooses its handler itself: ``handlers`` maps
    ``"METHOD"`` (at the route's path) or ``"METHOD /path"`` (a path the
    endpoint serves under its own template, e.g. a fixed value of a
    parameter) to the declared handler that answers it. The route's other
    methods are left out of the document (they answer 405)."""
    found = {}
    for key, handler in handlers.items():
        declared = documented(face, handler, key.split()[0].lower())
        if declared is None:
            raise ValueError(f"{key}: {handler!r} has no @operation")
        found[key] = declared
    setattr(route.endpoint, DOCUMENTED, found)
    setattr(route.endpoint, COMPLETE, True)
    return route
