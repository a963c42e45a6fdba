"""Failover: a Redis Cluster primary killed under load, and durable writes
(``--durable-writes N``: a write is acknowledged only once N replicas have
it, via WAIT) surviving the loss of their primary.

Each test starts its own servers (a cluster whose node timeout is 1 s, or a
primary with one replica) and the real service in a subprocess, and breaks
them while clients keep calling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import orjson
import pytest
from redis.asyncio.cluster import ClusterNode

from service.store import clients
from service.store.core import Changes, Durability, NotDurable, SessionStore, Status

from .conftest import TENANT, RedisClusterServers, RedisServer, free_port
from .test_faults import CONTRACT_S, ROOT, Load, assert_only_success_or_503, running_service, seed

pytestmark = pytest.mark.anyio

RESUME_S = 10.0  # the contract: full service this long after a replica's promotion
WORKERS = 16
WARMUP_S = 1.5
DURABLE_TIMEOUT_MS = 600  # generous: a WAIT that should succeed must not time out on a busy machine
NAMESPACE = "durable"
LIVEPERSON = f"/v1/account/{TENANT}/{NAMESPACE}"


def redis_cli(port: int, *command: str) -> str:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip


@dataclass
class Node:
    server: RedisServer
    node_id: str
    primary_of: str | None  # for a replica: the id of its primary


def cluster_nodes(cluster: RedisClusterServers) -> list[Node]:
    by_port = {s.port: s for s in cluster.servers}
    nodes = []
    for line in redis_cli(cluster.servers[0].port, "cluster", "nodes").splitlines():
        node_id, address, flags, primary = line.split()[:4]
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        nodes.append(Node(by_port[port], node_id, primary if "slave" in flags.split(",") else None))
    return nodes


def sessions_on(port: int) -> set[str]:
    """The ids of the sessions whose hash lives on this node."""
    found = redis_cli(port, "--scan", "--pattern", "ss:*:s:*").split()
    return {key.rsplit(":s:", 1)[1] for key in found}


def victim_and_heir(cluster: RedisClusterServers) -> tuple[Node, Node, set[str]]:
    """The primary holding the most sessions (so the load surely used it),
    its replica, and the ids of the sessions on it."""
    nodes = cluster_nodes(cluster)
    held = {n.node_id: sessions_on(n.server.port) for n in nodes if n.primary_of is None}
    victim = next(n for n in nodes if n.node_id == max(held, key=lambda node_id: len(held[node_id])))
    heir = next(n for n in nodes if n.primary_of == victim.node_id)
    return victim, heir, held[victim.node_id]


def is_primary(port: int) -> bool:
    try:
        return redis_cli(port, "role").splitlines()[0] == "master"
    except (subprocess.SubprocessError, IndexError):
        return False


async def kill_a_primary(cluster: RedisClusterServers) -> tuple[float, float, set[str]]:
    """SIGKILL (no goodbye to the cluster) the primary holding the most
    sessions, and wait for its replica's promotion. Returns when it was
    killed and when the replica was seen promoted (time.monotonic()), and
    the ids of the sessions it held."""
    victim, heir, sessions = await anyio.to_thread.run_sync(victim_and_heir, cluster)
    assert victim.server.process is not None
    killed = time.monotonic()
    victim.server.process.kill()
    while not await anyio.to_thread.run_sync(is_primary, heir.server.port):
        assert time.monotonic() - killed < 30, "the replica was not promoted within 30 s"
        await anyio.sleep(0.05)
    return killed, time.monotonic(), sessions


@pytest.fixture
def failing_cluster() -> Iterator[RedisClusterServers]:
    """A private cluster that fails over fast (node timeout 1 s)."""
    cluster = RedisClusterServers(node_timeout_ms=1000).start()
    yield cluster
    cluster.cleanup()


@dataclass
class DurableLoad(Load):
    """Writes whose answers are remembered, to look for them after a failover."""

    acknowledged: dict[str, dict[str, int]] = field(default_factory=dict)  # session -> property -> value
    refused: dict[str, dict[str, int]] = field(default_factory=dict)  # writes answered 503

    async def durable_writes(self, worker: int) -> None:
        """Each write a new property of one of the worker's sessions, so
        that every acknowledged one can be looked for afterwards."""
        n = 0
        while time.monotonic() < self.stop_at:
            session = f"w{worker}-{n % 4}"
            record = await self.request("lp-patch", "PATCH", f"{LIVEPERSON}/{session}/properties", {f"n{n}": n}, {})
            if 200 <= record.status < 300:
                self.acknowledged.setdefault(session, {})[f"n{n}"] = n
            elif record.status == 503:
                self.refused.setdefault(session, {})[f"n{n}"] = n
            n += 1


async def read_properties(client: httpx.AsyncClient, session: str) -> dict[str, object]:
    r = await client.get(f"{LIVEPERSON}/{session}/properties")
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    found = orjson.loads(r.content)
    assert isinstance(found, dict)
    return found


# -- a cluster primary killed under load ---------------------------------------------------------


async def test_cluster_primary_killed_under_load(failing_cluster: RedisClusterServers) -> None:
    with running_service(failing_cluster.url) as service:
        limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
        async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=10.0) as client:
            await seed(client)
            load = Load(client)
            async with anyio.create_task_group() as tg:
                for worker in range(WORKERS):
                    tg.start_soon(load.mixed, worker)
                await anyio.sleep(WARMUP_S)
                killed, promoted, _ = await kill_a_primary(failing_cluster)
                load.stop_at = promoted + RESUME_S + 3.0
        records, log = load.records, service.log_tail()
        assert service.process.poll() is None, f"the service exited\n{log}"

    failures = [r for r in records if not (200 <= r.status < 300 or r.status == 404)]
    during = [r for r in records if killed <= r.started <= promoted]
    last_failure = max((r.started for r in failures), default=killed)
    print(
        f"\ncluster primary killed: 1 fault injected; replica promoted {promoted - killed:.2f} s after the kill; "
        f"{len(records)} requests in all, {len(during)} sent between kill and promotion, "
        f"{len(failures)} answered 503, 5xx other than 503: "
        f"{sum(1 for r in records if r.status >= 500 and r.status != 503)}; "
        f"last failed request sent {last_failure - promoted:+.2f} s after the promotion"
    )
    assert_only_success_or_503(records, log)
    assert failures, "no request failed: did the killed primary hold none of the load's keys?"
    # full service again within RESUME_S of the promotion, without a restart
    late = [r for r in failures if r.started >= promoted + RESUME_S]
    assert not late, f"failures {RESUME_S} s after the promotion: {[(r.op, r.status, r.body[:120]) for r in late[:5]]}"
    assert any(200 <= r.status < 300 for r in records if r.started >= promoted + RESUME_S)


# -- durable writes -------------------------------------------------------------------------------


async def test_cluster_durable_writes_survive_the_failover_of_their_primary(
    failing_cluster: RedisClusterServers,
) -> None:
    options = ("--durable-writes", "1", "--durable-timeout", str(DURABLE_TIMEOUT_MS))
    with running_service(failing_cluster.url, *options) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10.0) as client:
            load = DurableLoad(client)
            async with anyio.create_task_group() as tg:
                for worker in range(WORKERS):
                    tg.start_soon(load.durable_writes, worker)
                await anyio.sleep(WARMUP_S)
                killed, promoted, on_victim = await kill_a_primary(failing_cluster)
                load.stop_at = promoted + 1.0
            log = service.log_tail()
            assert_only_success_or_503(load.records, log)
            before_kill = [r for r in load.records if r.started + r.elapsed < killed]
            assert before_kill and all(r.status == 204 for r in before_kill), (
                f"writes failed while every primary had its replica: "
                f"{[(r.status, r.body[:200]) for r in before_kill if r.status != 204][:5]}\n{log}"
            )
            # Every write answered 2xx is there, read back through the service
            # from the promoted replica (and the other primaries).
            deadline = time.monotonic() + RESUME_S
            lost: dict[str, dict[str, int]] = {}
            for session, written in load.acknowledged.items():
                while True:
                    r = await client.get(f"{LIVEPERSON}/{session}/properties")
                    if r.status_code != 503 or time.monotonic() > deadline:
                        break
                    await anyio.sleep(0.1)
                found = orjson.loads(r.content) if r.status_code == 200 else {}
                missing = {k: v for k, v in written.items() if found.get(k) != v}
                if missing:
                    lost[session] = missing
    acknowledged = sum(len(w) for w in load.acknowledged.values())
    print(
        f"\ndurable writes on a cluster: 1 fault injected (a primary killed, its replica promoted "
        f"{promoted - killed:.2f} s later); {len(load.records)} writes sent, {acknowledged} acknowledged, "
        f"{sum(len(w) for w in load.refused.values())} answered 503; acknowledged writes lost: "
        f"{sum(len(m) for m in lost.values())}"
    )
    assert not lost, f"acknowledged writes lost in the failover: {lost}"
    assert on_victim & set(load.acknowledged), "no session lived on the killed primary: the failover was not put to the test"


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer().start()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    try:
        deadline = time.monotonic() + 20
        while "master_link_status:up" not in redis_cli(replica.port, "info", "replication"):
            assert time.monotonic() < deadline, "the replica did not catch up with its primary"
            time.sleep(0.05)
        yield primary, replica
    finally:
        for server in (primary, replica):
            if server.process is not None:
                os.kill(server.process.pid, signal.SIGCONT)
            server.cleanup()


async def test_durable_writes_are_acknowledged_only_once_a_replica_has_them(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    """A primary with one replica. While they are linked every write is
    acknowledged; once the replica is cut off, every write answers 503
    (Redis applied it, no replica confirmed it). Then the primary dies and
    the replica is promoted: it holds every acknowledged write, and none of
    those answered 503. Without WAIT those would have been acknowledged
    and lost."""
    primary, replica = primary_and_replica
    options = ("--durable-writes", "1", "--durable-timeout", str(DURABLE_TIMEOUT_MS))
    with running_service(primary.url, *options) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10.0) as client:
            load = DurableLoad(client)
            async with anyio.create_task_group() as tg:
                for worker in range(8):
                    tg.start_soon(load.durable_writes, worker)
                await anyio.sleep(WARMUP_S)
                linked = list(load.records)
                # cut the replica off: it keeps its data, and follows a primary that is not there
                cut = time.monotonic()
                await anyio.to_thread.run_sync(redis_cli, replica.port, "replicaof", "127.0.0.1", str(free_port()))
                await anyio.sleep(1.5)
                load.stop_at = time.monotonic()
            log = service.log_tail()
            assert primary.process is not None
            primary.process.kill()
    redis_cli(replica.port, "replicaof", "no", "one")  # the failover

    assert_only_success_or_503(load.records, log)
    assert linked and all(r.status == 204 for r in linked), [(r.status, r.body[:200]) for r in linked if r.status != 204][:5]
    cut_off = [r for r in load.records if r.started > cut + 0.1]
    assert cut_off and all(r.status == 503 for r in cut_off), [(r.status, r.body[:200]) for r in cut_off][:5]
    assert b"replicas confirmed" in cut_off[0].body, cut_off[0].body

    with running_service(replica.url) as promoted:
        async with httpx.AsyncClient(base_url=promoted.url, timeout=10.0) as client:
            stored = {session: await read_properties(client, session) for session in {*load.acknowledged, *load.refused}}
    lost = {s: {k: v for k, v in w.items() if stored[s].get(k) != v} for s, w in load.acknowledged.items()}
    lost = {s: m for s, m in lost.items() if m}
    unconfirmed_there = sum(1 for s, w in load.refused.items() for k in w if k in stored[s])
    print(
        f"\ndurable writes, replica cut off then primary killed: {len(load.records)} writes, "
        f"{sum(len(w) for w in load.acknowledged.values())} acknowledged (lost: {sum(len(m) for m in lost.values())}), "
        f"{sum(len(w) for w in load.refused.values())} answered 503 ({unconfirmed_there} of them on the promoted replica)"
    )
    assert not lost, f"acknowledged writes lost: {lost}"
    assert unconfirmed_there == 0, "the replica was cut off, yet holds writes made after that"


async def test_durable_writes_without_a_replica_answer_503_in_every_api(redis_server: RedisServer) -> None:
    """No replica at all: each face answers its own 503 error (JSON), within
    the WAIT timeout and the 2 s contract; the service stays up."""
    options = ("--durable-writes", "1", "--durable-timeout", str(DURABLE_TIMEOUT_MS))
    with running_service(redis_server.url, *options) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10.0) as client:
            calls = [
                ("PATCH", f"{LIVEPERSON}/lonely/properties", {"a": 1}, {}),
                ("PUT", f"/api/v1/tenants/{TENANT}/namespaces/{NAMESPACE}/sessions/lonely", {"properties": {"a": 1}}, {}),
                ("PUT", "/session-context/durabletenant/context/lonely?upsert=true", {"siteCode": "main", "metadata": {"version": 1}}, {}),
                ("GET", f"/sessions/lonely?tenantId={TENANT}", None, {}),  # creates the session
            ]
            for method, path, body, headers in calls:
                started = time.monotonic()
                r = await client.request(
                    method, path, content=None if body is None else orjson.dumps(body),
                    headers={"Content-Type": "application/json", **headers} if body is not None else headers,
                )  # fmt: skip
                elapsed = time.monotonic() - started
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                assert "json" in r.headers["content-type"] and orjson.loads(r.content), r.text
                assert DURABLE_TIMEOUT_MS / 1000 <= elapsed < CONTRACT_S, elapsed
            health = await client.get("/healthz")
            assert health.status_code == 200


# -- the storage core's durable path, and the options ------------------------------------------


async def test_durable_write_waits_for_a_replica_on_the_cluster(redis_cluster: RedisClusterServers) -> None:
    """On the shared cluster (each primary has its replica): durable writes
    are acknowledged, with the script reloaded on NOSCRIPT and the namespace
    itself made durably; a WAIT for more replicas than there are fails with
    NotDurable, after Redis applied the write."""
    client = clients.connect(redis_cluster.url, timeout_s=5)
    try:
        store = SessionStore(client, durability=Durability(replicas=1, timeout_ms=DURABLE_TIMEOUT_MS))
        await client.script_flush()  # the first durable write meets NOSCRIPT, and loads its script again
        result = await store.write(TENANT, "durable-core", "s1", Changes().set("a", b"1"))
        assert result.status is Status.OK and result.version == 1
        assert store.scripts.reloads >= 1
        session = await store.read(TENANT, "durable-core", "s1")
        assert session is not None and session.properties == {"a": b"1"}

        greedy = SessionStore(client, durability=Durability(replicas=2, timeout_ms=DURABLE_TIMEOUT_MS))
        started = time.monotonic()
        with pytest.raises(NotDurable, match="only 1 of 2 replicas"):
            await greedy.write(TENANT, "durable-core", "s1", Changes().set("b", b"2"))
        assert time.monotonic() - started >= DURABLE_TIMEOUT_MS / 1000
        session = await store.read(TENANT, "durable-core", "s1")
        assert session is not None and session.properties == {"a": b"1", "b": b"2"}  # applied, not confirmed
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--durable-writes", "1"], b"--durable-writes needs --redis-url"),
        (["--durable-writes", "-1", "--redis-url", "redis://127.0.0.1:1/0"], b"--durable-writes needs"),
        (["--durable-writes", "1", "--durable-timeout", "1000", "--redis-url", "redis://127.0.0.1:1/0"], b"--durable-timeout"),
        (["--durable-writes", "1", "--durable-timeout", "0", "--redis-url", "redis://127.0.0.1:1/0"], b"--durable-timeout"),
        (["--durable-writes", "many"], b"invalid int value"),
    ],
)
def test_durable_write_options_are_checked(options: list[str], complaint: bytes) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", str(free_port()), *options],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert complaint in done.stderr and b"Traceback" not in done.stderr, done.stderr


async def test_refused_writes_keep_their_own_answer_without_replicas(redis_server: RedisServer) -> None:
    """No replica: a write that Redis applied is NotDurable; one that the
    script refused (a version conflict, a missing session) changed nothing,
    so its own answer stands."""
    client = clients.connect(redis_server.url, timeout_s=5)
    try:
        plain, durable = SessionStore(client), SessionStore(client, durability=Durability(1, DURABLE_TIMEOUT_MS))
        await plain.write(TENANT, "refused", "s1", Changes().set("a", b"1"))
        conflict = await durable.write(TENANT, "refused", "s1", Changes().set("a", b"2"), version=7)
        assert conflict.status is Status.VERSION and conflict.version == 1
        missing = await durable.delete_session(TENANT, "refused", "nobody")
        assert missing.status is Status.MISSING
        with pytest.raises(NotDurable):
            await durable.write(TENANT, "refused", "s1", Changes().set("a", b"3"), version=1)
    finally:
        await client.aclose()


async def test_durable_writes_reconnect_pooled_connections_that_redis_closed(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    """Redis closes idle connections (``timeout 1``): the pooled connections
    that durable writes use are found closed before anything is sent on
    them, and made again; no write fails for it."""
    primary, _ = primary_and_replica
    redis_cli(primary.port, "config", "set", "timeout", "1")
    client = clients.connect(primary.url, timeout_s=5)
    try:
        store = SessionStore(client, durability=Durability(1, DURABLE_TIMEOUT_MS))

        async def burst(n: int) -> None:
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(store.write, TENANT, "idle", f"s{i}", Changes().set("n", str(n).encode()))

        await burst(1)
        await anyio.sleep(2.5)  # Redis closes every one of those connections meanwhile
        await burst(2)
        for i in range(16):
            session = await store.read(TENANT, "idle", f"s{i}")
            assert session is not None and session.properties == {"n": b"2"}
    finally:
        await client.aclose()


async def test_durable_writes_on_the_cluster_stay_within_the_connection_limit(redis_cluster: RedisClusterServers) -> None:
    """More concurrent durable writes than a node has connections: they wait
    for a free one, as every other command does, and all succeed."""
    client = clients.ClusterClient(
        startup_nodes=[ClusterNode("127.0.0.1", s.port) for s in redis_cluster.servers[:3]],
        max_connections=4, socket_timeout=5, socket_connect_timeout=5, timeout_s=5,
    )  # fmt: skip
    try:
        store = SessionStore(client, durability=Durability(1, DURABLE_TIMEOUT_MS))
        results = []

        async def write(i: int) -> None:
            results.append(await store.write(TENANT, "crowded", f"s{i % 3}", Changes().set(f"p{i}", b"1")))

        async with anyio.create_task_group() as tg:
            for i in range(48):
                tg.start_soon(write, i)
        assert len(results) == 48 and all(r.status is Status.OK for r in results)
    finally:
        await client.aclose()
