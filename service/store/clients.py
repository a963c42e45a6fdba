"""Making the Redis client the store runs on: a real Redis from a URL (one
server, or a Redis Cluster with ``redis+cluster://``), or the embedded
in-memory store (fakeredis, running the same Lua scripts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .multiplex import MultiplexedRedis

if TYPE_CHECKING:
    from .cluster_multiplex import MultiplexedCluster

log = logging.getLogger("sessionstore.store")

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
TLS_SCHEMES = ("rediss", "rediss+cluster")
DEFAULT_PORT = 6379  # of a cluster node given without one
MAX_CONNECTIONS = 256  # per process, to one Redis
EMBEDDED_CONNECTIONS = 100_000  # in-process: a "connection" is a queue, not a socket
# the RedisTls fields: the command-line option that gives each (named in
# error messages), and redis-py's keyword for it
TLS_OPTIONS = {"ca_file": "--redis-tls-ca", "cert_file": "--redis-tls-cert", "key_file": "--redis-tls-key"}
TLS_KWARGS = {"ca_file": "ssl_ca_certs", "cert_file": "ssl_certfile", "key_file": "ssl_keyfile"}


@dataclass(frozen=True)
class RedisTls:
    """The files of a TLS connection to Redis (``rediss://`` and
    ``rediss+cluster://``), each a PEM file: the CA the server's certificate
    must be signed by (default: the system's CAs), and the client certificate
    and its private key, for a Redis that asks for one
    (``tls-auth-clients yes``). The server's certificate is always checked,
    host name included."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def of(cls, ca_file: str | None, cert_file: str | None, key_file: str | None) -> RedisTls | None:
        """The files, or None when none is given (a plain connection)."""
        tls = cls(ca_file, cert_file, key_file)
        return tls if tls.given() else None

    def given(self) -> dict[str, str]:
        """The files given, by field name."""
        return {name: value for name in TLS_OPTIONS if (value := getattr(self, name))}

    def ssl_kwargs(self) -> dict[str, str]:
        """redis-py's keywords for the files given (its SSLConnection and RedisCluster take the same)."""
        return {TLS_KWARGS[name]: value for name, value in self.given().items()}


def validate_tls(url: str | None, tls: RedisTls | None) -> None:
    """Raises ValueError (naming the option) for TLS files the store cannot
    use with this URL: files with a URL that is not TLS, a client certificate
    without its key (or the other way round), a file that cannot be read or
    is not PEM of the right kind."""
    given = tls.given() if tls is not None else {}
    if not given or tls is None:
        return
    options = ", ".join(TLS_OPTIONS[name] for name in given)
    if url is None:
        raise ValueError(f"{options}: TLS files need a rediss:// --redis-url; the embedded store has no TLS")
    scheme = urlsplit(url).scheme
    if scheme not in TLS_SCHEMES:
        raise ValueError(f"{options}: TLS files need a rediss:// or rediss+cluster:// Redis URL, not {scheme}://")
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ValueError("--redis-tls-cert and --redis-tls-key go together: give the client certificate and its key")
    for name, path in given.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{TLS_OPTIONS[name]}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context()
    if tls.ca_file:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"--redis-tls-ca: {tls.ca_file} holds no PEM CA certificate ({exc})") from None
    if tls.cert_file and tls.key_file:

        def no_passphrase() -> bytes:
            raise ValueError("encrypted")

        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"--redis-tls-cert, --redis-tls-key: cannot load the client certificate {tls.cert_file} with the key "
                f"{tls.key_file} (PEM, the key not encrypted, and the key of that certificate): {exc}"
            ) from None


_QUERY_SECRET = re.compile(r"([?&;](?:ssl_)?password=)[^&;#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages: the one in
    the user info (``redis://user:***@host``, with any number of hosts after
    it) and a ``password=`` query argument. Cautious with malformed URLs: a
    password holding an unescaped ``/``, ``?``, ``#`` or ``@`` is hidden
    too, even where that hides a bit more than the password."""
    url = _QUERY_SECRET.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # the user info ends at the last "@"; a password holding "/" or "#" (not
    # escaped) ends the URL's authority early, so look at the whole rest
    userinfo, at, after = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user, _, password = userinfo.partition(":")
    if not password:
        return url  # an empty password: nothing to hide
    return f"{scheme}://{user}:***@{after}"


def validate_url(url: str, tls: RedisTls | None = None) -> None:
    """Raises ValueError for a URL (and TLS files) the store cannot use. The
    messages never quote the URL's user info."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme != "unix":
        # a password holding "/", "?" or "#" not %-escaped ends the host part
        # early: refuse it here rather than quote part of it in an error later
        # (a cluster URL has no query: its nodes are checked in cluster_nodes)
        malformed = "@" in parts.path + parts.fragment + (parts.query if scheme in CLUSTER_SCHEMES else "")
        if not malformed and scheme not in CLUSTER_SCHEMES:
            try:
                parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            except ValueError:
                malformed = True
        if malformed:
            raise ValueError(
                "malformed Redis URL: %-escape the characters : / ? # @ % in its user name and password "
                f"(e.g. %2F for /); shown without its password: {redact(url)}"
            )
    if scheme in CLUSTER_SCHEMES:
        cluster_nodes(url)
    validate_tls(url, tls)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port list of a ``redis+cluster://`` URL (DEFAULT_PORT, 6379, when left
    out). Raises ValueError for a malformed one."""
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster URL names no database (a cluster has only database 0)")
    nodes = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not colon:
            host, port = item, str(DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad Redis Cluster node {item!r}: expected host:port")
        nodes.append((host, int(port)))
    return nodes


@contextlib.contextmanager
def connection_lost_as_redis_error() -> Iterator[None]:
    """A RedisConnectionError for what redis-py's cluster client raises when
    it closes a node's connections while commands are on them (it does, on
    reading the slot map again after a node failed): AttributeError or
    RuntimeError from a closed transport. Those are a lost connection, to be
    answered 503 like any other, not a bug of the caller."""
    try:
        yield
    except (AttributeError, RuntimeError) as exc:
        raise RedisConnectionError(f"connection closed during a cluster topology change ({type(exc).__name__})") from exc


class ClusterClient(RedisCluster):
    """redis-py's cluster client, with these changes:

    - every command waits for the cluster's slot map first (redis-py 8.1
      routes a keyed command that comes before the map is read as a keyless
      one, to whichever node, and the MOVED answers of a burst of such
      commands make it reset connections that other commands are using);
    - a burst of more concurrent commands (and pipelines) than a node has
      connections waits for a free one, up to the timeout, as a single
      server's blocking pool does, instead of failing at once
      (redis-py's per-node pools raise MaxConnectionsError);
    - a connection that redis-py closes under a command (as it reads the
      slot map again after a node failed) fails that command with a
      RedisConnectionError, so it is answered 503 (see
      connection_lost_as_redis_error);
    - primary_connection(key): a connection of the key's primary, for
      commands that must share one;
    - aclose() takes the argument a single server's client takes, so callers
      close either the same way."""

    def __init__(self, *args: Any, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait_s = timeout_s
        # its auto-pipelining (cluster_multiplex.py), made by the store's seam
        # (seam.py) with its first store; closed with the client
        self.multiplexer: MultiplexedCluster | None = None
        # each command or pipeline holds at most one connection of a node: so no node runs out
        self._slots = asyncio.Semaphore(kwargs.get("max_connections", 100))

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisConnectionError(f"no free Redis Cluster connection within {self._wait_s} s") from None
        try:
            yield
        finally:
            self._slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with connection_lost_as_redis_error():
            await self.initialize()  # reads the slot map once; a no-op after that
            async with self._slot():
                return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def execute_in_slot(*args: Any, **kwargs: Any) -> Any:
            with connection_lost_as_redis_error():
                await self.initialize()
                async with self._slot():
                    return await execute(*args, **kwargs)

        pipe.execute = execute_in_slot  # type: ignore[method-assign]
        return pipe

    @contextlib.asynccontextmanager
    async def primary_connection(self, key: str) -> AsyncIterator[Any]:
        """A connection of its own to the primary that owns ``key``'s slot,
        for commands that must share one (a write and its WAIT: see
        pinned.py); within the same limit of connections as every other
        command. A connection error makes the client read the slot map again
        before its next command (the node may be gone: a failover)."""
        with connection_lost_as_redis_error():
            await self.initialize()
            async with self._slot():
                node = self.get_node_from_key(key)
                if node is None:  # pragma: no cover - redis-py raises SlotNotCoveredError instead
                    raise RedisConnectionError(f"no primary holds the slot of {key!r}")
                connection = node.acquire_connection()
                try:
                    yield connection
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    self.topology_changed()
                    raise
                finally:
                    node.release(connection)

    def topology_changed(self) -> None:
        """Read the slot map again before the next command (as redis-py does
        after a connection error; under its lock, once for many callers)."""
        self._initialize = True

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        multiplexer, self.multiplexer = self.multiplexer, None
        if multiplexer is not None:
            await multiplexer.aclose()
        await super().aclose()


def connect_cluster(url: str, *, timeout_s: float, tls: RedisTls | None = None) -> ClusterClient:
    """A client of the Redis Cluster the URL names (any of its nodes will
    do: the others are discovered). It keeps a pool of connections per node;
    commands go to the node that owns their key's slot. ``tls``: the files
    of a ``rediss+cluster://`` URL."""
    validate_url(url, tls)
    parts = urlsplit(url)
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ssl=parts.scheme == "rediss+cluster",
        max_connections=MAX_CONNECTIONS,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        timeout_s=timeout_s,
        retry=Retry(NoBackoff(), 1),  # one more try, after the topology is read again (a failover)
        health_check_interval=0,
        **(tls.ssl_kwargs() if tls is not None else {}),
    )


def connect(url: str | None, *, timeout_s: float = 1.0, tls: RedisTls | None = None) -> Any:
    """An asyncio Redis client (auto-pipelining: see multiplex.py; its pool
    serves pub/sub and pipelines); for a ``redis+cluster://`` URL, redis-py's
    cluster client (the store auto-pipelines it per primary: cluster_multiplex.py). Commands fail within about ``timeout_s`` when
    Redis does not answer, so the API can answer 503 in time; the client
    reconnects by itself on the next command once Redis is back. ``tls``:
    the CA, client certificate and key files of a ``rediss://`` or
    ``rediss+cluster://`` URL (ValueError for files with another URL, or
    files that cannot be used)."""
    if url is None:
        validate_tls(url, tls)  # no files without a URL
        import fakeredis

        log.warning("no Redis URL given: serving from an embedded in-memory store; data lives in this process only")
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)
    if urlsplit(url).scheme in CLUSTER_SCHEMES:
        return connect_cluster(url, timeout_s=timeout_s, tls=tls)  # which checks the URL and files
    validate_url(url, tls)
    # A blocking pool: a burst of more concurrent commands than connections
    # waits for a free one (up to timeout_s) instead of failing at once.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        # TLS: redis-py checks the server's certificate and host name by default
        **(tls.ssl_kwargs() if tls is not None else {}),
    )
    return MultiplexedRedis.from_pool(pool)  # owns the pool: aclose() closes it
