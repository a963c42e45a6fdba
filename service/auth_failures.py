"""Failed authentication, counted and slowed per client address.

A request that presents an API key the auth file does not know is a failed
authentication: it is answered 401 and counted, in total in the metric
``sessionstore_auth_failures`` and per client address here. An address
with ``limit`` failures within ``window_s`` seconds is then refused for
``window_s`` seconds: every request of it that needs a key is answered 429
with Retry-After, its key not even looked at, so a client guessing keys
gets at most ``limit`` guesses per window from one address (per service
instance: each instance counts its own). Until an address reaches the
limit nothing changes for it, and an address with no failures costs a
request nothing (the check is one test of an empty dict).

The client address is the ASGI scope's client: behind a proxy, the one the
HTTP server took from the proxy's headers (uvicorn's ``--proxy-headers``
and ``--forwarded-allow-ips``), else the proxy's own. IPv6 addresses are
counted by their /64 network (one host usually holds the whole /64).
Memory is bounded: at most ``capacity`` addresses are remembered, the
least recently failing one forgotten first.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .auth import Denied

log = logging.getLogger("sessionstore.auth")

TOO_MANY = "too many failed authentications from this address; retry after {} s"


def address_of(scope: Mapping[str, Any]) -> str | None:
    """The client address a failure counts against (None: unknown, a Unix socket)."""
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])
    if ":" in host:
        try:
            return str(ipaddress.IPv6Network((host.split("%")[0], 64), strict=False))
        except ValueError:
            return host
    return host


class AuthFailures:
    """The failures of the last window per address, and the addresses refused now."""

    def __init__(
        self, limit: int, window_s: float, capacity: int, counted: Any, refused: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.limit = limit
        self.window_s = window_s
        self.capacity = capacity
        self.counted = counted  # a counter: failed authentications
        self.refused = refused  # a counter: requests refused because their address failed too often
        self.clock = clock
        self.failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, failures)
        self.blocked: OrderedDict[str, float] = OrderedDict()  # address -> refused until (clock)

    def refusal(self, scope: Mapping[str, Any]) -> Denied | None:
        """The 429 of a refused address; None for every other (call it only when ``blocked``)."""
        address = address_of(scope)
        until = self.blocked.get(address) if address is not None else None
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self.blocked[address]  # type: ignore[arg-type]  # not None: found in blocked
            return None
        self.refused.inc()
        seconds = max(1, math.ceil(left))
        return Denied(429, TOO_MANY.format(seconds), {"Retry-After": str(seconds)})

    def failed(self, scope: Mapping[str, Any]) -> None:
        """One failed authentication from the request's address."""
        self.counted.inc()
        address = address_of(scope)
        if address is None:
            return
        now = self.clock()
        start, count = self.failures.pop(address, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        count += 1
        if count < self.limit:
            self.failures[address] = (start, count)  # the most recent last
            while len(self.failures) > self.capacity:
                self.failures.popitem(last=False)
            return
        log.warning("%s: %d failed authentications within %g s; refused for %g s", address, count, self.window_s, self.window_s)
        self.blocked.pop(address, None)
        self.blocked[address] = now + self.window_s
        while len(self.blocked) > self.capacity:
            self.blocked.popitem(last=False)
