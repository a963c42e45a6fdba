"""Commands that must run on one and the same connection, in order.

``WAIT numreplicas timeout`` waits for the replicas to acknowledge the last
write *of the connection it is sent on*. So a durable write is its script
and a WAIT, pipelined on one connection of its own: a pooled connection of
one Redis (never the shared multiplexed one, where WAIT would stall every
other caller's commands), or a connection of the primary that owns the key
on a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


async def on_one_connection(redis: Any, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The replies to ``commands``, sent together on one connection to the
    Redis (or, on a cluster, the primary) that holds ``key``. An error reply
    takes its command's place in the list as a ResponseError (MOVED and
    NOSCRIPT included: the caller decides); a connection that fails raises,
    and is closed rather than reused."""
    if isinstance(redis, RedisCluster):
        return await _on_cluster(redis, key, commands)
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        return await _exchange(connection, commands)
    finally:
        await pool.release(connection)


async def _on_cluster(cluster: RedisCluster, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    await cluster.initialize()  # the slot map: read once, and again after a failure said it changed
    node = cluster.get_node_from_key(key)
    if node is None:  # pragma: no cover - get_node_from_key raises SlotNotCoveredError instead
        raise RedisConnectionError(f"no primary holds the slot of {key!r}")
    connection = node.acquire_connection()
    try:
        return await _exchange(connection, commands)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        # the node may be gone (a failover): read the slot map again before the next command
        topology_changed(cluster)
        raise
    finally:
        node.release(connection)


async def _exchange(connection: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
    except (AttributeError, RuntimeError) as exc:  # closed under us by the cluster client (see clients.py)
        await connection.disconnect()
        raise RedisConnectionError(f"connection closed during a cluster topology change ({type(exc).__name__})") from exc
    except BaseException:
        # a reply may still be on its way: the connection is of no further use
        await connection.disconnect()
        raise


def topology_changed(cluster: RedisCluster) -> None:
    """Have the cluster client read the slot map again before its next
    command (as redis-py itself does after a connection error or MOVED)."""
    cluster._initialize = True  # noqa: SLF001 - redis-py's own flag for "read the slot map again"
