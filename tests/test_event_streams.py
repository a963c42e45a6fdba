"""Under pressure (issue 16): thousands of event streams on one instance.

``sessionstore serve`` runs in a process of its own on a private
redis-server; 2,000 ``…/events`` streams are real sockets from this process
(bench/streams.py's client, which ``python -m bench --streams`` times). The
tests assert what must hold whatever the machine's speed: every committed
change reaches every subscriber, in order; the instance holds one pub/sub
connection to Redis; an idle stream costs the service a bounded amount of
memory; a subscriber that stops reading is dropped and its connection
closed, while one that reads gets everything. Latencies are printed, not
asserted (the bench reports them)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import streams as clients
from bench.streams import commit_and_collect, open_streams, rss_bytes

from .conftest import RedisServer, serve_process, stop_process

pytestmark = [pytest.mark.anyio]

STREAMS = 2000
# The service's RSS per idle stream, measured at 26 KB with 2,000 streams
# (docs/operating.md, Event streams at scale): what uvicorn, Starlette and the
# subscription hold for one open response. 64 KiB is 2.5 times that: room for
# another allocator or Python version, while a leak of a buffer per stream (the
# 64 KiB a socket read may take, a copy of every event) would exceed it.
IDLE_STREAM_BOUND = 64 * 1024
# A silent subscriber's cost while it is being dropped: the subscription's
# backlog (at most EventHub.backlog events, ~5 KB each here) and the HTTP
# server's write buffer. Kept for ever without the drop; far below this with it.
SILENT_GROWTH_BOUND = 24 * 1024 * 1024


@pytest.fixture
def service(private_redis: RedisServer, request: pytest.FixtureRequest) -> Iterator[tuple[Any, int]]:
    clients.raise_open_files_limit()  # 2,000 sockets here and 2,000 there (the service inherits it)
    marker = request.node.get_closest_marker("serve_options")
    options = [*(marker.args if marker else ()), "--server", getattr(request.node, "callspec", None) and
               request.node.callspec.params.get("server") or "uvicorn"]  # fmt: skip
    process, url = serve_process("--redis-url", private_redis.url, "--log-level", "warning", *options)
    try:
        yield process, int(url.rsplit(":", 1)[1])
    finally:
        _, output = stop_process(process)
        print(output[-2000:])


def metric(port: int, name: str) -> float:
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        text = b""
        while chunk := raw.recv(1 << 16):
            text += chunk
    found = re.search(rb"^" + name.encode() + rb" (\S+)$", text, re.MULTILINE)
    assert found is not None, name
    return float(found[1])


def service_rss(pid: int) -> int:
    """The RSS of the service: its process and its worker processes (granian's)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_bytes(pid) + sum(rss_bytes(int(child)) for child in children)


async def settled_rss(pid: int) -> int:
    """The service's RSS once the requests just made are done with."""
    import asyncio

    await asyncio.sleep(1.5)
    return service_rss(pid)


async def warm_up(port: int) -> None:
    """Imports, pools and caches a first stream makes, out of the measurement."""
    await clients.close_streams(await open_streams(port, [f"warm-{i}" for i in range(100)]))


@pytest.mark.parametrize("sessions", [200, 1], ids=["200-sessions", "one-hot-session"])
async def test_every_change_reaches_each_of_2000_streams(
    service: tuple[Any, int], private_redis: RedisServer, sessions: int
) -> None:
    process, port = service
    await warm_up(port)
    idle_before = await settled_rss(process.pid)
    opened = await open_streams(port, [f"s{i % sessions:03d}" for i in range(STREAMS)])
    try:
        idle_after = await settled_rss(process.pid)
        per_stream = (idle_after - idle_before) / STREAMS
        assert metric(port, "sessionstore_event_streams_open") == STREAMS
        # one pub/sub connection for the whole instance, however many streams and sessions
        assert clients.pubsub_connections(private_redis.port) == 1
        # 200 sessions: 5 changes each, one write at a time; one session: 10 changes, each fanned out to 2,000
        rounds, pace = (5, 0.001) if sessions > 1 else (10, 0.2)
        delivery = await commit_and_collect(port, opened, rounds=rounds, pace_s=pace)
        print(f"\n{STREAMS} streams on {sessions} session(s): {per_stream:.0f} bytes per idle stream; {delivery.figures()}")
        assert delivery.expected == rounds * STREAMS
        assert delivery.delivered == delivery.expected
        assert delivery.in_order == STREAMS  # each got exactly its session's versions, in order
        assert per_stream < IDLE_STREAM_BOUND
        assert clients.pubsub_connections(private_redis.port) == 1
    finally:
        await clients.close_streams(opened)


@pytest.mark.serve_options("--sse-send-timeout", "1")
@pytest.mark.parametrize("server", ["uvicorn", "granian"])
async def test_a_subscriber_that_stops_reading_is_dropped(service: tuple[Any, int], server: str) -> None:
    """It asks for the events and never reads: once its socket's buffers and
    the server's are full, the service waits --sse-send-timeout for it, then
    drops it (the stream ends, the connection is closed, a metric counts it);
    memory stays bounded meanwhile, and a subscriber that reads, on the same
    session, misses nothing."""
    import asyncio

    process, port = service
    await warm_up(port)
    reader = (await open_streams(port, ["slow"]))[0]
    silent = clients.silent_subscriber(port, "slow")
    http = clients.Http(port)
    try:
        deadline = time.monotonic() + 10
        while metric(port, "sessionstore_event_streams_open") < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        rss_before = service_rss(process.pid)
        written, deadline = 0, time.monotonic() + 60
        versions = []
        while metric(port, "sessionstore_event_streams_open") > 1:
            assert time.monotonic() < deadline, f"the silent subscriber was not dropped after {written} events"
            versions.append(await http.patch("slow", {k: v + written for k, v in clients.BIG_CHANGE.items()}))
            written += 1
            await asyncio.sleep(0.005)
        dropped_after = written
        for _ in range(300):  # and more events after it: nothing of them is kept for it
            versions.append(await http.patch("slow", {k: v + written for k, v in clients.BIG_CHANGE.items()}))
            written += 1
        rss_after = await settled_rss(process.pid)
        received, closed = clients.read_to_end(silent, 10)
        async with asyncio.timeout(10):
            while len(reader.events) < written:
                await asyncio.sleep(0.02)
        print(f"\nsilent subscriber dropped after {dropped_after} events of ~5 KB; it had been sent {received} bytes; "
              f"RSS {rss_before >> 20} -> {rss_after >> 20} MiB after {written} events")  # fmt: skip
        assert closed, "the service did not close the silent subscriber's connection"
        assert metric(port, "sessionstore_event_streams_dropped_total") == 1
        assert metric(port, "sessionstore_event_streams_open") == 1
        assert [v for v, _ in reader.events] == versions  # the reader missed nothing
        assert rss_after - rss_before < SILENT_GROWTH_BOUND
    finally:
        silent.close()
        await http.close()
        await clients.close_streams([reader])
