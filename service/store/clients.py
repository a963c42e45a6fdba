"""Making the Redis client the store runs on: a real Redis from a URL (one
server, or a Redis Cluster with ``redis+cluster://``), or the embedded
in-memory store (fakeredis, running the same Lua scripts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from .multiplex import MultiplexedRedis

log = logging.getLogger("sessionstore.store")

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
MAX_CONNECTIONS = 256  # per process, to one Redis
EMBEDDED_CONNECTIONS = 100_000  # in-process: a "connection" is a queue, not a socket


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def validate_url(url: str) -> None:
    """Raises ValueError for a URL the store cannot use."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme in CLUSTER_SCHEMES:
        cluster_nodes(url)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port list of a ``redis+cluster://`` URL (port 6379 when left
    out). Raises ValueError for a malformed one."""
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster URL names no database (a cluster has only database 0)")
    nodes = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not colon:
            host, port = item, "6379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad Redis Cluster node {item!r}: expected host:port")
        nodes.append((host, int(port)))
    return nodes


class ClusterClient(RedisCluster):
    """redis-py's cluster client, with three changes:

    - every command waits for the cluster's slot map first (redis-py 8.1
      routes a keyed command that comes before the map is read as a keyless
      one, to whichever node, and the MOVED answers of a burst of such
      commands make it reset connections that other commands are using);
    - a burst of more concurrent commands (and pipelines) than a node has
      connections waits for a free one, up to the timeout, as a single
      server's blocking pool does, instead of failing at once
      (redis-py's per-node pools raise MaxConnectionsError);
    - aclose() takes the argument a single server's client takes, so callers
      close either the same way."""

    def __init__(self, *args: Any, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait_s = timeout_s
        # each command or pipeline holds at most one connection of a node: so no node runs out
        self._slots = asyncio.Semaphore(kwargs.get("max_connections", 100))

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisConnectionError(f"no free Redis Cluster connection within {self._wait_s} s") from None
        try:
            yield
        finally:
            self._slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()  # reads the slot map once; a no-op after that
        async with self._slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def execute_in_slot(*args: Any, **kwargs: Any) -> Any:
            await self.initialize()
            async with self._slot():
                return await execute(*args, **kwargs)

        pipe.execute = execute_in_slot  # type: ignore[method-assign]
        return pipe

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose()


def connect_cluster(url: str, *, timeout_s: float) -> ClusterClient:
    """A client of the Redis Cluster the URL names (any of its nodes will
    do: the others are discovered). It keeps a pool of connections per node;
    commands go to the node that owns their key's slot."""
    parts = urlsplit(url)
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ssl=parts.scheme == "rediss+cluster",
        max_connections=MAX_CONNECTIONS,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        timeout_s=timeout_s,
        retry=Retry(NoBackoff(), 1),  # one more try, after the topology is read again (a failover)
        health_check_interval=0,
    )


def connect(url: str | None, *, timeout_s: float = 1.0) -> Any:
    """An asyncio Redis client (auto-pipelining: see multiplex.py; its pool
    serves pub/sub and pipelines); for a ``redis+cluster://`` URL, redis-py's
    cluster client (not multiplexed). Commands fail within about ``timeout_s`` when
    Redis does not answer, so the API can answer 503 in time; the client
    reconnects by itself on the next command once Redis is back."""
    if url is None:
        import fakeredis

        log.warning("no Redis URL given: serving from an embedded in-memory store; data lives in this process only")
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)
    validate_url(url)
    if urlsplit(url).scheme in CLUSTER_SCHEMES:
        return connect_cluster(url, timeout_s=timeout_s)
    # A blocking pool: a burst of more concurrent commands than connections
    # waits for a free one (up to timeout_s) instead of failing at once.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return MultiplexedRedis.from_pool(pool)  # owns the pool: aclose() closes it
