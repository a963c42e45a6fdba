"""``sessionstore check``: whether a Redis can serve sessionstore.

It answers (PING), its version and mode (INFO server, INFO cluster), and
whether every Lua script loads (SCRIPT LOAD, which also compiles it; on a
Redis Cluster, on every primary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from .core import UNAVAILABLE
from .scripts import Scripts


@dataclass
class Report:
    answers: bool = False
    version: str = ""
    mode: str = ""  # standalone | cluster
    scripts_loaded: int = 0
    problems: list[str] = field(default_factory=list)  # one line each, for people

    @property
    def ok(self) -> bool:
        return self.answers and not self.problems


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check(redis: Any, scripts: Scripts | None = None) -> Report:
    report = Report()
    scripts = scripts or Scripts()
    try:
        await redis.ping()
        server = await redis.info("server")
        cluster = await redis.info("cluster")
    except UNAVAILABLE as exc:
        report.problems.append(describe(exc))
        return report
    report.answers = True
    report.version = str(server.get("redis_version", "?"))
    report.mode = "cluster" if str(cluster.get("cluster_enabled", 0)) == "1" else "standalone"
    if report.mode == "cluster" and not isinstance(redis, RedisCluster):
        report.problems.append(
            "this is a node of a Redis Cluster: give a redis+cluster:// URL (rediss+cluster:// with TLS) "
            "to serve the whole cluster"
        )
    for script in scripts.all():
        try:
            sha = await redis.script_load(script.source)
        except UNAVAILABLE as exc:
            report.problems.append(f"lua/{script.name}.lua does not load: {describe(exc)}")
            continue
        sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        if sha != script.sha:
            report.problems.append(f"lua/{script.name}.lua: Redis computed SHA-1 {sha}, expected {script.sha}")
            continue
        report.scripts_loaded += 1
    return report
