"""The client's typed view of the native API's JSON: msgspec structs, and the
decoders built once. These mirror the wire types of service/faces/native.py
(tests/test_client.py checks they keep the same field names) without
importing the service: a client needs none of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class SessionMetadata(msgspec.Struct, rename="camel", frozen=True):
    version: int  # moves on with every change; the session's ETag is this, quoted
    created_at: datetime
    modified_at: datetime
    expires_at: datetime | None  # with an idle TTL; None: never


class Session(msgspec.Struct, rename="camel"):
    """A session as read or as a write left it. ``properties`` is a fresh
    object on every call: change it freely."""

    session_id: str
    customer_id: str | None  # the customer the session is tied to (see the service's Customer data page)
    properties: dict[str, Any]
    metadata: SessionMetadata

    @property
    def version(self) -> int:
        return self.metadata.version

    @property
    def etag(self) -> str:
        return f'"{self.metadata.version}"'


class SessionPage(msgspec.Struct, rename="camel", frozen=True):
    """One page of ``GET …/sessions``: pass ``next_cursor`` on for the next (None: the last page)."""

    session_ids: list[str]
    next_cursor: str | None


class BatchResult(msgspec.Struct, frozen=True):
    """``POST …/sessions:batchGet``: the sessions found, and the ids of those that are not there."""

    sessions: list[Session]
    missing: list[str]


class ChangeEvent(msgspec.Struct, frozen=True):
    """One committed change to a followed session (made through any API, by any instance)."""

    version: int
    changed: list[str]
    deleted: list[str]


class Resync(msgspec.Struct, frozen=True):
    """From ``watch``: the session as read right after the change feed was
    (re)subscribed, None when it does not exist. Changes made while the
    stream was down have no events of their own: they are in this read. Events
    that follow may repeat changes it already shows."""

    session: Session | None


WatchEvent = ChangeEvent | Resync


class Problem(msgspec.Struct):
    """RFC 9457 problem details, as every error of the native API is answered."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""


class IncrementResult(msgspec.Struct):
    value: int | float


SESSION = msgspec.json.Decoder(Session)
PAGE = msgspec.json.Decoder(SessionPage)
BATCH = msgspec.json.Decoder(BatchResult)
EVENT = msgspec.json.Decoder(ChangeEvent)
INCREMENT = msgspec.json.Decoder(IncrementResult)
PROBLEM = msgspec.json.Decoder(Problem)
ANY = msgspec.json.Decoder()
ENCODER = msgspec.json.Encoder()
