"""The seam between what the client does and how it does I/O.

Every operation of the client is written once, as a generator (a "flow")
that yields the I/O it needs, as small op objects, and is sent the outcome:
``response = yield Send(...)``. The sync ``Client`` and the ``AsyncClient``
each run flows with a driver of a few lines (HTTPX's own sans-I/O split,
one level up): retries, ETag caching, the ``update`` loop and the reconnecting
``watch`` exist in one copy. An I/O failure is thrown into the flow at the
``yield`` as the httpx exception."""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from ._errors import NetworkError, SessionStoreError, error_for

T = TypeVar("T")
E_co = TypeVar("E_co", covariant=True)


@dataclass(frozen=True)
class Send:
    """Send a request; the outcome is the response, its body read."""

    method: str
    url: str
    params: dict[str, str | int] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


@dataclass(frozen=True)
class Open:
    """Send a request and keep its response open as the flow's stream (closing
    any stream before it); the outcome is the response. Unless it is a 200, its
    body is read and it is closed at once."""

    url: str
    headers: dict[str, str]
    read_timeout_s: float | None


@dataclass(frozen=True)
class NextLine:
    """The next line of the open stream; None once it has ended."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit(Generic[E_co]):
    """Hand one item to whoever iterates the flow (flows behind iterators only)."""

    item: E_co


Op = Send | Open | NextLine | Sleep
Flow = Generator[Op, Any, T]
Items = Generator[Op | Emit[E_co], Any, None]


class Stepper(Generic[T]):
    """Runs a flow one op at a time: a driver calls ``advance`` for the next
    op (None once the flow has returned its ``result``), performs it, and sets
    ``value`` (or ``error``) to its outcome."""

    result: T  # once advance has returned None

    def __init__(self, flow: Generator[Any, Any, T]) -> None:
        self.flow = flow
        self.value: Any = None
        self.error: BaseException | None = None

    def advance(self) -> Any:
        value, error = self.value, self.error
        self.value = self.error = None
        try:
            return self.flow.throw(error) if error is not None else self.flow.send(value)
        except StopIteration as stop:
            self.result = stop.value
            return None


# -- retries ------------------------------------------------------------------------

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Retry:
    """How requests that are safe to repeat are retried when the service
    answers 503 or the connection fails: up to ``attempts`` more times, waiting
    ``backoff_s``, then twice that, ... at most ``max_backoff_s`` (each with up
    to half of it taken off at random, so that clients spread out)."""

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1, 2, ...)."""
        full = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)


@dataclass(frozen=True)
class Repeat:
    """That a request may be sent again after a 503 or a failed connection.
    The first attempt may have been applied all the same (Redis may have
    run the write and then timed out), so the answers in ``unreliable`` are
    not believed on a retry: a conditional write's 412, a delete's 404 could be
    the first attempt's doing. The earlier failure is raised instead."""

    unreliable: frozenset[int] = frozenset()


READ = Repeat()  # GET, batch reads: nothing to tell apart
IDEMPOTENT = Repeat()  # PUT without conditions, touch: the same again leaves the same state
CONDITIONAL = Repeat(frozenset({412}))  # anything with If-Match or If-None-Match: *: applied at most once
DELETE = Repeat(frozenset({404, 412}))
ONCE: Repeat | None = None  # a merge PATCH or an increment without If-Match: a second one would count twice


def network_error(exc: httpx.TransportError) -> NetworkError:
    error = NetworkError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    error.__cause__ = exc
    return error


def call(op: Send, repeat: Repeat | None, retry: Retry) -> Flow[httpx.Response]:
    """Send ``op``, retried as ``repeat`` and ``retry`` allow; the answer
    (any status but a 503 it may still retry), or NetworkError. A request
    that never left (the connection was refused) is always retried."""
    attempt = 0
    doubt: SessionStoreError | None = None  # the failure of an attempt that may have been applied
    while True:
        try:
            response: httpx.Response = yield op
        except httpx.TransportError as exc:
            error: SessionStoreError = network_error(exc)
            sent = not isinstance(exc, NOT_SENT)
            if attempt >= retry.attempts or (sent and repeat is None):
                raise error from exc
            if sent:
                doubt = error
        else:
            if response.status_code != 503 or repeat is None or attempt >= retry.attempts:
                if doubt is not None and repeat is not None and response.status_code in repeat.unreliable:
                    raise doubt
                return response
            doubt = error_for(response)
        attempt += 1
        yield Sleep(retry.delay(attempt))


def checked(response: httpx.Response, *ok: int) -> httpx.Response:
    """The response when its status is one of ``ok``; else its error."""
    if response.status_code not in ok:
        raise error_for(response)
    return response


def stream_timeout(timeout: httpx.Timeout, read_s: float | None) -> httpx.Timeout:
    """The client's timeouts, but for how long a stream may stay silent."""
    return httpx.Timeout(connect=timeout.connect, read=read_s, write=timeout.write, pool=timeout.pool)
