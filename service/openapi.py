"""OpenAPI 3.1 for every face, from declarations kept next to the handlers.

Documenting a face takes two steps.

1. Decorate each handler with what the code alone cannot tell; bodies are
   named by the msgspec types (or any type msgspec can describe) that the
   handler decodes and encodes with, so the schemas cannot drift from the code::

       @operation(
           "Read a session",
           scope="read",
           query=[Param("limit", Annotated[int, msgspec.Meta(ge=1, le=1000)], "most ids to return")],
           responses={200: Content(SessionOut, headers={"ETag": "the version"}), 304: None},
           errors=(404,),
       )
       async def get_session(self, request: Request) -> Response: ...

2. Build the face's routes with :func:`build_routes` instead of making
   ``Route`` objects by hand: it groups the handlers by path (one route per
   path, dispatching on the method), wraps each one (e.g. with
   ``web.guarded``) and keeps the declarations on the route's endpoint::

       FACE = Face("liveperson", "The LivePerson Maven Context Session Store API", error=Content(ErrorBody))

       def routes(ctx):
           wrap = lambda handler: guarded(handler, render_error)
           return build_routes([(path, "GET", get_session), ...], FACE, wrap)

A face that builds its own route (say, one endpoint dispatching on the path
itself) names the handlers behind it with :func:`describe` instead, each under
``"METHOD"`` or ``"METHOD /other/path"``; the route is then documented by
exactly those::

       return [describe(Route("/sessions/{sessionId}", endpoint, methods=METHODS), FACE,
                        {"GET": self.read, "POST": self.associate, "PUT /sessions/new": self.create})]

:func:`document` walks the application's routes (Mounts included): paths,
path parameters and methods come from the routes themselves, everything else
from the declarations, and every schema from ``msgspec.json.schema_components``.
:func:`undocumented` lists the route methods that have no declaration (the
tests require that there are none).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, TypeVar

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

Handler = Callable[[Request], Awaitable[Response]]
H = TypeVar("H", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"
DECLARATION = "openapi_operation"  # the attribute @operation puts on a handler
DOCUMENTED = "openapi_operations"  # the attribute build_routes puts on an endpoint: {method: Documented}
COMPLETE = "openapi_complete"  # set by describe(): the endpoint's operations are exactly those named
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
    """What one handler does, for the document. ``responses`` maps a status
    to a type, a Content or None (no body); ``errors`` are statuses answered
    with the face's error body. A ``scope`` means an API key with that scope
    is needed (401 and 403 are then documented by themselves), and a
    request ``body`` brings 400 and 413."""

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


def build_routes(
    table: Iterable[tuple[str, str, Handler]],
    face: Face,
    wrap: Callable[[Handler], Handler] = lambda handler: handler,
    route_class: type[Route] = Route,
) -> list[Route]:
    """One route per path of ``(path, method, handler)`` rows, in their
    order; each handler wrapped by ``wrap``, HEAD served by GET, and the
    declarations kept on the endpoint for :func:`document`."""
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, handler in table:
        by_path.setdefault(path, {})[method.upper()] = handler
    made = []
    for path, handlers in by_path.items():
        endpoint = dispatch({method: wrap(handler) for method, handler in handlers.items()})
        documented = {}
        for method, handler in handlers.items():
            declared = declaration(handler)
            if declared is not None:
                documented[method] = Documented(face, declared, getattr(handler, "__name__", method.lower()))
        setattr(endpoint, DOCUMENTED, documented)
        route = route_class(path, endpoint, methods=list(handlers))
        # a {name:path} parameter is ".*", which stops at a newline: a %0A in it would
        # match no route (a 404 outside the face's error format) instead of the name checks
        route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
        made.append(route)
    return made


def describe(route: Route, face: Face, handlers: Mapping[str, Any]) -> Route:
    """Document a route made by hand: ``handlers`` maps ``"METHOD"`` (at the
    route's path) or ``"METHOD /path"`` (a path the route's endpoint serves
    under its own template, e.g. a fixed value of a parameter) to the
    declared handler that answers it. The route's other methods are left out
    of the document (they answer 405)."""
    documented = {}
    for key, handler in handlers.items():
        declared = declaration(handler)
        if declared is None:
            raise ValueError(f"{key}: {handler!r} has no @operation")
        documented[key] = Documented(face, declared, getattr(handler, "__name__", key.split()[0].lower()))
    setattr(route.endpoint, DOCUMENTED, documented)
    setattr(route.endpoint, COMPLETE, True)
    return route


def dispatch(handlers: Mapping[str, Handler]) -> Handler:
    """One endpoint for the methods of one path (HEAD is GET without a body)."""
    table = dict(handlers)

    async def endpoint(request: Request) -> Response:
        handler = table.get(request.method) or table["GET"]
        return await handler(request)

    return endpoint


# -- the document -------------------------------------------------------------


@dataclass(frozen=True)
class RouteMethod:
    path: str  # OpenAPI path template
    method: str
    path_params: Mapping[str, Any]  # name -> type
    documented: Documented | None


PARAM_RE = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def route_methods(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[RouteMethod]:
    """Every method of every route, Mounts walked into (HEAD left out where GET is)."""
    for route in routes:
        if isinstance(route, Mount):
            yield from route_methods(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            path = prefix + PARAM_RE.sub(r"{\1}", route.path)
            params = {name: _convertor_type(conv) for name, conv in route.param_convertors.items()}
            documented: Mapping[str, Documented] = getattr(route.endpoint, DOCUMENTED, {})
            if getattr(route.endpoint, COMPLETE, False):
                for key, found in documented.items():
                    method, _, other = key.partition(" ")
                    if not other:
                        yield RouteMethod(path, method.upper(), params, found)
                        continue
                    names = [m.group(1) for m in PARAM_RE.finditer(other)]
                    other_params = {name: params.get(name, str) for name in names}
                    yield RouteMethod(prefix + PARAM_RE.sub(r"{\1}", other), method.upper(), other_params, found)
                continue
            methods = set(route.methods or ())
            if "GET" in methods:
                methods.discard("HEAD")
            for method in sorted(methods):
                yield RouteMethod(path, method, params, documented.get(method))


def _convertor_type(convertor: Any) -> type:
    if isinstance(convertor, IntegerConvertor):
        return int
    if isinstance(convertor, FloatConvertor):
        return float
    return str


def undocumented(routes: Iterable[BaseRoute]) -> list[str]:
    """``"METHOD /path"`` of every route method without a declaration."""
    return [f"{r.method} {r.path}" for r in route_methods(routes) if r.documented is None]


class _Schemas:
    """Collects types; after resolve(), the schema of each one (a $ref for Structs)."""

    def __init__(self) -> None:
        self.types: list[Any] = []
        self.schemas: list[dict[str, Any]] = []
        self.components: dict[str, Any] = {}

    def add(self, type_: Any) -> int:
        self.types.append(type_)
        return len(self.types) - 1

    def resolve(self) -> None:
        schemas, self.components = msgspec.json.schema_components(self.types, ref_template=REF)
        self.schemas = [dict(s) for s in schemas]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.schemas[index]


def document(routes: Iterable[BaseRoute], *, title: str, version: str, description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the documented routes."""
    schemas = _Schemas()
    pending: list[tuple[RouteMethod, Callable[[], dict[str, Any]]]] = []
    faces: dict[str, Face] = {}
    for rm in route_methods(routes):
        if rm.documented is not None:
            faces.setdefault(rm.documented.face.name, rm.documented.face)
            pending.append((rm, _operation_builder(rm, rm.documented, schemas)))
    schemas.resolve()
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for rm, build in pending:
        op = build()
        op_id = op["operationId"]
        n = 2
        while op["operationId"] in used_ids:
            op["operationId"] = f"{op_id}{n}"
            n += 1
        used_ids.add(op["operationId"])
        paths.setdefault(rm.path, {})[rm.method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "tags": [{"name": f.name, "description": f.description} for f in faces.values()],
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


def _content(spec: Any) -> Content:
    if isinstance(spec, Content):
        return spec
    return Content(spec)


def _operation_builder(rm: RouteMethod, documented: Documented, schemas: _Schemas) -> Callable[[], dict[str, Any]]:
    """Registers the operation's types now; the returned function builds its
    document once every schema is resolved."""
    face, op = documented.face, documented.operation
    param_refs = [
        ("path", name, True, face.path_params.get(name, ""), schemas.add(type_))
        for name, type_ in rm.path_params.items()
    ]
    param_refs += [("query", p.name, p.required, p.description, schemas.add(p.type)) for p in op.query]
    param_refs += [("header", p.name, p.required, p.description, schemas.add(p.type)) for p in op.headers]
    body = _content(op.body) if op.body is not None else None
    body_ref = schemas.add(body.type) if body is not None else None
    responses: dict[int, Content | None] = {
        status: (None if spec is None else _content(spec)) for status, spec in op.responses.items()
    }
    implied = list(op.errors)
    if body is not None:
        implied += [400, 413]
    if op.scope is not None:
        implied += [401, 403]
    if face.storage:
        implied.append(503)
    for status in implied:
        if status not in responses:
            responses[status] = replace(face.error, description="") if face.error is not None else None
    response_refs = {
        status: (
            content,
            schemas.add(content.type) if content is not None and content.type is not None else None,
            schemas.add(content.event_data) if content is not None and content.event_data is not None else None,
        )
        for status, content in sorted(responses.items())
    }

    def build() -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tags": [face.name],
            "summary": op.summary,
            "operationId": f"{face.name}_{_camel(documented.handler_name)}",
        }
        description = op.description
        if op.scope is not None:
            description = (
                description + "\n\n" if description else ""
            ) + f"Needs an API key with the `{op.scope}` scope."
        if description:
            doc["description"] = description
        if op.deprecated:
            doc["deprecated"] = True
        doc.update(face.extensions)
        if param_refs:
            doc["parameters"] = [
                {
                    "name": name,
                    "in": where,
                    "required": required,
                    **({"description": text} if text else {}),
                    "schema": schemas[ref],
                }
                for where, name, required, text, ref in param_refs
            ]
        if body is not None and body_ref is not None:
            doc["requestBody"] = {
                "required": True,
                **({"description": body.description} if body.description else {}),
                "content": {body.media_type: {"schema": schemas[body_ref]}},
            }
        doc["responses"] = {}
        for status, (content, ref, event_ref) in response_refs.items():
            answer: dict[str, Any] = {
                "description": (content.description if content else "") or HTTPStatus(status).phrase
            }
            if content is not None and content.headers:
                answer["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}} for name, text in content.headers.items()
                }
            if content is not None and ref is not None:
                media: dict[str, Any] = {"schema": schemas[ref]}
                if event_ref is not None:
                    media["x-event-data"] = schemas[event_ref]
                answer["content"] = {content.media_type: media}
            doc["responses"][str(status)] = answer
        if op.scope is not None:
            doc["security"] = [{name: [op.scope]} for name in face.security]
        return doc

    return build


def _camel(name: str) -> str:
    head, *rest = name.strip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
