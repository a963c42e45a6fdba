"""One typed codec per Lua script: its arguments in the order of its ARGV (as
the script's header comment documents them) and its reply unpacked.

Each ``Argv`` class names the script it is for (``SCRIPT``) and has one field
per numbered argument, in order; ``args(*tail)`` gives the ARGV list, the
tail (a script's ``N..`` repeated arguments) after them. A test reads every
script's header and holds its numbered arguments to these fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .model import Namespace, Session, Status, WriteResult
from .record import session_from_hash

Arg = str | bytes | int
Call = tuple[Sequence[str], Sequence[Any]]  # a script's keys and arguments


@dataclass(frozen=True, slots=True)
class Argv:
    SCRIPT: ClassVar[str]
    NAMES: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls) -> None:
        cls.NAMES = ()  # filled by arguments(), once the dataclass is made

    @classmethod
    def arguments(cls) -> tuple[str, ...]:
        if not cls.NAMES:
            cls.NAMES = tuple(f.name for f in fields(cls))
        return cls.NAMES

    def args(self, *tail: Arg) -> list[Arg]:
        return [*(getattr(self, name) for name in self.arguments()), *tail]


def flag(on: bool, letter: str) -> str:
    return letter if on else ""


def optional(value: int | None) -> Arg:
    """'' for None (the scripts' "keep as it is"), else the number."""
    return "" if value is None else value


@dataclass(frozen=True, slots=True)
class SessionMutate(Argv):
    """lua/session_mutate.lua; its tail: the changes, three arguments each (model.Changes)."""

    SCRIPT = "session_mutate"
    now: int
    session_id: str
    version: Arg  # '' = any
    existence: str
    stamp_ms: int
    idle_ttl_ms: Arg  # '' keep
    max_chars: int
    max_properties: int
    flags: str
    retention_ms: int
    customer: str

    @staticmethod
    def reply(reply: Any, session_id: str, now: int) -> WriteResult:
        status, version, created, extra = reply[:4]
        session = None
        if len(reply) > 4:  # flag 'r': HGETALL from Lua, a flat list: field, value, field, value...
            session = session_from_hash(session_id, flat_hash(reply[4]), now)
        return WriteResult(Status(status.decode()), int(version), bool(created), extra or None, session)


@dataclass(frozen=True, slots=True)
class SessionRestamp(Argv):
    """lua/session_restamp.lua; its tail: the fields the write set."""

    SCRIPT = "session_restamp"
    now: int
    session_id: str
    stamped_ms: int
    right_ms: int


@dataclass(frozen=True, slots=True)
class SessionDelete(Argv):
    SCRIPT = "session_delete"
    now: int
    session_id: str
    version: Arg
    flags: str
    tied_to: str

    @staticmethod
    def reply(reply: Any) -> WriteResult:
        status, version = reply
        return WriteResult(Status(status.decode()), int(version))


@dataclass(frozen=True, slots=True)
class SessionSettings(Argv):
    SCRIPT = "session_settings"
    now: int
    session_id: str
    ttl_s: Arg  # '' keep
    create: str  # '1' | '0'
    retention_ms: int
    flags: str

    @staticmethod
    def reply(reply: Any) -> WriteResult:
        status, version, created = reply
        return WriteResult(Status(status.decode()), int(version), bool(created))


@dataclass(frozen=True, slots=True)
class SessionGetOrCreate(Argv):
    SCRIPT = "session_get_or_create"
    now: int
    session_id: str
    idle_ttl_ms: Arg
    flags: str
    retention_ms: int

    @staticmethod
    def reply(reply: Any, session_id: str, now: int) -> Session:
        _created, flat = reply
        found = session_from_hash(session_id, flat_hash(flat), now)
        assert found is not None  # the script always stores the metadata
        return found


@dataclass(frozen=True, slots=True)
class SessionImport(Argv):
    """lua/session_import.lua; its tail: three per property (field, ms until it expires, JSON)."""

    SCRIPT = "session_import"
    now: int
    session_id: str
    flags: str
    version: int
    created_ms: int
    modified_ms: int
    ttl_s: int
    idle_ttl_ms: int
    expires_in_ms: int
    max_chars: int
    max_properties: int
    retention_ms: int
    customer: str
    origin: str


@dataclass(frozen=True, slots=True)
class NamespaceEnsure(Argv):
    SCRIPT = "namespace_ensure"
    now: int
    ttl_s: Arg  # '' = leave as it is
    fresh_generation: int  # for a record that is gone: the time (ms), never a generation used before

    @staticmethod
    def reply(reply: Any, tenant: str, name: str) -> Namespace:
        c, t, g, _fresh = reply
        return Namespace(tenant, name, int(c), int(t), int(g))


@dataclass(frozen=True, slots=True)
class NamespaceDelete(Argv):
    SCRIPT = "namespace_delete"
    generation: int


@dataclass(frozen=True, slots=True)
class BucketList(Argv):
    SCRIPT = "bucket_list"
    now: int
    start: str
    most: int
    skip: int
    stop: Arg = "+"


@dataclass(frozen=True, slots=True)
class CustomerTouch(Argv):
    """lua/customer_touch.lua; its tail: the members to put in."""

    SCRIPT = "customer_touch"
    verify_above: int
    verify_few: int
    guard_ms: int


@dataclass(frozen=True, slots=True)
class CustomerDrop(Argv):
    """lua/customer_drop.lua; its tail: member, score, for each entry."""

    SCRIPT = "customer_drop"
    guard_ms: int


@dataclass(frozen=True, slots=True)
class RateLimit(Argv):
    """lua/rate_limit.lua (service/rate_limits.py): one request against an API key's rate."""

    SCRIPT = "rate_limit"
    interval_us: int
    burst_us: int


CODECS: tuple[type[Argv], ...] = (
    SessionMutate, SessionRestamp, SessionDelete, SessionSettings, SessionGetOrCreate, SessionImport,
    NamespaceEnsure, NamespaceDelete, BucketList, CustomerTouch, CustomerDrop, RateLimit,
)  # fmt: skip


def flat_hash(flat: list[Any]) -> dict[bytes, bytes]:
    """HGETALL's reply from Lua (a flat list: field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def status_ok(reply: Any) -> bool:
    """Whether a session script's reply says it wrote (its status is "ok")."""
    return bool(reply[0] == b"ok")
