"""Event streams at scale: ``python -m bench --streams`` (or ``python -m bench.streams``).

On a private redis-server, ``sessionstore serve`` in a process of its own
(uvicorn, one worker, as deployed), and from this process:

1. the service's RSS and the latency of a normal native GET with no stream open;
2. 2,000 idle ``…/events`` streams on 200 sessions (10 each): RSS again (the
   difference per stream is the memory of an idle stream), the pub/sub
   connections the service holds on Redis, the GET's latency again;
3. changes committed to those sessions, each one's delivery to every
   subscriber timed (from the moment the write was sent, so a little more
   than commit to receipt), while a GET loop measures normal requests;
4. the same with 2,000 streams on one hot session;
5. a subscriber that never reads, next to one that does, on one session
   written to until the service drops the first: the events and bytes it
   took, and the RSS before and after.

The streams are raw asyncio connections (a Protocol per stream, timed as
the data arrives), so the client's own cost stays small. tests/test_streams.py
runs the same parts with assertions on counts, order and memory; the
latencies are only measured here, and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SPREAD_ROUNDS, SPREAD_PACE_S = 10, 0.002  # 200 sessions: 10 changes each, one write every 2 ms (5,000 events/s)
HOT_CHANGES, HOT_PACE_S = 20, 0.25  # one session: 20 changes, 0.25 s apart, each fanned out to every stream
TENANT = "bench"
SESSIONS = "/api/v1/tenants/{tenant}/namespaces/ns/sessions/"
EVENT = re.compile(rb'data: \{"version":(\d+),')
SUBSCRIBED = b": subscribed\n\n"


def session_path(sid: str, tenant: str = TENANT) -> str:
    return SESSIONS.format(tenant=tenant) + sid


def raise_open_files_limit() -> int:
    """The soft limit of open files raised to the hard one (2,000 streams are
    2,000 sockets here and 2,000 in the service, which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def request_bytes(method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers)]
    if body or method in ("PUT", "PATCH", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Stream(asyncio.Protocol):
    """One ``GET …/events`` on a raw connection: the version of each event and
    when it arrived (events are one chunk each; the chunk framing between
    them is skipped by the pattern)."""

    def __init__(self, sid: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        loop = asyncio.get_running_loop()
        self.sid = sid
        self.request = request_bytes("GET", session_path(sid) + "/events", headers=headers)
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.events: list[tuple[int, float]] = []  # (version, perf_counter when it arrived)
        self.received = 0  # bytes
        self._tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no asyncio.Transport subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.received += len(data)
        text = self._tail + data
        self.events.extend((int(m[1]), now) for m in EVENT.finditer(text))
        if not self.subscribed.done() and SUBSCRIBED in text:
            self.subscribed.set_result(None)
        end = text.rfind(b"\n\n")
        self._tail = text[end + 2 :] if end >= 0 else text

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"the stream of {self.sid} closed before it was subscribed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_streams(port: int, sids: Sequence[str], at_once: int = 64, timeout_s: float = 60) -> list[Stream]:
    """One subscribed stream per entry of ``sids`` (a session may come more than once)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(at_once)

    async def one(sid: str) -> Stream:
        async with gate:
            _, stream = await loop.create_connection(lambda: Stream(sid), HOST, port)
            await stream.subscribed
            return stream

    async with asyncio.timeout(timeout_s):
        return list(await asyncio.gather(*(one(sid) for sid in sids)))


async def close_streams(streams: Sequence[Stream], timeout_s: float = 30) -> None:
    for stream in streams:
        stream.close()
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(stream.closed for stream in streams))


class Http:
    """A keep-alive HTTP/1.1 connection for normal requests (writes, timed GETs)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(request_bytes(method, path, body, headers))
        async with asyncio.timeout(10):
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            found = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            return status, found, await self.reader.readexactly(int(found.get("content-length", "0")))

    async def patch(self, sid: str, properties: dict[str, Any]) -> int:
        """Merges ``properties`` into the session; the version it made."""
        body = json.dumps({"properties": properties}).encode()
        status, headers, text = await self.request(
            "PATCH", session_path(sid), body, [("Content-Type", "application/merge-patch+json")]
        )
        if status not in (200, 201):
            raise RuntimeError(f"PATCH {sid}: {status} {text[:200]!r}")
        return int(headers["etag"].strip('"'))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Delivery:
    """What the subscribers got of the changes committed while they listened."""

    streams: int
    sessions: int
    expected: int = 0  # events: changes × the subscribers of each session
    delivered: int = 0
    in_order: int = 0  # streams that got exactly their session's versions, in order
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def figures(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {"streams": self.streams, "sessions": self.sessions, "expected": self.expected,
                "delivered": self.delivered, "streams_in_order": self.in_order,
                "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
                "max_ms": round(max(lat, default=float("nan")), 2)}  # fmt: skip


async def commit_and_collect(port: int, streams: Sequence[Stream], rounds: int, pace_s: float,
                             timeout_s: float = 30) -> Delivery:  # fmt: skip
    """``rounds`` changes to every session the streams follow (one PATCH at a
    time, ``pace_s`` apart), then every stream's events checked against them."""
    sids = list(dict.fromkeys(stream.sid for stream in streams))
    followers = {sid: sum(1 for s in streams if s.sid == sid) for sid in sids}
    for stream in streams:
        stream.events.clear()
    sent: dict[tuple[str, int], float] = {}
    versions: dict[str, list[int]] = {sid: [] for sid in sids}
    http = Http(port)
    try:
        for n in range(rounds):
            for sid in sids:
                started = time.perf_counter()
                version = await http.patch(sid, {"n": n})
                sent[sid, version] = started
                versions[sid].append(version)
                if pace_s:
                    await asyncio.sleep(pace_s)
    finally:
        await http.close()
    result = Delivery(len(streams), len(sids), expected=sum(rounds * followers[sid] for sid in sids))
    deadline = time.monotonic() + timeout_s
    while sum(len(s.events) for s in streams) < result.expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for stream in streams:
        got = [version for version, _ in stream.events]
        result.delivered += len(got)
        result.in_order += got == versions[stream.sid]
        result.latencies_ms += [(at - sent[stream.sid, v]) * 1000 for v, at in stream.events if (stream.sid, v) in sent]
    return result


async def get_latencies(port: int, path: str, requests: int) -> list[float]:
    """Sequential GETs on one keep-alive connection, each one's time in ms."""
    http, times = Http(port), []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            status, _, _ = await http.request("GET", path)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
    finally:
        await http.close()
    return times


def latency_figures(times: Sequence[float]) -> dict[str, float]:
    return {"requests": len(times), "p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3)}


def silent_subscriber(port: int, sid: str, receive_buffer: int = 4096) -> socket.socket:
    """A client that asks for the events of ``sid`` and then never reads (a
    small receive buffer, so the service's writes back up soon)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.connect((HOST, port))
    raw.sendall(request_bytes("GET", session_path(sid) + "/events"))
    return raw


def read_to_end(raw: socket.socket, timeout_s: float) -> tuple[int, bool]:
    """Reads what the service sent until it closes the connection: (bytes,
    whether it was closed within ``timeout_s``)."""
    raw.settimeout(timeout_s)
    total = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            chunk = raw.recv(1 << 16)
            if not chunk:
                return total, True
            total += len(chunk)
    except (TimeoutError, ConnectionResetError):
        return total, False
    return total, False


def start_service(redis_url: str, port: int, *options: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``sessionstore serve`` on ``port`` (no auth file: open access on loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTORE_")}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--redis-url", redis_url,
         "--log-level", "warning", *options],
        stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip


async def wait_ready(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            http = Http(port)
            status, _, _ = await http.request("GET", "/readyz")
            await http.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the service on port {port} did not get ready")


def pubsub_connections(redis_port: int) -> int:
    import redis

    with redis.Redis(host=HOST, port=redis_port) as client:
        return len(client.client_list(_type="pubsub"))


async def settle_rss(pid: int, wait_s: float = 2.0) -> int:
    await asyncio.sleep(wait_s)
    return rss_bytes(pid)


async def run(streams: int, sessions: int, gets: int, log_dir: Path) -> dict[str, Any]:
    from .procs import ProcessGroup, RedisServer, free_port

    raise_open_files_limit()
    procs = ProcessGroup()
    figures: dict[str, Any] = {"streams": streams, "sessions": sessions}
    try:
        redis_server = RedisServer(procs, log_dir).start()
        port = free_port()
        service = start_service(redis_server.url, port, log=log_dir / "service.log")
        procs.running.append(service)
        await wait_ready(port)
        http = Http(port)
        await http.patch("probe", {"a": 1})
        await http.close()
        warm = await open_streams(port, [f"w{i}" for i in range(100)])  # warm-up: imports, pools, caches
        await close_streams(warm)
        await get_latencies(port, session_path("probe"), 500)
        base_rss = await settle_rss(service.pid)
        figures["get_no_streams"] = latency_figures(await get_latencies(port, session_path("probe"), gets))

        say(f"{streams} idle streams on {sessions} sessions")
        spread = [f"s{i % sessions:03d}" for i in range(streams)]
        opened = await open_streams(port, spread)
        idle_rss = await settle_rss(service.pid)
        figures["rss_no_streams_bytes"], figures["rss_idle_streams_bytes"] = base_rss, idle_rss
        figures["bytes_per_idle_stream"] = round((idle_rss - base_rss) / streams)
        figures["pubsub_connections"] = pubsub_connections(redis_server.port)
        figures["get_idle_streams"] = latency_figures(await get_latencies(port, session_path("probe"), gets))
        say(f"changes to the {sessions} sessions")
        loop_gets = asyncio.ensure_future(get_latencies(port, session_path("probe"), gets))
        figures["spread"] = (await commit_and_collect(port, opened, rounds=SPREAD_ROUNDS, pace_s=SPREAD_PACE_S)).figures()
        figures["get_during_spread_delivery"] = latency_figures(await loop_gets)
        await close_streams(opened)

        say(f"{streams} streams on one session")
        hot = await open_streams(port, ["hot"] * streams)
        figures["pubsub_connections_hot"] = pubsub_connections(redis_server.port)
        loop_gets = asyncio.ensure_future(get_latencies(port, session_path("probe"), gets))
        figures["hot"] = (await commit_and_collect(port, hot, rounds=HOT_CHANGES, pace_s=HOT_PACE_S)).figures()
        figures["get_during_hot_delivery"] = latency_figures(await loop_gets)
        await close_streams(hot)
        await gauge_falls_to(port, 0)
        say("a subscriber that does not read")
        figures["slow_subscriber"] = await slow_subscriber(port, service.pid)
    finally:
        procs.stop_all()
    return figures


async def gauge_falls_to(port: int, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while await open_streams_gauge(port) > count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service still counts more than {count} open streams")
        await asyncio.sleep(0.05)


async def open_streams_gauge(port: int) -> int:
    """The service's own count of open event streams (its /metrics gauge)."""
    http = Http(port)
    try:
        status, _, text = await http.request("GET", "/metrics")
    finally:
        await http.close()
    found = re.search(rb"^sessionstore_event_streams_open (\S+)$", text, re.MULTILINE)
    if status != 200 or found is None:
        raise RuntimeError(f"/metrics: {status}, no sessionstore_event_streams_open")
    return int(float(found[1]))


BIG_CHANGE = {f"property-{i:03d}-{'x' * 40}": i for i in range(100)}  # a ~5 KB event: every name is changed


async def slow_subscriber(port: int, pid: int, timeout_s: float = 60) -> dict[str, Any]:
    """A subscriber that never reads next to one that does: big changes until
    the service drops the silent one (its gauge of open streams falls to 1)."""
    before = await open_streams_gauge(port)
    reader = (await open_streams(port, ["slow"]))[0]
    silent = silent_subscriber(port, "slow")
    http = Http(port)
    started = time.monotonic()
    while await open_streams_gauge(port) < before + 2 and time.monotonic() - started < 10:
        await asyncio.sleep(0.01)
    rss_before = rss_bytes(pid)
    started, written = time.monotonic(), 0
    while await open_streams_gauge(port) > before + 1 and time.monotonic() - started < timeout_s:
        await http.patch("slow", {k: v + written for k, v in BIG_CHANGE.items()})
        written += 1
        await asyncio.sleep(0.01)
    dropped_after_s = time.monotonic() - started
    rss_after = await settle_rss(pid, 1.0)
    await http.close()
    received, closed = read_to_end(silent, 10)
    silent.close()
    missing = written - len(reader.events)
    await close_streams([reader])
    return {"events_written": written, "dropped_after_s": round(dropped_after_s, 2),
            "bytes_the_silent_one_got": received, "closed_by_service": closed,
            "reader_missed": missing, "rss_before_bytes": rss_before, "rss_after_bytes": rss_after}  # fmt: skip


def report(figures: dict[str, Any]) -> str:
    lines = [f"{figures['streams']} event streams, one service instance (uvicorn, one worker)"]
    lines.append(f"  memory per idle stream: {figures['bytes_per_idle_stream']} bytes "
                 f"(RSS {figures['rss_no_streams_bytes'] >> 20} MiB with none, "
                 f"{figures['rss_idle_streams_bytes'] >> 20} MiB with {figures['streams']})")  # fmt: skip
    lines.append(f"  pub/sub connections to Redis: {figures['pubsub_connections']} "
                 f"(hot session: {figures['pubsub_connections_hot']})")  # fmt: skip
    for name in ("spread", "hot"):
        d = figures[name]
        lines.append(f"  delivery, {d['streams']} streams on {d['sessions']} session(s): {d['delivered']}/{d['expected']} "
                     f"events, {d['streams_in_order']} streams complete and in order, "
                     f"p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms")  # fmt: skip
    for name in ("get_no_streams", "get_idle_streams", "get_during_spread_delivery", "get_during_hot_delivery"):
        g = figures[name]
        lines.append(f"  native GET, {name.removeprefix('get_').replace('_', ' ')}: "
                     f"p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms ({g['requests']} requests)")  # fmt: skip
    s = figures["slow_subscriber"]
    lines.append(f"  silent subscriber: dropped after {s['events_written']} events ({s['dropped_after_s']} s), "
                 f"{s['bytes_the_silent_one_got']} bytes had reached it, closed by the service: {s['closed_by_service']}, "
                 f"RSS {s['rss_before_bytes'] >> 20} -> {s['rss_after_bytes'] >> 20} MiB; "
                 f"the reading subscriber missed {s['reader_missed']}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="event streams to open (default 2000)")
    parser.add_argument("--sessions", type=int, default=200, help="sessions they are spread over (default 200)")
    parser.add_argument("--gets", type=int, default=2000, help="timed GETs per measurement (default 2000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    import uvloop

    with tempfile.TemporaryDirectory(prefix="bench-streams-") as directory:
        figures = uvloop.run(run(args.count, args.sessions, args.gets, Path(directory)))
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
