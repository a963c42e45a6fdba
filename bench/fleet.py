"""The rest of a fleet's share of a hot key, for bench/hotkey.py's ``fleet``
phase: writes to one session sent straight to Redis at a steady rate, as the
other instances of a fleet behind a load balancer would send them.

On this machine a single instance cannot take 10,000 writes per second (each
costs it about 160 µs of CPU), and a second instance competes for the same
two cores. What the instances of a fleet share is Redis: there, a hot
session is one more client's scripts on one key. So the fleet phase sends
the hammer's share of one instance through the service under test (wrk,
paced) and the rest of the 10,000 per second into Redis exactly as the
service would (the same lua/session_mutate.lua call, built by the store's
own code: service.store.writes.Write), in small pipelined batches every few
milliseconds. The other sessions' latency is measured on the instance under
test, as in every phase.

Run in a thread of its own (``FleetHammer.start`` / ``stop``); its asyncio
loop and one Redis connection cost the machine a fraction of a core.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.asyncio import Redis

from service.store import keys
from service.store.core import Changes, SessionStore
from service.store.model import Existence, now_ms
from service.store.writes import Write

from .fill import bulk, command

BATCH_S = 0.002  # a batch about every 2 ms: some 18 writes at 9,000/s, close to a steady stream
PLACEHOLDER = b"\x00fleet-value\x00"  # where each write's own value goes in the encoded call
MAX_BURST_S = 0.05  # behind schedule (the machine busy): at most this much of the rate in one batch


@dataclass
class FleetHammer:
    """``rate`` writes per second to one LivePerson session (``tenant``,
    ``namespace``, ``session_id``, which must exist), from ``start()`` to
    ``stop()``. ``written``: the writes Redis confirmed (status ok);
    ``failed``: the others (errors and refusals)."""

    redis_url: str
    tenant: str
    namespace: str
    session_id: str
    rate: float
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: Exception | None = field(default=None, repr=False)

    def start(self) -> FleetHammer:
        self._stop.clear()
        self.written = self.failed = 0
        self._thread = threading.Thread(target=self._main, name="fleet-hammer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> FleetHammer:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._error is not None:
            raise RuntimeError(f"the fleet hammer failed: {self._error!r}") from self._error
        return self

    @property
    def writes_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, Any]:
        return {"rate_asked": self.rate, "written": self.written, "failed": self.failed,
                "seconds": round(self.seconds, 2), "writes_per_s": round(self.writes_per_s, 1)}  # fmt: skip

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # noqa: BLE001 - a thread's failure, raised again by stop() in the caller
            self._error = exc

    async def _run(self) -> None:
        redis = Redis.from_url(self.redis_url)
        try:
            store = SessionStore(redis)
            ns = await store.namespace(self.tenant, self.namespace)
            if ns is None:
                raise RuntimeError(f"no namespace {self.namespace!r} of {self.tenant!r} to hammer")
            await store.load_scripts()
            sha = store.scripts.session_mutate.sha
            sk = keys.session(self.tenant, self.namespace, ns.generation, self.session_id)
        finally:
            await redis.aclose()
        # the writes go on a connection of their own, encoded and parsed here
        # (hiredis), so that the hammer costs the machine little of its CPU
        where = urlsplit(self.redis_url)
        reader, writer = await asyncio.open_connection(where.hostname, where.port or 6379)
        replies = hiredis.Reader()
        flags = "l"  # as a LivePerson PATCH makes them (origin=ORIGIN_LIVEPERSON), on a single Redis
        try:
            sent = 0
            started = time.monotonic()
            while not self._stop.is_set():
                elapsed = time.monotonic() - started
                count = min(int(self.rate * elapsed) - sent, int(self.rate * MAX_BURST_S) + 1)
                if count > 0:
                    changes = Changes().set("fleet", PLACEHOLDER)
                    write = Write(store, self.tenant, self.namespace, self.session_id, changes, flags, None,
                                  Existence.ANY, None, None)  # fmt: skip
                    encoded = command("EVALSHA", sha, len(sk), *sk, *write._args(now_ms(), ns.ttl_s))
                    head, tail = encoded.split(bulk(PLACEHOLDER))
                    chunks = []
                    for n in range(sent + 1, sent + count + 1):
                        chunks += (head, bulk(str(n).encode()), tail)
                    writer.write(b"".join(chunks))
                    sent += count
                    await self._replies(reader, replies, count)
                await asyncio.sleep(BATCH_S)
            self.seconds = time.monotonic() - started
        finally:
            writer.close()

    async def _replies(self, reader: asyncio.StreamReader, replies: Any, count: int) -> None:
        while count:
            reply = replies.gets()
            if reply is False:
                data = await reader.read(1 << 16)
                if not data:
                    raise ConnectionError("Redis closed the fleet hammer's connection")
                replies.feed(data)
                continue
            count -= 1
            if isinstance(reply, list) and reply and reply[0] == b"ok":
                self.written += 1
            else:
                self.failed += 1

