"""The native API on the wire: the types of its bodies (the OpenAPI schemas
are made from these), their decoders, its errors (RFC 9457 problem details),
and what its operations share in the document. The face itself is
native.py."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.responses import Response

from ..bodies import NativeBody
from ..operations import Content, Face, Param
from ..routing import Answers
from ..store.core import Session as StoredSession
from ..web import ApiError, JsonResponse, iso8601, raw_headers

PREFIX = "/api/v1/tenants"  # of every path but /api/v1/whoami
MAX_TTL_S = 10 * 366 * 24 * 3600
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH_JSON = "application/merge-patch+json"
PROBLEM_TYPE = (b"content-type", PROBLEM_JSON.encode())
ENCODER = msgspec.json.Encoder()


class Problem(msgspec.Struct):
    """An error, as RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


class SessionMetadata(msgspec.Struct, rename="camel"):
    version: Annotated[int, msgspec.Meta(description="moves on with every change; the ETag is this, quoted")]
    created_at: str
    modified_at: str
    expires_at: Annotated[
        str | None, msgspec.Meta(description="when the session expires, with an idle TTL (?ttl=); null: never")
    ]


CustomerMember = Annotated[
    str | None | UnsetType,
    msgspec.Meta(
        description="tie the session to this customer (null: untie it; left out: the tie stays as it is). "
        "Not in __emporix__ and __genesys__, whose faces own their sessions' ties (400)."
    ),
]


class Session(msgspec.Struct, rename="camel"):
    session_id: str
    customer_id: Annotated[str | None, msgspec.Meta(description="the customer the session is tied to; null: none")]
    properties: Annotated[dict[str, msgspec.Raw], msgspec.Meta(description="name -> any JSON value")]
    metadata: SessionMetadata


class SessionReplace(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """PUT: the new properties, and the customer tie when ``customerId`` is
    given (left out, the tie stays). ``sessionId`` and ``metadata`` may be
    sent back as they were read; they are ignored."""

    properties: dict[str, msgspec.Raw]
    customer_id: CustomerMember = UNSET
    session_id: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class SessionPatch(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """PATCH: a JSON merge patch (RFC 7396) of the session: in ``properties``
    a member set to null is deleted, an object is merged into the property,
    anything else replaces it; ``"properties": null`` deletes them all."""

    properties: dict[str, msgspec.Raw] | None | UnsetType = UNSET
    customer_id: CustomerMember = UNSET
    session_id: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class SessionList(msgspec.Struct, rename="camel"):
    session_ids: list[str]
    next_cursor: Annotated[str | None, msgspec.Meta(description="pass as ?cursor= for the next page; null: no more")]


class BatchGetRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    # at most Settings.max_list_items (1,000 by default: checked by the handler, so it can be configured)
    session_ids: Annotated[list[str], msgspec.Meta(description="at most 1,000 by default (--max-list-items)")]


class BatchGetResult(msgspec.Struct):
    sessions: list[Session]
    missing: list[str]


class IncrementRequest(msgspec.Struct, forbid_unknown_fields=True):
    # numbers are doubles in the store: integers exact up to 2^53
    by: Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)] | float


class IncrementResult(msgspec.Struct):
    value: int | float


class ChangeEvent(msgspec.Struct):
    """The data of one event of GET …/events (published by the Lua script that made the change)."""

    version: int
    changed: list[str]
    deleted: list[str]


REPLACE_BODY: NativeBody[SessionReplace] = NativeBody(SessionReplace)
PATCH_BODY: NativeBody[SessionPatch] = NativeBody(SessionPatch)
VALUE_BODY: NativeBody[msgspec.Raw] = NativeBody(msgspec.Raw)
BATCH_BODY: NativeBody[BatchGetRequest] = NativeBody(BatchGetRequest)
INCREMENT_BODY: NativeBody[IncrementRequest] = NativeBody(IncrementRequest)


# -- errors ---------------------------------------------------------------------


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: Any = Problem("about:blank", HTTPStatus(status).phrase, status, detail)
    if extra:
        body = {**msgspec.structs.asdict(body), **extra}
    return JsonResponse(ENCODER.encode(body), status, raw_headers(headers), PROBLEM_TYPE)


def render_problem(error: ApiError) -> Response:
    return problem(error.status, error.message, dict(error.headers) if error.headers else None, **error.extra)


def not_allowed(allowed: str) -> ApiError:
    return ApiError(405, f"use {allowed} here", {"Allow": allowed})


ANSWERS = Answers(render_problem, not_allowed)


# -- in the document ----------------------------------------------------------------

SESSION_ANSWER = Content(Session, headers={"ETag": "the session's version, quoted"})
ETAG_ONLY = Content(None, headers={"ETag": "the session's version, quoted"})
IF_MATCH = Param(
    "If-Match", str, 'only if the session is at one of these versions ("3", or a list); * = only if it exists'
)
IF_NONE_MATCH_WRITE = Param("If-None-Match", str, "* = only if the session does not exist yet (create only)")
TTL = Param(
    "ttl",
    Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)],
    "idle TTL in seconds: from now on every write moves expiresAt to now + TTL",
)
FACE = Face(
    "native",
    "sessionstore's own API: sessions as resources with ETags and conditional requests, JSON merge patch, "
    "atomic counters, batch reads, listing with a cursor and a live change feed. Errors are RFC 9457 problem details.",
    error=Content(Problem, PROBLEM_JSON),
    path_params={
        "tenant": "the tenant (LivePerson: the account id)",
        "namespace": "the namespace: letters, digits, '_', '.', '-'",
        "sessionId": "the session id: any text without '/' or control characters",
        "name": "the property name: any text without '/' or control characters",
    },
)


def resource(found: StoredSession) -> Session:
    """A stored session as this API shows it."""
    return Session(
        found.session_id,
        found.customer_id,
        {name: msgspec.Raw(value) for name, value in found.properties.items()},
        SessionMetadata(
            found.version,
            iso8601(found.created_ms),
            iso8601(found.modified_ms),
            iso8601(found.expires_ms) if found.expires_ms else None,
        ),
    )
