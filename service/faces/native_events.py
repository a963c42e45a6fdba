"""The native API's change feed: a session's changes as Server-Sent Events
(``GET …/events``), one event per committed change, from the subscription the
store made before the response started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..store.core import EventsLost, Subscription

KEEPALIVE = b": keep-alive\n\n"


class EventStream(StreamingResponse):
    """The Server-Sent Events of one subscription; it is closed however the
    response ends (the client gone included). The stream ends, with a comment
    saying so, when the service starts to shut down."""

    def __init__(self, subscription: Subscription, keepalive_s: float, shutting_down: asyncio.Event) -> None:
        self.subscription = subscription
        self.shutting_down = shutting_down
        super().__init__(
            self._events(keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, keepalive_s: float) -> AsyncIterator[bytes]:
        yield b": subscribed\n\n"  # the subscription is confirmed: changes from now on are sent
        stop = asyncio.ensure_future(self.shutting_down.wait())
        try:
            while True:
                following = asyncio.ensure_future(self.subscription.next(keepalive_s))
                await asyncio.wait((following, stop), return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    yield b": stream ended: the service is shutting down\n\n"
                    return
                try:
                    event = following.result()
                except EventsLost as exc:
                    yield f": stream ended: {exc}\n\n".encode()
                    return
                yield KEEPALIVE if event is None else b"data: " + event + b"\n\n"
        finally:
            stop.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.subscription.aclose()
