"""The client's exceptions: one per status the native API answers with, each
carrying the RFC 9457 problem details of the answer, under one base class."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from ._models import ANY, PROBLEM, Problem

PROBLEM_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(Problem))


class SessionStoreError(Exception):
    """The base of every error the client raises."""


class NetworkError(SessionStoreError):
    """The service could not be reached, or the connection failed before an
    answer came (the httpx exception is the ``__cause__``)."""


class ApiError(SessionStoreError):
    """The service answered with an error status: ``status``, ``title``,
    ``detail`` and ``type`` are its problem details, ``extra`` any other
    members they had."""

    def __init__(self, problem: Problem, extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}".rstrip(": "))
        self.problem = problem
        self.extra = extra or {}
        self.status, self.title, self.detail, self.type = problem.status, problem.title, problem.detail, problem.type


class BadRequest(ApiError):
    """400: the request was malformed (a bad name, body, ``ttl`` or cursor)."""


class Unauthorized(ApiError):
    """401: no API key, or one the service does not know."""


class Forbidden(ApiError):
    """403: the API key may not act for this tenant, or lacks the scope."""


class NotFound(ApiError):
    """404: no such session (or property)."""


class Conflict(ApiError):
    """409: e.g. an increment of a property whose value is not a number."""


class PreconditionFailed(ApiError):
    """412: ``If-Match`` named another version, or ``If-None-Match: *`` found the session."""


class PayloadTooLarge(ApiError):
    """413: the body, or the session it would make, is over a limit."""


class UnsupportedMediaType(ApiError):
    """415."""


class Unavailable(ApiError):
    """503: the service's storage did not answer. Requests that are safe to
    repeat were retried before this was raised."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> ApiError:
    """The exception for an error answer (its body read): problem details
    when it has them, else the status and the start of its text (e.g. from a
    proxy in front of the service)."""
    status = response.status_code
    kind = BY_STATUS.get(status, ApiError)
    try:
        problem = PROBLEM.decode(response.content)
        members = ANY.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        reason = response.reason_phrase or "error"
        return kind(Problem("about:blank", reason, status, response.text[:200]))
    extra = {k: v for k, v in members.items() if k not in PROBLEM_FIELDS}
    if problem.status != status:  # a body from something else than the service
        problem = Problem(problem.type, problem.title or response.reason_phrase, status, problem.detail)
    return kind(problem, extra)
