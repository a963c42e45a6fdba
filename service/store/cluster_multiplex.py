"""Auto-pipelining on a Redis Cluster: the commands of every concurrent
request on one shared connection per primary per event loop.

On one Redis, :class:`~service.store.multiplex.MultiplexedRedis` writes the
commands of one event-loop turn together on one connection. Here there is one
MultiplexedRedis per primary (made with the cluster client's connection
settings, as ClusterEventHubs makes its per-node clients), and a command goes
to the one that owns its key's slot in the map of redis-py's cluster client
(``nodes_manager.slots_cache``). So a burst of requests costs each primary one
write and one read, not a pooled connection and a round trip per command.

What a cluster adds, and how it is met:

- MOVED (the slot has another owner; the command did not run): the cluster
  client reads the slot map again, once for all the commands answered MOVED
  by the same map, and the command goes to the new owner (to the node the
  MOVED names, if the map read still says otherwise).
- ASK (the slot is being migrated and the key is on the importing node):
  ``ASKING`` and the command go to the node named, back to back on its
  connection; the map is left as it is.
- TRYAGAIN, CLUSTERDOWN and every other error reply are raised as redis-py's
  error classes (CLUSTERDOWN also marks the map to be read again).
- At most MAX_REDIRECTS redirections a command, then the last one is raised.
- A node's connection lost, or silent for a whole socket timeout: every
  command waiting on it fails with redis-py's ConnectionError or
  TimeoutError, the map is marked to be read again (a failover may be under
  way) and the command is not sent again (a write may have been applied: the
  caller decides). The next command starts that read in the background,
  asking the other nodes first, and goes on by the map it has: commands to
  the healthy primaries neither wait for a read that a hung node can hold up
  nor fail with it. A node that is no longer a primary in a map read has its
  connection closed.

Commands with no key (PING, INFO, SCRIPT LOAD, FLUSHALL, CLUSTER ...) are not
routed here: send them through the ClusterClient, which sends them to the
node or nodes redis-py chooses (SCRIPT LOAD and FLUSHALL to every primary);
execute_command raises ValueError for them. Commands that hold a connection
(multiplex.POOLED: blocking pops, WATCH...) are handed to the ClusterClient
as they are, as MultiplexedRedis hands them to its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import ClusterNode
from redis.cluster import PRIMARY
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from .clients import ClusterClient
from .multiplex import POOLED, MultiplexedRedis

log = logging.getLogger("sessionstore.store")

MAX_REDIRECTS = 3  # MOVED or ASK answers followed for one command
# commands laid out as name, script, numkeys, keys..., args...: their key is after numkeys
SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
NUMKEYS = -1  # the key position of SCRIPT_CALLS
# the map must be read again after these (a failover or a node lost may be under way)
LOST = (ConnectionError, RedisTimeoutError, ClusterDownError)
SlotMap = dict[int, list[ClusterNode]]


class _NodeClient(MultiplexedRedis):
    """One primary's multiplexed client: MultiplexedRedis's pieces of a call
    (raw replies, so that MOVED and ASK are seen before any response
    callback; commands queued back to back), and ASKING with its command."""

    name = ""  # the node's, host:port

    async def raw_asking(self, args: tuple[Any, ...]) -> Any:
        """The raw reply of ``args`` sent right after ASKING (which holds for the next command only)."""
        await self.link_up()
        asking, reply = self.queue((("ASKING",), args))
        answers = await asyncio.gather(asking, reply, return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers[1]


class MultiplexedCluster:
    """Auto-pipelining on a Redis Cluster: one multiplexed connection per primary per event loop."""

    def __init__(self, cluster: ClusterClient) -> None:
        self.cluster = cluster  # the caller's: its slot map, its reads of it; not closed here
        self._clients: dict[str, _NodeClient] = {}  # by node name (host:port)
        self._routed_by: SlotMap | None = None  # the map whose primaries _clients follow
        slots = cluster.nodes_manager.slots_cache
        self._stale: SlotMap | None = None if slots else slots  # a map to read again (none read yet: this one)
        self._last_lost: str | None = None  # the node last lost: asked for the map last
        self._refreshing: asyncio.Task[None] | None = None
        self._key_positions: dict[Any, int] = {}  # by command name
        self._retired_connections = 0  # made by the clients closed since
        self._closing: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """One keyed command, on the primary of its key's slot (for EVAL and
        EVALSHA, of its first key); its reply through redis-py's response
        callbacks. ValueError for a command with no key."""
        if args[0] in POOLED:
            return await self.cluster.execute_command(*args, **options)
        if self.cluster.nodes_manager.slots_cache is self._stale:
            await self._ready()
        client = self._route(args)
        routed_by = self._routed_by
        try:
            response = await client.raw(args)
        except AskError as redirect:  # MovedError too: a subclass
            response = await self._redirected(args, redirect, client, routed_by)
        except LOST:
            self._lost(client)
            raise
        return client.finish(args[0], response, options)

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Several keyed commands sent together: each node's in one write,
        the nodes at once, so one round trip and one wake-up of the caller.
        Their replies in order, as execute_command gives them; the first
        error is raised once all came (as MultiplexedRedis.execute_many)."""
        if self.cluster.nodes_manager.slots_cache is self._stale:
            await self._ready()
        for command in commands:
            if command[0] in POOLED:
                raise ValueError(f"{command[0]} holds a connection: send it through the ClusterClient")
        routes = [self._route(command) for command in commands]
        routed_by = self._routed_by
        groups: dict[_NodeClient, list[int]] = {}
        for index, client in enumerate(routes):
            groups.setdefault(client, []).append(index)
        failed: dict[_NodeClient, Exception] = {}
        unlinked = [client for client in groups if not client.linked()]
        if unlinked:
            outcomes = await asyncio.gather(*(client.link_up() for client in unlinked), return_exceptions=True)
            for client, outcome in zip(unlinked, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    failed[client] = outcome
                elif isinstance(outcome, BaseException):
                    raise outcome
        waiters: dict[int, asyncio.Future[Any] | Exception] = {}
        for client, indexes in groups.items():
            if client in failed:
                waiters.update((index, failed[client]) for index in indexes)
            else:
                waiters.update(zip(indexes, client.queue([commands[i] for i in indexes]), strict=True))
        return await self._replies(commands, [waiters[i] for i in range(len(commands))], routes, routed_by)

    async def _replies(
        self,
        commands: Sequence[tuple[Any, ...]],
        waiters: Sequence[asyncio.Future[Any] | Exception],
        sent_to: Sequence[_NodeClient],
        routed_by: SlotMap | None,
    ) -> list[Any]:
        responses: list[Any] = [None] * len(commands)
        errors: list[Exception | None] = [None] * len(commands)
        redirects: list[tuple[int, AskError]] = []
        for index, waiter in enumerate(waiters):
            try:
                if isinstance(waiter, Exception):
                    raise waiter  # its node could not be reached
                responses[index] = await waiter
            except AskError as redirect:
                redirects.append((index, redirect))
            except RedisError as exc:
                errors[index] = exc
                if isinstance(exc, LOST):
                    self._lost(sent_to[index])
        if redirects:
            answers = await asyncio.gather(
                *(self._redirected(commands[i], redirect, sent_to[i], routed_by) for i, redirect in redirects),
                return_exceptions=True,
            )
            for (index, _), answer in zip(redirects, answers, strict=True):
                if isinstance(answer, Exception):
                    errors[index] = answer
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    responses[index] = answer
        for error in errors:
            if error is not None:
                raise error
        return [
            client.finish(command[0], response, {})
            for command, client, response in zip(commands, sent_to, responses, strict=True)
        ]

    async def _redirected(
        self, args: tuple[Any, ...], redirect: AskError, answered_by: _NodeClient, routed_by: SlotMap | None
    ) -> Any:
        """The raw reply to a command answered MOVED or ASK, from the node that
        serves its slot now; at most MAX_REDIRECTS more tries."""
        for _ in range(MAX_REDIRECTS):
            moved = isinstance(redirect, MovedError)
            if isinstance(redirect, MovedError):
                answered_by = await self._new_owner(args, redirect, answered_by, routed_by)
                routed_by = self._routed_by
            else:
                answered_by = self._client_at(redirect.host, redirect.port)
            try:
                return await (answered_by.raw(args) if moved else answered_by.raw_asking(args))
            except AskError as again:
                redirect = again
            except LOST:
                self._lost(answered_by)
                raise
        raise redirect

    async def _new_owner(
        self, args: tuple[Any, ...], moved: MovedError, answered_by: _NodeClient, routed_by: SlotMap | None
    ) -> _NodeClient:
        """The client of the slot's owner after reading the map again: once
        for every command routed by the same map (the others find it read)."""
        if self.cluster.nodes_manager.slots_cache is routed_by:
            self.cluster.topology_changed()
        await self.cluster.initialize()  # under redis-py's lock: one read for many callers
        owner = self._route(args)
        if owner is answered_by:  # the map read still names the node that refused: follow the MOVED
            owner = self._client_at(moved.host, moved.port)
        return owner

    async def _ready(self) -> None:
        """The map is marked stale: read it again. In the background while
        there is a map to route by, so that commands to the healthy nodes do
        not wait on (or fail with) a read that a hung node may hold up; at
        once when there is none yet."""
        if not self.cluster.nodes_manager.slots_cache:
            await self._refresh()
        elif self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh(self) -> None:
        """Read the map marked stale (once for many callers: the first one's
        read replaces it, and redis-py's lock holds the others meanwhile)."""
        if self.cluster.nodes_manager.slots_cache is self._stale:
            self.cluster.topology_changed()
        await self.cluster.initialize(last_failed_node_name=self._last_lost)

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except (RedisError, RedisClusterException, OSError) as exc:
            log.info("reading the Redis Cluster's slot map failed (the next command tries again): %s", exc)

    def _lost(self, client: _NodeClient | None) -> None:
        """A node failed, or the cluster is down: read the map again (a
        failover may be under way), from another node first."""
        manager = self.cluster.nodes_manager
        self._stale = manager.slots_cache
        if client is not None:
            # asked last for the map, and not the node redis-py sends COMMAND to as it reads it
            manager.move_node_to_end_of_cached_nodes(client.name)
            self._last_lost = client.name
        self.cluster.topology_changed()

    def _route(self, args: tuple[Any, ...]) -> _NodeClient:
        slots = self.cluster.nodes_manager.slots_cache
        if slots is not self._routed_by:
            self._follow(slots)
        key = self._key(args)
        kind = type(key)  # str and bytes as _pack sends them; anything else as redis-py's encoder
        if kind is str:
            slot = key_slot(key.encode())
        elif kind is bytes:
            slot = key_slot(key)
        else:
            slot = self.cluster.keyslot(key)
        nodes = slots.get(slot)
        if not nodes:
            self._lost(None)
            raise SlotNotCoveredError(f"slot {slot} is not covered by the Redis Cluster")
        return self._client_for(nodes[0])

    def _follow(self, slots: SlotMap) -> None:
        """A new map: close the connections of nodes that are no longer primaries."""
        self._routed_by = slots
        primaries = {
            node.name for node in self.cluster.nodes_manager.nodes_cache.values() if node.server_type == PRIMARY
        }
        for name in [name for name in self._clients if name not in primaries]:
            self._retire(name)

    def _client_for(self, node: ClusterNode) -> _NodeClient:
        client = self._clients.get(node.name)
        if client is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            client = self._clients[node.name] = _NodeClient(connection_pool=pool)
            client.name = node.name
            client.auto_close_connection_pool = True  # as Redis.from_pool: aclose() closes the pool
        return client

    def _client_at(self, host: str, port: int) -> _NodeClient:
        """The client of the node a redirection names (a node not in the map yet: with the cluster's settings)."""
        node = self.cluster.get_node(host=host, port=port)
        if node is None:
            node = ClusterNode(host, port, PRIMARY, **self.cluster.nodes_manager.connection_kwargs)
        return self._client_for(node)

    def _retire(self, name: str) -> None:
        client = self._clients.pop(name)
        self._retired_connections += client.multiplexed_connections
        closing = asyncio.get_running_loop().create_task(client.aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _key(self, args: tuple[Any, ...]) -> Any:
        """The key a command is routed by: for the script calls, the first of
        KEYS; else the first key in redis-py's table of the cluster's
        commands (COMMAND, read with the slot map). ValueError for none."""
        name = args[0]
        position = self._key_positions.get(name)
        if position is None:
            position = self._key_positions[name] = self._key_position(name)
        if position == NUMKEYS:
            if len(args) < 4 or int(args[2]) < 1:
                raise ValueError(f"{name} with no key: send it through the ClusterClient")
            return args[3]
        if len(args) <= position:
            raise ValueError(f"{name} without its key: {args!r}")
        return args[position]

    def _key_position(self, name: Any) -> int:
        word = (name.decode() if isinstance(name, bytes) else str(name)).upper()
        if word in SCRIPT_CALLS:
            return NUMKEYS
        if " " in word:
            raise ValueError(
                f"{word}: a command with a subcommand is not routed here: send it through the ClusterClient"
            )
        command: dict[str, Any] | None = self.cluster.commands_parser.commands.get(word.lower())  # type: ignore[assignment]
        if command is None:
            raise ValueError(f"{word}: not a command of this Redis Cluster")
        position = int(command["first_key_pos"])
        if position < 1:
            raise ValueError(f"{word} takes no key: send it through the ClusterClient")
        return position

    @property
    def multiplexed_connections(self) -> int:
        """Connections made, reconnects included, over all nodes (closed ones too)."""
        return self._retired_connections + sum(client.multiplexed_connections for client in self._clients.values())

    @property
    def linked_nodes(self) -> frozenset[str]:
        """The names (host:port) of the nodes this multiplexer keeps a client of."""
        return frozenset(self._clients)

    async def aclose(self) -> None:
        """Close the per-node connections (not the ClusterClient: the caller's)."""
        refreshing, self._refreshing = self._refreshing, None
        if refreshing is not None:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
        for name in list(self._clients):
            self._retire(name)
        for closing in list(self._closing):
            await closing
