"""Export and import: a tenant's sessions as JSON lines (``sessionstore
export`` and ``sessionstore import``), in constant memory whatever their number.

The file (format version 1), one JSON object a line::

    {"format":"sessionstore-export","version":1,"tenant":"739483","exportedMs":1767225600000}
    {"type":"namespace","tenant":"739483","namespace":"ns","createdMs":1767225500000,"ttlSecond":3600}
    {"type":"session","tenant":"739483","namespace":"ns","sessionId":"s1","version":3,
     "createdMs":1767225500100,"modifiedMs":1767225590000,"properties":{"a":720,"items":["A"]},
     "propertyTtlMs":{"items":59000},"sessionTtlSecond":600,"idleTtlMs":86400000,"expiresInMs":86000000}

- The header comes first. A namespace line comes before the sessions of
  that namespace. Fields that are zero or empty are left out.
- ``properties`` are the JSON values as stored, byte for byte (big integers
  and the text of floats are kept as they are).
- Times: ``createdMs``/``modifiedMs`` are epoch milliseconds; every expiry is
  written as the time it had *left* when the session was read
  (``propertyTtlMs`` per property, ``expiresInMs`` for a session with an idle
  TTL), so it goes on counting from the import: a property with 59 s left at
  export has 59 s left after the import, however much later that is.
- ``sessionTtlSecond`` is the TTL stamped on properties written later
  (LivePerson's session TTL), ``idleTtlMs`` the idle expiry (Genesys, Emporix).
- ``customerId``: the customer the session is tied to (customers.py), and
  ``createdBy``: ``"liveperson"`` for a session made through a LivePerson
  face; both left out when there is none. The import puts a tied session in
  its customer's index before writing it; a session of ``__emporix__`` or
  ``__genesys__`` without ``customerId`` (a file from before the ties) is tied
  to its ``customerId`` property, as those faces tie it.

Export reads through the storage core's listing (namespaces, then the
sessions of each, a page of ids at a time) and reads each page's session
hashes at once. Import writes each session with one script call
(lua/session_import.lua): its properties, TTLs, settings and *version* in one
atomic step, replacing a session that exists (or keeping it, with
``skip_existing``); a page of sessions at a time goes to Redis at once.
Every key name comes from keys.py and every call touches one session's slot,
so both work on a Redis Cluster as well.

The stored value layout (``@`` + 13-digit expiry ms + JSON, see lua/lib.lua)
is read by :func:`parse_session` here because the core's reading
(``record.session_from_hash``) drops the expiry times an export needs; a test
checks that the two agree.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import msgspec

from . import calls, customers, keys
from .core import ORIGIN_LIVEPERSON, Namespace, Session, SessionStore, now_ms
from .record import session_of_meta

FORMAT = "sessionstore-export"
VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,256}")  # tenant and namespace names, as the faces check them
WHITESPACE = re.compile(rb"[ \t\r\n]")

Progress = Callable[[int, float | None], None]  # (sessions done, fraction done when known)


class Header(msgspec.Struct, omit_defaults=True, rename="camel"):
    format: str
    version: int
    tenant: str | None = None
    namespace: str | None = None
    exported_ms: int = 0


class NamespaceRecord(msgspec.Struct, tag_field="type", tag="namespace", omit_defaults=True, rename="camel"):
    tenant: str
    namespace: str
    created_ms: int = 0
    ttl_second: int = 0


class SessionRecord(msgspec.Struct, tag_field="type", tag="session", omit_defaults=True, rename="camel"):
    tenant: str
    namespace: str
    session_id: str
    version: int
    created_ms: int
    modified_ms: int
    properties: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    property_ttl_ms: dict[str, int] = msgspec.field(default_factory=dict)
    session_ttl_second: int = 0
    idle_ttl_ms: int = 0
    expires_in_ms: int = 0
    customer_id: str = ""
    created_by: str = ""  # "liveperson", or "" (another face)


CREATED_BY = {ORIGIN_LIVEPERSON: "liveperson"}  # the metadata's origin tag -> createdBy
ORIGIN_OF = {name: tag for tag, name in CREATED_BY.items()}

_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(Header)
_record_decoder = msgspec.json.Decoder(NamespaceRecord | SessionRecord)


class TransferError(Exception):
    """The export or import cannot go on; the message says why (and where in the file)."""


# -- reading the stored layout ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredProperty:
    name: str
    json: bytes
    left_ms: int  # time it has left; 0 = it does not expire


def parse_session(session_id: str, raw: dict[bytes, bytes], now: int) -> tuple[Session, list[StoredProperty]] | None:
    """A session hash as HGETALL gives it: the session's metadata (as the core
    reads it) and its live properties with the time each has left; None when
    there is no session (no metadata field)."""
    meta = raw.get(keys.META_FIELD.encode())
    if meta is None:
        return None
    found: list[StoredProperty] = []
    for field_, value in raw.items():
        if field_ == b":":
            continue
        left = 0
        if value[:1] == b"@":
            left = int(value[1:14]) - now
            if left <= 0:
                continue
            value = value[14:]
        found.append(StoredProperty(keys.property_name(field_.decode()), value, left))
    return session_of_meta(session_id, {p.name: p.json for p in found}, meta), found


def session_record(
    tenant: str, namespace: str, session_id: str, raw: dict[bytes, bytes], now: int
) -> SessionRecord | None:
    parsed = parse_session(session_id, raw, now)
    if parsed is None:
        return None
    session, properties = parsed
    expires_in = 0
    if session.idle_ms and session.expires_ms:
        expires_in = session.expires_ms - now
        if expires_in <= 0:
            return None  # expired; Redis drops the key any moment
    return SessionRecord(
        tenant,
        namespace,
        session_id,
        session.version,
        session.created_ms,
        session.modified_ms,
        {p.name: msgspec.Raw(p.json) for p in properties},
        {p.name: p.left_ms for p in properties if p.left_ms},
        session.ttl_s,
        session.idle_ms,
        expires_in,
        session.customer_id or "",
        CREATED_BY.get(session.origin, ""),
    )


# -- export ----------------------------------------------------------------------


@dataclass
class ExportStats:
    namespaces: int = 0
    sessions: int = 0


async def count_sessions(store: SessionStore, namespace: Namespace) -> int:
    """About how many sessions a namespace holds (expired ones not yet
    dropped from the indexes included): for a progress bar."""
    replies = await store.seam.batch(
        [("ZCARD", keys.bucket(namespace.tenant, namespace.name, namespace.generation, b).ids) for b in range(keys.BUCKETS)]
    )
    return sum(int(r) for r in replies)


async def export_sessions(
    store: SessionStore,
    out: IO[bytes],
    tenant: str,
    namespace: str | None = None,
    *,
    page: int = 500,
    progress: Progress | None = None,
) -> ExportStats:
    """Write the tenant's sessions (of one namespace, when given) to ``out``."""
    if not NAME_RE.fullmatch(tenant) or (namespace is not None and not NAME_RE.fullmatch(namespace)):
        raise TransferError("tenant and namespace names are 1 to 256 letters, digits, '_', '.' or '-'")
    if namespace is None:
        namespaces = await store.list_namespaces(tenant)
    else:
        found = await store.namespace(tenant, namespace)
        if found is None:
            raise TransferError(f"tenant {tenant} has no namespace {namespace}")
        namespaces = [found]
    await store.load_scripts()
    stats = ExportStats()
    total = sum([await count_sessions(store, ns) for ns in namespaces]) if progress else 0
    out.write(_encoder.encode(Header(FORMAT, VERSION, tenant, namespace, now_ms())) + b"\n")
    for ns in namespaces:
        out.write(_encoder.encode(NamespaceRecord(tenant, ns.name, ns.created_ms, ns.ttl_s)) + b"\n")
        stats.namespaces += 1
        cursor: str | None = None
        while True:
            ids, cursor = await store.list_sessions(tenant, ns.name, page, cursor)
            if ids:
                raws = await store.seam.batch(
                    [("HGETALL", keys.session(tenant, ns.name, ns.generation, sid).session) for sid in ids]
                )
                now = now_ms()
                lines = []
                for sid, raw in zip(ids, raws, strict=True):
                    record = session_record(tenant, ns.name, sid, raw, now)
                    if record is not None:
                        lines.append(_encoder.encode(record))
                if lines:
                    out.write(b"\n".join(lines) + b"\n")
                    stats.sessions += len(lines)
                if progress:
                    progress(stats.sessions, min(stats.sessions / total, 1.0) if total else None)
            if cursor is None:
                break
    return stats


# -- import ----------------------------------------------------------------------


@dataclass
class ImportStats:
    namespaces: int = 0
    imported: int = 0
    skipped: int = 0  # existed already (skip_existing)
    failed: int = 0
    problems: list[str] = field(default_factory=list)  # the first few failures, for people

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.problems) < 10:
            self.problems.append(message)


def property_json(raw: msgspec.Raw) -> bytes:
    """The property's JSON text as the store keeps it: compact. A value the
    export wrote is compact already and kept byte for byte; one with white
    space (edited by hand) is made compact."""
    text = bytes(raw)
    if WHITESPACE.search(text):
        text = msgspec.json.encode(msgspec.json.decode(text))  # msgspec: big integers stay exact
    return text


def read_header(lines: Iterator[bytes]) -> Header:
    first = next(lines, b"")
    try:
        header = _header_decoder.decode(first)
    except msgspec.DecodeError:
        header = None
    if header is None or header.format != FORMAT:
        raise TransferError(f"line 1: not a sessionstore export (the first line must be the {FORMAT} header)")
    if header.version != VERSION:
        raise TransferError(
            f"line 1: export format version {header.version}; this sessionstore reads version {VERSION}"
        )
    return header


async def ensure_namespace(store: SessionStore, record: NamespaceRecord) -> int:
    """SessionStore.ensure_namespace, with the namespace's exported creation
    time for one that does not exist yet (one that does keeps its own);
    returns its generation."""
    await store.seam.call("SADD", keys.tenant_namespaces(record.tenant), record.namespace)
    reply = await store.seam.run(
        store.scripts.namespace_ensure,
        [keys.namespace(record.tenant, record.namespace)],
        calls.NamespaceEnsure(record.created_ms or now_ms(), record.ttl_second, now_ms()).args(),
    )
    return calls.NamespaceEnsure.reply(reply, record.tenant, record.namespace).generation


async def import_sessions(
    store: SessionStore,
    lines: Iterable[bytes],
    *,
    skip_existing: bool = False,
    page: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ImportStats:
    """Load an export (its lines, the header first) into ``store``. A line
    that is not a valid record stops the import (TransferError naming the
    line); a session the store's limits refuse is counted as failed."""
    it = iter(lines)
    read_header(it)
    await store.load_scripts()  # not one NOSCRIPT per session of the first page
    stats = ImportStats()
    generations: dict[tuple[str, str], int] = {}
    pending: list[tuple[int, SessionRecord]] = []
    flags = ("s" if skip_existing else "") + ("p" if store.sharded_events else "")
    script = store.scripts.session_import
    limits = store.limits

    async def write(number: int, record: SessionRecord, now: int) -> str | None:
        """Imports one session; the problem when the store refused it."""
        generation = generations[(record.tenant, record.namespace)]
        customer = record.customer_id or customers.tie_of_record(record.namespace, record.properties)
        if customer:  # in the index before the session is tied, as every tying write does
            await store.touch_customer(record.tenant, customer, record.namespace, record.session_id)
        tail: list[calls.Arg] = []
        for name, value in record.properties.items():
            tail += (keys.property_field(name), max(record.property_ttl_ms.get(name, 0), 0), property_json(value))
        args = calls.SessionImport(
            now, record.session_id, flags, record.version, record.created_ms, record.modified_ms,
            record.session_ttl_second, record.idle_ttl_ms, max(record.expires_in_ms, 0), limits.max_chars,
            limits.max_properties, limits.retention_ms, customer or "", ORIGIN_OF.get(record.created_by, ""),
        ).args(*tail)  # fmt: skip
        sk = keys.session(record.tenant, record.namespace, generation, record.session_id)
        status, _version = await store.seam.run(script, sk, args)
        status = status.decode() if isinstance(status, bytes) else status
        if status == "ok":
            stats.imported += 1
        elif status == "exists":
            stats.skipped += 1
        else:
            what = {"toolarge": "too large", "toomany": "too many properties"}.get(status, status)
            return f"line {number}: session {record.session_id!r} of {record.tenant}/{record.namespace}: {what}"
        return None

    async def flush() -> None:
        if pending:
            for record in {(r.tenant, r.namespace): r for _n, r in pending}.values():
                where = (record.tenant, record.namespace)
                if where not in generations:  # sessions with no namespace line before them
                    generations[where] = (await store.ensure_namespace(*where)).generation
            now = now_ms()
            refused = await asyncio.gather(*(write(n, r, now) for n, r in pending))
            for problem in refused:  # in line order, however the writes ended
                if problem is not None:
                    stats.fail(problem)
            pending.clear()
            if progress:
                progress(stats.imported + stats.skipped + stats.failed)

    for number, line in enumerate(it, 2):
        if not line.strip():
            continue
        try:
            record = _record_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise TransferError(f"line {number}: {exc}") from None
        if not NAME_RE.fullmatch(record.tenant) or not NAME_RE.fullmatch(record.namespace):
            raise TransferError(f"line {number}: tenant and namespace names are letters, digits, '_', '.' or '-'")
        if isinstance(record, NamespaceRecord):
            await flush()
            generations[(record.tenant, record.namespace)] = await ensure_namespace(store, record)
            stats.namespaces += 1
            continue
        if not record.session_id:
            raise TransferError(f"line {number}: a session needs a sessionId")
        pending.append((number, record))
        if len(pending) >= page:
            await flush()
    await flush()
    return stats
