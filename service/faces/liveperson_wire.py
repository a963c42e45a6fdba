"""The LivePerson v1 face on the wire: its types, the decoders of its
bodies, its error body ``{"code", "message"}`` (LivePerson v2's too), and its
routes' ``/v1/brand/...`` alias. The face itself is liveperson.py."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.responses import Response

from ..bodies import VendorBody, must_be_object
from ..operations import Content, Face, Param
from ..routing import Answers, Endpoint
from ..web import ApiError, EmptyResponse, JsonResponse, json_response

DEFAULT_SESSION = "__default__"
RESERVED_PREFIX = "__"  # namespaces of the other faces (__emporix__, __genesys__)
# LivePerson's own namespaces: its v2 document lists these as "reserved for
# internal use only", and its getting-started page says using them "will cause
# 400 errors". Compared without regard to case.
RESERVED_NAMESPACES = frozenset({"consumer", "operational", "conversation", "faas", "custom", "sde"})
MAX_TTL_S = 10 * 366 * 24 * 3600
ACCOUNT = "^/v1/account/"
BRAND = "^/v1/(?:account|brand)/"  # the LivePerson documents use both

# Property values are any JSON: they cross this face as the raw JSON text the
# store keeps (msgspec.Raw), never decoded and encoded again.
Properties = Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="property name -> any JSON value")]


class ErrorBody(msgspec.Struct):
    code: int
    message: str


class NamespaceCreate(msgspec.Struct):
    name: str


class NamespaceEntry(msgspec.Struct, rename="camel"):
    name: str
    created_at: str
    ttl_second: int | UnsetType = UNSET  # only when the namespace has a TTL


class TtlSessionCreate(msgspec.Struct, rename="camel"):
    session_id: str


class TtlSessionEntry(msgspec.Struct, rename="camel"):
    session_id: str
    created_at: str
    ttl_second: int


class SessionPropertiesEntry(msgspec.Struct, rename="camel"):
    session_id: str
    property: Properties


NAMESPACE_BODY: VendorBody[NamespaceCreate] = VendorBody(NamespaceCreate)
TTL_SESSION_BODY: VendorBody[TtlSessionCreate] = VendorBody(TtlSessionCreate)
PROPERTIES_BODY: VendorBody[dict[str, msgspec.Raw]] = VendorBody(Properties, must_be_object)
VALUE_BODY: VendorBody[msgspec.Raw] = VendorBody(msgspec.Raw)

TTL_SECOND = Param("ttlSecond", Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)], "TTL in seconds")
PAGE = [
    Param("page", Annotated[int, msgspec.Meta(ge=0)], "page number, from 0"),
    Param("perPage", Annotated[int, msgspec.Meta(ge=1, le=1000)], "ids per page (default 100)"),
]
FACE = Face(
    "liveperson",
    "The LivePerson Maven Context Session Store API (v1). `/v1/brand/...` is the same as `/v1/account/...`, and "
    "the namespace-level property paths are the session `__default__`.",
    error=Content(ErrorBody),
    path_params={
        "account": "the LivePerson account id (the tenant)",
        "namespace": "the namespace: letters, digits, '_', '.', '-'",
        "session": "the session id",
        "property": "the property name",
    },
)


def encode(value: Any) -> Response:
    return JsonResponse(msgspec.json.encode(value))


def raw_properties(properties: dict[str, bytes]) -> dict[str, msgspec.Raw]:
    return {name: msgspec.Raw(value) for name, value in properties.items()}


def checked_namespace(name: str, *, writing: bool) -> str:
    """A namespace name (already checked as a name) that this face may use:
    never one of the other faces' (``__...``); not one of LivePerson's own
    (RESERVED_NAMESPACES) to create or write."""
    if name.startswith(RESERVED_PREFIX):
        raise ApiError(400, f"namespace names starting with {RESERVED_PREFIX} are reserved")
    if writing and name.lower() in RESERVED_NAMESPACES:
        raise ApiError(400, f"namespace {name!r} is reserved for LivePerson's internal use")
    return name


def render_error(error: ApiError) -> Response:
    return json_response({"code": error.status, "message": error.message, **error.extra}, error.status, error.headers)


ANSWERS = Answers(render_error)


def no_content() -> Response:
    return EmptyResponse(204)


class LivePersonRoute(Endpoint):
    """A route of this face: ``/v1/brand/...`` is ``/v1/account/...``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.path_regex.pattern.startswith(ACCOUNT)
        self.path_regex = re.compile(BRAND + self.path_regex.pattern[len(ACCOUNT) :], self.path_regex.flags)
