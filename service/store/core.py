"""The storage core: tenants, namespaces, sessions and their properties.

The API faces call SessionStore with names and JSON texts, and get back the
plain data classes of model.py; every write that must be atomic is one Lua
script (calls.py gives each its arguments). All of it reaches Redis through
one seam (seam.py), whatever kind of Redis that is; keys.py names the keys,
record.py reads a session hash, events.py carries change events, listings.py
pages through sessions and sweeper.py reclaims deleted namespaces.

Property values cross this boundary as compact JSON text (bytes), so a read
can hand them to the response without decoding them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import calls, keys, listings, sweeper
from .events import ClusterEventHubs, EventHub, EventsLost, Subscription
from .model import (
    ORIGIN_LIVEPERSON,
    RETENTION_13_MONTHS_S,
    UNAVAILABLE,
    Changes,
    Durability,
    Existence,
    Limits,
    Namespace,
    NotDurable,
    Session,
    Status,
    TtlSession,
    WriteResult,
    now_ms,
)
from .record import META_NAMES, session_from_hash
from .scripts import Script, Scripts
from .seam import RedisSeam, seam_for
from .writes import Write

__all__ = [
    "META_NAMES", "ORIGIN_LIVEPERSON", "RETENTION_13_MONTHS_S", "UNAVAILABLE", "Changes", "Durability", "EventsLost",
    "Existence", "Limits", "Namespace", "NotDurable", "Session", "SessionStore", "Status", "Subscription",
    "TtlSession", "WriteResult", "now_ms",
]  # fmt: skip

log = logging.getLogger("sessionstore.store")

# How many namespaces' last seen generation and TTL a store remembers (a guess
# that saves a round trip on reads and writes; a wrong one costs one more).
NAMESPACES_REMEMBERED = 100_000

NS_FIELDS = ("c", "t", "g")  # a namespace hash's created (ms), TTL (s) and generation


@dataclass
class SessionStore:
    """All storage operations, on one redis-py (or fakeredis) asyncio client
    as clients.connect makes it: of one Redis, of a Redis Cluster, or the
    embedded store. The client is wrapped once in its seam (seam.py), which
    is all this class talks to."""

    redis: Any
    limits: Limits = field(default_factory=Limits)
    durability: Durability = field(default_factory=Durability)
    scripts: Scripts = field(default_factory=Scripts)
    sharded_events: bool = False  # SPUBLISH instead of PUBLISH (always so on a cluster)
    seam: RedisSeam = field(init=False, repr=False, compare=False)
    _hub: EventHub | ClusterEventHubs | None = field(default=None, init=False, repr=False, compare=False)  # made by subscribe()
    # (tenant, namespace) -> (generation, TTL s) last seen: see read() and write()
    _namespaces: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.seam = seam_for(self.redis, self.scripts)
        self.sharded_events = self.sharded_events or self.seam.sharded_events
        self.seam.sharded_events = self.sharded_events

    @property
    def on_cluster(self) -> bool:
        return self.seam.on_cluster

    # -- health ------------------------------------------------------------

    async def ping(self) -> bool:
        return bool(await self.seam.call("PING"))

    async def load_scripts(self) -> None:
        """Put every script in Redis's script cache (on a cluster: every primary)."""
        await self.seam.load_scripts()

    async def _write(
        self, script: Script, keys_: Sequence[str], args: Sequence[Any], wrote: Callable[[Any], bool] = lambda _: True
    ) -> Any:
        """A script that changes data. With ``durability.replicas``, its reply
        only once that many replicas have the change (else NotDurable; see
        seam.py). ``wrote``: whether the reply says the script changed anything."""
        if not self.durability.replicas:
            return await self.seam.run(script, keys_, args)
        return await self.seam.run_durable(script, keys_, args, self.durability, wrote)

    # -- namespaces --------------------------------------------------------

    def _seen(self, tenant: str, name: str, reply: Sequence[Any]) -> Namespace | None:
        """A namespace hash's HMGET c t g reply, remembered for the next guess."""
        c, t, g = reply
        if c is None:
            self._namespaces.pop((tenant, name), None)
            return None
        ns = Namespace(tenant, name, int(c), int(t or 0), int(g or 0))
        self._remember(ns)
        return ns

    def _seen_generation(self, tenant: str, name: str, reply: Sequence[Any]) -> int | None:
        """As _seen, for the hot path: only the generation (None: no namespace)."""
        c, t, g = reply
        if c is None:
            self._namespaces.pop((tenant, name), None)
            return None
        guess = int(g or 0), int(t or 0)
        if self._namespaces.get((tenant, name)) != guess:
            self._remember_guess((tenant, name), guess)
        return guess[0]

    def _remember(self, ns: Namespace) -> None:
        self._remember_guess((ns.tenant, ns.name), (ns.generation, ns.ttl_s))

    def _remember_guess(self, where: tuple[str, str], guess: tuple[int, int]) -> None:
        if len(self._namespaces) >= NAMESPACES_REMEMBERED:
            self._namespaces.clear()
        self._namespaces[where] = guess

    async def namespace(self, tenant: str, name: str) -> Namespace | None:
        return self._seen(tenant, name, await self.seam.call("HMGET", keys.namespace(tenant, name), *NS_FIELDS))

    async def ensure_namespace(self, tenant: str, name: str, ttl_s: int | None = None) -> Namespace:
        """Create the namespace unless it exists; set its TTL when one is given."""
        await self.seam.call("SADD", keys.tenant_namespaces(tenant), name)
        now = now_ms()
        args = calls.NamespaceEnsure(now, calls.optional(ttl_s), now).args()
        ns = calls.NamespaceEnsure.reply(await self._write(self.scripts.namespace_ensure, [keys.namespace(tenant, name)], args), tenant, name)
        self._remember(ns)
        return ns

    async def list_namespaces(self, tenant: str) -> list[Namespace]:
        names = sorted(n.decode() for n in await self.seam.call("SMEMBERS", keys.tenant_namespaces(tenant)))
        if not names:
            return []
        replies = await self.seam.batch([("HMGET", keys.namespace(tenant, name), *NS_FIELDS) for name in names])
        return [ns for name, reply in zip(names, replies, strict=True) if (ns := self._seen(tenant, name, reply))]

    async def delete_namespace(self, tenant: str, name: str) -> bool:
        """Delete a namespace and everything in it, in constant time."""
        ns = await self.namespace(tenant, name)
        if ns is None:
            return False
        # Queue the generation for the sweeper first: if this process dies
        # between the two calls, the sweeper finds nothing there and moves on.
        await self.seam.call("SADD", keys.GRAVES, keys.grave(tenant, name, ns.generation))
        args = calls.NamespaceDelete(ns.generation).args()
        deleted = bool(await self._write(self.scripts.namespace_delete, [keys.namespace(tenant, name)], args, wrote=bool))
        self._namespaces.pop((tenant, name), None)
        return deleted

    async def _namespace_for_write(self, tenant: str, name: str, create: bool) -> Namespace | None:
        ns = await self.namespace(tenant, name)
        if ns is None and create:
            ns = await self.ensure_namespace(tenant, name)
        return ns

    # -- sessions ----------------------------------------------------------

    async def read(self, tenant: str, namespace: str, session_id: str, names: Sequence[str] | None = None) -> Session | None:
        """One session with its live properties (only ``names``, when given); None when there is none.

        The namespace's metadata and the session are read in one round trip,
        the session under the generation last seen for the namespace; only
        when the namespace has moved on since is the session read again."""
        ns_key = keys.namespace(tenant, namespace)
        generation = self._namespaces.get((tenant, namespace), (0, 0))[0]
        fields = None if names is None else [keys.property_field(n) for n in names]
        while True:
            key = keys.session(tenant, namespace, generation, session_id).session
            read = ("HGETALL", key) if fields is None else ("HMGET", key, keys.META_FIELD, *fields)
            ns_reply, found = await self.seam.batch([("HMGET", ns_key, *NS_FIELDS), read])
            live = self._seen_generation(tenant, namespace, ns_reply)
            if live is None:
                return None
            if live == generation:
                break
            generation = live
        now = now_ms()
        if fields is None:
            return session_from_hash(session_id, found, now)
        if found[0] is None:
            return None
        return session_from_hash(
            session_id, {b":": found[0], **{f.encode(): v for f, v in zip(fields, found[1:], strict=True) if v is not None}}, now
        )

    async def read_many(self, tenant: str, namespace: str, session_ids: Sequence[str]) -> list[Session | None]:
        """Several sessions of one namespace, pipelined (None for each one missing)."""
        ns = await self.namespace(tenant, namespace)
        if ns is None or not session_ids:
            return [None] * len(session_ids)
        replies = await self.seam.batch(
            [("HGETALL", keys.session(tenant, namespace, ns.generation, sid).session) for sid in session_ids]
        )
        now = now_ms()
        return [session_from_hash(sid, raw, now) for sid, raw in zip(session_ids, replies, strict=True)]

    async def write(
        self,
        tenant: str,
        namespace: str,
        session_id: str,
        changes: Changes,
        *,
        version: int | None = None,
        existence: Existence = Existence.ANY,
        idle_ttl_ms: int | None = None,
        property_ttl_ms: int | None = None,
        drop_empty: bool = False,
        create_namespace: bool = True,
        read_back: bool = False,
        origin: str = "",
    ) -> WriteResult:
        """Apply ``changes`` to one session atomically.

        ``version``: the write happens only if the stored version is this one
        (a missing session has none, so it is created only if ``existence``
        allows). ``idle_ttl_ms``: from now on the session expires this long
        after its last write (0 clears it). ``property_ttl_ms``: TTL of the
        properties written, instead of the session's or namespace's.
        ``drop_empty``: a session left with no property (and no TTL) is deleted.
        ``read_back``: the result carries the session as this write left it
        (read in the same script, so no other write comes in between).
        ``origin``: ORIGIN_LIVEPERSON when the face writing is LivePerson's
        (recorded if the write creates the session).
        A write that ties the session to a customer (``changes.tie``) puts
        the session in that customer's index first (customers.py).

        One round trip (writes.py): the namespace's generation and TTL are
        guessed as reads guess them and checked in the same round trip.
        """
        customer = changes.tied_to
        stale = [] if customer is None else await self.touch_customer(tenant, customer, namespace, session_id)
        flags = calls.flag(drop_empty, "d") + calls.flag(self.sharded_events, "p") + calls.flag(read_back, "r")
        flags += calls.flag(origin == ORIGIN_LIVEPERSON, "l")
        write = Write(self, tenant, namespace, session_id, changes, flags, version, existence, idle_ttl_ms, property_ttl_ms)
        result = await write.apply(create_namespace)
        if stale and customer is not None:
            await self._verify_customer(tenant, customer, stale)
        return result

    async def delete_session(
        self, tenant: str, namespace: str, session_id: str, *, version: int | None = None, tied_to: str | None = None
    ) -> WriteResult:
        """Delete a session (publishing the deletion event); ``tied_to``: only
        if it is tied to that customer (else Status.UNTIED, nothing deleted)."""
        ns = await self.namespace(tenant, namespace)
        if ns is None:
            return WriteResult(Status.MISSING, 0)
        sk = keys.session(tenant, namespace, ns.generation, session_id)
        args = calls.SessionDelete(
            now_ms(), session_id, calls.optional(version), calls.flag(self.sharded_events, "p"), tied_to or ""
        ).args()
        return calls.SessionDelete.reply(await self._write(self.scripts.session_delete, sk, args, wrote=calls.status_ok))

    async def session_settings(
        self,
        tenant: str,
        namespace: str,
        session_id: str,
        *,
        ttl_s: int | None = None,
        create: bool = False,
        origin: str = "",
    ) -> WriteResult:
        """Set the session's TTL (stamped on properties written later) and move
        its idle expiry to now + idle TTL (a touch), without a new version.
        ``origin`` as in write()."""
        ns = await self._namespace_for_write(tenant, namespace, create)
        if ns is None:
            return WriteResult(Status.MISSING, 0)
        sk = keys.session(tenant, namespace, ns.generation, session_id)
        args = calls.SessionSettings(
            now_ms(), session_id, calls.optional(ttl_s), "1" if create else "0", self.limits.retention_ms,
            calls.flag(origin == ORIGIN_LIVEPERSON, "l"),
        ).args()  # fmt: skip
        return calls.SessionSettings.reply(await self._write(self.scripts.session_settings, sk[:4], args, wrote=calls.status_ok))

    async def read_or_create(
        self, tenant: str, namespace: str, session_id: str, *, idle_ttl_ms: int | None = None
    ) -> Session:
        """The session with its live properties, created (empty, version 1) when
        missing, its idle expiry moved to now + idle TTL: one script, so
        concurrent calls for a missing id make one session. ``idle_ttl_ms`` as
        in write(): None keeps the session's, 0 clears it."""
        ns = await self._namespace_for_write(tenant, namespace, True)
        assert ns is not None  # created when missing
        sk = keys.session(tenant, namespace, ns.generation, session_id)
        now = now_ms()
        args = calls.SessionGetOrCreate(
            now, session_id, calls.optional(idle_ttl_ms), calls.flag(self.sharded_events, "p"), self.limits.retention_ms
        ).args()
        return calls.SessionGetOrCreate.reply(await self._write(self.scripts.session_get_or_create, sk, args), session_id, now)

    # -- customers ---------------------------------------------------------

    async def touch_customer(self, tenant: str, customer: str, namespace: str, session_id: str) -> list[Any]:
        """Put a session in its customer's index (lua/customer_touch.lua),
        before the write that ties it. Returns some of the index's oldest
        entries to verify when it has grown past a few (customers.py)."""
        from . import customers  # it builds on this module

        args = calls.CustomerTouch(customers.VERIFY_ABOVE, customers.VERIFY_FEW, customers.GUARD_MS).args(
            keys.customer_member(namespace, session_id)
        )
        return list(await self._write(self.scripts.customer_touch, [keys.customer_index(tenant, customer)], args))

    async def _verify_customer(self, tenant: str, customer: str, stale: list[Any]) -> None:
        """Housekeeping after a write: a failure is logged, the write stands."""
        from . import customers

        try:
            await customers.verify(self, tenant, customer, customers.scored_entries(stale))
        except UNAVAILABLE as exc:
            log.warning("customer index verification skipped: %s", type(exc).__name__)

    # -- change events -----------------------------------------------------

    async def subscribe(self, tenant: str, namespace: str, session_id: str) -> Subscription:
        """The change events of one session, which the scripts that change it
        publish (lua/session_mutate.lua, session_delete.lua), from the moment
        this returns: Redis has confirmed the subscription by then. Close it
        with ``await subscription.aclose()``. The session need not exist yet.
        It follows the namespace's generation as it is now: after the
        namespace is deleted, events of the one made again under its name are
        not seen (subscribe again). Of a namespace that does not exist yet,
        it reserves the generation the namespace will be made at: a record
        holding only 'g' reads as absent, as a deleted one does
        (lua/namespace_ensure.lua keeps it)."""
        record = keys.namespace(tenant, namespace)
        generation = await self.seam.call("HGET", record, "g")
        if generation is None:
            await self.seam.call("HSETNX", record, "g", now_ms())
            generation = await self.seam.call("HGET", record, "g")
        channel = keys.session(tenant, namespace, int(generation or 0), session_id).events
        if self._hub is None:
            self._hub = self.seam.event_hub()
        return await self._hub.subscribe(channel)

    # -- listings and sweeping (listings.py, sweeper.py) ---------------------

    async def list_sessions(
        self, tenant: str, namespace: str, limit: int, cursor: str | None = None, prefix: str = ""
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` session ids after ``cursor``, and the cursor of the
        next page (None at the end); with ``prefix``, only the ids that start
        with it. Raises ValueError for a bad cursor."""
        return await listings.list_sessions(self, tenant, namespace, limit, cursor, prefix)

    async def page_sessions(self, tenant: str, namespace: str, page: int, per_page: int) -> list[str]:
        """Page ``page`` (from 0) of the session ids, ``per_page`` a page."""
        return await listings.page_sessions(self, tenant, namespace, page, per_page)

    async def ttl_sessions(self, tenant: str, namespace: str) -> list[TtlSession]:
        """The sessions that have a session TTL, with their creation time."""
        return await listings.ttl_sessions(self, tenant, namespace)

    async def sweep(self, batch: int = 500) -> int:
        """Delete the keys of deleted namespace generations; returns how many
        sessions were reclaimed. Safe to run from several instances at once."""
        return await sweeper.sweep(self.seam, batch)

    async def sweep_forever(self, interval_s: float) -> None:
        await sweeper.sweep_forever(self.seam, interval_s)
