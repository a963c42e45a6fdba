"""The header timeout on uvicorn (``--header-timeout``): a connection that
has waited longer than it for a request's headers is closed, with a 408
first when part of a request had come. uvicorn has no such timeout of its
own (its ``timeout_keep_alive`` is armed only once a response has ended,
and cancelled by the first byte that comes after it), so a client that
connects and sends nothing, or trickles its headers a byte at a time
(slowloris), holds its connection for as long as it likes.

A connection waits for headers while no request of it is being served: from
the moment it is made, and again from the end of each response, until the
next request's headers are all in (the body that follows is the app's to
time: service/body_timeout.py). The rest of a body the app did not read
after it answered counts as waiting too, so a body that never ends is cut
here as well.

No timer per request: one :class:`HeaderWatch` per server looks at its
connections every quarter of the timeout (at most every second), and cuts
those it has seen waiting for the same request for longer than the timeout
(so a connection is cut between one timeout and one interval more after its
wait began). What a connection waits for is read from uvicorn's own state
(its current request-response cycle, whether that one has ended), so
nothing is added to the handling of a request.

The protocols are uvicorn's two HTTP/1.1 ones, as ``http=`` of uvicorn's
Config (servers.py): :class:`HttpToolsTimeouts` (the one it uses when
httptools is installed, as it is with uvicorn[standard]) and
:class:`H11Timeouts`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import Settings

log = logging.getLogger("sessionstore.server")

MESSAGE = b'{"code":408,"message":"the request headers did not arrive in time"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(MESSAGE), MESSAGE)
)
NEW = object()  # what a connection that has had no request yet waits for


class Timed(asyncio.Protocol):
    """What both protocols below add to uvicorn's: their connections under
    the server's :class:`HeaderWatch`. The attributes are uvicorn's, but
    ``header_timeout_s`` and those the watch keeps."""

    header_timeout_s: float
    server_state: ServerState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any  # uvicorn's: the latest request's (a pipelined one's too), None before the first
    watch: HeaderWatch
    waiting_for: object  # what the watch last saw the connection wait for (None: a request in flight)
    waiting_since: float

    def __init__(self, *args: Any, header_timeout_s: float = Settings.header_timeout_s, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # uvicorn's: config, server_state, app_state, _loop
        self.header_timeout_s = header_timeout_s

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.waiting_for, self.waiting_since = None, 0.0
        self.watch = HeaderWatch.of(self.server_state, self.loop, self.header_timeout_s)
        self.watch.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.discard(self)
        super().connection_lost(exc)

    def awaited(self) -> object:
        """What the connection waits for headers after (the request-response
        cycle that has ended, or NEW), or None while a request is served."""
        cycle = self.cycle
        if cycle is None:
            return NEW
        return cycle if cycle.response_complete else None

    def request_begun(self) -> bool:
        """Whether part of the next request has come (then a 408 is sent)."""
        raise NotImplementedError

    def cut(self) -> None:
        if self.transport.is_closing():
            return
        if self.request_begun():
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class HeaderWatch:
    """The connections of one uvicorn server (one per worker process), looked
    at every ``interval``: while it has any, and no timer otherwise."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.interval_s = min(timeout_s / 4, 1.0)
        self.connections: set[Timed] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.cut_count = 0

    @classmethod
    def of(cls, server: ServerState, loop: asyncio.AbstractEventLoop, timeout_s: float) -> HeaderWatch:
        watch = WATCHES.get(server)
        if watch is None:
            watch = WATCHES[server] = cls(loop, timeout_s)
        return watch

    def add(self, connection: Timed) -> None:
        self.connections.add(connection)
        if self.timer is None:
            self.timer = self.loop.call_later(self.interval_s, self.sweep)

    def discard(self, connection: Timed) -> None:
        self.connections.discard(connection)

    def sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            awaited = connection.awaited()
            if awaited is not connection.waiting_for:  # a new wait (or none): it starts now
                connection.waiting_for, connection.waiting_since = awaited, now
            elif awaited is not None and now - connection.waiting_since >= self.timeout_s:
                self.cut_count += 1
                log.debug("closing a connection that sent no complete request headers in %g s", self.timeout_s)
                connection.cut()
                self.connections.discard(connection)
        self.timer = self.loop.call_later(self.interval_s, self.sweep) if self.connections else None


WATCHES: weakref.WeakKeyDictionary[ServerState, HeaderWatch] = weakref.WeakKeyDictionary()


class HttpToolsTimeouts(Timed, HttpToolsProtocol):
    """uvicorn's httptools protocol, under the header timeout."""

    def request_begun(self) -> bool:
        # each request's headers are a new list, from its first byte on (on_message_begin)
        cycle = self.cycle
        return self.headers is not None and (cycle is None or self.headers is not cycle.scope["headers"])


class H11Timeouts(Timed, H11Protocol):
    """uvicorn's h11 protocol, under the header timeout."""

    def request_begun(self) -> bool:
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])


def http_protocol(header_timeout_s: float) -> Any:
    """uvicorn's ``http=``: the protocol it would choose itself (httptools
    when installed), under ``header_timeout_s`` (0: none, uvicorn's own). A
    partial of a class, so that uvicorn's worker processes get it pickled."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        timed: type[HttpToolsTimeouts | H11Timeouts] = H11Timeouts
        plain = "h11"
    else:
        timed, plain = HttpToolsTimeouts, "httptools"
    return functools.partial(timed, header_timeout_s=header_timeout_s) if header_timeout_s > 0 else plain
