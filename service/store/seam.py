"""The one seam between the store and Redis.

Every command the store sends goes through a ``RedisSeam``: a single call, a
batch (one round trip; on a Redis Cluster, one per node, to the nodes at
once), a Lua script (EVALSHA, with NOSCRIPT handled here and nowhere else),
the same script over many keys, and a durable write (a script and its WAIT on
one connection of its own). Above this seam the store never asks what kind
of client it has; below it there are three kinds, chosen once by ``seam_for``:

- ``MultiplexedSeam``: one Redis, auto-pipelined (multiplex.py);
- ``ClusterSeam``: a Redis Cluster, auto-pipelined per primary
  (cluster_multiplex.py), keyless commands through redis-py's cluster client;
- ``EmbeddedSeam``: the embedded in-memory store (fakeredis), and any other
  redis-py asyncio client given to the store: batches are pipelines.

Replies are as redis-py's response callbacks give them (HGETALL a dict, and
so on), whichever the kind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, NoScriptError

from . import pinned
from .calls import Call
from .clients import ClusterClient
from .cluster_multiplex import MultiplexedCluster
from .events import ClusterEventHubs, EventHub
from .model import Durability, NotDurable
from .multiplex import MultiplexedRedis
from .scripts import Script, Scripts

Command = tuple[Any, ...]
Hub = EventHub | ClusterEventHubs


class RedisSeam(Protocol):
    """What the store needs of Redis, and all it may ask."""

    scripts: Scripts
    sharded_events: bool  # the scripts publish with SPUBLISH (Redis Cluster shard channels)
    on_cluster: bool  # a Redis Cluster: keys of different hash tags may be on different nodes

    async def call(self, *command: Any) -> Any:
        """One command."""

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """Independent commands, on any keys, in one round trip (per node);
        their replies in order; the first error is raised once all came."""

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call (EVALSHA; loaded again once on NOSCRIPT)."""

    async def run_many(self, script: Script, calls: Sequence[Call], before: Sequence[Command] = ()) -> list[Any]:
        """One script over many keys, in one round trip (per node); with
        ``before``, those commands go first in the same round trip (their
        replies first in the list). On NOSCRIPT the whole batch is sent
        again: on a cluster some calls may have run on other nodes, so give
        it one call that changes data, or calls that may run twice (the
        listings' bucket_list only drops expired ids)."""

    async def run_durable(
        self, script: Script, keys: Sequence[str], args: Sequence[Any], durability: Durability, wrote: Callable[[Any], bool]
    ) -> Any:
        """A script whose change must reach ``durability.replicas`` replicas
        before it is acknowledged (else NotDurable)."""

    async def load_scripts(self) -> None:
        """Every script into Redis's script cache (on a cluster: every primary)."""

    def scan(self, match: str, count: int) -> AsyncIterator[bytes]:
        """Every key matching ``match`` (on a cluster: of every primary)."""

    def event_hub(self) -> Hub:
        """A new pub/sub hub for this Redis (the store keeps one)."""

    @property
    def reconnects(self) -> int:
        """Connections the auto-pipelining has made again, after one was lost."""

    async def aclose(self) -> None: ...


class _Seam:
    """What every kind shares: scripts (NOSCRIPT handled once, here) and
    durable writes. A kind supplies call, batch, load_script, scan,
    event_hub and own_connection."""

    scripts: Scripts
    sharded_events = False
    on_cluster = False
    reconnects = 0

    async def call(self, *command: Any) -> Any:
        raise NotImplementedError

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        raise NotImplementedError

    async def load_script(self, source: str) -> None:
        raise NotImplementedError

    def own_connection(self, key: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection of its own to the Redis (primary) holding ``key``."""
        raise NotImplementedError

    def slot_moved(self) -> None:
        """A MOVED answer came: read the slot map again (only a cluster moves slots)."""

    async def _reload(self, script: Script) -> None:
        self.scripts.reloads += 1
        await self.load_script(script.source)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self.run_many(script, [(keys, args)]))[0]

    async def run_many(self, script: Script, calls: Sequence[Call], before: Sequence[Command] = ()) -> list[Any]:
        if not calls:
            return []
        commands = [*before, *(("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls)]
        try:
            return await self.batch(commands)
        except NoScriptError:
            # the script did not run (a restart, a failover or SCRIPT FLUSH
            # emptied the cache), so running it again cannot apply it twice
            await self._reload(script)
            return await self.batch(commands)

    async def run_durable(
        self, script: Script, keys: Sequence[str], args: Sequence[Any], durability: Durability, wrote: Callable[[Any], bool]
    ) -> Any:
        """The script and a WAIT go out together on one connection of their
        own (pinned.py), to the primary that owns the keys: WAIT counts the
        replicas that have that connection's writes. ``wrote``: whether the
        reply says the script changed anything (a refused write changed
        nothing, so it has nothing to lose and its own answer stands)."""
        wanted = durability.replicas
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        wait = ("WAIT", wanted, durability.timeout_ms)
        for attempt in (1, 2, 3):
            # NOSCRIPT or MOVED: the script did not run, so running it again cannot apply it twice
            async with self.own_connection(keys[0]) as connection:
                reply, acknowledged = await pinned.on_connection(connection, (evalsha, wait))
            if isinstance(reply, NoScriptError) and attempt < 3:
                await self._reload(script)
                continue
            if isinstance(reply, MovedError) and attempt < 3:  # the slot moved (a failover, a resharding)
                self.slot_moved()
                continue
            if isinstance(reply, Exception):
                raise reply
            if not wrote(reply):
                return reply
            if isinstance(acknowledged, Exception):
                raise acknowledged
            if acknowledged < wanted:
                raise NotDurable(
                    f"the write was applied but only {acknowledged} of {wanted} replicas confirmed it within "
                    f"{durability.timeout_ms} ms; it may be lost if its primary fails"
                )
            return reply
        raise AssertionError("unreachable: the third attempt returns or raises")

    async def load_scripts(self) -> None:
        for script in self.scripts.all():
            await self.load_script(script.source)


class _PooledConnections:
    """own_connection() from a single server's connection pool."""

    redis: Redis

    @contextlib.asynccontextmanager
    async def own_connection(self, key: str) -> AsyncIterator[Any]:
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        try:
            yield connection
        finally:
            await pool.release(connection)


class EmbeddedSeam(_PooledConnections, _Seam):
    """The embedded store (fakeredis), or any redis-py asyncio client of one
    Redis: commands through the client, batches as a pipeline."""

    def __init__(self, redis: Redis, scripts: Scripts, *, sharded_events: bool = False) -> None:
        self.redis = redis
        self.scripts = scripts
        self.sharded_events = sharded_events

    async def call(self, *command: Any) -> Any:
        return await self.redis.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def load_script(self, source: str) -> None:
        await self.redis.script_load(source)

    def scan(self, match: str, count: int) -> AsyncIterator[bytes]:
        return self.redis.scan_iter(match=match, count=count)

    def event_hub(self) -> Hub:
        return EventHub(self.redis, sharded=self.sharded_events)

    async def aclose(self) -> None:
        await self.redis.aclose()


class MultiplexedSeam(EmbeddedSeam):
    """One Redis, auto-pipelined: every command of the event loop's turn on
    one shared connection (multiplex.py); a batch is one write and one
    wake-up of the caller."""

    redis: MultiplexedRedis

    def __init__(self, redis: MultiplexedRedis, scripts: Scripts) -> None:
        super().__init__(redis, scripts)

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        return await self.redis.execute_many(*commands)

    @property
    def reconnects(self) -> int:  # type: ignore[override]  # a property over the base's 0
        return max(self.redis.multiplexed_connections - 1, 0)


class ClusterSeam(_Seam):
    """A Redis Cluster: keyed commands auto-pipelined per primary
    (cluster_multiplex.py), keyless ones (PING, SCRIPT LOAD, SCAN) through
    redis-py's cluster client, which sends them to every primary where that
    is their meaning. Change events are shard channels."""

    sharded_events = True
    on_cluster = True

    def __init__(self, cluster: ClusterClient, scripts: Scripts) -> None:
        self.cluster = cluster
        self.scripts = scripts
        if cluster.multiplexer is None:  # one for the client, however many stores use it
            cluster.multiplexer = MultiplexedCluster(cluster)
        self.mux = cluster.multiplexer

    async def call(self, *command: Any) -> Any:
        if command[0] in KEYLESS:
            return await self.cluster.execute_command(*command)
        return await self.mux.execute_command(*command)

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        return await self.mux.execute_many(*commands)

    async def load_script(self, source: str) -> None:
        await self.cluster.script_load(source)  # on every primary

    def own_connection(self, key: str) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.cluster.primary_connection(key)

    def slot_moved(self) -> None:
        self.cluster.topology_changed()

    def scan(self, match: str, count: int) -> AsyncIterator[bytes]:
        return self.cluster.scan_iter(match=match, count=count)

    def event_hub(self) -> Hub:
        return ClusterEventHubs(self.cluster)

    @property
    def reconnects(self) -> int:  # type: ignore[override]  # a property over the base's 0
        return max(self.mux.multiplexed_connections - len(self.mux.linked_nodes), 0)

    async def aclose(self) -> None:
        await self.cluster.aclose()  # and its multiplexer


KEYLESS = frozenset({"PING", "INFO", "TIME", "DBSIZE"})  # the commands the store sends that name no key


def seam_for(redis: Any, scripts: Scripts) -> RedisSeam:
    """The seam for a client made by clients.connect (or any redis-py
    asyncio client): the one place that looks at the client's kind."""
    if isinstance(redis, ClusterClient):
        return ClusterSeam(redis, scripts)
    if isinstance(redis, RedisCluster):
        raise TypeError("a Redis Cluster client must be clients.ClusterClient (clients.connect makes one)")
    if isinstance(redis, MultiplexedRedis):
        return MultiplexedSeam(redis, scripts)
    return EmbeddedSeam(redis, scripts)
