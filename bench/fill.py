"""Filling the store fast, by writing Redis directly in the service's own layout.

Keys come from service.store.keys and every session is written by the storage
core's own Lua script, lua/session_mutate.lua, run with EVALSHA exactly as
SessionStore.write() runs it for a LivePerson PATCH (drop-empty flag, no
version, the default limits). The commands are encoded here as RESP and
pipelined on one socket (much like ``redis-cli --pipe``), in chunks, each
chunk's replies read (and checked) while Redis works on the next one. On a
Redis Cluster, each session goes to the node that owns its keys' slot, over
one socket per node.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
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


class _Lane:
    """The commands for one Redis node: the chunk being gathered, and how many
    replies of the chunk sent before are still to be read."""

    def __init__(self, port: int, script_source: str) -> None:
        self.raw = RawRedis(port)
        self.raw.call("SCRIPT", "LOAD", script_source)
        self.batch: list[bytes] = []
        self.pending = 0
        self.now = b""

    def flush(self) -> int:
        """Sends the gathered chunk, then reads the replies of the one before
        (Redis works on this one meanwhile); returns how many were read."""
        if self.batch:
            self.raw.send(b"".join(self.batch))
        done = Filler.check(self.raw, self.pending)
        self.pending, self.batch = len(self.batch), []
        return done

    def drain(self) -> int:
        done = self.flush()
        return done + self.flush()


@dataclass
class Filler:
    """Writes sessions of one namespace straight into Redis: to the one on
    ``port``, or, given ``route`` (a key's port), each session to the node of
    a Redis Cluster that holds its keys' slot (they share one hash tag)."""

    port: int
    tenant: str
    namespace: str
    generation: int
    chunk: int = 4000
    route: Callable[[str], int] | None = None

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
        started = time.monotonic()
        last_report = started
        lanes: dict[int, _Lane] = {}
        try:
            for sid in ids:
                sk = keys.session(self.tenant, self.namespace, self.generation, sid)
                port = self.port if self.route is None else self.route(sk.session)
                lane = lanes.get(port)
                if lane is None:
                    lane = lanes[port] = _Lane(port, self.script.source)
                if not lane.batch:  # one "now" per chunk
                    lane.now = bulk(str(int(time.time() * 1000)).encode())
                lane.batch.append(head + b"".join(bulk(k.encode()) for k in sk) + lane.now + bulk(sid.encode()) + tail)
                if len(lane.batch) >= self.chunk:
                    written += lane.flush()
                    if progress and time.monotonic() - last_report > 10:
                        last_report = time.monotonic()
                        sent = written + sum(other.pending for other in lanes.values())
                        print(f"  {progress}: {sent:,} sessions ({sent / (last_report - started):,.0f}/s)", flush=True)
            for lane in lanes.values():
                written += lane.drain()
        finally:
            for lane in lanes.values():
                lane.raw.sock.close()
        return written

    @staticmethod
    def check(raw: RawRedis, count: int) -> int:
        for reply in raw.replies(count):
            if isinstance(reply, Exception) or not isinstance(reply, list) or reply[0] != b"ok":
                raise RuntimeError(f"session_mutate answered {reply!r} while filling")
        return count


def session_ids(count: int, fmt: str, start: int = 0) -> Iterator[str]:
    return (fmt % n for n in range(start, start + count))
