"""``Client``: the native API, blocking, on one ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from ._core import Update
from ._flow import Emit, Items, NextLine, Open, Send, Sleep, Stepper, stream_timeout
from ._models import BatchResult, Session, SessionPage, WatchEvent
from ._options import ClientBase
from ._watch import Subscribed, WatchOptions, watch

T = TypeVar("T")
E = TypeVar("E")


class _IO:
    """Performs one flow's I/O on the client's pool; holds its open stream."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.stream: httpx.Response | None = None
        self.lines: Iterator[str] | None = None

    def perform(self, op: Any, step: Stepper[Any]) -> None:
        try:
            step.value = self._perform(op)
        except httpx.TransportError as exc:
            step.error = exc

    def _perform(self, op: Any) -> Any:
        if isinstance(op, Send):
            return self.http.request(op.method, op.url, params=op.params, headers=op.headers, content=op.content)
        if isinstance(op, NextLine):
            return None if self.lines is None else next(self.lines, None)
        if isinstance(op, Sleep):
            return time.sleep(op.seconds)
        assert isinstance(op, Open), op
        self.close()
        timeout = stream_timeout(self.http.timeout, op.read_timeout_s)
        response = self.http.send(
            self.http.build_request("GET", op.url, headers=op.headers, timeout=timeout), stream=True
        )
        if response.status_code != 200:
            response.read()
            response.close()
        else:
            self.stream, self.lines = response, response.iter_lines()
        return response

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self.lines = None


class Watch(Iterator[WatchEvent]):
    """The events of ``Client.watch``. Entering its ``with`` returns once the
    change feed is subscribed (changes from then on are all seen); leaving it,
    or ``close``, ends the stream."""

    def __init__(self, events: Generator[WatchEvent | Subscribed, None, None]) -> None:
        self._events = events
        self._started = False

    def __next__(self) -> WatchEvent:
        self._started = True
        while isinstance(item := next(self._events), Subscribed):
            pass
        return item

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> Self:
        if not self._started:
            self._started = True
            next(self._events)  # the first subscription's mark
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(ClientBase[httpx.Client, httpx.BaseTransport]):
    """The native API of one namespace of one tenant, on one connection pool.
    Thread-safe. Every error is a ``SessionStoreError``; see ``Options`` for
    the settings."""

    _http_class = httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _run(self, flow: Generator[Any, Any, T]) -> T:
        step, io = Stepper(flow), _IO(self._http)
        try:
            while (op := step.advance()) is not None:
                io.perform(op, step)
        finally:
            io.close()
        return step.result

    def _iterate(self, flow: Items[E]) -> Generator[E, None, None]:
        step, io = Stepper(flow), _IO(self._http)
        try:
            while (op := step.advance()) is not None:
                if isinstance(op, Emit):
                    yield op.item
                else:
                    io.perform(op, step)
        finally:
            io.close()
            flow.close()

    # -- sessions -------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The session (NotFound if there is none), asked for with
        ``If-None-Match`` when this client has seen a version of it."""
        return self._run(self._core.get(session_id))

    def put(
        self, session_id: str, properties: Mapping[str, Any], *, ttl: int | None = None, if_match: int | None = None,
        create_only: bool = False,
    ) -> Session:  # fmt: skip
        """Create or replace the session; ``ttl``: its idle TTL in seconds;
        ``if_match``: only if it is at that version; ``create_only``: only if it does not exist."""
        return self._run(self._core.put(session_id, properties, ttl=ttl, if_match=if_match, create_only=create_only))

    def patch(
        self, session_id: str, properties: Mapping[str, Any] | None, *, ttl: int | None = None,
        if_match: int | None = None, create_only: bool = False,
    ) -> Session:  # fmt: skip
        """A JSON merge patch of the properties (a member set to None is
        deleted, an object is merged in; None deletes them all)."""
        return self._run(self._core.patch(session_id, properties, ttl=ttl, if_match=if_match, create_only=create_only))

    def delete(self, session_id: str, *, if_match: int | None = None) -> None:
        self._run(self._core.delete(session_id, if_match=if_match))

    def touch(self, session_id: str) -> None:
        """Move the idle expiry on, writing nothing."""
        self._run(self._core.touch(session_id))

    def update(
        self, session_id: str, fn: Update, *, create: bool = False, ttl: int | None = None, tries: int | None = None
    ) -> Session:
        """Read the session, call ``fn`` with (a copy of) its properties, and
        write what it returns only if nobody wrote in between (If-Match), again
        from the read on a 412, up to ``tries`` times. ``create``: a missing
        session starts as ``{}`` (created only if still missing)."""
        return self._run(self._core.update(session_id, fn, create=create, ttl=ttl, tries=tries))

    def batch_get(self, session_ids: Iterable[str]) -> BatchResult:
        return self._run(self._core.batch_get(session_ids))

    def list_page(self, cursor: str | None = None, *, limit: int = 100) -> SessionPage:
        return self._run(self._core.page(cursor, limit))

    def list_sessions(self, *, page_size: int = 100) -> Iterator[str]:
        """Every session id of the namespace, fetched a page at a time."""
        return self._iterate(self._core.session_ids(page_size))

    def watch(
        self, session_id: str, *, read_first: bool = False, reconnects: int | None = 10, idle_timeout_s: float = 45.0
    ) -> Watch:
        """The session's changes, as they are committed: ``ChangeEvent``s,
        and a ``Resync`` (the session read again) after every reconnection. See ``WatchOptions``."""
        options = WatchOptions(read_first, reconnects, idle_timeout_s)
        return Watch(self._iterate(watch(self._core, session_id, options)))

    # -- properties -----------------------------------------------------------------

    def get_property(self, session_id: str, name: str) -> Any:
        return self._run(self._core.get_property(session_id, name))

    def put_property(
        self, session_id: str, name: str, value: Any, *, ttl: int | None = None, if_match: int | None = None
    ) -> int:
        """Write one property (``ttl``: it alone expires then); the session's new version."""
        return self._run(self._core.put_property(session_id, name, value, ttl=ttl, if_match=if_match))

    def delete_property(self, session_id: str, name: str, *, if_match: int | None = None) -> int:
        return self._run(self._core.delete_property(session_id, name, if_match=if_match))

    def increment(self, session_id: str, name: str, by: float = 1) -> int | float:
        """Add ``by`` to a number property, atomically (never retried: it would count twice)."""
        return self._run(self._core.increment(session_id, name, by))
