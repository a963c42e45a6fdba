"""Auto-pipelining on a Redis Cluster (service/store/cluster_multiplex.py),
on real clusters of three primaries and three replicas: commands reach the
primary of their key's slot, one connection per primary, replies in order and
through redis-py's callbacks; slots moved (MOVED) or being moved (ASK) under
it; a primary stopped or killed while commands wait on it.

The tests that change the cluster (migrations, a killed node) start clusters
of their own; the others use the session's."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from service.store import clients
from service.store.clients import ClusterClient
from service.store.cluster_multiplex import MultiplexedCluster

from .conftest import RedisClusterServers

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # commands that should fail at once must not wait for ever (not a timing assert)


def cli(port: int, *command: str | int) -> str:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *map(str, command)],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.strip()  # fmt: skip


def port_of(name: str) -> int:
    return int(name.rsplit(":", 1)[1])


def map_reads(client: ClusterClient) -> int:
    """How many times redis-py's cluster client has read the slot map."""
    return int(client.nodes_manager._epoch)


async def one_key_per_primary(client: ClusterClient, prefix: str) -> dict[str, str]:
    """A key for each primary, by the primary's name (host:port)."""
    await client.initialize()
    found: dict[str, str] = {}
    n = 0
    while len(found) < len(client.get_primaries()):
        key = f"{prefix}{n}"
        found.setdefault(client.get_node_from_key(key).name, key)
        n += 1
    return found


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterServers) -> AsyncIterator[ClusterClient]:
    client = clients.connect_cluster(redis_cluster.url, timeout_s=5)
    yield client
    await client.aclose()


@pytest.fixture
async def mux(cluster_client: ClusterClient) -> AsyncIterator[MultiplexedCluster]:
    multiplexed = MultiplexedCluster(cluster_client)
    yield multiplexed
    await multiplexed.aclose()


async def test_execute_many_spans_the_three_primaries(mux: MultiplexedCluster, cluster_client: ClusterClient) -> None:
    keys = list((await one_key_per_primary(cluster_client, "cmux:many:")).values())
    a, b, c = keys
    await cluster_client.delete(*keys)
    reads = map_reads(cluster_client)
    assert await mux.execute_many(("SET", a, "v"), ("HSET", b, "f", "1"), ("SADD", c, "m")) == [True, 1, 1]
    assert await mux.execute_many(
        ("HGETALL", b), ("GET", a), ("SMEMBERS", c), ("EXISTS", a), ("HGETALL", "cmux:none")
    ) == [
        {b"f": b"1"},  # through redis-py's callbacks: HGETALL a dict, SMEMBERS a set, SET True
        b"v",
        {b"m"},
        1,
        {},
    ]
    assert map_reads(cluster_client) == reads  # every command went to its key's primary: no MOVED
    assert mux.multiplexed_connections == 3
    assert await cluster_client.get(a) == b"v"  # where redis-py finds it too

    # an error reply is raised once all replies came; the other commands ran
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await mux.execute_many(("SET", a, "w"), ("INCR", b), ("SADD", c, "n"))
    assert await mux.execute_many(("GET", a), ("SCARD", c)) == [b"w", 2]
    assert await mux.execute_command("HGETALL", b) == {b"f": b"1"}
    assert await mux.execute_many() == []


async def test_options_reach_the_callbacks_and_pooled_commands_go_to_the_cluster_client(
    mux: MultiplexedCluster,
) -> None:
    await mux.execute_many(("DEL", "cmux:z"), ("DEL", "cmux:list"))
    assert await mux.execute_command("ZADD", "cmux:z", 1, "a", 2.5, "b") == 2
    assert await mux.execute_command(
        "ZRANGE", "cmux:z", 0, -1, "WITHSCORES", withscores=True, score_cast_func=float
    ) == [
        (b"a", 1.0),
        (b"b", 2.5),
    ]
    assert await mux.execute_command("RPUSH", "cmux:list", "v") == 1
    assert await mux.execute_command("BLPOP", "cmux:list", 1) == (
        b"cmux:list",
        b"v",
    )  # a pooled connection, not the shared one


async def test_concurrent_commands_share_one_connection_per_primary(
    mux: MultiplexedCluster, cluster_client: ClusterClient
) -> None:
    keys = [f"cmux:conc:{n}" for n in range(1000)]
    await asyncio.gather(*(cluster_client.delete(key) for key in [*keys, "cmux:conc:counter"]))

    async def one(n: int) -> None:
        if n % 2:
            assert await mux.execute_command("HSET", keys[n], "n", n) == 1
            assert await mux.execute_command("HGETALL", keys[n]) == {b"n": str(n).encode()}
        else:
            assert await mux.execute_command("INCRBY", "cmux:conc:counter", n) >= n

    await asyncio.gather(*(one(n) for n in range(1000)))
    assert int(await cluster_client.get("cmux:conc:counter")) == sum(range(0, 1000, 2))
    assert await cluster_client.hgetall(keys[999]) == {b"n": b"999"}
    assert mux.multiplexed_connections == 3  # 1000 concurrent commands, one connection per primary
    assert len(mux.linked_nodes) == 3


async def test_scripts_route_by_their_first_key(mux: MultiplexedCluster, cluster_client: ClusterClient) -> None:
    keys = list((await one_key_per_primary(cluster_client, "cmux:script:")).values())
    with pytest.raises(NoScriptError):  # the caller loads it and tries again
        await mux.execute_command("EVALSHA", "0" * 40, 1, keys[0])
    sha = await cluster_client.script_load("return redis.call('INCRBY', KEYS[1], ARGV[1])")  # every primary
    await cluster_client.delete(*keys)
    reads = map_reads(cluster_client)
    assert await mux.execute_many(*(("EVALSHA", sha, 1, key, 5) for key in keys)) == [5, 5, 5]
    assert await mux.execute_command("EVALSHA", sha, 1, keys[1], 2) == 7
    assert map_reads(cluster_client) == reads
    assert [await cluster_client.get(key) for key in keys] == [b"5", b"7", b"5"]


async def test_commands_with_no_key_are_refused(mux: MultiplexedCluster) -> None:
    for command in [
        ("PING",),
        ("INFO",),
        ("EVALSHA", "0" * 40, 0),
        ("SCRIPT LOAD", "return 1"),
        ("GET",),
        ("NOSUCH", "k"),
    ]:
        with pytest.raises(ValueError):
            await mux.execute_command(*command)
    with pytest.raises(ValueError):
        await mux.execute_many(("GET", "cmux:k"), ("PING",))


# -- slots that move --------------------------------------------------------


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers().start()
    yield cluster
    cluster.cleanup()


@pytest.fixture
async def own_client(own_cluster: RedisClusterServers) -> AsyncIterator[ClusterClient]:
    client = clients.connect_cluster(own_cluster.url, timeout_s=5)
    await client.initialize()
    yield client
    await client.aclose()


def node_id(port: int) -> str:
    return cli(port, "CLUSTER", "MYID")


def begin_migration(slot: int, source: int, target: int) -> None:
    cli(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(source))
    cli(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(target))


def migrate_keys(source: int, target: int, *keys: str) -> None:
    assert cli(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys) == "OK"


def end_migration(cluster: RedisClusterServers, slot: int, source: int, target: int) -> None:
    """The slot is the target's: told to the target, the source, then the other primaries."""
    owner = node_id(target)
    primaries = [s.port for s in cluster.servers if cli(s.port, "ROLE").splitlines()[0] == "master"]
    for port in [target, source, *(p for p in primaries if p not in (source, target))]:
        cli(port, "CLUSTER", "SETSLOT", slot, "NODE", owner)


def move_slot(cluster: RedisClusterServers, slot: int, source: int, target: int) -> None:
    """The whole slot, keys and all, from one primary to another; returns once every node agrees."""
    begin_migration(slot, source, target)
    while keys := cli(source, "CLUSTER", "GETKEYSINSLOT", slot, 100).split():
        migrate_keys(source, target, *keys)
    end_migration(cluster, slot, source, target)
    wait_agreed(cluster)


def wait_agreed(cluster: RedisClusterServers) -> None:
    binary = shutil.which("redis-cli")
    assert binary is not None
    for _ in range(300):
        if cluster._agreed(binary):
            return
        subprocess.run(["sleep", "0.1"], check=True)
    raise AssertionError("the cluster's nodes do not agree on the slots")


async def test_moved_slots_are_followed_with_one_map_read(
    own_cluster: RedisClusterServers, own_client: ClusterClient
) -> None:
    mux = MultiplexedCluster(own_client)
    try:
        by_node = await one_key_per_primary(own_client, "cmux:moved:")
        (source, moved), (target, _), (_, other) = by_node.items()
        second = next(
            f"cmux:moved2:{n}" for n in range(10_000) if own_client.get_node_from_key(f"cmux:moved2:{n}").name == source
        )
        assert await mux.execute_many(("SET", moved, "m"), ("HSET", other, "f", "o"), ("SET", second, "s")) == [
            True,
            1,
            True,
        ]

        for key in (moved, second):
            move_slot(own_cluster, own_client.keyslot(key), port_of(source), port_of(target))
        reads = map_reads(own_client)
        results = await asyncio.gather(
            *(mux.execute_command("GET", moved) for _ in range(200)),
            mux.execute_many(("HGETALL", other), ("GET", second), ("GET", moved)),
        )
        assert results[:200] == [b"m"] * 200  # no error to any caller
        assert results[200] == [{b"f": b"o"}, b"s", b"m"]
        assert map_reads(own_client) == reads + 1  # one read of the map for all of them
        assert own_client.get_node_from_key(moved).name == target
        assert await mux.execute_command("SET", moved, "again") is True
        assert map_reads(own_client) == reads + 1  # routed by the new map: no more MOVED
        assert mux.multiplexed_connections == 3
    finally:
        await mux.aclose()


async def test_ask_during_a_migration_leaves_the_map_alone(
    own_cluster: RedisClusterServers, own_client: ClusterClient
) -> None:
    mux = MultiplexedCluster(own_client)
    moved, stays, new = "cmux:{asked}a", "cmux:{asked}b", "cmux:{asked}c"
    slot = own_client.keyslot(moved)
    source = own_client.get_node_from_key(moved).name
    target = next(node.name for node in own_client.get_primaries() if node.name != source)
    other = next(f"cmux:ask:{n}" for n in range(10_000) if own_client.get_node_from_key(f"cmux:ask:{n}").name == target)
    try:
        assert await mux.execute_many(("SET", moved, "1"), ("SET", stays, "2"), ("SET", other, "o")) == [True] * 3
        begin_migration(slot, port_of(source), port_of(target))
        migrate_keys(port_of(source), port_of(target), moved)
        reads = map_reads(own_client)

        assert await mux.execute_command("GET", moved) == b"1"  # ASK: on the target, after ASKING
        assert await mux.execute_command("GET", stays) == b"2"  # still on the source
        assert await mux.execute_command("SET", new, "3") is True  # a new key: the target takes it
        assert await mux.execute_many(("GET", stays), ("GET", moved), ("GET", other), ("GET", new)) == [
            b"2",
            b"1",
            b"o",
            b"3",
        ]
        assert await asyncio.gather(*(mux.execute_command("GET", moved) for _ in range(50))) == [b"1"] * 50
        assert map_reads(own_client) == reads  # an ASK changes no map
        assert own_client.get_node_from_key(moved).name == source
        assert cli(port_of(target), "CLUSTER", "COUNTKEYSINSLOT", slot) == "2"
        assert cli(port_of(source), "CLUSTER", "COUNTKEYSINSLOT", slot) == "1"

        migrate_keys(port_of(source), port_of(target), stays)
        end_migration(own_cluster, slot, port_of(source), port_of(target))
        wait_agreed(own_cluster)
        assert await mux.execute_many(("GET", stays), ("GET", moved), ("GET", new)) == [b"2", b"1", b"3"]  # MOVED now
        assert own_client.get_node_from_key(moved).name == target
    finally:
        await mux.aclose()


# -- a primary that stops answering, or dies ----------------------------------


@pytest.fixture
def breakable_cluster() -> Iterator[RedisClusterServers]:
    """A private cluster, failing over within a few seconds of a primary's death."""
    cluster = RedisClusterServers(node_timeout_ms=3000).start()
    yield cluster
    cluster.cleanup()


async def replica_has(port: int, key: str, value: bytes) -> None:
    replica = Redis(host="127.0.0.1", port=port, single_connection_client=True)
    try:
        await replica.execute_command("READONLY")
        for _ in range(200):
            if await replica.get(key) == value:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the replica on {port} did not get {key}")
    finally:
        await replica.aclose()


async def test_a_stopped_then_killed_primary_fails_its_callers_at_once(breakable_cluster: RedisClusterServers) -> None:
    patient = clients.connect_cluster(breakable_cluster.url, timeout_s=30)
    hasty = clients.connect_cluster(breakable_cluster.url, timeout_s=0.5)
    mux, quick = MultiplexedCluster(patient), MultiplexedCluster(hasty)
    try:
        by_node = await one_key_per_primary(patient, "cmux:kill:")
        victim_name, victim_key = next(iter(by_node.items()))
        others = [key for name, key in by_node.items() if name != victim_name]
        assert await mux.execute_many(*(("SET", key, "v") for key in by_node.values())) == [True] * 3
        assert await quick.execute_many(*(("GET", key) for key in by_node.values())) == [b"v"] * 3
        victim = next(s for s in breakable_cluster.servers if s.port == port_of(victim_name))
        heir_port = next(
            int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
            for line in cli(victim.port, "CLUSTER", "REPLICAS", node_id(victim.port)).splitlines()
        )
        await replica_has(heir_port, victim_key, b"v")
        assert victim.process is not None

        # stopped: within the socket timeout, every command waiting on it gets TimeoutError
        os.kill(victim.process.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                stuck = await asyncio.gather(
                    *(quick.execute_command("GET", victim_key) for _ in range(20)), return_exceptions=True
                )
            assert all(isinstance(result, TimeoutError) for result in stuck), stuck
            assert hasty._initialize  # the map is to be read again
            assert await quick.execute_many(*(("GET", key) for key in others)) == [b"v", b"v"]
        finally:
            os.kill(victim.process.pid, signal.SIGCONT)
        assert await quick.execute_command("GET", victim_key) == b"v"  # back: a new connection

        # killed while commands wait on it: they fail with ConnectionError, at once
        os.kill(victim.process.pid, signal.SIGSTOP)
        pending = [asyncio.ensure_future(mux.execute_command("GET", victim_key)) for _ in range(50)]
        pending.append(asyncio.ensure_future(mux.execute_many(("GET", others[0]), ("GET", victim_key))))
        await asyncio.sleep(0.2)  # written, waiting for replies
        assert not any(task.done() for task in pending)
        victim.process.kill()
        victim.process.wait(10)
        async with asyncio.timeout(HANG_GUARD_S):
            lost = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(result, ConnectionError) for result in lost), lost
        assert patient._initialize  # the map is to be read again
        assert await mux.execute_many(*(("GET", key) for key in others)) == [b"v", b"v"]

        # the replica takes over; once the map says so, the key is served there and the dead node's connection is gone
        for _ in range(600):
            if cli(heir_port, "ROLE").splitlines()[0] == "master":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the replica was not promoted")
        for _ in range(100):
            try:
                value = await mux.execute_command("GET", victim_key)
                break
            except ConnectionError:  # a map read before the cluster saw the failover
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the key was not served after the failover")
        assert value == b"v"
        assert victim_name not in mux.linked_nodes
        assert f"127.0.0.1:{heir_port}" in mux.linked_nodes
    finally:
        await mux.aclose()
        await quick.aclose()
        await patient.aclose()
        await hasty.aclose()
