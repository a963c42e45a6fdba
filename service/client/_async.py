"""``AsyncClient``: the native API for asyncio (or trio), on one ``httpx.AsyncClient``.
Its methods are ``Client``'s, awaited; both run the flows of _core.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
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

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.stream: httpx.Response | None = None
        self.lines: AsyncIterator[str] | None = None

    async def perform(self, op: Any, step: Stepper[Any]) -> None:
        try:
            step.value = await self._perform(op)
        except httpx.TransportError as exc:
            step.error = exc

    async def _perform(self, op: Any) -> Any:
        if isinstance(op, Send):
            return await self.http.request(op.method, op.url, params=op.params, headers=op.headers, content=op.content)
        if isinstance(op, NextLine):
            return None if self.lines is None else await anext(self.lines, None)
        if isinstance(op, Sleep):
            return await anyio.sleep(op.seconds)
        assert isinstance(op, Open), op
        await self.close()
        timeout = stream_timeout(self.http.timeout, op.read_timeout_s)
        request = self.http.build_request("GET", op.url, headers=op.headers, timeout=timeout)
        response = await self.http.send(request, stream=True)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
        else:
            self.stream, self.lines = response, response.aiter_lines()
        return response

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream = self.lines = None


class AsyncWatch(AsyncIterator[WatchEvent]):
    """The events of ``AsyncClient.watch``: ``async with client.watch(id) as
    events: async for event in events: ...``. Entering returns once the change
    feed is subscribed; leaving, or ``aclose``, ends the stream."""

    def __init__(self, events: AsyncGenerator[WatchEvent | Subscribed, None]) -> None:
        self._events = events
        self._started = False

    async def __anext__(self) -> WatchEvent:
        self._started = True
        while isinstance(item := await anext(self._events), Subscribed):
            pass
        return item

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        if not self._started:
            self._started = True
            await anext(self._events)  # the first subscription's mark
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncClient(ClientBase[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The native API of one namespace of one tenant, on one connection pool:
    ``Client``'s methods, to be awaited. See ``Options`` for the settings."""

    _http_class = httpx.AsyncClient

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, flow: Generator[Any, Any, T]) -> T:
        step, io = Stepper(flow), _IO(self._http)
        try:
            while (op := step.advance()) is not None:
                await io.perform(op, step)
        finally:
            await io.close()
        return step.result

    async def _iterate(self, flow: Items[E]) -> AsyncGenerator[E, None]:
        step, io = Stepper(flow), _IO(self._http)
        try:
            while (op := step.advance()) is not None:
                if isinstance(op, Emit):
                    yield op.item
                else:
                    await io.perform(op, step)
        finally:
            with anyio.CancelScope(shield=True):
                await io.close()
            flow.close()

    # -- sessions -------------------------------------------------------------------

    async def get(self, session_id: str) -> Session:
        return await self._run(self._core.get(session_id))

    async def put(
        self, session_id: str, properties: Mapping[str, Any], *, ttl: int | None = None, if_match: int | None = None,
        create_only: bool = False,
    ) -> Session:  # fmt: skip
        return await self._run(
            self._core.put(session_id, properties, ttl=ttl, if_match=if_match, create_only=create_only)
        )

    async def patch(
        self, session_id: str, properties: Mapping[str, Any] | None, *, ttl: int | None = None,
        if_match: int | None = None, create_only: bool = False,
    ) -> Session:  # fmt: skip
        return await self._run(
            self._core.patch(session_id, properties, ttl=ttl, if_match=if_match, create_only=create_only)
        )

    async def delete(self, session_id: str, *, if_match: int | None = None) -> None:
        await self._run(self._core.delete(session_id, if_match=if_match))

    async def touch(self, session_id: str) -> None:
        await self._run(self._core.touch(session_id))

    async def update(
        self, session_id: str, fn: Update, *, create: bool = False, ttl: int | None = None, tries: int | None = None
    ) -> Session:
        return await self._run(self._core.update(session_id, fn, create=create, ttl=ttl, tries=tries))

    async def batch_get(self, session_ids: Iterable[str]) -> BatchResult:
        return await self._run(self._core.batch_get(session_ids))

    async def list_page(self, cursor: str | None = None, *, limit: int = 100) -> SessionPage:
        return await self._run(self._core.page(cursor, limit))

    def list_sessions(self, *, page_size: int = 100) -> AsyncIterator[str]:
        return self._iterate(self._core.session_ids(page_size))

    def watch(
        self, session_id: str, *, read_first: bool = False, reconnects: int | None = 10, idle_timeout_s: float = 45.0
    ) -> AsyncWatch:
        options = WatchOptions(read_first, reconnects, idle_timeout_s)
        return AsyncWatch(self._iterate(watch(self._core, session_id, options)))

    # -- properties -----------------------------------------------------------------

    async def get_property(self, session_id: str, name: str) -> Any:
        return await self._run(self._core.get_property(session_id, name))

    async def put_property(
        self, session_id: str, name: str, value: Any, *, ttl: int | None = None, if_match: int | None = None
    ) -> int:
        return await self._run(self._core.put_property(session_id, name, value, ttl=ttl, if_match=if_match))

    async def delete_property(self, session_id: str, name: str, *, if_match: int | None = None) -> int:
        return await self._run(self._core.delete_property(session_id, name, if_match=if_match))

    async def increment(self, session_id: str, name: str, by: float = 1) -> int | float:
        return await self._run(self._core.increment(session_id, name, by))
