"""What every API face shares: errors, body and JSON reading with limits,
name checks, authorisation, and the wrapper that turns all of them (and an
unreachable Redis) into the face's own error format."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .auth import KEY_ID_STATE, OPEN_ACCESS, ApiKey, AuthConfig, Denied, authorize, presented_secret
from .config import Settings
from .store.core import UNAVAILABLE, NotDurable, SessionStore

log = logging.getLogger("sessionstore.web")

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: its HTTP status, a message for people, and any fields
    a face adds to its error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


ErrorRenderer = Callable[[ApiError], Response]

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Context:
    """What a face needs: settings, the store and the API keys."""

    settings: Settings
    store: SessionStore
    auth: AuthConfig | None

    def caller(self, request: Request, *, query_token: bool = False) -> ApiKey:
        """The request's API key (from its headers). ``query_token``: a
        ``?access_token=`` will do too, where a client cannot send headers
        (a browser's EventSource) or does not (LivePerson v2 clients); the
        key's id is then left in the request's state for the access log,
        which reads only the headers."""
        if self.auth is None:
            return OPEN_ACCESS
        if not query_token:
            return self.auth.authenticate(presented_secret(request.headers))
        secret = presented_secret(request.headers) or request.query_params.get("access_token", "").strip() or None
        try:
            key = self.auth.authenticate(secret)
        except Denied:
            setattr(request.state, KEY_ID_STATE, "unknown" if secret else "-")
            raise
        setattr(request.state, KEY_ID_STATE, key.id)
        return key

    def require(self, request: Request, tenant: str, scope: str, *, query_token: bool = False) -> ApiKey:
        key = self.caller(request, query_token=query_token)
        authorize(key, tenant, scope)
        return key

    # -- names -------------------------------------------------------------

    def name(self, value: str, what: str) -> str:
        """A tenant or namespace name: letters, digits, '_', '.', '-'."""
        if not value or len(value) > self.settings.max_name_chars or not NAME_RE.fullmatch(value):
            raise ApiError(400, f"invalid {what}: use 1 to {self.settings.max_name_chars} letters, digits, '_', '.' or '-'")
        return value

    def identifier(self, value: str, what: str) -> str:
        """A session id or property name: any text but control characters."""
        if not value or len(value) > self.settings.max_name_chars or CONTROL_RE.search(value):
            raise ApiError(400, f"invalid {what}: use 1 to {self.settings.max_name_chars} characters, no control characters")
        return value

    # -- bodies ------------------------------------------------------------

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "invalid Content-Length")
            if int(declared) > limit:
                raise ApiError(413, f"request body over the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse_json(self, body: bytes) -> Any:
        if not body.strip():
            raise ApiError(400, "a JSON body is required")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON: {exc.msg}") from None
        if not within_depth(value, self.settings.max_json_depth):
            raise ApiError(400, f"JSON nested deeper than {self.settings.max_json_depth} levels")
        return value

    async def json(self, request: Request) -> Any:
        return self.parse_json(await self.body(request))

    async def json_object(self, request: Request) -> dict[str, Any]:
        value = await self.json(request)
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value


def within_depth(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests no deeper than ``limit`` levels: each
    array or object is one level (``[[1]]`` is two, a scalar none)."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return True
    if limit < 1:
        return False
    return all(within_depth(v, limit - 1) for v in children if isinstance(v, dict | list))


def int_param(request: Request, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"query parameter {name} must be {bound}")
    return value


def guarded(handler: Handler, render: ErrorRenderer) -> Handler:
    """The endpoint with every failure a client can cause, or that Redis can,
    answered in the face's own error format.

    No timer per request: the Redis client bounds every wait (its socket
    timeout, the multiplexer's watchdog, the pool's wait), so a Redis that
    does not answer fails the request with a RedisError in time for 503."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return render(exc)
        except Denied as exc:
            return render(ApiError(exc.status, exc.message))
        except NotDurable as exc:  # --durable-writes: too few replicas confirmed the write in time
            log.warning("write not confirmed by replicas on %s %s", request.method, request.url.path)
            return render(ApiError(503, str(exc)))
        except UNAVAILABLE as exc:
            log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
            return render(ApiError(503, "storage unavailable, try again"))

    return endpoint


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def raw_json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers, media_type="application/json")


def iso8601(ms: int) -> str:
    """UTC time with milliseconds, as the vendors' APIs write it: 2019-08-02T19:41:52.017Z."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
