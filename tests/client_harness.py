"""The Python client (service.client) against the real app in this process:
the AsyncClient on httpx's ASGI transport, the sync Client on a transport
that hands each request from its worker thread to the event loop that runs
the app. Both through ``InProcess``, which logs what is sent and can make
requests fail (for the retry tests), and behind the same awaitable face, so
that every test runs with either client."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx

from service.app import build_app
from service.auth import AuthConfig
from service.client import AsyncClient, Client
from service.config import Settings

from .conftest import SECRETS, TENANT, auth_document

BASE = "http://sessionstore"
NS = "client"
KINDS = ["async", "sync"]


@dataclass
class Fault:
    """The next ``times`` requests of ``method`` whose path ends with
    ``path`` fail: ``before`` (503 without reaching the app), ``after`` (the
    app applies it, then 503 is answered), ``refused`` (httpx.ConnectError: never
    sent), ``dropped`` (the app applies it, then httpx.ReadError)."""

    method: str
    path: str
    how: str
    times: int = 1


@dataclass
class Sent:
    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    status: int | None  # None: it failed without an answer


@dataclass
class InProcess(httpx.AsyncBaseTransport):
    app: Any
    log: list[Sent] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # run before each request reaches the app (e.g. another writer getting there first)
    before: Callable[[httpx.Request], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.inner = httpx.ASGITransport(app=self.app)

    def fail(self, method: str, path: str, how: str, times: int = 1) -> None:
        self.faults.append(Fault(method, path, how, times))

    def _fault(self, request: httpx.Request) -> str | None:
        for fault in self.faults:
            if fault.times and request.method == fault.method and request.url.path.endswith(fault.path):
                fault.times -= 1
                return fault.how
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        how = self._fault(request)
        sent = Sent(request.method, request.url.path, request.headers, body, None)
        self.log.append(sent)
        if how == "refused":
            raise httpx.ConnectError("connection refused (a test's fault)", request=request)
        if how == "before":
            return unavailable()
        if self.before is not None:
            await self.before(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if how == "dropped":
            raise httpx.ReadError("connection reset (a test's fault)", request=request)
        if how == "after":
            return unavailable()
        sent.status = response.status_code
        return response

    def sent(self, method: str | None = None) -> list[Sent]:
        return [s for s in self.log if method is None or s.method == method]


def unavailable() -> httpx.Response:
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "storage unavailable"}
    return httpx.Response(503, json=problem, headers={"content-type": "application/problem+json"})


class ThreadedASGI(httpx.BaseTransport):
    """A sync transport for a Client used in a worker thread of anyio: each
    request is run on the event loop (where the app and its Redis client live)."""

    def __init__(self, target: InProcess) -> None:
        self.target = target

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        copy = httpx.Request(request.method, request.url, headers=request.headers, content=request.read())

        async def forward() -> httpx.Response:
            response = await self.target.handle_async_request(copy)
            return httpx.Response(response.status_code, headers=response.headers, content=await response.aread())

        return anyio.from_thread.run(forward)


class Blocking:
    """A sync Client's methods as coroutines: each call in a worker thread of
    its own (so 20 of them at once are 20 threads using one Client)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        return call

    def in_namespace(self, namespace: str, **kwargs: Any) -> Blocking:
        return Blocking(self.client.in_namespace(namespace, **kwargs))

    async def all_ids(self, **kwargs: Any) -> list[str]:
        return await anyio.to_thread.run_sync(lambda: list(self.client.list_sessions(**kwargs)))


class Awaited:
    """An AsyncClient behind the same face as Blocking."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def in_namespace(self, namespace: str, **kwargs: Any) -> Awaited:
        return Awaited(self.client.in_namespace(namespace, **kwargs))

    async def all_ids(self, **kwargs: Any) -> list[str]:
        return [session_id async for session_id in self.client.list_sessions(**kwargs)]


@dataclass
class Harness:
    api: Any  # Blocking or Awaited: the client's methods, awaited
    wire: InProcess  # what it sent, and the faults to come
    http: httpx.AsyncClient  # plain requests to the same app (another writer)


@asynccontextmanager
async def in_process(redis: Any, kind: str, key: str = "writer", **options: Any) -> AsyncIterator[Harness]:
    """The app on ``redis`` (lifespan included) and a client of ``kind`` on it."""
    app = build_app(Settings(), redis=redis, auth=AuthConfig.from_document(auth_document()))
    wire = InProcess(app)
    settings: dict[str, Any] = {"tenant": TENANT, "namespace": NS, **options}
    if key:
        settings["api_key"] = SECRETS[key]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):
        if kind == "async":
            async with AsyncClient(BASE, transport=wire, **settings) as client:
                yield Harness(Awaited(client), wire, http)
        else:
            with Client(BASE, transport=ThreadedASGI(wire), **settings) as sync_client:
                yield Harness(Blocking(sync_client), wire, http)
