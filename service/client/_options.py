"""What both clients are configured with, once, when they are made, and what they share."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Generic, Self, TypedDict, TypeVar, Unpack

import httpx

from ._cache import SeenVersions
from ._core import Core
from ._flow import Retry

H = TypeVar("H")  # httpx.Client or httpx.AsyncClient
TR = TypeVar("TR")  # the transport it takes


class Options(TypedDict, total=False):
    """``api_key``: sent as ``X-API-Key`` with every request. ``timeout``:
    seconds (or an ``httpx.Timeout``) per request, 5 by default. ``retry``:
    how requests that are safe to repeat are retried on a 503 or a failed
    connection. ``cache_size``: how many sessions' last versions are kept for
    ``If-None-Match`` (0: none). ``update_tries``: how many times ``update``
    reads and writes before it gives up on a 412 (10). ``headers``: more
    headers for every request."""

    api_key: str
    timeout: float | httpx.Timeout
    retry: Retry
    cache_size: int
    update_tries: int
    headers: Mapping[str, str]


def configure(base_url: str, tenant: str, namespace: str, options: Options) -> tuple[dict[str, Any], Core]:
    """The httpx client's arguments (one connection pool: the client's), and the operations' core."""
    headers = {"User-Agent": "sessionstore-client", **options.get("headers", {})}
    if "api_key" in options:
        headers["X-API-Key"] = options["api_key"]
    http = {"base_url": base_url, "headers": headers, "timeout": options.get("timeout", 5.0)}
    core = Core(
        tenant,
        namespace,
        options.get("retry", Retry()),
        SeenVersions(options.get("cache_size", 1024)),
        options.get("update_tries", 10),
    )
    return http, core


class ClientBase(Generic[H, TR]):
    """A client's settings and pool; ``Client`` and ``AsyncClient`` add the I/O."""

    _http_class: Callable[..., H]

    def __init__(
        self, base_url: str, *, tenant: str, namespace: str, transport: TR | None = None, **options: Unpack[Options]
    ) -> None:
        """``transport``: an httpx transport (sync for Client, async for
        AsyncClient), e.g. httpx's ASGI transport to run on an app in-process."""
        http, self._core = configure(base_url, tenant, namespace, options)
        self._http: H = self._http_class(transport=transport, **http)

    def in_namespace(self, namespace: str, *, tenant: str | None = None) -> Self:
        """The same client (the same pool: closing either closes both) on another namespace."""
        view = copy.copy(self)
        view._core = self._core.in_namespace(namespace, tenant)
        return view
