"""What an operator sees of a running service: Prometheus metrics, request
ids and the access log (log formats: logs.py; the shutdown signal:
termination.py).

- :class:`Metrics`: the Prometheus metrics of one app (``GET /metrics``). Each
  app has a registry of its own, so many apps in one process (tests) do not
  collide. With several worker processes (``serve --workers N``) the
  counters live in files that every worker writes and the worker answering
  a scrape sums up (prometheus-client's multiprocess mode, switched on by
  ``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` sets for its workers): a
  scrape through the shared port then counts every worker, not a random one.
- :class:`Observe`: a pure ASGI middleware that gives every request an id
  (the client's ``X-Request-ID`` when it is sane, else a new one), sends it
  back on every response, makes it part of every log line written while the
  request is served, counts the request by route *template* (never the raw
  path), and writes the access-log line.

No log line here carries a header's value: API keys are named by their id.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import glob
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import termination
from .auth import KEY_ID_STATE

watch_termination = termination.watch_termination  # lives in termination.py; app.py imports it from here

INSUFFICIENT_STORAGE = 507  # the answer to a write that a full Redis refused (routing.py)

log = logging.getLogger("sessionstore")
access_log = logging.getLogger("sessionstore.access")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request that no route served
EVENT_STREAM = b"text/event-stream"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# The id of the request being served, for every log record made meanwhile.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("sessionstore_request_id", default=None)


# -- metrics -----------------------------------------------------------------


class Metrics:
    """The metrics of one app. ``store`` (a SessionStore) is read for the
    counters the storage core keeps itself: script reloads (NOSCRIPT answers)
    and the multiplexer's connections to Redis (each one after the first is a
    reconnect); they are brought up to date after every request and at every
    scrape.

    ``multiprocess_dir``: the directory of prometheus-client's multiprocess
    mode; by default ``$PROMETHEUS_MULTIPROC_DIR`` when that is set (it must
    be set before prometheus_client is first imported in the process, as
    ``serve --workers N`` does for its workers)."""

    def __init__(self, store: Any = None, *, multiprocess_dir: str | None = None) -> None:
        self.store = store
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        registry = None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.requests = Counter(
            "sessionstore_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "sessionstore_http_request_duration_seconds",
            "Time to answer an HTTP request, from its start to the end of the response (event streams left out)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "sessionstore_redis_errors",
            "API requests that failed because Redis did not answer in time or answered an error (answered 503)",
            ["route"],
            registry=registry,
        )
        self.refused_full = Counter(
            "sessionstore_writes_refused_full",
            "Writes refused because Redis is full (maxmemory reached under noeviction; answered 507)",
            registry=registry,
        )
        self.rate_limited = Counter(
            "sessionstore_rate_limited",
            "Requests refused (429) because their API key was over its rate limit, by key id",
            ["key"],
            registry=registry,
        )
        self.rate_limit_errors = Counter(
            "sessionstore_rate_limit_errors",
            "Requests let through unlimited because Redis did not answer the rate limiter (fail open)",
            registry=registry,
        )
        self.auth_failures = Counter(
            "sessionstore_auth_failures",
            "Failed authentications: requests that presented an unknown API key (answered 401)",
            registry=registry,
        )
        self.auth_refused = Counter(
            "sessionstore_auth_failures_refused",
            "Requests refused (429) because their client address failed to authenticate too often",
            registry=registry,
        )
        self.reconnects = Counter(
            "sessionstore_redis_reconnects",
            "Connections to Redis made again after the first one (a dropped or timed-out connection)",
            registry=registry,
        )
        self.script_reloads = Counter(
            "sessionstore_script_reloads",
            "Lua scripts loaded again into Redis after a NOSCRIPT answer (a restart, failover or SCRIPT FLUSH)",
            registry=registry,
        )
        self.event_streams = Gauge(
            "sessionstore_event_streams_open",
            "Event streams (text/event-stream responses) open now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.event_streams_dropped = Counter(
            "sessionstore_event_streams_dropped",
            "Event streams dropped because their client took no data for --sse-send-timeout (it stopped reading)",
            registry=registry,
        )
        self.workers = Gauge(
            "sessionstore_workers",
            "Worker processes serving",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.workers.set(1)
        if registry is not None:
            ProcessCollector(registry=registry)  # per process: left out in multiprocess mode
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._reloads_seen = 0
        self._reconnects_seen = 0

    def observe(self, route: str, method: str, status: int, seconds: float, *, stream: bool = False) -> None:
        """One request answered."""
        children = self._children.get((route, method, status))
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
                self.redis_errors.labels(route) if status == 503 else None,
            )
            self._children[(route, method, status)] = children
        requests, latency, redis_errors = children
        requests.inc()
        if not stream:
            latency.observe(seconds)
        if redis_errors is not None:
            redis_errors.inc()
        elif status == INSUFFICIENT_STORAGE:
            self.refused_full.inc()
        self.sync()

    def sync(self) -> None:
        """Bring the counters the storage core keeps up to date."""
        store = self.store
        if store is None:
            return
        reloads = store.scripts.reloads
        if reloads > self._reloads_seen:
            self.script_reloads.inc(reloads - self._reloads_seen)
        self._reloads_seen = reloads
        reconnects = store.seam.reconnects  # the embedded store makes none
        if reconnects > self._reconnects_seen:
            self.reconnects.inc(reconnects - self._reconnects_seen)
        self._reconnects_seen = reconnects  # less: a new connection for a new event loop (tests)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format, and its media type."""
        self.sync()
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        assert self.multiprocess_dir is not None
        forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This process stops serving (its live gauges are dropped)."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            self.workers.set(0)


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of worker processes that are gone without saying
    so (killed): a worker that ends normally drops its own (Metrics.close)."""
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = path.rsplit("_", 1)[-1][:-3]
        if pid.isdigit() and not pid_alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the request middleware ----------------------------------------------------


PARAM_RE = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def route_templates(routes: Iterable[BaseRoute], prefix: str = "") -> dict[int, str]:
    """id(route) -> the route's full path template, Mounts walked into."""
    found: dict[int, str] = {}
    for route in routes:
        if isinstance(route, Mount):
            found.update(route_templates(route.routes, prefix + route.path))
        elif isinstance(route, Route):
            found[id(route)] = prefix + PARAM_RE.sub(r"{\1}", route.path)
    return found


def printable(text: str) -> str:
    """Text for a log line: control characters escaped (no forged lines)."""
    return CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Observe:
    """Request ids, metrics and the access log, for every HTTP request.

    It runs inside the app's routing (service/app.py), so that after the
    request the router has left the matched route in the scope; the face
    that served the request has left the caller's key id in its state
    (web.Context.caller), so the access log names the key without looking
    at the request's headers again."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self._templates: dict[int, str] | None = None

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None or isinstance(route, Mount):
            return UNMATCHED  # no route, or a Mount whose router found none
        templates = self._templates
        if templates is None:
            app = scope.get("app")
            templates = self._templates = route_templates(app.routes) if app is not None else {}
        found = templates.get(id(route))
        if found is None:  # a route made after the app was (not in app.routes): its own path
            found = templates[id(route)] = PARAM_RE.sub(r"{\1}", getattr(route, "path", UNMATCHED))
        return found

    @staticmethod
    def key_id(scope: Scope) -> str:
        """The id (label) of the API key the request carried, as the face
        that authenticated it left it ("-": none, or no face asked)."""
        state = scope.get("state")
        return str(state.get(KEY_ID_STATE, "-")) if state else "-"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                text = value.decode("latin-1")
                if REQUEST_ID_RE.fullmatch(text):
                    rid = text
                break
        if rid is None:
            rid = os.urandom(16).hex()  # as random as uuid4().hex, and quicker
        token = request_id.set(rid)
        started_at = time.perf_counter()
        status = 500
        started = stream = False
        id_header = (REQUEST_ID_HEADER, rid.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status, started, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = []
                for header in message.get("headers", ()):
                    name = header[0].lower()
                    if name == REQUEST_ID_HEADER:
                        continue  # the request's id replaces any the app sent
                    if name == b"content-type" and not stream and header[1].startswith(EVENT_STREAM):
                        stream = True
                        self.metrics.event_streams.inc()
                    headers.append(header)
                headers.append(id_header)
                message["headers"] = headers  # the app's message, made for this send
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            if not getattr(exc, "_sessionstore_logged", False):  # e.g. an event stream dropped (native_events.py)
                log.error(
                    "unhandled error on %s %s",
                    printable(scope["method"][:16]),
                    printable(scope["path"]),
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
            with contextlib.suppress(AttributeError):
                exc._sessionstore_logged = True  # type: ignore[attr-defined]
            if not started:
                body = b'{"code":500,"message":"internal error"}'
                await send_observed(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
                    }
                )
                await send_observed({"type": "http.response.body", "body": body})
            raise
        except asyncio.CancelledError:  # the shutdown grace ran out
            if not started:
                status = 499  # as nginx counts a request that got no answer
            raise
        finally:
            seconds = time.perf_counter() - started_at
            if stream:
                self.metrics.event_streams.dec()
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = self.template(scope)
            self.metrics.observe(route, method, status, seconds, stream=stream)
            if self.access_log:
                self.log_access(scope, route, status, seconds)
            request_id.reset(token)

    def log_access(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        path = printable(scope["path"])
        key = self.key_id(scope)
        client = scope.get("client")
        ms = round(seconds * 1000, 1)
        access_log.info(
            "%s %s %d %.1f ms route=%s key=%s",
            scope["method"] if scope["method"] in METHODS else printable(scope["method"][:16]),
            path,
            status,
            ms,
            route,
            key,
            extra={
                "access": {
                    "method": scope["method"] if scope["method"] in METHODS else "other",
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": ms,
                    "key": key,
                    "client": client[0] if client else None,
                }
            },
        )
