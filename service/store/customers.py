"""A customer's sessions, in every API: the index that finds them, and the
listing, export and erasure that read it.

The tie. A session is tied to at most one customer, in its metadata field
(the ``u`` of lua/lib.lua), by the same script call that writes it: Emporix
writes tie a context to its ``customerId``, Genesys create and associate to
the ``gkc_customerId`` header, the native API to its ``customerId`` member
(which is how a LivePerson session, the same session, gets tied).

The index. One sorted set per tenant and customer, under a hash tag of its
own (keys.customer_index): on a Redis Cluster each customer's index lives on
the node of its own slot, never one per tenant. Its members name the
sessions (namespace + NUL + session id); each score is the last time a
write touched the entry, in ms by the index node's own clock
(lua/customer_touch.lua calls TIME; a score never goes back), so the scores
of one index come from one clock whatever instance wrote. The rules:

- A write that ties a session touches its entry first, and only then runs
  the script that ties it (SessionStore.write awaits the touch). So every
  session that is tied has an entry.
- An entry may outlive its tie (the session was untied, deleted, expired):
  the index is read as "may be tied", and every reader checks the session.
- An entry is removed only by lua/customer_drop.lua, after its session was
  read and found gone or not tied to the customer, and only if its score is
  still the one read (no write touched it since) and older than GUARD_MS by
  the index node's clock: a write that has touched the entry but whose
  script has not run yet is protected by that guard.
- Listing, export and erasure drop what they find dead on the way. So that
  no index grows without bound when nobody reads it, a touch that finds an
  index of more than VERIFY_ABOVE entries hands back its VERIFY_FEW oldest
  (older than the guard) to verify: dead ones are dropped, live ones touched
  again (to the back of the queue, so the next touch verifies others).
  ``sessionstore check --repair`` rebuilds every index from the sessions
  (after an import or a restore) and verifies every entry.

Erasure deletes each listed session with lua/session_delete.lua only if it is
still tied to the customer (publishing the deletion event as any delete
does), then drops its entry under the same guard. Every session tied when an
erasure starts has an entry by then (touch before tie), so it is erased; a
write that lands after its session was erased makes a new session, tied and
touched afresh, which keeps its entry and is listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from . import calls, keys
from .core import ORIGIN_LIVEPERSON, Session, SessionStore, Status

GUARD_MS = 60_000  # an entry touched this recently is never dropped
VERIFY_ABOVE = 64  # a touch of an index larger than this verifies some of its oldest entries
VERIFY_FEW = 2  # how many
BATCH = 100  # sessions read (or erased) at once
# The reserved namespaces of the faces that own their sessions' ties, and the
# "api" they are listed under (the faces' NAMESPACE; a test holds them together).
Api = Literal["emporix", "genesys", "liveperson", "native"]
RESERVED_APIS: dict[str, Api] = {"__emporix__": "emporix", "__genesys__": "genesys"}
CUSTOMER_PROPERTY = "customerId"  # where those faces keep the customer id

Progress = Callable[[int, float | None], None]  # (sessions done, fraction done when known)


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of a customer index, with its score as read."""

    namespace: str
    session_id: str
    score: int

    @property
    def member(self) -> str:
        return keys.customer_member(self.namespace, self.session_id)


@dataclass(frozen=True, slots=True)
class Found:
    """A session tied to the customer, and the API it belongs to."""

    api: Api
    namespace: str
    session: Session


def api_of(namespace: str, session: Session) -> Api:
    """``emporix`` and ``genesys`` for their reserved namespaces; in the others,
    which LivePerson v1, v2 and the native API share, ``liveperson`` for a
    session created through a LivePerson face and ``native`` for the rest."""
    reserved = RESERVED_APIS.get(namespace)
    if reserved is not None:
        return reserved
    return "liveperson" if session.origin == ORIGIN_LIVEPERSON else "native"


def tie_of_record(namespace: str, properties: Mapping[str, msgspec.Raw]) -> str | None:
    """The customer a session of a reserved namespace is tied to by its faces'
    rule (its ``customerId`` property, a non-empty string); None elsewhere."""
    raw = properties.get(CUSTOMER_PROPERTY) if namespace in RESERVED_APIS else None
    if raw is None:
        return None
    try:
        value = msgspec.json.decode(bytes(raw))
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, str) and value else None


def scored_entries(flat: Sequence[Any]) -> list[Entry]:
    """Entries from a script's flat reply: member, score, member, score..."""
    found = []
    for member, score in zip(flat[::2], flat[1::2], strict=True):
        text = member.decode() if isinstance(member, bytes) else str(member)
        namespace, session_id = keys.parse_customer_member(text)
        found.append(Entry(namespace, session_id, int(float(score))))
    return found


# -- the index ------------------------------------------------------------------


async def size(store: SessionStore, tenant: str, customer: str) -> int:
    """How many entries the customer's index holds (dead ones not yet dropped included)."""
    return int(await store.seam.call("ZCARD", keys.customer_index(tenant, customer)))


async def entry_batches(
    store: SessionStore, tenant: str, customer: str, batch: int = BATCH
) -> AsyncIterator[list[Entry]]:
    """Every entry of the index, a batch at a time (ZSCAN: every entry there
    from the start to the end of the scan is seen, each once)."""
    key = keys.customer_index(tenant, customer)
    seen: set[str] = set()
    pending: list[Entry] = []
    cursor = 0
    while True:
        cursor, page = await store.seam.call("ZSCAN", key, cursor, "COUNT", batch)
        for member, score in page:
            text = member.decode() if isinstance(member, bytes) else str(member)
            if text in seen:
                continue
            seen.add(text)
            namespace, session_id = keys.parse_customer_member(text)
            pending.append(Entry(namespace, session_id, int(score)))
            if len(pending) >= batch:
                yield pending
                pending = []
        if int(cursor) == 0:
            break
    if pending:
        yield pending


async def drop(store: SessionStore, tenant: str, customer: str, entries: Sequence[Entry]) -> int:
    """Remove entries found dead, each only if untouched since it was read
    and older than the guard (lua/customer_drop.lua); how many went. Not a
    durable write: a removal that is lost only leaves an entry to drop later."""
    if not entries:
        return 0
    tail: list[calls.Arg] = []
    for entry in entries:
        tail += (entry.member, entry.score)
    args = calls.CustomerDrop(GUARD_MS).args(*tail)
    key = keys.customer_index(tenant, customer)
    return int(await store.seam.run(store.scripts.customer_drop, [key], args))


async def touch(store: SessionStore, tenant: str, customer: str, members: Sequence[str]) -> None:
    """Touch entries, verifying none (a live entry verified, a rebuild)."""
    if members:
        key = keys.customer_index(tenant, customer)
        await store.seam.run(store.scripts.customer_touch, [key], calls.CustomerTouch(0, 0, GUARD_MS).args(*members))


async def _read(store: SessionStore, tenant: str, entries: Sequence[Entry], whole: bool) -> list[Session | None]:
    """The entries' sessions (only their metadata, unless ``whole``), at once."""
    names = None if whole else ()
    return list(await asyncio.gather(*(store.read(tenant, e.namespace, e.session_id, names) for e in entries)))


async def verify(store: SessionStore, tenant: str, customer: str, entries: Sequence[Entry]) -> None:
    """Check entries against their sessions: drop the dead, touch the live again."""
    sessions = await _read(store, tenant, entries, whole=False)
    live = [e.member for e, s in zip(entries, sessions, strict=True) if s is not None and s.customer_id == customer]
    dead = [e for e, s in zip(entries, sessions, strict=True) if s is None or s.customer_id != customer]
    await touch(store, tenant, customer, live)
    await drop(store, tenant, customer, dead)


# -- listing, export, erasure ------------------------------------------------------


async def tied_batches(
    store: SessionStore, tenant: str, customer: str, *, whole: bool = False, batch: int = BATCH
) -> AsyncIterator[list[Found]]:
    """The sessions tied to the customer, a batch at a time (with their
    properties when ``whole``); entries found dead are dropped on the way."""
    async for entries in entry_batches(store, tenant, customer, batch):
        sessions = await _read(store, tenant, entries, whole)
        found, dead = [], []
        for entry, session in zip(entries, sessions, strict=True):
            if session is not None and session.customer_id == customer:
                found.append(Found(api_of(entry.namespace, session), entry.namespace, session))
            else:
                dead.append(entry)
        await drop(store, tenant, customer, dead)
        if found:
            yield found


async def list_sessions(store: SessionStore, tenant: str, customer: str) -> list[Found]:
    """Every session tied to the customer (metadata only), by namespace and id."""
    found = [f async for batch in tied_batches(store, tenant, customer) for f in batch]
    return sorted(found, key=lambda f: (f.namespace, f.session.session_id))


async def erase(store: SessionStore, tenant: str, customer: str, progress: Progress | None = None) -> int:
    """Delete every session tied to the customer; how many were deleted."""
    total = await size(store, tenant, customer) if progress else 0
    erased = seen = 0
    async for entries in entry_batches(store, tenant, customer):
        results = await asyncio.gather(
            *(store.delete_session(tenant, e.namespace, e.session_id, tied_to=customer) for e in entries)
        )
        erased += sum(1 for r in results if r.status is Status.OK)
        # deleted, missing or tied elsewhere: the entry is dead, unless a write touched it since
        await drop(store, tenant, customer, entries)
        seen += len(entries)
        if progress:
            progress(seen, min(seen / total, 1.0) if total else None)
    return erased


# -- repair -------------------------------------------------------------------------


@dataclass
class RepairStats:
    tenants: int = 0
    sessions: int = 0  # sessions read
    tied: int = 0  # of them tied to a customer: put in the customer's index
    indexes: int = 0  # customer indexes verified
    dropped: int = 0  # entries of sessions gone or no longer tied, removed


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def repair(store: SessionStore, progress: Callable[[int], None] | None = None, page: int = 500) -> RepairStats:
    """Rebuild every customer index from the sessions (after an import or a
    restore left the indexes behind the sessions): every tied session of
    every tenant's namespaces is put in its customer's index, then every
    entry of every index is verified (the dead dropped, under the guard).
    Safe while the service runs."""
    await store.load_scripts()
    stats = RepairStats()
    tenants = set()
    async for key in store.seam.scan(keys.TENANT_NAMESPACES_PATTERN, 1000):
        tenant = keys.parse_tenant_namespaces(_text(key))
        if tenant is not None:
            tenants.add(tenant)
    for tenant in sorted(tenants):
        stats.tenants += 1
        for ns in await store.list_namespaces(tenant):
            cursor: str | None = None
            while True:
                ids, cursor = await store.list_sessions(tenant, ns.name, page, cursor)
                sessions = await asyncio.gather(*(store.read(tenant, ns.name, sid, ()) for sid in ids))
                by_customer: dict[str, list[str]] = {}
                for session in sessions:
                    if session is not None and session.customer_id is not None:
                        member = keys.customer_member(ns.name, session.session_id)
                        by_customer.setdefault(session.customer_id, []).append(member)
                await asyncio.gather(*(touch(store, tenant, c, members) for c, members in by_customer.items()))
                stats.sessions += len(ids)
                stats.tied += sum(len(members) for members in by_customer.values())
                if progress:
                    progress(stats.sessions)
                if cursor is None:
                    break
    async for key in store.seam.scan(keys.CUSTOMER_INDEX_PATTERN, 1000):
        parsed = keys.parse_customer_index(_text(key))
        if parsed is None:
            continue
        tenant, customer = parsed
        stats.indexes += 1
        async for entries in entry_batches(store, tenant, customer):
            sessions = await _read(store, tenant, entries, whole=False)
            dead = [e for e, s in zip(entries, sessions, strict=True) if s is None or s.customer_id != customer]
            stats.dropped += await drop(store, tenant, customer, dead)
    return stats
