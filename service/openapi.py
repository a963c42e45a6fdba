"""OpenAPI 3.1 for every face, from the declarations kept next to the
handlers (service/operations.py) and the routes built from them
(service/routing.py).

:func:`document` walks the application's routes (Mounts included): paths,
path parameters and methods come from the routes themselves, everything else
from the declarations, and every schema from ``msgspec.json.schema_components``.
:func:`undocumented` lists the route methods that have no declaration (the
tests require that there are none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute, Mount, Route

from .operations import SECURITY_SCHEMES, Content, Documented, Face
from .routing import COMPLETE, DOCUMENTED

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"


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
    if 401 in implied or 401 in responses:  # a key is asked for: it may be over its rate, its address refused
        implied.append(429)
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
