"""Conditional requests of the native API (RFC 9110): the entity tags of
If-Match and If-None-Match, and a write run under them. A session's ETag is
its version, quoted; the store checks the version inside the script that
writes, never read first."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ..store.core import Existence, Limits, Status, WriteResult
from ..web import ApiError

MAX_CONDITIONAL_TRIES = 4
ANY_TAG = "*"
TAG_RE = re.compile(r'\s*(?:(W/)?"([^"]*)"|(\*)|([^,\s]+))\s*(?:,|$)')


def entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """The (weak, tag) of an If-Match / If-None-Match value; None for ``*``.
    An unquoted tag is taken as a strong one."""
    tags: list[tuple[bool, str]] = []
    for weak, quoted, star, bare in TAG_RE.findall(header):
        if star:
            return None
        tags.append((bool(weak), quoted if not bare else bare))
    return tags


def tag_version(tag: str) -> int | None:
    return int(tag) if tag.isdigit() and len(tag) < 19 else None


def etag(version: int) -> str:
    return f'"{version}"'


class Conditions:
    """The preconditions of a request, as the store can check them."""

    def __init__(self, request: Request) -> None:
        self.if_match: str | None = None
        self.if_none_match: str | None = None
        for name, value in request.scope["headers"]:  # one pass, the first of each (as Headers.get)
            if name == b"if-match" and self.if_match is None:
                self.if_match = value.decode("latin-1")
            elif name == b"if-none-match" and self.if_none_match is None:
                self.if_none_match = value.decode("latin-1")
        self.match_any = False
        self.versions: list[int] | None = None  # If-Match: the versions any one of which will do
        self.none_match_any = False
        self.none_match_versions: list[int] = []
        if self.if_match is not None:
            tags = entity_tags(self.if_match)
            if tags is None:
                self.match_any = True
            else:  # strong comparison: a weak tag never matches
                self.versions = [v for weak, tag in tags if not weak and (v := tag_version(tag)) is not None]
        if self.if_none_match is not None:
            tags = entity_tags(self.if_none_match)
            if tags is None:
                self.none_match_any = True
            else:  # weak comparison
                self.none_match_versions = [v for _weak, tag in tags if (v := tag_version(tag)) is not None]

    def read_matches(self, version: int) -> bool:
        """If-Match on a read: whether the stored version is one named."""
        return self.if_match is None or self.match_any or version in (self.versions or ())

    def not_modified(self, version: int) -> bool:
        return self.none_match_any or version in self.none_match_versions


def checked(result: WriteResult, limits: Limits, conditions: Conditions | None = None) -> WriteResult:
    """The result of a write that did it; the ApiError saying why it did not otherwise."""
    status = result.status
    if status is Status.OK:
        return result
    if status is Status.MISSING:
        if conditions is not None and conditions.if_match is not None:
            raise ApiError(412, "the session does not exist (If-Match)")
        raise ApiError(404, "session not found")
    if status is Status.EXISTS:
        raise ApiError(412, "the session exists already (If-None-Match: *)")
    if status is Status.VERSION:
        raise ApiError(
            412, f"the session is at version {result.version} (ETag {etag(result.version)}), not one If-Match names"
        )
    if status is Status.TOO_LARGE:
        raise ApiError(413, f"the session would hold more than {limits.max_chars} characters")
    if status is Status.TOO_MANY:
        raise ApiError(
            413, f"the session would hold more than {limits.max_properties} properties"
        )
    if status is Status.NOT_A_NUMBER:
        raise ApiError(409, "the property's value is not a number")
    raise AssertionError(status)

async def conditional(
    request: Request,
    attempt: Callable[[int | None, Existence], Awaitable[WriteResult]],
    limits: Limits,
    *,
    none_match: bool = True,
) -> WriteResult:
    """Run a write under the request's If-Match / If-None-Match: each
    attempt is one script that checks the version it is given. With
    several versions named, a miss whose stored version is another of them
    is tried again with that one."""
    conditions = Conditions(request)
    existence = Existence.ANY
    version = None
    if conditions.if_match is not None:
        existence = Existence.MUST
        if conditions.versions is not None:
            if not conditions.versions:
                raise ApiError(412, "If-Match names no version this session can have")
            version = conditions.versions[0]
    if conditions.if_none_match is not None:
        if not none_match or not conditions.none_match_any:
            raise ApiError(
                400,
                "on a write, If-None-Match takes only * (create only)"
                if none_match
                else "If-None-Match is not taken here",
            )
        if conditions.if_match is not None:
            raise ApiError(412, "If-Match and If-None-Match: * cannot both hold")
        existence = Existence.NONE
    result = await attempt(version, existence)
    for _ in range(MAX_CONDITIONAL_TRIES - 1):
        if not (
            result.status is Status.VERSION
            and result.version in (conditions.versions or ())
            and result.version != version
        ):
            break
        version = result.version
        result = await attempt(version, existence)
    return checked(result, limits, conditions)
