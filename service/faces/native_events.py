"""The native API's change feed: a session's changes as Server-Sent Events
(``GET …/events``), one event per committed change, from the subscription the
store made before the response started.

Thousands of streams may be open on one process, so an event costs each
stream one wake-up and one write, and an idle stream no task of its own but
the request's: one timer per stream (``_tick``) sends the keep-alive comment
and watches the writes, and one task per app ends every stream when the
service starts to shut down.

A subscriber that stops reading is dropped instead of being buffered for:
once the socket's buffers and the HTTP server's (uvicorn: 64 KiB) are full,
a write waits for the client; if it has waited ``send_timeout_s``, the stream
ends there (logged, counted in ``sessionstore_event_streams_dropped``) and
the connection is closed. Meanwhile at most the subscription's backlog of
events waits for it (EventHub.backlog; the event texts themselves are shared
by every subscriber of the session); one that falls further behind gets the
events it has missed none of, then the end of its stream."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import ClassVar

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..store.core import EventsLost, Subscription

KEEPALIVE = b": keep-alive\n\n"
SHUTTING_DOWN = "the service is shutting down"
GONE = "the client went away"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

log = logging.getLogger("sessionstore.events")


class StreamDropped(Exception):
    """The client took no data for the send timeout: its stream is dropped.
    Logged where it is raised, so the request's error handlers log it no
    more (observability.Observe, logs.RequestContextFilter)."""

    _sessionstore_logged = True


class OpenStreams:
    """The open streams of one app (one ``shutting_down`` event): one task
    waits for the event and ends them all; it goes with the last stream."""

    of: ClassVar[weakref.WeakKeyDictionary[asyncio.Event, OpenStreams]] = weakref.WeakKeyDictionary()

    def __init__(self, shutting_down: asyncio.Event) -> None:
        self.streams: set[EventStream] = set()
        self.watcher = asyncio.ensure_future(self._end_all(shutting_down))

    async def _end_all(self, shutting_down: asyncio.Event) -> None:
        await shutting_down.wait()
        for stream in tuple(self.streams):
            stream.subscription.end(SHUTTING_DOWN)

    @classmethod
    def add(cls, stream: EventStream) -> None:
        event = stream.shutting_down
        if event.is_set():
            stream.subscription.end(SHUTTING_DOWN)
        group = cls.of.get(event)
        if group is None:
            group = cls.of[event] = OpenStreams(event)
        group.streams.add(stream)

    @classmethod
    def discard(cls, stream: EventStream) -> None:
        group = cls.of.get(stream.shutting_down)
        if group is not None:
            group.streams.discard(stream)
            if not group.streams:
                group.watcher.cancel()
                del cls.of[stream.shutting_down]


class EventStream(Response):
    """The Server-Sent Events of one subscription; it is closed however the
    response ends (the client gone included). The stream ends, with a comment
    saying so, when the service starts to shut down; and without one (there
    is no sending to it) when the client has not taken a write for
    ``send_timeout_s``: see the module's text."""

    def __init__(
        self,
        subscription: Subscription,
        keepalive_s: float,
        shutting_down: asyncio.Event,
        send_timeout_s: float,
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self.subscription = subscription
        self.keepalive_s = keepalive_s
        self.shutting_down = shutting_down
        self.send_timeout_s = send_timeout_s
        self.on_drop = on_drop
        self.status_code = 200
        self.background = None
        self.raw_headers = HEADERS
        self._sending_since: float | None = None  # loop time a write started that has not returned yet
        self._last_sent = 0.0
        self._gone = self._dropped = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def _period(self) -> float:
        return min(self.keepalive_s, self.send_timeout_s) / 4

    def _tick(self) -> None:
        """Every _period: drop the stream if a write has waited too long, else
        wake it for a keep-alive if nothing was sent for keepalive_s."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._sending_since is not None and now - self._sending_since >= self.send_timeout_s:
            if self._task is not None and not self._dropped:
                self._dropped = True
                self._task.cancel()
            return
        if now - self._last_sent >= self.keepalive_s:
            self.subscription.poke()
        self._timer = loop.call_later(self._period, self._tick)

    async def _send(self, send: Send, message: Message) -> None:
        self._sending_since = started = asyncio.get_running_loop().time()
        await send(message)
        self._sending_since, self._last_sent = None, started

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        self.subscription.end(GONE)

    async def _stream(self, send: Send) -> None:
        await self._send(send, {"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # the subscription is confirmed: changes from now on are sent
        await self._send(send, {"type": "http.response.body", "body": b": subscribed\n\n", "more_body": True})
        while True:
            try:
                event = await self.subscription.next()
            except EventsLost as exc:  # shutting down too (OpenStreams), or the client gone (_listen)
                if self._gone:
                    return
                body = f": stream ended: {exc}\n\n".encode()
                await self._send(send, {"type": "http.response.body", "body": body, "more_body": True})
                break
            if event is None:  # poked by _tick
                if asyncio.get_running_loop().time() - self._last_sent < self.keepalive_s:
                    continue
                event_text = KEEPALIVE
            else:
                event_text = b"data: " + event + b"\n\n"
            await self._send(send, {"type": "http.response.body", "body": event_text, "more_body": True})
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        listener = asyncio.ensure_future(self._listen(receive))
        OpenStreams.add(self)
        self._timer = loop.call_later(self._period, self._tick)
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            if not self._dropped or self._task is None or self._task.uncancel():
                raise  # a cancellation of the request's own
            self.on_drop()
            channel = self.subscription.channel.decode()
            log.warning("event stream of %s dropped: its client took no data for %g s", channel, self.send_timeout_s)
            raise StreamDropped(f"the client took no data for {self.send_timeout_s:g} s") from None
        finally:
            if self._timer is not None:
                self._timer.cancel()
            listener.cancel()
            OpenStreams.discard(self)
            with anyio.CancelScope(shield=True):
                await self.subscription.aclose()
