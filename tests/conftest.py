"""Fixtures: every storage and API test runs twice, on the embedded store
(fakeredis) and on a real redis-server that these fixtures start on a free
port (never the machine's shared Redis)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import httpx
import pytest

from service.app import build_app
from service.auth import AuthConfig
from service.config import Settings
from service.store import clients
from service.store.clients import EMBEDDED_CONNECTIONS
from service.store.core import SessionStore

TENANT = "739483"
OTHER_TENANT = "123456"
SECRETS = {
    "admin": "admin-secret",  # TENANT: read, write, admin
    "writer": "writer-secret",  # TENANT: read, write
    "reader": "reader-secret",  # TENANT: read
    "other": "other-secret",  # OTHER_TENANT: read, write, admin
    "all": "all-tenants-secret",  # "*": read, write, admin
}


def auth_document() -> dict[str, Any]:
    import hashlib

    def entry(key_id: str, tenant: str, scopes: list[str]) -> dict[str, Any]:
        return {"id": key_id, "tenant": tenant, "sha256": hashlib.sha256(SECRETS[key_id].encode()).hexdigest(), "scopes": scopes}

    return {
        "keys": [
            entry("admin", TENANT, ["read", "write", "admin"]),
            entry("writer", TENANT, ["read", "write"]),
            entry("reader", TENANT, ["read"]),
            entry("other", OTHER_TENANT, ["admin"]),
            entry("all", "*", ["admin"]),
        ]
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A private redis-server on a free port, in its own directory."""

    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="sessionstore-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run the README's test command, which installs it")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.directory, *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "fake" and request.node.get_closest_marker("real_redis_only"):
        pytest.skip("needs a real redis-server")
    if request.param == "real" and os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    return str(request.param)


@pytest.fixture
async def redis_factory(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Any]]:
    """Makes clients of one fresh, empty Redis (several clients: several service instances)."""
    made: list[Any] = []
    if backend == "fake":
        server = fakeredis.FakeServer()

        def make() -> Any:
            made.append(fakeredis.FakeAsyncRedis(server=server, max_connections=EMBEDDED_CONNECTIONS))
            return made[-1]
    else:
        real: RedisServer = request.getfixturevalue("redis_server")

        def make() -> Any:
            made.append(clients.connect(real.url, timeout_s=5))  # the production client
            return made[-1]

        first = make()
        await first.flushall()
        await first.script_flush()
    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def redis(redis_factory: Callable[[], Any]) -> Any:
    return redis_factory()


@pytest.fixture
def store(redis: Any) -> SessionStore:
    return SessionStore(redis)


@asynccontextmanager
async def serve_app(
    redis: Any, settings: Settings | None = None, auth: dict[str, Any] | None = None, *, open_access: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process (lifespan included), with an httpx client on it.
    ``open_access``: no auth file, as on loopback in development."""
    config = None if open_access else AuthConfig.from_document(auth or auth_document())
    app = build_app(settings or Settings(), redis=redis, auth=config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sessionstore") as client:
            yield client


@pytest.fixture
async def client(redis: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(redis) as c:
        yield c


def key(name: str) -> dict[str, str]:
    """Headers carrying one of the test API keys, in the LivePerson way."""
    return {"maven-api-key": SECRETS[name]}
