"""The storage core: tenants, namespaces, sessions and their properties.

This is the only module that sends commands to Redis (with keys.py naming the
keys and scripts.py running the Lua). The API faces call it with names and
JSON texts, and get back plain data classes; every write that must be atomic
is one Lua script.

Property values cross this boundary as compact JSON text (bytes), so a read
can hand them to the response without decoding them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, NoScriptError, RedisClusterException, RedisError

from . import keys, pinned
from .scripts import Script, Scripts

log = logging.getLogger("sessionstore.store")

# How many namespaces' last seen generations a store remembers (a guess that
# saves a round trip on reads; a wrong one costs one more).
GENERATIONS_REMEMBERED = 100_000

# What the faces catch to answer 503: Redis could not be reached or answered
# with an error that is not the client's fault.
# (RedisClusterException: redis-py's own cluster errors, such as a slot that no
# node covers while a failover is under way.)
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)


class NotDurable(RedisError):
    """A write that Redis applied but that fewer replicas than asked for
    confirmed in time (WAIT): it may be lost if its primary fails now."""


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must have every write before it is acknowledged
    (``WAIT replicas timeout_ms`` after each write script; 0: no waiting)."""

    replicas: int = 0
    timeout_ms: int = 500


# LivePerson's default and maximum retention of a context document, 13 months
# (of 30.44 days, a mean month: 396 days).
RETENTION_13_MONTHS_S = 396 * 24 * 3600


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Limits:
    max_chars: int = 800_000  # characters of one session's names and values
    max_properties: int = 10_000  # properties in one session
    # a session expires at the latest this long after its last write (0 = never);
    # LivePerson's "max retention on context documents", 13 months
    max_retention_s: int = RETENTION_13_MONTHS_S

    @property
    def retention_ms(self) -> int:
        return self.max_retention_s * 1000


@dataclass(frozen=True, slots=True)
class Namespace:
    tenant: str
    name: str
    created_ms: int
    ttl_s: int  # TTL stamped on properties written in it; 0 = none
    generation: int


@dataclass(slots=True)
class Session:
    session_id: str
    properties: dict[str, bytes]  # name -> compact JSON text
    version: int
    created_ms: int
    modified_ms: int
    ttl_s: int  # TTL stamped on properties written in this session; 0 = none
    idle_ms: int  # the session expires this long after its last write; 0 = never
    expires_ms: int  # when it expires (with idle_ms); 0 = never
    customer_id: str | None = None  # the customer it is tied to (see customers.py)
    origin: str = ""  # the face that created it: ORIGIN_LIVEPERSON, or "" (another, or not recorded)


class Existence(enum.Enum):
    ANY = "any"
    MUST = "must"  # the session must exist already
    NONE = "none"  # the session must not exist yet


class Status(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # the session (or namespace) does not exist
    EXISTS = "exists"  # Existence.NONE, and it does
    VERSION = "version"  # the expected version is not the stored one
    TOO_LARGE = "toolarge"  # the session would exceed Limits.max_chars
    TOO_MANY = "toomany"  # the session would exceed Limits.max_properties
    NOT_A_NUMBER = "nan"  # increment of a value that is not a number
    UNTIED = "untied"  # delete_session(tied_to=...): the session is tied to no customer or another one


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: Status
    version: int
    created: bool = False
    value: bytes | None = None  # the new value, after an increment
    session: Session | None = None  # the session after the write (write(read_back=True), status OK)


@dataclass(frozen=True, slots=True)
class TtlSession:
    session_id: str
    created_ms: int
    ttl_s: int


# The metadata's "o" of a session created through LivePerson v1 or v2 (lua/lib.lua).
ORIGIN_LIVEPERSON = "l"


class Changes:
    """A list of property changes for one atomic write (see lua/session_mutate.lua),
    and what it does to the session's customer tie (``customer``: "" keep it,
    "-" untie, "=" + id tie)."""

    __slots__ = ("args", "customer")

    def __init__(self) -> None:
        self.args: list[str | bytes] = []
        self.customer = ""

    def tie(self, customer: str) -> Changes:
        """Tie the session to ``customer`` (service/store/customers.py)."""
        self.customer = "=" + customer
        return self

    def untie(self) -> Changes:
        self.customer = "-"
        return self

    @property
    def tied_to(self) -> str | None:
        """The customer this write ties the session to, if it does."""
        return self.customer[1:] if self.customer[:1] == "=" else None

    def set(self, name: str, json: bytes) -> Changes:
        self.args += ("set", keys.property_field(name), json)
        return self

    def set_all(self, properties: Iterable[tuple[str, bytes]]) -> Changes:
        for name, json in properties:
            self.args += ("set", keys.property_field(name), json)
        return self

    def delete(self, name: str) -> Changes:
        self.args += ("del", keys.property_field(name), "")
        return self

    def clear(self) -> Changes:
        self.args += ("clr", "", "")
        return self

    def merge(self, name: str, patch: bytes) -> Changes:
        """RFC 7396 merge of ``patch`` into the property (a non-object patch replaces it)."""
        self.args += ("mrg", keys.property_field(name), patch)
        return self

    def set_in(self, name: str, members: bytes) -> Changes:
        """Set the members of the JSON object ``members`` in the object property ``name``."""
        self.args += ("sin", keys.property_field(name), members)
        return self

    def delete_in(self, name: str, member: str) -> Changes:
        """Remove one member from the object property ``name``."""
        self.args += ("din", keys.property_field(name), orjson.dumps(member))
        return self

    def increment(self, name: str, by: float) -> Changes:
        self.args += ("inc", keys.property_field(name), orjson.dumps(by))
        return self


def _status_ok(reply: Any) -> bool:
    """Whether a session script's reply says it wrote (its status is "ok")."""
    return bool(reply[0] == b"ok")


def _session_from_hash(session_id: str, raw: dict[bytes, bytes], now: int) -> Session | None:
    meta = raw.pop(b":", None)
    if meta is None:
        return None
    properties: dict[str, bytes] = {}
    for field_, value in raw.items():
        if value[:1] == b"@":
            if int(value[1:14]) <= now:
                continue
            value = value[14:]
        name = field_.decode()
        properties[name[1:] if name[:1] == ":" else name] = value
    return _session(session_id, properties, meta)


# The numbers of a session's metadata field, in order: lua/lib.lua's META_NAMES
# (a test holds the two together). After them, optionally: the origin tag,
# then the customer id, which may itself hold commas (so: maxsplit).
META_NAMES = ("v", "c", "m", "p", "z", "e", "x", "t", "i", "a")


def _session(session_id: str, properties: dict[str, bytes], meta: bytes) -> Session:
    parts = meta.split(b",", len(META_NAMES) + 1)
    v, c, m, _p, _z, _e, _x, t, i, a = parts[: len(META_NAMES)]
    origin = parts[10].decode() if len(parts) > 10 else ""
    customer = parts[11].decode() if len(parts) > 11 and parts[11] else None
    return Session(
        session_id, properties, int(v), int(c), int(m), int(t or 0), int(i or 0), int(a or 0), customer, origin
    )


def encode_cursor(bucket: int, last: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([bucket, last])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raises ValueError for a cursor this store did not make."""
    try:
        bucket, last = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(bucket, int) or not isinstance(last, str) or not 0 <= bucket < keys.BUCKETS:
        raise ValueError("invalid cursor")
    return bucket, last


class EventsLost(Exception):
    """A subscription ended without being closed by its subscriber: the
    pub/sub connection to Redis was lost, or the subscriber fell more than
    EventHub.backlog events behind. Events may have been missed since."""


class Subscription:
    """The change events of one session from the moment it was confirmed, as
    the JSON texts the scripts publish: ``{"version", "changed", "deleted"}``.
    ``await next(timeout)`` for each (None when none came in time);
    ``await aclose()`` when done (safe to call more than once)."""

    def __init__(self, hub: EventHub, channel: bytes, backlog: int) -> None:
        self.channel = channel
        self._hub = hub
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(backlog)
        self._lost: str | None = None  # why it ended
        self._closed = False

    def _deliver(self, event: bytes) -> None:
        if self._lost is not None:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._end(f"the subscriber fell more than {self._queue.maxsize} events behind")

    def _end(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes no one: next() drains it first
                self._queue.put_nowait(None)

    async def next(self, timeout: float | None = None) -> bytes | None:
        """The next event; None when ``timeout`` seconds pass without one.
        Raises EventsLost once the events before the loss are read."""
        if self._lost is not None and self._queue.empty():
            raise EventsLost(self._lost)
        try:
            async with asyncio.timeout(timeout):
                event = await self._queue.get()
        except TimeoutError:
            return None
        if event is None:
            raise EventsLost(self._lost)
        return event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        event = await self.next()
        assert event is not None  # no timeout
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


@dataclass
class SessionStore:
    """All storage operations, on one redis-py (or fakeredis) asyncio client:
    of one Redis, or of a Redis Cluster (redis-py's RedisCluster).

    What differs on a cluster is kept to a few places: change events are shard
    channels (SPUBLISH in the scripts, SSUBSCRIBE on the owning node, see
    ClusterEventHubs), and commands on many keys go out through _many(), a
    pipeline that the cluster client splits by node."""

    redis: Any
    limits: Limits = field(default_factory=Limits)
    durability: Durability = field(default_factory=Durability)
    scripts: Scripts = field(default_factory=Scripts)
    sharded_events: bool = False  # SPUBLISH (Redis Cluster) instead of PUBLISH
    _hub: EventHub | ClusterEventHubs | None = field(default=None, init=False, repr=False, compare=False)  # made by subscribe()
    # (tenant, namespace) -> the generation last seen: see read()
    _generations: dict[tuple[str, str], int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.on_cluster:
            self.sharded_events = True

    @property
    def on_cluster(self) -> bool:
        return isinstance(self.redis, RedisCluster)

    # -- health ------------------------------------------------------------

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def load_scripts(self) -> None:
        """Put every script in Redis's script cache (on a cluster: every primary)."""
        for script in self.scripts.all():
            await self.redis.script_load(script.source)

    async def _run(self, script: Script, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self.scripts.run(self.redis, script, keys_, args)

    async def _write(
        self, script: Script, keys_: Sequence[str], args: Sequence[Any], wrote: Callable[[Any], bool] = lambda _: True
    ) -> Any:
        """A script that changes data. With ``durability.replicas``, its reply
        only once that many replicas have the change (else NotDurable): the
        script and a WAIT go out together on one connection of their own
        (see pinned.py), to the primary that owns the keys. ``wrote``: whether
        the reply says the script changed anything (a refused write, such as
        a version conflict, changed nothing, so it has nothing to lose and
        its own answer stands)."""
        wanted = self.durability.replicas
        if not wanted:
            return await self._run(script, keys_, args)
        evalsha = ("EVALSHA", script.sha, len(keys_), *keys_, *args)
        wait = ("WAIT", wanted, self.durability.timeout_ms)
        for attempt in (1, 2, 3):
            # NOSCRIPT or MOVED: the script did not run, so running it again cannot apply it twice
            reply, acknowledged = await pinned.on_one_connection(self.redis, keys_[0], (evalsha, wait))
            if isinstance(reply, NoScriptError) and attempt < 3:
                self.scripts.reloads += 1
                await self.redis.script_load(script.source)  # on a cluster: on every primary
                continue
            if isinstance(reply, MovedError) and attempt < 3:  # the slot moved (a failover, a resharding)
                self.redis.topology_changed()  # only a cluster answers MOVED
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
                    f"{self.durability.timeout_ms} ms; it may be lost if its primary fails"
                )
            return reply
        raise AssertionError("unreachable: the third attempt returns or raises")

    async def _many(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Independent commands, on any keys, pipelined: one round trip (on a
        cluster, one per node, to the nodes at once). Their replies in order;
        the first error is raised."""
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def _run_many(self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """One script over many keys, pipelined: one round trip, not one per call."""
        if not calls:
            return []
        for attempt in (1, 2):
            try:
                return await self._many(("EVALSHA", script.sha, len(keys_), *keys_, *args) for keys_, args in calls)
            except NoScriptError:
                if attempt == 2:
                    raise
                self.scripts.reloads += 1
                await self.redis.script_load(script.source)  # on a cluster: on every primary
        raise AssertionError("unreachable")

    # -- namespaces --------------------------------------------------------

    async def namespace(self, tenant: str, name: str) -> Namespace | None:
        c, t, g = await self.redis.hmget(keys.namespace(tenant, name), "c", "t", "g")
        if c is None:
            return None
        return Namespace(tenant, name, int(c), int(t or 0), int(g or 0))

    async def ensure_namespace(self, tenant: str, name: str, ttl_s: int | None = None) -> Namespace:
        """Create the namespace unless it exists; set its TTL when one is given."""
        await self.redis.sadd(keys.tenant_namespaces(tenant), name)
        c, t, g, _fresh = await self._write(
            self.scripts.namespace_ensure, [keys.namespace(tenant, name)], [now_ms(), "" if ttl_s is None else ttl_s]
        )
        return Namespace(tenant, name, int(c), int(t), int(g))

    async def list_namespaces(self, tenant: str) -> list[Namespace]:
        names = sorted(n.decode() for n in await self.redis.smembers(keys.tenant_namespaces(tenant)))
        if not names:
            return []
        found = []
        replies = await self._many(("HMGET", keys.namespace(tenant, name), "c", "t", "g") for name in names)
        for name, (c, t, g) in zip(names, replies, strict=True):
            if c is not None:
                found.append(Namespace(tenant, name, int(c), int(t or 0), int(g or 0)))
        return found

    async def delete_namespace(self, tenant: str, name: str) -> bool:
        """Delete a namespace and everything in it, in constant time."""
        ns = await self.namespace(tenant, name)
        if ns is None:
            return False
        # Queue the generation for the sweeper first: if this process dies
        # between the two calls, the sweeper finds nothing there and moves on.
        await self.redis.sadd(keys.GRAVES, keys.grave(tenant, name, ns.generation))
        return bool(
            await self._write(self.scripts.namespace_delete, [keys.namespace(tenant, name)], [ns.generation], wrote=bool)
        )

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
        generation = self._generations.get((tenant, namespace), 0)
        fields = None if names is None else [keys.property_field(n) for n in names]
        while True:
            key = keys.session(tenant, namespace, generation, session_id).session
            read = ("HGETALL", key) if fields is None else ("HMGET", key, keys.META_FIELD, *fields)
            (c, _t, g), found = await self._together(("HMGET", ns_key, "c", "t", "g"), read)
            if c is None:
                return None
            if int(g or 0) == generation:
                break
            generation = self._remember(tenant, namespace, int(g or 0))
        now = now_ms()
        if fields is None:
            return _session_from_hash(session_id, found, now)
        if found[0] is None:
            return None
        return _session_from_hash(
            session_id, {b":": found[0], **{f.encode(): v for f, v in zip(fields, found[1:], strict=True) if v is not None}}, now
        )

    async def _together(self, *commands: tuple[Any, ...]) -> list[Any]:
        """A few commands sent in one round trip: with
        multiplex.MultiplexedRedis.execute_many where the client has it, else
        as a pipeline (on a cluster, to the nodes of their keys at once)."""
        many = getattr(self.redis, "execute_many", None)
        if many is not None:
            return list(await many(*commands))
        return await self._many(commands)

    def _remember(self, tenant: str, namespace: str, generation: int) -> int:
        if len(self._generations) >= GENERATIONS_REMEMBERED:
            self._generations.clear()
        self._generations[(tenant, namespace)] = generation
        return generation

    async def read_many(self, tenant: str, namespace: str, session_ids: Sequence[str]) -> list[Session | None]:
        """Several sessions of one namespace, pipelined (None for each one missing)."""
        ns = await self.namespace(tenant, namespace)
        if ns is None or not session_ids:
            return [None] * len(session_ids)
        replies = await self._many(("HGETALL", keys.session(tenant, namespace, ns.generation, sid).session) for sid in session_ids)
        now = now_ms()
        return [_session_from_hash(sid, raw, now) for sid, raw in zip(session_ids, replies, strict=True)]

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
        """
        ns = await self._namespace_for_write(tenant, namespace, create_namespace)
        if ns is None:
            return WriteResult(Status.MISSING, 0)
        customer = changes.tied_to
        stale = [] if customer is None else await self.touch_customer(tenant, customer, namespace, session_id)
        sk = keys.session(tenant, namespace, ns.generation, session_id)
        flags = ("d" if drop_empty else "") + ("p" if self.sharded_events else "") + ("r" if read_back else "")
        flags += "l" if origin == ORIGIN_LIVEPERSON else ""
        if property_ttl_ms is not None:
            stamp, flags = property_ttl_ms, flags + "x"
        else:
            stamp = ns.ttl_s * 1000
        now = now_ms()
        reply = await self._write(
            self.scripts.session_mutate,
            sk,
            [
                now,
                session_id,
                "" if version is None else version,
                existence.value,
                stamp,
                "" if idle_ttl_ms is None else idle_ttl_ms,
                self.limits.max_chars,
                self.limits.max_properties,
                flags,
                self.limits.retention_ms,
                changes.customer,
                *changes.args,
            ],
            wrote=_status_ok,
        )
        if stale and customer is not None:
            await self._verify_customer(tenant, customer, stale)
        status, new_version, created, extra = reply[:4]
        session = None
        if len(reply) > 4:  # read_back: HGETALL from Lua, a flat list: field, value, field, value...
            flat = reply[4]
            session = _session_from_hash(session_id, dict(zip(flat[::2], flat[1::2], strict=True)), now)
        return WriteResult(Status(status.decode()), int(new_version), bool(created), extra or None, session)

    async def delete_session(
        self, tenant: str, namespace: str, session_id: str, *, version: int | None = None, tied_to: str | None = None
    ) -> WriteResult:
        """Delete a session (publishing the deletion event); ``tied_to``: only
        if it is tied to that customer (else Status.UNTIED, nothing deleted)."""
        ns = await self.namespace(tenant, namespace)
        if ns is None:
            return WriteResult(Status.MISSING, 0)
        sk = keys.session(tenant, namespace, ns.generation, session_id)
        status, new_version = await self._write(
            self.scripts.session_delete,
            sk,
            [now_ms(), session_id, "" if version is None else version, "p" if self.sharded_events else "", tied_to or ""],
            wrote=_status_ok,
        )
        return WriteResult(Status(status.decode()), int(new_version))

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
        status, version, created = await self._write(
            self.scripts.session_settings,
            sk[:4],
            [
                now_ms(),
                session_id,
                "" if ttl_s is None else ttl_s,
                "1" if create else "0",
                self.limits.retention_ms,
                "l" if origin == ORIGIN_LIVEPERSON else "",
            ],
            wrote=_status_ok,
        )
        return WriteResult(Status(status.decode()), int(version), bool(created))

    async def touch_customer(self, tenant: str, customer: str, namespace: str, session_id: str) -> list[Any]:
        """Put a session in its customer's index (lua/customer_touch.lua),
        before the write that ties it. Returns some of the index's oldest
        entries to verify when it has grown past a few (customers.py)."""
        from . import customers  # it builds on this module

        reply = await self._write(
            self.scripts.customer_touch,
            [keys.customer_index(tenant, customer)],
            [customers.VERIFY_ABOVE, customers.VERIFY_FEW, customers.GUARD_MS, keys.customer_member(namespace, session_id)],
        )
        return list(reply)

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
        not seen (subscribe again)."""
        generation = await self.redis.hget(keys.namespace(tenant, namespace), "g")
        channel = keys.session(tenant, namespace, int(generation or 0), session_id).events
        if self._hub is None:
            self._hub = ClusterEventHubs(self.redis) if self.on_cluster else EventHub(self.redis, sharded=self.sharded_events)
        return await self._hub.subscribe(channel)

    # -- listings ----------------------------------------------------------

    async def list_sessions(
        self, tenant: str, namespace: str, limit: int, cursor: str | None = None, prefix: str = ""
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` session ids after ``cursor``, and the cursor of the
        next page (None at the end); with ``prefix``, only the ids that start
        with it (each bucket reads just that range of its index). Raises
        ValueError for a bad cursor."""
        bucket, last = decode_cursor(cursor) if cursor else (0, "")
        # the ids from prefix up to (not including) prefix + 0xFF, a byte no UTF-8 text holds
        low, high = ("[" + prefix, b"(" + prefix.encode() + b"\xff") if prefix else ("-", b"+")
        ns = await self.namespace(tenant, namespace)
        if ns is None:
            return [], None
        ids: list[str] = []
        batch = 8
        while bucket < keys.BUCKETS:
            span = range(bucket, min(bucket + batch, keys.BUCKETS))
            now, want = now_ms(), limit - len(ids) + 1  # one more, to know whether a bucket has more
            calls = [
                (keys.bucket(tenant, namespace, ns.generation, b),
                 [now, "(" + last if b == bucket and last and last >= prefix else low, want, 0, high])
                for b in span
            ]
            for b, reply in zip(span, await self._run_many(self.scripts.bucket_list, calls), strict=True):
                found = [i.decode() for i in reply[1:]]
                room = limit - len(ids)
                if len(found) > room:
                    ids += found[:room]
                    return ids, encode_cursor(b, ids[-1])
                ids += found
                if len(ids) == limit:
                    return ids, encode_cursor(b + 1, "") if b + 1 < keys.BUCKETS else None
            bucket, last, batch = span[-1] + 1, "", min(batch * 2, 64)
        return ids, None

    async def page_sessions(self, tenant: str, namespace: str, page: int, per_page: int) -> list[str]:
        """Page ``page`` (from 0) of the session ids, ``per_page`` a page."""
        ns = await self.namespace(tenant, namespace)
        if ns is None:
            return []
        now = now_ms()
        buckets = [keys.bucket(tenant, namespace, ns.generation, b) for b in range(keys.BUCKETS)]
        counts = [int(r[0]) for r in await self._run_many(self.scripts.bucket_list, [(bk, [now, "-", 0, 0]) for bk in buckets])]
        skip, want = page * per_page, per_page
        calls = []
        for b, count in enumerate(counts):
            if want <= 0:
                break
            if skip >= count:
                skip -= count
                continue
            calls.append((buckets[b], [now, "-", min(want, count - skip), skip]))
            want -= count - skip
            skip = 0
        ids: list[str] = []
        for reply in await self._run_many(self.scripts.bucket_list, calls):
            ids += [i.decode() for i in reply[1:]]
        return ids[:per_page]

    async def ttl_sessions(self, tenant: str, namespace: str) -> list[TtlSession]:
        """The sessions that have a session TTL, with their creation time."""
        ns = await self.namespace(tenant, namespace)
        if ns is None:
            return []
        replies = await self._many(("HGETALL", keys.bucket(tenant, namespace, ns.generation, b).ttl) for b in range(keys.BUCKETS))
        entries = [(sid.decode(), int(ttl)) for reply in replies for sid, ttl in reply.items()]
        if not entries:
            return []
        metas = await self._many(
            ("HGET", keys.session(tenant, namespace, ns.generation, sid).session, keys.META_FIELD) for sid, _ttl in entries
        )
        found = []
        for (sid, ttl), meta in zip(entries, metas, strict=True):
            if meta is not None:
                found.append(TtlSession(sid, _session(sid, {}, meta).created_ms, ttl))
        return sorted(found, key=lambda s: s.session_id)

    # -- reclaiming deleted namespaces --------------------------------------

    async def sweep(self, batch: int = 500) -> int:
        """Delete the keys of deleted namespace generations; returns how many
        sessions were reclaimed. Safe to run from several instances at once."""
        reclaimed = 0
        for entry in await self.redis.smembers(keys.GRAVES):
            tenant, name, generation = keys.parse_grave(entry.decode())
            current = await self.redis.hget(keys.namespace(tenant, name), "g")
            if current is not None and int(current) <= generation:
                continue  # that generation is still the live one: its delete has not happened
            for b in range(keys.BUCKETS):
                bk = keys.bucket(tenant, name, generation, b)
                while True:
                    ids = [i.decode() for i in await self.redis.zrange(bk.ids, 0, batch - 1)]
                    if not ids:
                        break
                    await self.redis.unlink(*(keys.session_in_bucket(tenant, name, generation, b, i) for i in ids))
                    await self.redis.zrem(bk.ids, *ids)
                    reclaimed += len(ids)
                await self.redis.unlink(bk.ids, bk.expiry, bk.ttl)
            await self.redis.srem(keys.GRAVES, entry)
        return reclaimed

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await self.redis.set(keys.SWEEP_LOCK, "1", nx=True, px=int(interval_s * 1000)):
                    count = await self.sweep()
                    if count:
                        log.info("reclaimed %d sessions of deleted namespaces", count)
            except UNAVAILABLE as exc:
                log.warning("sweep skipped: %s", exc)

    # -- read with auto-create (the Genesys face) ----------------------------

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
        _created, flat = await self._write(
            self.scripts.session_get_or_create,
            sk,
            [
                now,
                session_id,
                "" if idle_ttl_ms is None else idle_ttl_ms,
                "p" if self.sharded_events else "",
                self.limits.retention_ms,
            ],
        )
        # HGETALL from Lua is a flat list: field, value, field, value...
        found = _session_from_hash(session_id, dict(zip(flat[::2], flat[1::2], strict=True)), now)
        assert found is not None  # the script always stores the metadata
        return found
