"""A session write in one round trip.

A session's keys carry its namespace's generation (keys.py), and a write
stamps its properties with the namespace's TTL; both live in the namespace's
hash, which on a Redis Cluster is on another node than the session. So a
write guesses them, as reads do (the generation and TTL this process last
saw), and sends the namespace's HMGET with the write's script in the same
round trip: on one Redis on the same connection, right before the script;
on a cluster to both nodes at once. The check's reply is read within the
write's own interval, so it tells what the namespace was while the write ran:

- the generation guessed is the live one: the write is the answer. If the
  TTL guessed was not the namespace's (it changed since this process last
  saw it), the properties the write set get the right stamp
  (lua/session_restamp.lua: those that still have the stamp this write
  gave them; no second version, no event: nothing is applied twice);
- it is not (the namespace was deleted, made again, or never existed): the
  write went to a session that no one reads (a deleted generation's, which
  the sweeper reclaims; one it created there is deleted at once), and it is
  done again the slow way: the namespace read first, then the write, on the
  live generation's session, a different one. So an increment or a merge is
  never applied twice to one live session.

A namespace this process has not seen yet, and a durable write (a script and
its WAIT on a connection of their own: seam.py), go the slow way at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import calls, keys
from .model import Changes, Existence, Namespace, Status, WriteResult, now_ms

if TYPE_CHECKING:
    from .core import SessionStore

SETS = frozenset({"set", "mrg", "sin", "din", "inc"})  # the ops of model.Changes that leave a value


@dataclass(slots=True)
class Write:
    store: SessionStore
    tenant: str
    namespace: str
    session_id: str
    changes: Changes
    flags: str
    version: int | None
    existence: Existence
    idle_ttl_ms: int | None
    property_ttl_ms: int | None

    async def apply(self, create_namespace: bool) -> WriteResult:
        store = self.store
        guess = store._namespaces.get((self.tenant, self.namespace))
        if guess is None or store.durability.replicas:
            return await self._slow(create_namespace)
        generation, ttl_s = guess
        now = now_ms()
        sk = keys.session(self.tenant, self.namespace, generation, self.session_id)
        check = ("HMGET", keys.namespace(self.tenant, self.namespace), "c", "t", "g")
        ns_reply, reply = await store.seam.run_many(store.scripts.session_mutate, [(sk, self._args(now, ttl_s))], [check])
        ns = store._seen(self.tenant, self.namespace, ns_reply)
        result = calls.SessionMutate.reply(reply, self.session_id, now)
        if ns is not None and ns.generation == generation:
            if ns.ttl_s != ttl_s and self.property_ttl_ms is None and result.status is Status.OK:
                await self._restamp(sk, now, ttl_s, ns)
            return result
        if result.created:  # a session made in a generation that is not the live one: no one's
            args = calls.SessionDelete(now, self.session_id, "", self.flags.replace("d", ""), "").args()
            await store.seam.run(store.scripts.session_delete, sk, args)
        return await self._slow(create_namespace)

    async def _slow(self, create_namespace: bool) -> WriteResult:
        """The namespace read first, then the write on its live generation."""
        ns = await self.store._namespace_for_write(self.tenant, self.namespace, create_namespace)
        if ns is None:
            return WriteResult(Status.MISSING, 0)
        now = now_ms()
        sk = keys.session(self.tenant, self.namespace, ns.generation, self.session_id)
        reply = await self.store._write(self.store.scripts.session_mutate, sk, self._args(now, ns.ttl_s), calls.status_ok)
        return calls.SessionMutate.reply(reply, self.session_id, now)

    def _args(self, now: int, namespace_ttl_s: int) -> list[calls.Arg]:
        limits, flags = self.store.limits, self.flags
        if self.property_ttl_ms is not None:
            stamp, flags = self.property_ttl_ms, flags + "x"
        else:
            stamp = namespace_ttl_s * 1000
        return calls.SessionMutate(
            now, self.session_id, calls.optional(self.version), self.existence.value, stamp,
            calls.optional(self.idle_ttl_ms), limits.max_chars, limits.max_properties, flags, limits.retention_ms,
            self.changes.customer,
        ).args(*self.changes.args)  # fmt: skip

    async def _restamp(self, sk: keys.SessionKeys, now: int, guessed_s: int, ns: Namespace) -> None:
        ops = self.changes.args
        fields = [ops[n + 1] for n in range(0, len(ops), 3) if ops[n] in SETS]
        if not fields:
            return
        args = calls.SessionRestamp(now, self.session_id, guessed_s * 1000, ns.ttl_s * 1000).args(*fields)
        await self.store._write(self.store.scripts.session_restamp, [sk.session, sk.expiry], args)
