"""Fixtures: every storage and API test runs three times: on the embedded
store (fakeredis), on a real redis-server that these fixtures start on a free
port, and on a private Redis Cluster of three primaries and three replicas
(never the machine's shared Redis)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
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

from .tls_certs import TlsFiles

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
    """A private redis-server on a free port, in its own directory.

    ``tls``: it serves TLS only, on ``port`` (the plain port is off), with
    these certificates; ``tls_auth_clients`` is its tls-auth-clients (``yes``:
    a client must show a certificate signed by the CA; ``optional``; ``no``).
    ``acl``: the lines of its ACL file, e.g. ``["user default off",
    "user alice on >secret ~* &* +@all"]``."""

    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="sessionstore-redis-"))
    tls: TlsFiles | None = None
    tls_auth_clients: str = "yes"
    acl: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def url_as(self, user: str, password: str) -> str:
        """The URL with a user and password (not escaped: give plain ones)."""
        return self.url.replace("://", f"://{user}:{password}@", 1)

    def arguments(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.server_cert), "--tls-key-file", str(self.tls.server_key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", self.tls_auth_clients,
            ]  # fmt: skip
        if self.acl:
            acl_file = os.path.join(self.directory, "users.acl")
            with open(acl_file, "w") as out:
                out.write("".join(line + "\n" for line in self.acl))
            listen += ["--aclfile", acl_file]
        return [*listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.directory]

    def _probe(self) -> bool:
        """Whether it answers a PING: PONG, or (with ACL users and the default
        user off) an answer that asks to authenticate first."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as raw:
            if self.tls is None:
                raw.sendall(b"PING\r\n")
                reply = raw.recv(64)
            else:
                context = ssl.create_default_context(cafile=str(self.tls.ca))
                context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run the README's test command, which installs it")
        log_path = os.path.join(self.directory, "redis-server.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([binary, *self.arguments(), *self.extra], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(log_path, errors="replace") as log_text:
                    raise RuntimeError(f"redis-server exited at start on port {self.port}:\n{log_text.read()[-2000:]}")
            try:
                if self._probe():
                    return self
            except OSError:  # ssl.SSLError too
                pass
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


# what each HTTP server of serve --server says in its log: a worker process has
# stopped; the shutdown grace ran out with a request still running (uvicorn
# cancels it, granian kills the worker); and the prefix of its loggers' names
SERVER_SAYS = {
    "uvicorn": {"stopped": "Finished server process", "grace over": "timeout graceful shutdown exceeded",
                "logger": "uvicorn"},
    "granian": {"stopped": "Stopped worker-", "grace over": "Killing worker-1 after it refused to gracefully stop",
                "logger": "_granian"},
}  # fmt: skip


def serve_process(
    *args: str, env: dict[str, str] | None = None, ready: str = "/readyz", port: int | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``sessionstore serve`` in a process of its own on ``port`` (default: a
    free one), with no SESSIONSTORE_* variables from the test's environment
    but ``env``, returned once ``ready`` answers 200; its output in a pipe,
    for stop_process."""
    port = port or free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTORE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**clean, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            if httpx.get(url + ready, timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the service did not start: " + process.communicate()[0])


def stop_process(process: subprocess.Popen[str], timeout: float = 30, *, terminate: bool = True) -> tuple[int, str]:
    """SIGTERM (unless sent already: a second one may come as the process
    exits, when Python no longer handles it) and wait for the end; its exit
    code and output."""
    if terminate:
        process.send_signal(signal.SIGTERM)
    try:
        output = process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
        raise AssertionError("the service did not stop in time:\n" + output) from None
    return process.returncode, output


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > 55535 or port in taken or port + 10000 in taken:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        taken.update((port, port + 10000))
        return port


@dataclass
class RedisClusterServers:
    """A private Redis Cluster: six redis-servers (three primaries, three
    replicas) on free ports, joined with ``redis-cli --cluster create``.

    ``tls``: every node serves TLS only, on its port (the plain port is off),
    with these certificates, and the cluster bus and replication run over
    TLS too (``tls-cluster``, ``tls-replication``); ``tls_auth_clients`` is
    each node's tls-auth-clients; the URL is then ``rediss+cluster://``.
    ``acl``: the lines of every node's ACL file (as RedisServer's), with
    ``auth``, the user and password that redis-cli and the replicas (their
    ``masteruser``, ``masterauth``) log in as."""

    size: int = 6
    node_timeout_ms: int = 2000  # how long a primary may be silent before its replica takes over
    servers: list[RedisServer] = field(default_factory=list)
    tls: TlsFiles | None = None
    tls_auth_clients: str = "yes"
    acl: list[str] = field(default_factory=list)
    auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3])

    def url_as(self, user: str, password: str) -> str:
        """The URL with a user and password (not escaped: give plain ones)."""
        return self.url.replace("://", f"://{user}:{password}@", 1)

    def cli_options(self) -> list[str]:
        """redis-cli's options to reach a node: TLS with the client certificate, the user and password."""
        options: list[str] = []
        if self.tls is not None:
            options += ["--tls", "--cacert", str(self.tls.ca),
                        "--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key)]  # fmt: skip
        if self.auth is not None:
            options += ["--user", self.auth[0], "--pass", self.auth[1], "--no-auth-warning"]
        return options

    def start(self) -> RedisClusterServers:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed: run the README's test command, which installs it")
        taken: set[int] = set()
        try:
            for _ in range(self.size):
                server = RedisServer(port=free_cluster_port(taken), tls=self.tls,
                                     tls_auth_clients=self.tls_auth_clients, acl=self.acl)  # fmt: skip
                server.extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(self.node_timeout_ms),
                                "--cluster-config-file", f"{server.directory}/nodes-{server.port}.conf"]
                if self.tls is not None:
                    # the cluster bus (on port + 10000) and replication over TLS too; a node
                    # connecting to another shows the client certificate (the server's is
                    # for server authentication only: with tls-auth-clients yes, refused)
                    server.extra += ["--tls-cluster", "yes", "--tls-replication", "yes",
                                     "--tls-client-cert-file", str(self.tls.client_cert),
                                     "--tls-client-key-file", str(self.tls.client_key)]  # fmt: skip
                if self.auth is not None:
                    server.extra += ["--masteruser", self.auth[0], "--masterauth", self.auth[1]]
                self.servers.append(server.start())
            subprocess.run(
                [cli, *self.cli_options(), "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )
            # every node says cluster_state:ok and all agree on who owns which slot
            deadline = time.monotonic() + 30
            # and every replica has caught up with its primary (a replica still in its
            # handshake can neither confirm a WAIT nor be promoted)
            while not (all(self._ok(cli, s.port) for s in self.servers) and self._agreed(cli) and self._replicating(cli)):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.1)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _ok(self, cli: str, port: int) -> bool:
        info = subprocess.run([cli, *self.cli_options(), "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
                              capture_output=True, text=True, timeout=10, check=False).stdout
        return "cluster_state:ok" in info

    def _replicating(self, cli: str) -> bool:
        links = 0
        for server in self.servers:
            info = subprocess.run(
                [cli, *self.cli_options(), "-h", "127.0.0.1", "-p", str(server.port), "info", "replication"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout  # fmt: skip
            if "role:slave" in info:
                if "master_link_status:up" not in info:
                    return False
                links += 1
        return links == self.size // 2

    def _agreed(self, cli: str) -> bool:
        for server in self.servers:
            check = subprocess.run([cli, *self.cli_options(), "--cluster", "check", f"127.0.0.1:{server.port}"],
                                   capture_output=True, text=True, timeout=10, check=False).stdout
            if "[OK] All nodes agree about slots configuration." not in check or "[OK] All 16384 slots covered." not in check:
                return False
        return True

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, on a free port."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers().start()
    yield cluster
    cluster.cleanup()


# The test modules that run on the Redis Cluster as well (the storage core and
# the APIs); the others (operations, outages, the multiplexer...) are about one
# standalone server and run on the other two backends only.
CLUSTER_MODULES = {
    "test_store",
    "test_liveperson",
    "test_liveperson_v2",
    "test_retention",
    "test_emporix",
    "test_genesys",
    "test_native",
    "test_transfer",
    "test_client",
    "test_client_update",
    "test_console_api",
    "test_customers",
    "test_customers_api",
    "test_writes",
    "test_rate_limits",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the cluster runs of the modules not in CLUSTER_MODULES, and
    the other backends' runs of the tests marked cluster_only."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if backend == "cluster":
            left_out = item.module.__name__.rpartition(".")[2] not in CLUSTER_MODULES
        else:
            left_out = backend is not None and item.get_closest_marker("cluster_only") is not None
        (drop if left_out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["fake", "real", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "fake" and request.node.get_closest_marker("real_redis_only"):
        pytest.skip("needs a real redis-server")
    if request.param != "fake" and os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    if request.param == "cluster":
        marker = request.node.get_closest_marker("standalone_only")
        if marker:
            pytest.skip("standalone Redis only: " + (marker.args[0] if marker.args else "see the test"))
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
        url = (request.getfixturevalue("redis_cluster") if backend == "cluster" else request.getfixturevalue("redis_server")).url

        def make() -> Any:
            made.append(clients.connect(url, timeout_s=5))  # the production client
            return made[-1]

        first = make()
        await first.flushall()  # on a cluster, redis-py sends these two to every primary
        await first.script_flush()
    yield make
    for client in made:
        await client.aclose()


async def fresh_redis(url: str | None) -> Any:
    """A client of an emptied store, for a test that makes its own per example
    (hypothesis): a new embedded store with no URL, else the Redis (or
    cluster) at ``url``, flushed."""
    if url is None:
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)
    client = clients.connect(url, timeout_s=5)
    await client.flushall()
    return client


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
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://sessionstore") as client:
        yield client


@pytest.fixture
async def client(redis: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(redis) as c:
        yield c


def key(name: str) -> dict[str, str]:
    """Headers carrying one of the test API keys, in the LivePerson way."""
    return {"maven-api-key": SECRETS[name]}
