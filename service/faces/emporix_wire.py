"""The Emporix face on the wire: its types (the vendor's schema names in the
comments), its errors, and the decoders of its bodies. The face itself is
emporix.py."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.responses import Response

from ..bodies import VendorBody, must_be_object
from ..operations import Content, Face, Param
from ..routing import Answers
from ..store.core import Session
from ..web import ApiError, JsonResponse, iso8601, raw_headers

NAMESPACE = "__emporix__"  # of each tenant: its contexts, one storage-core session each
SIMPLE_FIELDS = ("customerId", "siteCode", "currency", "cartId", "targetLocation", "language")
SESSION_ID = "sessionId"
CUSTOMER_ID = "customerId"
CONTEXT = "context"

OptionalText = str | UnsetType | None  # null is taken as "not given"
# A stored field as it is kept: its JSON text, answered as it is
RawText = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "string"})]
RawObject = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]
# The members of a context in a body: any JSON each, kept as their JSON text
Members = dict[str, msgspec.Raw]


class MetadataUpdate(msgspec.Struct):
    """MetadataUpdate: the version a change is made against (other members, such
    as an echoed createdAt, are ignored)."""

    version: int


class Metadata(msgspec.Struct):
    """Metadata."""

    version: int
    createdAt: str
    modifiedAt: str


class SessionContext(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_GET: fields that were never set are left out."""

    sessionId: str
    customerId: RawText | UnsetType = UNSET
    siteCode: RawText | UnsetType = UNSET
    currency: RawText | UnsetType = UNSET
    cartId: RawText | UnsetType = UNSET
    targetLocation: RawText | UnsetType = UNSET
    language: RawText | UnsetType = UNSET
    context: RawObject | UnsetType = UNSET
    metadata: Metadata


class SessionContextUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_PUT: replaces the stored fields. ``sessionId`` is the path's."""

    sessionId: OptionalText = UNSET
    customerId: OptionalText = UNSET
    siteCode: OptionalText = UNSET
    currency: OptionalText = UNSET
    cartId: OptionalText = UNSET
    targetLocation: OptionalText = UNSET
    language: OptionalText = UNSET
    context: Members | UnsetType | None = UNSET
    metadata: MetadataUpdate


class SessionContextPatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SessionContext_PATCH: only these fields are taken, any other is ignored.
    ``context`` is merged key by key; a key set to null is removed."""

    siteCode: OptionalText = UNSET
    currency: OptionalText = UNSET
    targetLocation: OptionalText = UNSET
    language: OptionalText = UNSET
    context: Members | UnsetType | None = UNSET
    metadata: MetadataUpdate


class ContextAttribute(msgspec.Struct):
    """ContextAttribute: ``value`` is any JSON value."""

    key: str
    value: msgspec.Raw


class ErrorMessage(msgspec.Struct):
    """ErrorMessage: ``code`` is the HTTP status."""

    code: int
    message: str


class SessionNotFound(msgspec.Struct):
    """The 404 of a missing session context."""

    sessionId: str
    code: int
    message: str


def versioned(value: Any) -> None:
    """What a PUT or PATCH body must be before its members are looked at."""
    must_be_object(value)
    metadata = value.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("version") is None:
        raise ApiError(400, "metadata.version is required: the version of the session context this change is made to")


# The bodies: 413 over the size limit, 400 when one is not JSON, nests too
# deep, is not an object, or has a member of a wrong type.
UPDATE_BODY: VendorBody[SessionContextUpdate] = VendorBody(SessionContextUpdate, versioned)
PATCH_BODY: VendorBody[SessionContextPatch] = VendorBody(SessionContextPatch, versioned)
ATTRIBUTE_BODY: VendorBody[ContextAttribute] = VendorBody(ContextAttribute, must_be_object)
ENCODER = msgspec.json.Encoder()


def members(values: dict[str, msgspec.Raw]) -> bytes:
    """Context members as the JSON object text the store keeps."""
    return ENCODER.encode({name: msgspec.Raw(UPDATE_BODY.value(value)) for name, value in values.items()})


UPSERT = Param("upsert", bool, "create the context when it does not exist")
SAAS_TOKEN = Param("saas-token", str, "the customer's token, needed when the context (or the body) has a customerId")
FACE = Face(
    "emporix",
    "The Emporix Session Context Service. `/context/...` takes an API key; `/me/context...` the customer's own "
    "token (a JWT) as `Authorization: Bearer`, whose session it works on.",
    error=Content(ErrorMessage),
    path_params={
        "tenant": "the tenant: a lowercase letter, then 2 to 15 lowercase letters or digits",
        "sessionId": "the session id",
        "attributeName": "the name of an attribute in the context",
    },
)
NOT_FOUND = Content(
    SessionNotFound,
    description="No such session context; or a version conflict: `metadata.version` is not the stored version, "
    "answered as Emporix does, `The context with sessionId <id> and version <v> has not been found.` (nothing changes)",
)
NO_ATTRIBUTE = Content(SessionNotFound, description="No such session context, or no such attribute in it")
BUSY = Content(
    ErrorMessage,
    description="Redis did not answer; or the context kept changing between this change's read of it and its "
    "write, too often in a row (nothing changed: try again)",
)


def render_error(error: ApiError) -> Response:
    session_id = error.extra.get(SESSION_ID)
    body: ErrorMessage | SessionNotFound
    if isinstance(session_id, str):
        body = SessionNotFound(session_id, error.status, error.message)
    else:
        body = ErrorMessage(error.status, error.message)
    return JsonResponse(ENCODER.encode(body), error.status, raw_headers(error.headers))


ANSWERS = Answers(render_error)


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "Session not found", sessionId=session_id)


def version_conflict(session_id: str, version: int) -> ApiError:
    """A ``metadata.version`` that is not the stored one, answered as Emporix
    does: a 404 naming the version the request named."""
    return ApiError(
        404, f"The context with sessionId {session_id} and version {version} has not been found.", sessionId=session_id
    )


def attribute_not_found(session_id: str, name: str) -> ApiError:
    # not "has not been found": storefront code takes a 404 saying that (with "version") for a conflict
    message = f"The context with sessionId {session_id} has no attribute {name}."
    return ApiError(404, message, sessionId=session_id)


def busy() -> ApiError:
    return ApiError(503, "the session context kept changing while this change was applied; try again")


def text(value: OptionalText) -> str | None:
    return value if isinstance(value, str) else None


def context_response(session: Session) -> Response:
    """A stored context as SessionContext: its fields as the JSON text they are kept as."""
    props = session.properties
    fields: dict[str, Any] = {}
    for name in SIMPLE_FIELDS:
        raw = props.get(name)
        if raw is not None and raw[:1] == b'"':  # a string (anything else was written by another API)
            fields[name] = msgspec.Raw(raw)
    raw_context = props.get(CONTEXT)
    if raw_context is not None and raw_context[:1] == b"{":
        fields[CONTEXT] = msgspec.Raw(raw_context)
    body = SessionContext(
        sessionId=session.session_id,
        metadata=Metadata(session.version, iso8601(session.created_ms), iso8601(session.modified_ms)),
        **fields,
    )
    return JsonResponse(ENCODER.encode(body))
