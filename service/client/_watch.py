"""``watch``: a session's change feed (Server-Sent Events) as a stream of
events that outlives the connections it runs on. When a stream ends or
breaks, the client subscribes again and reads the session once the new
subscription is confirmed (so nothing changed after that read is missed),
handing the read on as a ``Resync``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import msgspec

from ._core import Core
from ._errors import NetworkError, NotFound, SessionStoreError, Unavailable, error_for
from ._flow import Emit, Flow, Items, NextLine, Open, Sleep, network_error
from ._models import EVENT, ChangeEvent, Resync, Session, WatchEvent

SUBSCRIBED = "subscribed"  # the comment that opens a stream whose subscription is in place


class Subscribed:
    """Emitted (before any Resync) each time a stream's subscription is
    confirmed; the Watch objects take it out, and wait for the first on entering."""


SUBSCRIBED_MARK = Subscribed()


@dataclass(frozen=True)
class WatchOptions:
    """``read_first``: a ``Resync`` after the first subscription too (the
    session as it is when the watch starts). ``reconnects``: how many times in
    a row a new stream may fail to start before the error is raised (None:
    no end). ``idle_timeout_s``: a stream silent this long (no event, no
    keep-alive comment, which the service sends every 15 s) counts as broken."""

    read_first: bool = False
    reconnects: int | None = 10
    idle_timeout_s: float = 45.0


def watch(core: Core, session_id: str, options: WatchOptions) -> Items[WatchEvent | Subscribed]:
    url = core.session(session_id) + "/events"
    failures = 0
    read = options.read_first
    while True:
        error: SessionStoreError | None = None
        try:
            if (yield from subscribe(url, options)):
                failures = 0
                yield Emit(SUBSCRIBED_MARK)
                if read:
                    yield Emit(Resync((yield from current(core, session_id))))
                yield from events()  # until the stream ends: then at once a new one
            else:
                error = NetworkError("the event stream ended before its subscription was confirmed")
        except httpx.TransportError as exc:
            error = network_error(exc)
        except Unavailable as exc:
            error = exc
        if error is not None:
            failures += 1
            if options.reconnects is not None and failures > options.reconnects:
                raise error
        read = True  # a stream that ended may have missed changes: the next starts with a read
        yield Sleep(core.retry.delay(max(failures, 1)))


def subscribe(url: str, options: WatchOptions) -> Flow[bool]:
    """Open the stream and wait for its subscription; False when it ended first."""
    response: httpx.Response = yield Open(url, {"Accept": "text/event-stream"}, options.idle_timeout_s)
    if response.status_code != 200:
        raise error_for(response)
    while (line := (yield NextLine())) is not None:
        if line.startswith(":") and line[1:].strip() == SUBSCRIBED:
            return True
    return False


def current(core: Core, session_id: str) -> Flow[Session | None]:
    try:
        return (yield from core.get(session_id))
    except NotFound:
        return None


def events() -> Items[ChangeEvent]:
    """The events of the open stream, until it ends (the service says why in
    a comment, or just closes it)."""
    data: list[str] = []
    while (line := (yield NextLine())) is not None:
        if not line:
            if data:
                try:
                    yield Emit(EVENT.decode("\n".join(data)))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise SessionStoreError(f"an event the client cannot read: {data!r}") from exc
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
