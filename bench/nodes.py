"""The Redis a scenario runs on, one server or a Redis Cluster's primaries:
which node holds a key, and what the nodes did during a measured run (CPU,
commands); and the private three-primary cluster of the cluster scenario."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .fill import Filler, RawRedis
from .procs import HOST, ProcessGroup, RedisServer, free_port


def info(raw: RawRedis, section: str) -> dict[str, str]:
    reply = raw.call("INFO", section)
    assert isinstance(reply, bytes)
    out = {}
    for line in reply.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def command_calls(raw: RawRedis) -> dict[str, int]:
    calls = {}
    for name, value in info(raw, "commandstats").items():
        fields = dict(part.split("=", 1) for part in value.split(","))
        calls[name.removeprefix("cmdstat_")] = int(fields["calls"])
    return calls


def redis_cpu(raw: RawRedis) -> float:
    stats = info(raw, "cpu")
    return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])


def slot_owners(raw: RawRedis) -> list[int]:
    """The port of the primary that serves each of the 16,384 slots (0: none),
    as the node on ``raw`` sees it (CLUSTER SLOTS)."""
    owners = [0] * REDIS_CLUSTER_HASH_SLOTS
    reply = raw.call("CLUSTER", "SLOTS")
    assert isinstance(reply, list)
    for first, last, primary, *_replicas in reply:
        owners[first:last + 1] = [int(primary[1])] * (last - first + 1)
    return owners


class Nodes:
    """One socket to each node (the first one given answers for one Redis);
    on a cluster, a key's node found from the slot map."""

    def __init__(self, ports: Sequence[int], cluster: bool = False) -> None:
        self.ports = list(ports)
        self.raws = {port: RawRedis(port) for port in self.ports}
        self.owners = slot_owners(self.raws[self.ports[0]]) if cluster else None

    @property
    def first(self) -> RawRedis:
        return self.raws[self.ports[0]]

    def port_of(self, key: str) -> int:
        return self.ports[0] if self.owners is None else self.owners[key_slot(key.encode())]

    def call(self, key: str, *args: bytes | str | int) -> object:
        """A command on ``key``, sent to the node that holds it."""
        return self.raws[self.port_of(key)].call(*args)

    def filler(self, tenant: str, namespace: str, generation: int) -> Filler:
        route = None if self.owners is None else self.port_of
        return Filler(self.ports[0], tenant, namespace, generation, route=route)

    def reset_stats(self) -> None:
        for raw in self.raws.values():
            raw.call("CONFIG", "RESETSTAT")

    def cpu_seconds(self) -> float:
        return sum(redis_cpu(raw) for raw in self.raws.values())

    def command_calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for raw in self.raws.values():
            for name, count in command_calls(raw).items():
                total[name] = total.get(name, 0) + count
        return total

    def close(self) -> None:
        for raw in self.raws.values():
            raw.sock.close()


@dataclass
class RedisCluster:
    """A private Redis Cluster of ``size`` primaries and no replicas, on free
    ports of 127.0.0.1 (each node's cluster bus on a free port of its own),
    joined with ``redis-cli --cluster create``."""

    procs: ProcessGroup
    workdir: Path
    size: int = 3
    cpus: str | None = None
    servers: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{s.port}" for s in self.servers)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def start(self, timeout_s: float = 30.0) -> RedisCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools, or run ./scripts/test once)")
        for n in range(self.size):
            options = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--cluster-config-file", "nodes.conf",
                       "--cluster-node-timeout", "5000"]
            self.servers.append(RedisServer(self.procs, self.workdir, cpus=self.cpus, extra=options,
                                            name=f"cluster-node-{n}").start())
        created = subprocess.run([cli, "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports), "--cluster-replicas", "0",
                                  "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout[-2000:]}{created.stderr[-2000:]}")
        deadline = time.monotonic() + timeout_s
        while not self.settled():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster on {', '.join(map(str, self.ports))} did not settle "
                                   f"within {timeout_s:.0f} s")
            time.sleep(0.1)
        return self

    def settled(self) -> bool:
        """Every node says cluster_state:ok and sees every slot served, by the same primaries."""
        maps = []
        for port in self.ports:
            with RawRedis(port, timeout_s=5) as raw:
                if info_line(raw.call("CLUSTER", "INFO"), "cluster_state") != "ok":
                    return False
                maps.append(slot_owners(raw))
        return all(m == maps[0] for m in maps) and 0 not in maps[0]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def info_line(reply: object, name: str) -> str | None:
    """One ``name:value`` line's value of an INFO-like reply."""
    if not isinstance(reply, bytes):
        return None
    for line in reply.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None
