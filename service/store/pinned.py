"""Commands that must run on one and the same connection, in order.

``WAIT numreplicas timeout`` waits for the replicas to acknowledge the last
write *of the connection it is sent on*. So a durable write is its script
and a WAIT, pipelined on one connection of its own (seam.py gives it: a
pooled connection of one Redis, never the shared multiplexed one, where WAIT
would stall every other caller's commands; or a connection of the primary
that owns the key on a Redis Cluster, clients.ClusterClient.primary_connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


async def on_connection(connection: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The replies to ``commands``, sent together on ``connection``. An error
    reply takes its command's place in the list as a ResponseError (MOVED and
    NOSCRIPT included: the caller decides); a connection that fails raises,
    and is closed rather than reused."""
    await _discard_if_stale(connection)
    return await _exchange(connection, commands)


async def _discard_if_stale(connection: Any) -> None:
    """Close a pooled connection that Redis has closed meanwhile (an idle
    timeout, CLIENT KILL, a restart) or that holds unread bytes, so that the
    send reconnects: nothing has been sent on it yet, so nothing is lost."""
    if not connection.is_connected:
        return  # the send connects it
    try:
        stale = await connection.can_read()
    except (RedisConnectionError, OSError):
        stale = True
    if stale:
        await connection.disconnect()


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
    except (AttributeError, RuntimeError) as exc:
        if connection.is_connected:
            raise  # not a connection closed under us: a bug, to be seen as one
        raise RedisConnectionError(f"connection closed while in use ({type(exc).__name__})") from exc
    except BaseException:
        # a reply may still be on its way: the connection is of no further use
        await connection.disconnect()
        raise
