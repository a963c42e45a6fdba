"""Fault injection under load: the real service (``python -m service serve``)
in a subprocess on a private redis-server, 16 concurrent clients on every
face, and Redis stopped and started again, or hung (SIGSTOP), in the middle.

The contract (README, "A Redis that does not answer..."): during the fault
every API call answers 503 with a JSON error within 2 s, never a 500 (nor any
other 5xx); once Redis is back the service serves again by itself, with no
restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from .conftest import TENANT, RedisServer, free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 16
CONTRACT_S = 2.0  # a 503 within this
SETTLE_S = 1.0  # after Redis is back, time allowed to reconnect
WARMUP_S = 1.5  # load before the fault
AFTER_S = 4.0  # load after Redis is back
FAULT_S = 2.5  # how long Redis is away (or hung)
EMPORIX_TENANT = "faulttenant"
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/faults/sessions"
LIVEPERSON = f"/v1/account/{TENANT}/faults"
SESSIONS = [f"s{n}" for n in range(8)]


@dataclass
class Record:
    op: str
    started: float  # monotonic
    elapsed: float
    status: int  # -1: no answer (a transport error or the client's timeout)
    body: bytes
    content_type: str


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_for_healthz(service: Service, deadline_s: float = 20.0) -> None:
    port = int(service.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"sessionstore exited with {service.process.returncode}:\n{service.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sessionstore did not answer /healthz within {deadline_s} s:\n{service.log_tail()}")


@contextmanager
def running_service(redis_url: str, *options: str) -> Iterator[Service]:
    """``python -m service serve`` on ``redis_url`` in its own process
    (loopback, no auth file: every request may do anything), stopped at the end."""
    port = free_port()
    log_dir = tempfile.mkdtemp(prefix="sessionstore-faults-")
    log = Path(log_dir) / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTORE_")}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--redis-url", redis_url, "--shutdown-grace", "1", "--log-level", "warning", *options],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    service = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for_healthz(service)
        yield service
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.unlink(missing_ok=True)
        os.rmdir(log_dir)


@pytest.fixture
def redis_and_service() -> Iterator[tuple[RedisServer, Service]]:
    """A private redis-server and the service on it, in its own process."""
    redis = RedisServer().start()
    try:
        with running_service(redis.url) as service:
            yield redis, service
    finally:
        if redis.process is not None:
            os.kill(redis.process.pid, signal.SIGCONT)  # in case a test left it stopped
        redis.cleanup()


# -- the load ---------------------------------------------------------------------------------


def operations(worker: int, n: int) -> tuple[str, str, str, object | None, dict[str, str]]:
    """The n-th request of a worker: (label, method, path, JSON body, headers)."""
    session = SESSIONS[(worker + n) % len(SESSIONS)]
    kind = (worker * 7 + n) % 8
    if kind == 0:
        return "lp-get", "GET", f"{LIVEPERSON}/{session}/properties", None, {}
    if kind == 1:
        return "lp-patch", "PATCH", f"{LIVEPERSON}/{session}/properties", {f"w{worker}": n}, {}
    if kind == 2:
        return "native-get", "GET", f"{NATIVE}/{session}", None, {}
    if kind == 3:
        return "native-put", "PUT", f"{NATIVE}/{session}-put{worker}", {"properties": {"n": n}}, {}
    if kind == 4:
        merge = {"Content-Type": "application/merge-patch+json"}
        return "native-patch", "PATCH", f"{NATIVE}/{session}", {"properties": {f"m{worker}": n}}, merge
    if kind == 5:
        return "emporix-get", "GET", f"/session-context/{EMPORIX_TENANT}/context/{session}", None, {}
    if kind == 6:
        return "genesys-get", "GET", f"/sessions/{session}?tenantId={TENANT}", None, {}
    return "native-incr", "POST", f"{NATIVE}/{session}/properties/hits:increment", {"by": 1}, {}


async def seed(client: httpx.AsyncClient) -> None:
    for session in SESSIONS:
        r = await client.put(
            f"/session-context/{EMPORIX_TENANT}/context/{session}?upsert=true",
            json={"siteCode": "main", "currency": "EUR", "metadata": {"version": 1}},
        )
        assert r.status_code == 204, r.text
        r = await client.patch(f"{LIVEPERSON}/{session}/properties", json={"seeded": True})
        assert r.status_code == 204, r.text


@dataclass
class Load:
    """Clients calling the service until told to stop, every answer recorded."""

    client: httpx.AsyncClient
    records: list[Record] = field(default_factory=list)
    stop_at: float = float("inf")

    async def request(self, label: str, method: str, path: str, body: object | None, headers: dict[str, str]) -> Record:
        started = time.monotonic()
        try:
            r = await self.client.request(
                method, path, content=None if body is None else orjson.dumps(body),
                headers={"Content-Type": "application/json", **headers} if body is not None else headers,
            )  # fmt: skip
            record = Record(label, started, time.monotonic() - started, r.status_code, r.content,
                            r.headers.get("content-type", ""))  # fmt: skip
        except httpx.HTTPError as exc:  # no answer: a transport error or the client's timeout
            record = Record(label, started, time.monotonic() - started, -1, repr(exc).encode(), "")
        self.records.append(record)
        return record

    async def mixed(self, worker: int) -> None:
        """Every face, reads and writes (operations())."""
        n = 0
        while time.monotonic() < self.stop_at:
            await self.request(*operations(worker, n))
            n += 1


async def run_load(
    service: Service, fault: Callable[[], Awaitable[tuple[float, float]]]
) -> tuple[list[Record], float, float, float]:
    """Drive the load while ``fault`` runs (it returns when the fault began
    and when it ended); stop AFTER_S after the end. Returns the records,
    the fault's start and end, and when the load stopped."""
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    # the client waits longer than the contract, so a slow answer is measured, not cut short
    async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=10.0) as client:
        await seed(client)
        load = Load(client)
        async with anyio.create_task_group() as tg:
            for number in range(WORKERS):
                tg.start_soon(load.mixed, number)
            await anyio.sleep(WARMUP_S)
            began, ended = await fault()
            load.stop_at = ended + AFTER_S
        return load.records, began, ended, load.stop_at


def assert_only_success_or_503(records: list[Record], log: str) -> None:
    """No 500 (nor any 5xx but 503), no request left unanswered, every 503 a
    JSON error within the 2 s contract."""
    unanswered = [r for r in records if r.status == -1]
    assert not unanswered, f"requests without an answer: {unanswered[:5]}\n{log}"
    odd = [r for r in records if r.status not in (200, 201, 204, 404, 503)]
    assert not odd, f"unexpected answers: {[(r.op, r.status, r.body[:200]) for r in odd[:5]]}\n{log}"
    for r in records:
        if r.status == 503:
            assert "json" in r.content_type, (r.op, r.content_type, r.body[:200])
            error = orjson.loads(r.body)
            assert isinstance(error, dict) and error, (r.op, r.body[:200])
            assert r.elapsed < CONTRACT_S, f"{r.op}: 503 after {r.elapsed:.3f} s"


def check(records: list[Record], began: float, ended: float, stopped: float, what: str, service: Service) -> None:
    during = [r for r in records if began <= r.started <= ended]
    errors_5xx = [r for r in records if r.status >= 500]
    unavailable = [r for r in records if r.status == 503]
    print(
        f"\n{what}: 1 fault injected ({ended - began:.2f} s); {len(records)} requests in all, "
        f"{len(during)} sent during the fault, {len(errors_5xx)} 5xx seen ({len(unavailable)} of them 503); "
        f"slowest answer during the fault {max((r.elapsed for r in during), default=0):.3f} s"
    )
    assert_only_success_or_503(records, f"service log:\n{service.log_tail()}")
    # the fault was seen: requests were sent during it, and Redis was needed by them
    assert len(during) >= WORKERS, f"only {len(during)} requests during the fault"
    assert unavailable, "no 503 during the fault: was Redis really away?"
    # recovered with no restart: successes after the settling window, no 503 in the last second
    after = [r for r in records if r.started >= ended + SETTLE_S]
    assert any(200 <= r.status < 300 for r in after), "no success after Redis came back"
    last_second = [r for r in records if r.started >= stopped - 1.0]
    assert last_second and all(200 <= r.status < 300 or r.status == 404 for r in last_second), [
        (r.op, r.status, r.body[:200]) for r in last_second if r.status >= 300 and r.status != 404
    ][:5]
    assert service.process.poll() is None, "the service exited"


async def test_redis_stopped_and_started_again_under_load(redis_and_service: tuple[RedisServer, Service]) -> None:
    redis, service = redis_and_service

    async def fault() -> tuple[float, float]:
        began = time.monotonic()
        await anyio.to_thread.run_sync(redis.stop)
        await anyio.sleep(FAULT_S - (time.monotonic() - began))
        await anyio.to_thread.run_sync(redis.start)  # same port, empty
        return began, time.monotonic()

    async with httpx.AsyncClient(base_url=service.url, timeout=10.0) as client:
        r = await client.put(f"{NATIVE}/untouched", json={"properties": {"a": 1}})  # no load touches it
        assert r.status_code in (200, 201), r.text
        reloads_before = script_reloads((await client.get("/metrics")).text)
    records, began, ended, stopped = await run_load(service, fault)
    check(records, began, ended, stopped, "Redis stopped and started again", service)
    # Redis came back empty: what was there reads as absent (404, not an error),
    # the scripts were loaded again by the service itself, which needed no restart
    async with httpx.AsyncClient(base_url=service.url, timeout=10.0) as client:
        gone = await client.get(f"{NATIVE}/untouched")
        assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")
        assert (await client.get(f"{LIVEPERSON}/untouched/properties")).status_code in (200, 404)
        assert script_reloads((await client.get("/metrics")).text) > reloads_before
        assert (await client.put(f"{NATIVE}/untouched", json={"properties": {"a": 2}})).status_code in (200, 201)


def script_reloads(metrics: str) -> float:
    """sessionstore's count of scripts loaded again after NOSCRIPT, from /metrics."""
    lines = [line for line in metrics.splitlines() if line.startswith("sessionstore_script_reloads")]
    assert lines, metrics[:500]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if not line.split(" ")[0].endswith("_created"))


async def test_redis_hanging_under_load(redis_and_service: tuple[RedisServer, Service]) -> None:
    redis, service = redis_and_service
    assert redis.process is not None
    pid = redis.process.pid

    async def fault() -> tuple[float, float]:
        began = time.monotonic()
        os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
        try:
            await anyio.sleep(FAULT_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        return began, time.monotonic()

    records, began, ended, stopped = await run_load(service, fault)
    check(records, began, ended, stopped, "Redis hung (SIGSTOP) and resumed", service)
