"""Change events: Redis pub/sub for the whole process, one connection however
many subscribers (on a Redis Cluster, one per node: shard channels)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .model import UNAVAILABLE

log = logging.getLogger("sessionstore.store")


class EventsLost(Exception):
    """A subscription ended without being closed by its subscriber: the
    pub/sub connection to Redis was lost, or the subscriber fell more than
    EventHub.backlog events behind. Events may have been missed since."""


class Subscription:
    """The change events of one session from the moment it was confirmed, as
    the JSON texts the scripts publish: ``{"version", "changed", "deleted"}``.
    ``await next(timeout)`` for each (None when none came in time, or when
    ``poke()`` woke it); ``await aclose()`` when done (safe to call more than
    once). Its backlog is a deque of the event texts, which every subscriber
    of the session shares, and one future while it waits: small enough for
    thousands of idle streams."""

    __slots__ = ("_backlog", "_closed", "_events", "_hub", "_lost", "_waiter", "channel")

    def __init__(self, hub: EventHub, channel: bytes, backlog: int) -> None:
        self.channel = channel
        self._hub = hub
        self._backlog = backlog
        self._events: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None  # why it ended
        self._closed = False

    def _deliver(self, event: bytes) -> None:
        if self._lost is not None:
            return
        if len(self._events) >= self._backlog:
            self._end(f"the subscriber fell more than {self._backlog} events behind")
            return
        self._events.append(event)
        self.poke()

    def poke(self) -> None:
        """Wakes a next() that is waiting: it returns what came, else None."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, why: str) -> None:
        """Ends it as a lost connection would: once the events before are
        read, next() raises EventsLost(why). (aclose() is still to be called.)"""
        self._end(why)

    def _end(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            self.poke()

    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next event; None when ``timeout`` seconds pass without one.
        Raises EventsLost once the events before the loss are read."""
        if not self._events:
            if self._lost is not None:
                raise EventsLost(self._lost)
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                return None
            finally:
                self._waiter = None
            if not self._events:
                if self._lost is not None:
                    raise EventsLost(self._lost)
                return None  # poked
        return self._events.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        while (event := await self.next()) is None:
            pass  # poked
        return event

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._hub._leave(self)


class EventHub:
    """Redis pub/sub for the whole process: one connection however many
    subscribers, taken from the client's pool with the first subscription and
    given back with the last. subscribe() returns once Redis has confirmed the
    subscription, so every event published after that reaches the subscriber,
    in order; if the connection is lost, every subscription ends with
    EventsLost instead of missing events silently."""

    def __init__(self, redis: Any, *, sharded: bool = False, backlog: int = 1000) -> None:
        self.redis = redis
        self.sharded = sharded  # SSUBSCRIBE (Redis Cluster shard channels)
        self.backlog = backlog
        self._lock = asyncio.Lock()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: dict[bytes, set[Subscription]] = {}  # confirmed channels and their subscribers
        self._confirming: dict[bytes, asyncio.Future[None]] = {}

    @property
    def channels(self) -> int:
        """How many channels are subscribed to now."""
        return len(self._channels)

    async def subscribe(self, channel: str) -> Subscription:
        name = channel.encode()
        async with self._lock:
            subscription = Subscription(self, name, self.backlog)
            members = self._channels.get(name)
            if members is not None:
                members.add(subscription)
                return subscription
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
            pubsub = self._pubsub
            confirmed = asyncio.get_running_loop().create_future()
            self._confirming[name] = confirmed
            try:
                await (pubsub.ssubscribe(name) if self.sharded else pubsub.subscribe(name))
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read(pubsub), name="sessionstore-events")
                await confirmed
            except BaseException:
                # The connection is in a state we do not know: start afresh.
                self._confirming.pop(name, None)
                old = self._drop("the pub/sub connection to Redis was reset")
                await asyncio.shield(self._close(*old))
                raise
            self._channels[name] = {subscription}
            return subscription

    async def _leave(self, subscription: Subscription) -> None:
        async with self._lock:
            members = self._channels.get(subscription.channel)
            if members is None or subscription not in members:
                return  # its channel was dropped already
            members.discard(subscription)
            if members:
                return
            del self._channels[subscription.channel]
            try:
                # also before closing the connection: the embedded store keeps
                # the subscriptions of a closed connection
                await (
                    self._pubsub.sunsubscribe(subscription.channel)
                    if self.sharded
                    else self._pubsub.unsubscribe(subscription.channel)
                )
            except UNAVAILABLE as exc:
                log.warning("pub/sub unsubscribe failed (%s): resetting the connection", type(exc).__name__)
            else:
                if self._channels:
                    return
            old = self._drop("the pub/sub connection to Redis was reset")
        await self._close(*old)

    def _drop(self, why: str) -> tuple[Any, asyncio.Task[None] | None]:
        """Forget the connection, ending every subscription (EventsLost(why));
        returns the connection and its reader, for _close()."""
        old = self._pubsub, self._reader
        self._pubsub = self._reader = None
        for members in self._channels.values():
            for subscription in members:
                subscription._end(why)
        self._channels.clear()
        for waiter in self._confirming.values():
            if not waiter.done():
                waiter.set_exception(EventsLost(why))
        self._confirming.clear()
        return old

    @staticmethod
    async def _close(pubsub: Any, reader: asyncio.Task[None] | None) -> None:
        if reader is not None and reader is not asyncio.current_task():
            # Python 3.11's asyncio.wait_for (which clients use inside a read)
            # drops a cancellation that comes just as its read completes: repeat it.
            while not reader.done():
                reader.cancel()
                await asyncio.wait([reader], timeout=0.1)
        if pubsub is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await pubsub.aclose()

    async def _read(self, pubsub: Any) -> None:
        try:
            while self._pubsub is pubsub:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind, name = message["type"], message["channel"]
                if kind in ("message", "smessage"):
                    for subscription in tuple(self._channels.get(name, ())):
                        subscription._deliver(message["data"])
                elif kind in ("subscribe", "ssubscribe"):
                    waiter = self._confirming.pop(name, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                elif kind == "sunsubscribe" and name in self._channels:
                    # Not ours (_leave forgets a channel before it unsubscribes):
                    # Redis Cluster moved the channel's slot to another node.
                    for subscription in self._channels.pop(name):
                        subscription._end("the session's slot moved to another Redis Cluster node")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection is lost: any failure ends the subscriptions, none is missed silently
            if self._pubsub is pubsub:
                log.warning("pub/sub connection to Redis lost (%s): ending %d subscriptions", exc, len(self._channels))
                self._drop("the pub/sub connection to Redis was lost")
            await self._close(pubsub, None)


class ClusterEventHubs:
    """Change events on a Redis Cluster: a session's channel is a shard
    channel, published (SPUBLISH) on the node that owns its slot, so it is
    subscribed to (SSUBSCRIBE) there. One EventHub per node, each on a plain
    connection to that node (made with the cluster client's settings), so
    every node's events arrive as they come, not by polling the nodes in
    turn. A subscription ends with EventsLost as on one Redis when its
    connection is lost, and also when the channel's slot moves to another
    node (Redis tells its subscribers so)."""

    def __init__(self, cluster: RedisCluster, backlog: int = 1000) -> None:
        self.cluster = cluster
        self.backlog = backlog
        self._hubs: dict[str, EventHub] = {}

    @property
    def channels(self) -> int:
        return sum(hub.channels for hub in self._hubs.values())

    async def subscribe(self, channel: str) -> Subscription:
        await self.cluster.initialize()  # the slots' owners (a no-op once known)
        node = self.cluster.get_node_from_key(channel)
        if node is None:
            raise RedisError(f"no Redis Cluster node serves the slot of {channel!r}")
        hub = self._hubs.get(node.name)
        if hub is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            hub = self._hubs[node.name] = EventHub(Redis(connection_pool=pool), sharded=True, backlog=self.backlog)
        return await hub.subscribe(channel)

