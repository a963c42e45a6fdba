"""What each handler declares about itself, kept next to it: the operation
(its summary, the API-key scope it needs, its bodies, answers and parameters)
and the face it belongs to.

Decorate each handler with what the code alone cannot tell; bodies are named
by the msgspec types (or any type msgspec can describe) that the handler
decodes and encodes with, so the document cannot drift from the code::

    @operation(
        "Read a session",
        scope="read",
        query=[Param("limit", Annotated[int, msgspec.Meta(ge=1, le=1000)], "most ids to return")],
        responses={200: Content(SessionOut, headers={"ETag": "the version"}), 304: None},
        errors=(404,),
    )
    async def get_session(self, request: Request) -> Response: ...

The declaration is read twice: by service/routing.py, whose routes enforce
the ``scope`` (the handler names only the tenant, ``ctx.require(request,
tenant)``), and by service/openapi.py, which documents every route from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

H = TypeVar("H", bound=Callable[..., Any])

DECLARATION = "openapi_operation"  # the attribute @operation puts on a handler
# API keys, as auth.presented_secret reads them; any one will do.
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "mavenApiKey": {"type": "apiKey", "in": "header", "name": "maven-api-key"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"},
    "accessToken": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "the API key as LivePerson v2 clients send their token (the LivePerson v2 API only)",
    },
}
HEADER_SCHEMES = ("apiKey", "mavenApiKey", "bearer")


@dataclass(frozen=True)
class Param:
    """A query or header parameter: its name, its type (for the schema) and what it means."""

    name: str
    type: Any = str
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Content:
    """A request or response body: its type (None: no body), media type, and
    for responses the headers that come with it (name -> description)."""

    type: Any = None
    media_type: str = "application/json"
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # for text/event-stream: the type of each event's data, put in the
    # document as the extension x-event-data (OpenAPI 3.1 has no field for it)
    event_data: Any = None


@dataclass(frozen=True)
class Operation:
    """What one handler does. ``responses`` maps a status to a type, a
    Content or None (no body); ``errors`` are statuses answered with the
    face's error body. A ``scope`` means an API key with that scope is
    needed: the route checks it when the handler names the tenant (401 and
    403 are then documented by themselves); a request ``body`` brings 400
    and 413."""

    summary: str
    description: str = ""
    scope: str | None = None
    body: Any = None
    responses: Mapping[int, Any] = field(default_factory=dict)
    errors: Sequence[int] = ()
    query: Sequence[Param] = ()
    headers: Sequence[Param] = ()
    deprecated: bool = False


@dataclass(frozen=True)
class Face:
    """What every operation of one face shares: its tag, its error body, the
    descriptions of its path parameters, and whether it needs Redis (which
    brings 503 to every operation)."""

    name: str
    description: str
    error: Content | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)
    storage: bool = True
    security: Sequence[str] = HEADER_SCHEMES  # the SECURITY_SCHEMES its API keys may come in
    # put in each of its operations, e.g. {"x-console": True}
    extensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Documented:
    face: Face
    operation: Operation
    handler_name: str


def operation(summary: str, **fields: Any) -> Callable[[H], H]:
    """Declare a handler's operation (see :class:`Operation` for the fields)."""
    declared = Operation(summary, **fields)

    def decorate(handler: H) -> H:
        setattr(handler, DECLARATION, declared)
        return handler

    return decorate


def declaration(handler: Any) -> Operation | None:
    found = getattr(handler, DECLARATION, None)
    return found if isinstance(found, Operation) else None


def documented(face: Face, handler: Any, default_name: str) -> Documented | None:
    """The declaration of ``handler`` with its face, for the document; None when it has none."""
    declared = declaration(handler)
    if declared is None:
        return None
    return Documented(face, declared, getattr(handler, "__name__", default_name))
