"""Per-API-key request rate limits, shared by every service instance through Redis.

A key entry of the auth file may carry ``rate = "200/s"`` (auth.Rate). Each
request made with such a key runs lua/rate_limit.lua once, through the
store's seam, on the key's own limiter key (keys.rate_limit): GCRA, one
string per API key holding when its budget is whole again, by the Redis
server's clock, gone once the key is idle. Every instance asks the same key,
so the budget is the key's, not each instance's. A key without a rate costs
nothing: the routes (routing.Endpoint) call the limiter only when some key
of the auth file has a rate, and only for the requests of such a key.

When Redis does not answer the limiter (a timeout, a lost connection, a
Redis that is full and refuses the limiter's SET) the request is let
through (fail open): the request itself then meets the same Redis and is
answered as it would be without limits (503, or a read served while
writes get 507), rather than every client being refused for a failure of
the limiter. Each such request is counted
(``sessionstore_rate_limit_errors``) and logged, at most once a minute.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from .auth import ApiKey
from .store import calls, keys
from .store.core import UNAVAILABLE, SessionStore

log = logging.getLogger("sessionstore.limits")

LOG_EVERY_S = 60.0  # at most one log line this often about a limiter that cannot reach Redis


class RateLimiter:
    """The rate limits of the keys that have one. ``refused``: a counter
    labelled by key id (requests answered 429); ``errors``: a counter of the
    requests let through because Redis did not answer the limiter."""

    def __init__(self, store: SessionStore, refused: Any, errors: Any) -> None:
        self.seam = store.seam
        self.script = store.scripts.rate_limit
        self.refused = refused
        self.errors = errors
        self._keys: dict[str, str] = {}  # key id -> its limiter's Redis key
        self._logged = -math.inf

    async def retry_after_s(self, key: ApiKey) -> int:
        """0 when ``key`` may make this request now (and it is counted),
        else the whole seconds (at least 1) until it may make one."""
        rate = key.rate
        if rate is None:
            return 0
        name = self._keys.get(key.id)
        if name is None:
            name = self._keys[key.id] = keys.rate_limit(key.id)
        interval = rate.interval_us
        try:
            args = calls.RateLimit(interval, interval * rate.requests).args()
            admitted, wait_us = await self.seam.run(self.script, (name,), args)
        except UNAVAILABLE as exc:
            self.errors.inc()
            now = time.monotonic()
            if now - self._logged >= LOG_EVERY_S:
                self._logged = now
                log.warning("rate limits not enforced: Redis did not answer the limiter (%s)", type(exc).__name__)
            return 0
        if admitted:
            return 0
        self.refused.labels(key.id).inc()
        return max(1, math.ceil(int(wait_us) / 1_000_000))
