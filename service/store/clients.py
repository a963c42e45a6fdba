"""Making the Redis client the store runs on: a real Redis from a URL, or the
embedded in-memory store (fakeredis, running the same Lua scripts)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .multiplex import MultiplexedRedis

log = logging.getLogger("sessionstore.store")

SCHEMES = ("redis", "rediss", "unix")
MAX_CONNECTIONS = 256  # per process, to one Redis
EMBEDDED_CONNECTIONS = 100_000  # in-process: a "connection" is a queue, not a socket


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def validate_url(url: str) -> None:
    """Raises ValueError for a URL the store cannot use."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")


def connect(url: str | None, *, timeout_s: float = 1.0) -> Any:
    """An asyncio Redis client (auto-pipelining: see multiplex.py; its pool
    serves pub/sub and pipelines). Commands fail within about ``timeout_s`` when
    Redis does not answer, so the API can answer 503 in time; the client
    reconnects by itself on the next command once Redis is back."""
    if url is None:
        import fakeredis

        log.warning("no Redis URL given: serving from an embedded in-memory store; data lives in this process only")
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)
    validate_url(url)
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
    )
    return MultiplexedRedis.from_pool(pool)  # owns the pool: aclose() closes it
