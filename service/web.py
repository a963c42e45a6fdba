"""What every API face shares: its errors, its answers, name checks, query
parameters, and who the caller is (the API key, resolved once per request)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .auth import KEY_ID_STATE, OPEN_ACCESS, ApiKey, AuthConfig, Denied, authorize, presented_secret
from .auth_failures import AuthFailures
from .body_timeout import BodyDeadlines
from .config import Settings
from .rate_limits import RateLimiter
from .store.core import SessionStore

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Request-scope entries (ASGI scope keys): the scope the operation declares
# (set by its route, service/routing.py), and whether the handler checked it.
NEEDED_SCOPE = "sessionstore.needed_scope"
AUTHORIZED = "sessionstore.authorized"
CALLER = "api_key"  # in the request's state: the resolved ApiKey, or the Denied of a refused one
JSON = (b"content-type", b"application/json")
Header = tuple[bytes, bytes]


class ApiError(Exception):
    """An error answer: its HTTP status, a message for people, the headers
    to send with it, and any fields a face adds to its error body."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


class JsonResponse(Response):
    """A response whose body is ready (JSON unless ``content_type`` says
    otherwise), its header list built in one go: Starlette's Response, less
    the work of finding out what kind of body it has."""

    def __init__(
        self, body: bytes, status: int = 200, headers: Sequence[Header] = (), content_type: Header = JSON
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), content_type, *headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


class EmptyResponse(JsonResponse):
    """A 204 or 304: no body, no Content-Length, no Content-Type."""

    def __init__(self, status: int = 204, headers: Sequence[Header] = ()) -> None:
        self.status_code = status
        self.background = None
        self.body = b""
        self.raw_headers = list(headers)


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JsonResponse(orjson.dumps(content), status, raw_headers(headers))


def raw_headers(headers: Mapping[str, str] | None) -> list[Header]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] if headers else []


def etag_header(version: int) -> Header:
    return (b"etag", b'"%d"' % version)


@dataclass
class Context:
    """What a face needs: settings, the store and the API keys; the rate
    limiter (None when no key has a rate), the failed authentications per
    address (None when not limited), and the deadlines of the request
    bodies being read (service/body_timeout.py)."""

    settings: Settings
    store: SessionStore
    auth: AuthConfig | None
    limiter: RateLimiter | None = None
    failures: AuthFailures | None = None
    bodies: BodyDeadlines = field(init=False)

    def __post_init__(self) -> None:
        self.bodies = BodyDeadlines(self.settings.body_timeout_s)

    # -- who is asking -------------------------------------------------------

    def caller(self, request: Request, *, query_token: bool = False) -> ApiKey:
        """The request's API key, authenticated once per request: the key (or
        the refusal) is kept in the request's state, where the access log
        reads its id (KEY_ID_STATE). ``query_token``: a ``?access_token=``
        will do too, where a client cannot send headers (a browser's
        EventSource) or does not (LivePerson v2 clients)."""
        if self.auth is None:
            return OPEN_ACCESS
        state: dict[str, Any] = request.scope.setdefault("state", {})
        found: ApiKey | Denied | None = state.get(CALLER)
        if found is None:
            failures = self.failures
            if failures is not None and failures.blocked:  # some address failed too often
                found = failures.refusal(request.scope)
            if found is None:
                secret = presented_secret(request.headers)
                if secret is None and query_token:
                    secret = (query(request, "access_token") or "").strip() or None
                try:
                    found = self.auth.authenticate(secret)
                    state[KEY_ID_STATE] = found.id
                except Denied as exc:
                    found = exc
                    state[KEY_ID_STATE] = "unknown" if secret else "-"
                    if secret and failures is not None:
                        failures.failed(request.scope)
            else:
                state[KEY_ID_STATE] = "-"
            state[CALLER] = found
        if isinstance(found, Denied):
            raise Denied(found.status, found.message, found.headers)
        return found

    def rated_key(self, request: Request) -> ApiKey | None:
        """The request's key, for its rate limit (only asked when some key
        has one): from a header as caller() finds it (and keeps it); from
        ``?access_token=`` looked up without being kept, since only the
        operations that take one accept it (they ask caller() themselves)."""
        if self.auth is None:
            return None
        if presented_secret(request.headers) is not None:
            try:
                return self.caller(request)
            except Denied:
                return None
        token = query(request, "access_token")
        return self.auth.find(token.strip()) if token else None

    def require(self, request: Request, tenant: str, *, query_token: bool = False) -> ApiKey:
        """The caller, who must have the scope the operation declares (its
        route says which) for ``tenant``: 401 or 403 otherwise."""
        scope = request.scope
        needed = scope[NEEDED_SCOPE]
        assert needed is not None, "require() in an operation that declares no scope"
        scope[AUTHORIZED] = True
        if self.auth is None:
            return OPEN_ACCESS  # may do anything
        key = self.caller(request, query_token=query_token)
        authorize(key, tenant, needed)
        return key

    @staticmethod
    def writes(request: Request) -> bool:
        """Whether the operation declares a scope other than ``read``."""
        return bool(request.scope[NEEDED_SCOPE] != "read")

    # -- names -------------------------------------------------------------

    def name(self, value: str, what: str) -> str:
        """A tenant or namespace name: letters, digits, '_', '.', '-'."""
        if not value or len(value) > self.settings.max_name_chars or not NAME_RE.fullmatch(value):
            raise ApiError(
                400, f"invalid {what}: use 1 to {self.settings.max_name_chars} letters, digits, '_', '.' or '-'"
            )
        return value

    def identifier(self, value: str, what: str) -> str:
        """A session id or property name: any text but control characters."""
        if not value or len(value) > self.settings.max_name_chars or CONTROL_RE.search(value):
            raise ApiError(
                400, f"invalid {what}: use 1 to {self.settings.max_name_chars} characters, no control characters"
            )
        return value


def query(request: Request, name: str) -> str | None:
    """A query parameter, as ``request.query_params.get`` finds it (the last
    of its name); None when it is not there. A query string with nothing to
    unquote (no ``%``, no ``+``) is split as it is, not parsed."""
    raw: bytes = request.scope["query_string"]
    if not raw:
        return None
    if b"%" in raw or b"+" in raw:
        return request.query_params.get(name)
    wanted = name.encode("latin-1")
    found = None
    for part in raw.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == wanted:
            found = value
    return None if found is None else found.decode("latin-1")


def int_param(request: Request, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = query(request, name)
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


_SECONDS: dict[int, str] = {}  # the text of the seconds iso8601 wrote lately


def iso8601(ms: int) -> str:
    """UTC time with milliseconds, as the vendors' APIs write it: 2019-08-02T19:41:52.017Z."""
    seconds, millis = divmod(ms, 1000)
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        text = _SECONDS[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z"
