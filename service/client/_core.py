"""Every operation of the native API, written once as a flow (see _flow.py):
the request it makes, whether it may be repeated, and what its answer means.
``Client`` and ``AsyncClient`` run these."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from ._cache import SeenVersions
from ._errors import NotFound, PreconditionFailed, SessionStoreError
from ._flow import (
    CONDITIONAL,
    DELETE,
    IDEMPOTENT,
    ONCE,
    READ,
    Emit,
    Flow,
    Items,
    Repeat,
    Retry,
    Send,
    Sleep,
    call,
    checked,
)
from ._merge import NotExpressible, merge_patch
from ._models import ANY, BATCH, ENCODER, INCREMENT, PAGE, SESSION, BatchResult, Session, SessionPage

MERGE_PATCH_JSON = "application/merge-patch+json"
JSON = "application/json"
Update = Callable[[dict[str, Any]], dict[str, Any]]


def segment(name: str, what: str) -> str:
    """One path segment for a name: percent-encoded whole (``:`` and ``.`` too)."""
    if not name or "/" in name:
        raise ValueError(f"a {what} must be non-empty and hold no '/': {name!r}")
    return quote(name, safe="").replace(".", "%2E")


def etag(version: int) -> str:
    return f'"{version}"'


def conditions(if_match: int | None, create_only: bool = False) -> tuple[dict[str, str], Repeat | None]:
    """The precondition headers of a write, and how its request may be repeated
    when it is not otherwise: conditional ones at most once each."""
    if if_match is not None and create_only:
        raise ValueError("if_match and create_only cannot both hold")
    if if_match is not None:
        return {"If-Match": etag(if_match)}, CONDITIONAL
    if create_only:
        return {"If-None-Match": "*"}, CONDITIONAL
    return {}, None


def ttl_param(ttl: int | None) -> dict[str, str | int]:
    return {} if ttl is None else {"ttl": ttl}


@dataclass(frozen=True)
class Core:
    """The operations on one namespace of one tenant; ``seen`` and ``retry``
    are the client's, shared with every namespace it is given."""

    tenant: str
    namespace: str
    retry: Retry
    seen: SeenVersions
    update_tries: int = 10

    def __post_init__(self) -> None:
        segment(self.tenant, "tenant")
        segment(self.namespace, "namespace")

    def in_namespace(self, namespace: str, tenant: str | None = None) -> Core:
        return replace(self, namespace=namespace, tenant=self.tenant if tenant is None else tenant)

    # -- paths --------------------------------------------------------------------

    @property
    def sessions(self) -> str:
        return f"api/v1/tenants/{segment(self.tenant, 'tenant')}/namespaces/{segment(self.namespace, 'namespace')}/sessions"

    def session(self, session_id: str) -> str:
        return f"{self.sessions}/{segment(session_id, 'session id')}"

    def prop(self, session_id: str, name: str) -> str:
        return f"{self.session(session_id)}/properties/{segment(name, 'property name')}"

    def _send(self, op: Send, repeat: Repeat | None, *ok: int) -> Flow[httpx.Response]:
        return checked((yield from call(op, repeat, self.retry)), *ok)

    # -- sessions -----------------------------------------------------------------

    def get(self, session_id: str) -> Flow[Session]:
        """The session; with the version last seen of it, asked for with
        ``If-None-Match`` and, when it is still that, taken from what was seen."""
        url = self.session(session_id)
        seen = self.seen.get(url)
        headers = {"If-None-Match": seen[0]} if seen else {}
        try:
            response = yield from self._send(Send("GET", url, headers=headers), READ, 200, 304)
        except NotFound:
            self.seen.forget(url)
            raise
        if response.status_code == 304 and seen is not None:
            return SESSION.decode(seen[1])
        if response.status_code == 304:  # not asked for: an answer from something in between
            response = yield from self._send(Send("GET", url), READ, 200)
        return self._remember(url, response)

    def _remember(self, url: str, response: httpx.Response) -> Session:
        session = SESSION.decode(response.content)
        self.seen.put(url, response.headers.get("etag"), response.content)
        return session

    def put(
        self, session_id: str, properties: Mapping[str, Any], *, ttl: int | None, if_match: int | None,
        create_only: bool,
    ) -> Flow[Session]:  # fmt: skip
        headers, repeat = conditions(if_match, create_only)
        # a PUT replaces: sent twice it leaves the same properties as once
        return (yield from self._write("PUT", session_id, properties, ttl, headers, JSON, repeat or IDEMPOTENT))

    def patch(
        self, session_id: str, properties: Mapping[str, Any] | None, *, ttl: int | None, if_match: int | None,
        create_only: bool,
    ) -> Flow[Session]:  # fmt: skip
        """A JSON merge patch of the properties (None: delete them all)."""
        headers, repeat = conditions(if_match, create_only)
        return (yield from self._write("PATCH", session_id, properties, ttl, headers, MERGE_PATCH_JSON, repeat or ONCE))

    def _write(
        self, method: str, session_id: str, properties: Mapping[str, Any] | None, ttl: int | None,
        headers: dict[str, str], media_type: str, repeat: Repeat | None,
    ) -> Flow[Session]:  # fmt: skip
        url = self.session(session_id)
        body = ENCODER.encode({"properties": properties})
        op = Send(method, url, ttl_param(ttl), {**headers, "Content-Type": media_type}, body)
        return self._remember(url, (yield from self._send(op, repeat, 200, 201)))

    def delete(self, session_id: str, *, if_match: int | None) -> Flow[None]:
        url = self.session(session_id)
        headers = {} if if_match is None else {"If-Match": etag(if_match)}
        try:
            yield from self._send(Send("DELETE", url, headers=headers), DELETE, 204)
        finally:
            self.seen.forget(url)

    def touch(self, session_id: str) -> Flow[None]:
        url = self.session(session_id)
        self.seen.forget(url)  # its expiresAt moves
        yield from self._send(Send("POST", url + ":touch"), IDEMPOTENT, 204)

    def update(self, session_id: str, fn: Update, *, create: bool, ttl: int | None, tries: int | None) -> Flow[Session]:
        """Read, apply ``fn`` to (a copy of) the properties, write only if
        nobody wrote in between; again on a 412, up to ``tries`` times."""
        tries = self.update_tries if tries is None else tries
        failure: PreconditionFailed | None = None
        for attempt in range(tries):
            if attempt:
                yield Sleep(self.retry.delay(min(attempt, 8)) / 4)  # spread the contenders out
            try:
                current: Session | None = yield from self.get(session_id)
            except NotFound:
                if not create:
                    raise
                current = None
            old = current.properties if current is not None else {}
            new = fn(copy.deepcopy(old))
            try:
                return (yield from self._write_update(session_id, current, old, new, ttl))
            except PreconditionFailed as exc:
                failure = exc
        assert failure is not None, "tries must be at least 1"
        problem = msgspec.structs.replace(failure.problem, detail=f"{failure.detail} (after {tries} tries of update)")
        raise PreconditionFailed(problem, failure.extra)

    def _write_update(
        self, session_id: str, current: Session | None, old: dict[str, Any], new: dict[str, Any], ttl: int | None
    ) -> Flow[Session]:
        if current is None:
            return (yield from self.put(session_id, new, ttl=ttl, if_match=None, create_only=True))
        try:
            patch = merge_patch(old, new)
        except NotExpressible:
            return (yield from self.put(session_id, new, ttl=ttl, if_match=current.version, create_only=False))
        if not patch and ttl is None:
            return current
        return (yield from self.patch(session_id, patch, ttl=ttl, if_match=current.version, create_only=False))

    def batch_get(self, session_ids: Iterable[str]) -> Flow[BatchResult]:
        body = ENCODER.encode({"sessionIds": list(session_ids)})
        op = Send("POST", self.sessions + ":batchGet", headers={"Content-Type": JSON}, content=body)
        return BATCH.decode((yield from self._send(op, READ, 200)).content)

    def page(self, cursor: str | None, limit: int) -> Flow[SessionPage]:
        params: dict[str, str | int] = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
        return PAGE.decode((yield from self._send(Send("GET", self.sessions, params), READ, 200)).content)

    def session_ids(self, page_size: int) -> Items[str]:
        """Every session id of the namespace, page by page."""
        cursor: str | None = None
        while True:
            page = yield from self.page(cursor, page_size)
            for session_id in page.session_ids:
                yield Emit(session_id)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- properties ---------------------------------------------------------------

    def get_property(self, session_id: str, name: str) -> Flow[Any]:
        url, key = self.prop(session_id, name), self.session(session_id)
        seen = self.seen.get(key)
        headers = {"If-None-Match": seen[0]} if seen else {}
        response = yield from self._send(Send("GET", url, headers=headers), READ, 200, 304)
        if response.status_code == 304 and seen is not None:
            properties = SESSION.decode(seen[1]).properties
            if name in properties:
                return properties[name]
        if response.status_code == 304:
            response = yield from self._send(Send("GET", url), READ, 200)
        return ANY.decode(response.content)

    def put_property(
        self, session_id: str, name: str, value: Any, *, ttl: int | None, if_match: int | None
    ) -> Flow[int]:
        headers, repeat = conditions(if_match)
        op = Send("PUT", self.prop(session_id, name), ttl_param(ttl), {**headers, "Content-Type": JSON},
                  ENCODER.encode(value))  # fmt: skip
        return self._version((yield from self._written(session_id, op, repeat or IDEMPOTENT)))

    def delete_property(self, session_id: str, name: str, *, if_match: int | None) -> Flow[int]:
        headers, repeat = conditions(if_match)
        op = Send("DELETE", self.prop(session_id, name), headers=headers)
        return self._version((yield from self._written(session_id, op, repeat or IDEMPOTENT)))

    def increment(self, session_id: str, name: str, by: float) -> Flow[int | float]:
        op = Send("POST", self.prop(session_id, name) + ":increment", headers={"Content-Type": JSON},
                  content=ENCODER.encode({"by": by}))  # fmt: skip
        return INCREMENT.decode((yield from self._written(session_id, op, ONCE, 200)).content).value

    def _written(self, session_id: str, op: Send, repeat: Repeat | None, ok: int = 204) -> Flow[httpx.Response]:
        """A property write: what was seen of the session is out of date."""
        self.seen.forget(self.session(session_id))
        return (yield from self._send(op, repeat, ok))

    @staticmethod
    def _version(response: httpx.Response) -> int:
        tag = response.headers.get("etag", "").strip('"')
        if not tag.isdigit():
            raise SessionStoreError(f"the answer has no ETag: {response.headers.get('etag')!r}")
        return int(tag)
