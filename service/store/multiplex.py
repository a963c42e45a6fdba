"""Auto-pipelining: the commands of every concurrent request on one shared
connection per event loop, written together and answered in order.

A request costs Redis one command or script call; what costs the service is
the client's work around it. Taking a pooled connection per call, writing,
and waiting on that one socket for that one reply is most of it (a
pool-per-call handler reached about 0.29 of a bare Starlette endpoint here,
one multiplexed connection about 0.72). So :class:`MultiplexedRedis` is
redis-py's asyncio client (every command method, every response callback,
errors mapped to the same exception classes) with one change: a command goes
into a buffer that is written, with every other command issued in the same
event-loop turn, in one write on one connection; a single reader task parses
the replies with hiredis as they arrive and hands each to its caller in
order. Commands that hold a connection (blocking pops, transactions,
pub/sub) still use redis-py's pool, as do ``pipeline()`` and ``pubsub()``.

redis-py's own Connection makes the connection (TCP, TLS or unix socket,
AUTH, SELECT, HELLO), and hiredis.Reader with redis-py's error classes parses
the replies; nothing here speaks RESP beyond packing a command.

When Redis does not answer within the socket timeout while replies are due,
or the connection drops, every caller waiting on that connection gets a
redis ConnectionError or TimeoutError at once, and the next command connects
afresh. A caller that gives up (its request timed out) leaves its reply to be
read and dropped, so the connection never gets out of step.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, InvalidResponse, RedisError, ResponseError, TimeoutError

log = logging.getLogger("sessionstore.store")

# Commands that block, or change the state of the connection they run on:
# they get a pooled connection of their own.
POOLED = frozenset(
    {
        "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "BZMPOP", "XREAD", "XREADGROUP",
        "WAIT", "WAITAOF", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
        "MONITOR", "SELECT", "AUTH", "HELLO", "RESET", "CLIENT", "QUIT",
    }
)  # fmt: skip
READ_SIZE = 65536
EMPTY_RESPONSE = "EMPTY_RESPONSE"


class _Link:
    """One multiplexed connection, bound to the event loop that made it."""

    def __init__(self, client: MultiplexedRedis, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.connection: AbstractConnection | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.unsent: list[bytes] = []
        self.unsent_waiters: list[asyncio.Future[Any]] = []
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.flush_scheduled = False
        self.connections_made = 0
        self.closing: set[asyncio.Task[None]] = set()
        self.timeout: float = 0.0  # the socket timeout: longest wait for a reply
        self.progress_at = 0.0  # when the last reply came, or replies became due
        self.watchdog: asyncio.TimerHandle | None = None
        self.abort_error: RedisError | None = None

    async def call(self, packed: bytes) -> Any:
        if self.writer is None:
            await self._connect()
        return await self.send(packed)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one command (the connection must be up); its reply's future."""
        waiter = self.loop.create_future()
        self.unsent.append(packed)
        self.unsent_waiters.append(waiter)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return waiter

    def _flush(self) -> None:
        self.flush_scheduled = False
        unsent, waiters = self.unsent, self.unsent_waiters
        self.unsent, self.unsent_waiters = [], []
        writer = self.writer
        if writer is None or writer.transport.is_closing():
            _fail(waiters, ConnectionError("connection to Redis lost"))
            return
        writer.write(b"".join(unsent))
        if not self.waiters:
            self.progress_at = self.loop.time()
        self.waiters.extend(waiters)
        if self.watchdog is None and self.timeout:
            self.watchdog = self.loop.call_at(self.progress_at + self.timeout, self._watch)

    def _watch(self) -> None:
        """No reply for a whole socket timeout while replies are due: the
        connection is dead or Redis hangs; drop it."""
        self.watchdog = None
        if not self.waiters or self.reader_task is None:
            return
        due = self.progress_at + self.timeout
        if self.loop.time() >= due:
            self.abort_error = TimeoutError(f"Redis did not answer within {self.timeout} s")
            self.reader_task.cancel()
        else:
            self.watchdog = self.loop.call_at(due, self._watch)

    async def _connect(self) -> None:
        if self.connecting is not None:
            return await asyncio.shield(self.connecting)
        self.connecting = self.loop.create_future()
        try:
            connection = self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            await connection.connect()
            reader, writer = connection._reader, connection._writer
            if reader is None or writer is None:
                raise ConnectionError("redis-py made no streams for the connection")
            self.connection, self.writer = connection, writer
            self.timeout = connection.socket_timeout or 0.0
            self.abort_error = None
            self.connections_made += 1
            self.reader_task = self.loop.create_task(self._read(connection, reader))
            self.connecting.set_result(None)
        except BaseException as exc:
            self.connecting.set_exception(exc if isinstance(exc, RedisError) else ConnectionError(str(exc)))
            self.connecting.exception()  # retrieved: the caller re-raises it
            raise
        finally:
            self.connecting = None

    async def _read(self, connection: AbstractConnection, stream: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)
        waiters = self.waiters
        loop = self.loop
        error: RedisError = ConnectionError("connection to Redis closed")
        try:
            while True:
                data = await stream.read(READ_SIZE)
                if not data:
                    break
                self.progress_at = loop.time()
                parser.feed(data)
                reply = parser.gets()
                while reply is not False:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        if isinstance(reply, ResponseError):
                            waiter.set_exception(reply)
                        else:
                            waiter.set_result(reply)
                    reply = parser.gets()
        except asyncio.CancelledError:
            error = self.abort_error or ConnectionError("connection to Redis closed by the client")
            raise
        except (OSError, InvalidResponse) as exc:
            error = ConnectionError(f"connection to Redis failed: {exc}")
        finally:
            self._drop(connection, error)

    def _drop(self, connection: AbstractConnection, error: RedisError) -> None:
        """Close the connection; everything waiting on it fails at once."""
        if self.connection is connection:
            self.connection = self.writer = None
            self.reader_task = None
            if self.watchdog is not None:
                self.watchdog.cancel()
                self.watchdog = None
            closing = self.loop.create_task(connection.disconnect(nowait=True))
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)
        _fail(self.waiters, error)
        self.waiters.clear()
        log.debug("multiplexed Redis connection dropped: %s", error)

    async def close(self) -> None:
        task, connection = self.reader_task, self.connection
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if connection is not None:
            await connection.disconnect()
        for closing in list(self.closing):
            await closing


def _fail(waiters: Any, error: RedisError) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)


class MultiplexedRedis(Redis):
    """redis.asyncio.Redis with auto-pipelining on one connection per event loop."""

    _link: _Link | None = None
    _encoder: Any = None

    def _link_for_loop(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = self._link
        if link is None or link.loop is not loop:
            link = self._link = _Link(self, loop)
        return link

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        if name in POOLED or (isinstance(name, str) and name.split(" ", 1)[0] in POOLED):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        return self.finish(name, await self.raw(args), options)

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Several commands sent together, answered together: one round trip
        and one wake-up of the caller, not one each. Their replies as
        execute_command gives them; the first error is raised once all came."""
        await self.link_up()
        waiters = self.queue(commands)
        results: list[Any] = []
        error: BaseException | None = None
        for command, waiter in zip(commands, waiters, strict=True):
            try:
                response = await waiter
            except RedisError as exc:
                error = error or exc
                results.append(None)
                continue
            results.append(self.finish(command[0], response, {}))
        if error is not None:
            raise error
        return results

    # -- the pieces of a call, for a client built on this one (cluster_multiplex.py)

    async def raw(self, args: tuple[Any, ...]) -> Any:
        """One command's reply as Redis gave it (no response callback); an
        error reply raised as redis-py's error class."""
        return await self._link_for_loop().call(self._pack(args))

    def linked(self) -> bool:
        """Whether this event loop's connection is up."""
        link = self._link
        return link is not None and link.writer is not None and link.loop is asyncio.get_running_loop()

    async def link_up(self) -> None:
        """Connect this event loop's connection unless it is up."""
        link = self._link_for_loop()
        if link.writer is None:
            await link._connect()

    def queue(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Commands queued in this order with nothing between them (the
        connection must be up: link_up); their raw replies' futures."""
        link = self._link_for_loop()
        return [link.send(self._pack(command)) for command in commands]

    def finish(self, name: Any, response: Any, options: dict[str, Any]) -> Any:
        """A raw reply as execute_command gives it: through redis-py's response callback."""
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(name)
        return callback(response, **options) if callback is not None else response

    def _pack(self, args: tuple[Any, ...]) -> bytes:
        """RESP for one command. str, bytes and int (the store's arguments) are
        packed here; anything else goes through redis-py's encoder (which
        also refuses what Redis cannot take)."""
        name = args[0]
        words = name.split() if isinstance(name, str) else name.decode().split()
        out = [b"*%d\r\n" % (len(words) + len(args) - 1)]
        for word in words:
            out.append(b"$%d\r\n%s\r\n" % (len(word), word.encode()))
        for arg in args[1:]:
            kind = type(arg)
            if kind is bytes:
                data = arg
            elif kind is str:
                data = arg.encode()
            elif kind is int:
                data = b"%d" % arg
            else:
                encoder = self._encoder
                if encoder is None:
                    encoder = self._encoder = self.connection_pool.get_encoder()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                data = encoder.encode(arg)
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    @property
    def multiplexed_connections(self) -> int:
        """How many connections the multiplexer has made (reconnects included)."""
        return self._link.connections_made if self._link is not None else 0

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        await super().aclose(close_connection_pool)
