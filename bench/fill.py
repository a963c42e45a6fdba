"""Filling the store fast, by writing Redis directly in the service's own layout.

Keys come from service.store.keys and every session is written by the storage
core's own Lua script, lua/session_mutate.lua, run with EVALSHA exactly as
SessionStore.write() runs it for a LivePerson PATCH (drop-empty flag, no
version, the default limits). The commands are encoded here as RESP and
pipelined on one socket (much like ``redis-cli --pipe``), in chunks, each
chunk's replies read (and checked) while Redis works on the next one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Self

import hiredis

from service.store import keys
from service.store.core import Limits
from service.store.scripts import Scripts

from .procs import HOST

# Ten short properties, the session every read scenario reads: names and
# their compact JSON texts, as the service stores them.
PROPERTIES: tuple[tuple[str, bytes], ...] = (
    ("botName", b'"order-bot"'),
    ("intent", b'"track_order"'),
    ("orderId", b'"A-720-1183"'),
    ("customerEmail", b'"jeff@test.com"'),
    ("items", b"3"),
    ("total", b"129.9"),
    ("currency", b'"EUR"'),
    ("vip", b"true"),
    ("lang", b'"en"'),
    ("step", b'"confirm"'),
)


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(bulk(a if isinstance(a, bytes) else str(a).encode()))
    return b"".join(parts)


class RawRedis:
    """One socket to Redis: pipelined RESP commands, replies parsed by hiredis."""

    def __init__(self, port: int, timeout_s: float = 60.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout_s)
        self.reader = hiredis.Reader()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def replies(self, count: int) -> Iterator[object]:
        got = 0
        while got < count:
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.reader.feed(data)
                continue
            got += 1
            yield reply

    def call(self, *args: bytes | str | int) -> object:
        self.send(command(*args))
        reply = next(self.replies(1))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def integer(self, *args: bytes | str | int) -> int:
        reply = self.call(*args)
        if not isinstance(reply, int):
            raise TypeError(f"{args[0]!r} answered {reply!r}, not an integer")
        return reply


@dataclass
class Filler:
    """Writes sessions of one namespace straight into Redis."""

    port: int
    tenant: str
    namespace: str
    generation: int
    chunk: int = 4000

    def __post_init__(self) -> None:
        self.script = Scripts().session_mutate
        limits = Limits()
        self.limits = (str(limits.max_chars).encode(), str(limits.max_properties).encode())
        self.retention = str(limits.retention_ms).encode()

    def _tail(self, properties: Iterable[tuple[str, bytes]]) -> tuple[int, bytes]:
        # ARGV 3.. of session_mutate as SessionStore.write() gives it for a LivePerson PATCH:
        # any version, existence 'any', no TTL stamp, idle TTL kept, the limits, flag 'd', the retention,
        # the customer tie kept, the changes (tests/test_bench.py reads filled sessions back through the store).
        args: list[bytes] = [b"", b"any", b"0", b"", *self.limits, b"d", self.retention, b""]
        for name, json in properties:
            args += [b"set", keys.property_field(name).encode(), json]
        return len(args), b"".join(bulk(a) for a in args)

    def fill(self, ids: Iterable[str], properties: Iterable[tuple[str, bytes]] = PROPERTIES,
             progress: str | None = None) -> int:
        """Writes every session of ``ids`` with ``properties``; returns how many."""
        tail_count, tail = self._tail(properties)
        head = b"*%d\r\n" % (3 + 5 + 2 + tail_count) + bulk(b"EVALSHA") + bulk(self.script.sha.encode()) + bulk(b"5")
        written = 0
        pending = 0
        started = time.monotonic()
        last_report = started
        with RawRedis(self.port) as raw:
            raw.call("SCRIPT", "LOAD", self.script.source)
            batch: list[bytes] = []
            now = b""
            for sid in ids:
                if not batch:  # one "now" per chunk
                    now = bulk(str(int(time.time() * 1000)).encode())
                sk = keys.session(self.tenant, self.namespace, self.generation, sid)
                batch.append(head + b"".join(bulk(k.encode()) for k in sk) + now + bulk(sid.encode()) + tail)
                if len(batch) >= self.chunk:
                    raw.send(b"".join(batch))
                    written += self._check(raw, pending)
                    pending = len(batch)
                    batch = []
                    if progress and time.monotonic() - last_report > 10:
                        last_report = time.monotonic()
                        rate = (written + pending) / (last_report - started)
                        print(f"  {progress}: {written + pending:,} sessions ({rate:,.0f}/s)", flush=True)
            if batch:
                raw.send(b"".join(batch))
            written += self._check(raw, pending)
            written += self._check(raw, len(batch))
        return written

    @staticmethod
    def _check(raw: RawRedis, count: int) -> int:
        for reply in raw.replies(count):
            if isinstance(reply, Exception) or not isinstance(reply, list) or reply[0] != b"ok":
                raise RuntimeError(f"session_mutate answered {reply!r} while filling")
        return count


def session_ids(count: int, fmt: str, start: int = 0) -> Iterator[str]:
    return (fmt % n for n in range(start, start + count))
