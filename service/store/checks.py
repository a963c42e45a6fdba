"""``sessionstore check``: whether a Redis can serve sessionstore.

It answers (PING), its version and mode (INFO server, INFO cluster),
whether every Lua script loads (SCRIPT LOAD, which also compiles it; on a
Redis Cluster, on every primary), and whether its eviction policy
(``maxmemory-policy``) is safe for this key layout: see EVICTION."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from .core import UNAVAILABLE
from .scripts import Scripts

# What Redis may evict when it is full, under each policy, for this layout
# (docs/operating.md, "Redis full"). Sessions carry a TTL (the retention, and
# an idle TTL where one is set); namespace records, the indexes of sessions
# and customers, and the sweeper's queue carry none.
SAFE_POLICIES = frozenset({"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"})
EVICTION = (
    "under allkeys-* Redis may evict a namespace record, a session index, a customer index or the sweeper's "
    "queue: all of the namespace's sessions are lost at once (a write makes it again at a new generation), "
    "listings, customer exports and erasures miss sessions, deleted namespaces are never reclaimed; use noeviction "
    "(writes refused when full: 507) or a volatile-* policy (only sessions, which carry a TTL, are evicted)"
)


@dataclass
class Report:
    answers: bool = False
    version: str = ""
    mode: str = ""  # standalone | cluster
    scripts_loaded: int = 0
    problems: list[str] = field(default_factory=list)  # one line each, for people
    eviction: str = ""  # maxmemory-policy ("" when it could not be read)
    warnings: list[str] = field(default_factory=list)  # one line each: it serves, but look at these

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
    await _eviction(redis, report)
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


async def _eviction(redis: Any, report: Report) -> None:
    try:
        found = await redis.config_get("maxmemory-policy")
    except UNAVAILABLE as exc:  # a managed Redis may refuse CONFIG
        report.warnings.append(f"the eviction policy could not be read ({describe(exc)}): {EVICTION}")
        return
    # one Redis: {"maxmemory-policy": policy}; a cluster: the same, or one such dict per node
    policies = {str(value) for value in _values(found, "maxmemory-policy")}
    report.eviction = ",".join(sorted(policies))
    unsafe = sorted(policies - SAFE_POLICIES)
    if unsafe:
        report.warnings.append(f"maxmemory-policy {', '.join(unsafe)} is not safe for sessionstore: {EVICTION}")


def _values(found: Any, name: str) -> list[Any]:
    if isinstance(found, dict):
        if name in found:
            value = found[name]
            return [value.decode() if isinstance(value, bytes) else value]
        return [v for node in found.values() for v in _values(node, name)]
    return []
