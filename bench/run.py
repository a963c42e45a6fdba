"""The benchmark run: servers, data, scenarios, figures, in this order.

1. a private redis-server on a free port;
2. the yardstick (bench/yardstick.py) alone, measured, then stopped, on
   uvicorn and then on granian (``--server`` picks one or both);
3. the service alone on the first server, on that Redis, and with it, one at a time:
   reads and writes on 1,000 sessions of 10 properties (LivePerson, native,
   Emporix), Redis memory per session, the 90/10 mix over 100,000 sessions,
   namespace deletes, then (once the service's sweeper has reclaimed the
   deleted sessions) reads at 1,000,000 stored sessions;
4. the service on the other server (granian), on the same Redis and
   sessions: LivePerson GET, native GET, LivePerson PATCH;
5. a private Redis Cluster of three primaries, the same 1,000 sessions on it,
   and LivePerson GET through the service (first server) on the cluster;
6. the yardstick again on each server; of each server's two, the quieter is
   the reference of every ratio of that server;
then everything started is stopped, and the report printed and written.
Each measured run records the CPU the server spent on it (its processes and
their workers, from /proc) per request completed, and Redis's.

Faces that are not mounted (their probe answers the router's 404) are
reported as "skipped: face not present"; their scenarios are complete and run
as soon as the face is there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.store import keys

from . import report
from .client import Http, Reply, is_router_404
from .fill import PROPERTIES, Filler, command, session_ids
from .machine import describe
from .nodes import Nodes, RedisCluster, info
from .procs import (
    GRANIAN_FLAGS,
    SERVERS,
    SERVICE_HTTP,
    UVICORN_FLAGS,
    AppServer,
    ProcessGroup,
    RedisServer,
    cpu_split,
    tree_cpu_seconds,
)
from .wrk import Wrk, WrkResult, ensure_wrk, wrk_version

RESULTS = Path(__file__).resolve().parent / "results"

TENANT = "bench"  # one tenant for every face (Emporix wants 3-16 lowercase letters and digits)
ID = "sess-%07d"  # session ids; the same format is given to the wrk scripts (Lua's string.format)
CTX = "ctx-%07d"  # Emporix session contexts
PATCH_BODY = '{"step":"paid"}'  # one property of the ten, merged in

# Emporix: a context of six fields (the service stores seven properties: sessionId too).
EMPORIX_FIELDS = ('"siteCode":"main","currency":"EUR","cartId":"cart-1183","language":"en","targetLocation":"DE",'
                  '"context":{"channel":"web","segment":"vip","visits":3,"consent":true},')
EMPORIX_POOL = 1000  # sessions per wrk thread for the version-checked PUT
NOISY_CORES = report.NOISY_CORES

SCENARIOS = ("lp-get", "native-get", "native-get-304", "emporix-get", "lp-patch", "native-patch", "emporix-put",
             "mix", "reads-1m", "memory", "ns-delete", "lp-get-cluster")
OTHER_SERVER_SCENARIOS = ("lp-get", "native-get", "lp-patch")  # what the second server (granian) serves too
CLUSTER_PRIMARIES = 3


API_KEY_HEADER, API_KEY = "maven-api-key", "bench-secret"  # --api-key-rate


def auth_file(directory: Path, rate: str) -> Path:
    """An auth file of one key (API_KEY) for every tenant, with ``rate``
    ("none": no rate), written to ``directory``/auth.toml (--api-key-rate)."""
    path = directory / "auth.toml"
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    rated = "" if rate == "none" else f'rate = "{rate}"\n'
    path.write_text(f'[[keys]]\nid = "bench"\ntenant = "*"\nsha256 = "{digest}"\nscopes = ["admin"]\n{rated}')
    return path


def lp_path(namespace: str) -> str:
    return f"/v1/account/{TENANT}/{namespace}/"


def native_path(namespace: str) -> str:
    return f"/api/v1/tenants/{TENANT}/namespaces/{namespace}/sessions/"


def emporix_path() -> str:
    return f"/session-context/{TENANT}/context/"


@dataclass
class Options:
    duration_s: float = 10.0
    warmup_s: float = 2.0
    connections: int = 64
    small_sessions: int = 1000
    mix_sessions: int = 100_000
    large_sessions: int = 1_000_000
    delete_sessions: tuple[int, ...] = (10, 100_000)
    delete_reps: tuple[int, ...] = (5, 3)
    memory_sessions: int = 10_000
    retries: int = 2  # more measured runs of a scenario when the machine was busy with other work
    pin: bool = False  # the server on one CPU, wrk and Redis on the others (measured here: no better, slightly slower)
    skip_million: bool = False
    only: frozenset[str] | None = None
    quick: bool = False
    save: bool = False
    results_dir: Path = RESULTS
    servers: tuple[str, ...] = SERVERS  # the first serves every scenario, the others OTHER_SERVER_SCENARIOS
    api_key_rate: str | None = None  # --api-key-rate: an auth file, every request with its one key ("none": unrated)

    @property
    def complete(self) -> bool:
        """A default run: everything, at the issue's sizes and 64 connections, on both servers."""
        return not (self.quick or self.only or self.skip_million) and self.large_sessions == 1_000_000 \
            and self.connections == 64 and self.servers == SERVERS and self.api_key_rate is None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sessionstore against a bare Starlette endpoint (the yardstick), with wrk, on a private "
        "redis-server; everything on 127.0.0.1, everything it starts is stopped at the end.",
        epilog="Three scenarios run on their own: --soak (the long soak: python -m bench --soak --help), --hot-key "
        "(other sessions' latency while one session is hammered with writes: python -m bench --hot-key --help) and "
        "--instructions (the service's CPU instructions per request, under callgrind: python -m bench --instructions "
        "--help).",
    )
    p.add_argument("--duration", type=float, default=None, help="seconds measured per scenario (default 10; 3 with --quick)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each (default 2; 1 with --quick)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--quick", action="store_true",
                   help="a short smoke run: 3 s per scenario, 10,000 sessions for the mix, 20,000 instead of 1,000,000")
    p.add_argument("--only", action="append", metavar="SCENARIO",
                   help="run only these (repeat or comma-separate): " + ", ".join(SCENARIOS) + "; the yardstick always runs")
    p.add_argument("--skip-million", action="store_true", help="leave out the reads at 1,000,000 stored sessions")
    p.add_argument("--large-sessions", type=int, default=None, help="stored sessions for the scaling read (default 1,000,000)")
    p.add_argument("--retries", type=int, default=2,
                   help=f"measure a scenario again, up to this many times, when other work kept more than {NOISY_CORES} "
                   "cores busy during its run; the quietest run counts (default 2)")
    p.add_argument("--server", choices=(*SERVERS, "both"), default="both",
                   help="the HTTP server(s) of the yardstick and the service: with both (the default), every scenario "
                   "on uvicorn, and the yardstick, " + ", ".join(OTHER_SERVER_SCENARIOS) + " on granian too")
    p.add_argument("--pin", action="store_true",
                   help="pin the server under test to one CPU, and wrk and Redis to the others (default: the scheduler decides)")
    p.add_argument("--save", action="store_true",
                   help="also save a partial run (--quick, --only, --skip-million) as bench/results/<time>-partial.json")
    p.add_argument("--api-key-rate", metavar="RATE",
                   help="serve with an auth file of one API key, sent with every request, with this rate limit (e.g. "
                   "1000000/s, high enough not to refuse; 'none': a key without one): the cost of a rate limit, against "
                   "a run with 'none' (the scenarios of random.lua: lp-get, lp-patch and the like)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON and the chart go (default bench/results)")
    a = p.parse_args(argv)
    only = None
    if a.only:
        only = frozenset(n.strip() for item in a.only for n in item.split(",") if n.strip())
        unknown = sorted(only - set(SCENARIOS) - {"yardstick"})
        if unknown:
            p.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    o = Options(connections=a.connections, skip_million=a.skip_million, only=only, quick=a.quick, save=a.save,
                results_dir=a.results_dir, retries=a.retries, pin=a.pin, api_key_rate=a.api_key_rate,
                servers=SERVERS if a.server == "both" else (a.server,))
    if a.quick:
        o.duration_s, o.warmup_s = 3.0, 1.0
        o.mix_sessions, o.large_sessions, o.memory_sessions = 10_000, 20_000, 2_000
        o.delete_sessions, o.delete_reps = (10, 10_000), (3, 2)
    if a.duration is not None:
        o.duration_s = a.duration
    if a.warmup is not None:
        o.warmup_s = a.warmup
    if a.large_sessions is not None:
        o.large_sessions = a.large_sessions
    if o.duration_s < 1 or o.duration_s > 120 or o.warmup_s < 0 or o.warmup_s > 60:
        p.error("--duration must be 1 to 120 s and --warmup 0 to 60 s")
    if not 0 <= o.retries <= 5:
        p.error("--retries must be 0 to 5")
    if not 1 <= o.connections <= 1024:
        p.error("--connections must be 1 to 1024")
    if not 1000 <= o.large_sessions <= 5_000_000:
        p.error("--large-sessions must be 1,000 to 5,000,000")
    return o


# -- small helpers -------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling (and I/O wait) so far, steal included."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time and its finished children's (wrk)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def find_properties(value: Any, marker: str = "botName", depth: int = 0) -> dict[str, Any] | None:
    """The JSON object holding a session's properties (the one with ``marker``),
    wherever the representation puts it."""
    if isinstance(value, dict):
        if marker in value:
            return value
        if depth < 3:
            for v in value.values():
                found = find_properties(v, marker, depth + 1)
                if found is not None:
                    return found
    return None


def parallel(port: int, calls: Sequence[tuple[str, str, Any]], workers: int = 4, ok: tuple[int, ...] = (200, 201, 204)) -> list[Reply]:
    """Setup requests over a few keep-alive connections."""
    shares = [list(calls[i::workers]) for i in range(workers)]

    def work(share: list[tuple[str, str, Any]]) -> list[Reply]:
        with Http(port) as http:
            return [http.expect(m, p, b, ok=ok) for m, p, b in share]

    with ThreadPoolExecutor(workers) as pool:
        return [reply for replies in pool.map(work, shares) for reply in replies]


@dataclass
class NativeProbe:
    present: bool
    reason: str = ""
    etag: str | None = None
    conditional: str = ""  # why the conditional GET cannot run ("" = it can)
    patch: tuple[str, str] | None = None  # body, content type that the face took
    patch_reason: str = ""


@dataclass
class Bench:
    opts: Options
    procs: ProcessGroup = field(default_factory=ProcessGroup)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sessionstore-bench-")))
    records: list[dict[str, Any]] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)
    yardstick_rps: float | None = None
    filled: dict[tuple[int, str], int] = field(default_factory=dict)  # (first Redis port, namespace): sessions
    service_names: list[str] = field(default_factory=list)  # of every service started, for its log
    t0: float = field(default_factory=time.monotonic)

    # -- plumbing ------------------------------------------------------------------

    def wanted(self, name: str) -> bool:
        only = self.opts.only
        if only is None:
            return name != "reads-1m" or not self.opts.skip_million
        return name in only or (name == "lp-get" and bool({"reads-1m", "lp-get-cluster"} & only))

    @property
    def primary(self) -> str:
        """The server that serves every scenario (the others serve OTHER_SERVER_SCENARIOS)."""
        return self.opts.servers[0]

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", flush=True)

    def measure(self, server: AppServer, script: str, args: Sequence[str] | Callable[[int], Sequence[str]],
                warm_args: Sequence[str] | None = None, url: str | None = None) -> tuple[WrkResult, dict[str, Any]]:
        """A warm-up run (figures dropped), then the measured run, with what
        the server and Redis spent on it. A measured run during which the
        rest of the machine kept more than NOISY_CORES busy is done again (at
        most RETRIES more times), and the quietest one is kept. ``args`` may
        be a function of the attempt (0, 1, ...) that prepares and gives them."""
        url = url or server.base
        first = args(0) if callable(args) else args
        if self.opts.warmup_s > 0:
            self.wrk.run(url, script, warm_args if warm_args is not None else first, self.opts.warmup_s)
        best: tuple[WrkResult, dict[str, Any]] | None = None
        seen = []
        for attempt in range(1 + self.opts.retries):
            current = first if attempt == 0 else (args(attempt) if callable(args) else args)
            result, extra = self._measured_run(server, url, script, current)
            extra["attempt"] = attempt
            seen.append(extra["other_load_cores"])
            if best is None or extra["other_load_cores"] < best[1]["other_load_cores"]:
                best = (result, extra)
            if extra["other_load_cores"] <= NOISY_CORES:
                break
            if attempt < self.opts.retries:
                self.say(f"  the machine was busy with other work ({extra['other_load_cores']:.2f} cores): once more")
                time.sleep(2)
        assert best is not None
        best[1]["other_load_attempts"] = seen
        return best

    def _measured_run(self, server: AppServer, url: str, script: str, args: Sequence[str]) -> tuple[WrkResult, dict[str, Any]]:
        assert server.process is not None
        self.nodes.reset_stats()
        (cpu0, _), rcpu0, wall0 = tree_cpu_seconds(server.process.pid), self.nodes.cpu_seconds(), time.monotonic()
        busy0, own0 = machine_busy_seconds(), own_cpu_seconds()
        result = self.wrk.run(url, script, args, self.opts.duration_s)
        wall = time.monotonic() - wall0
        cpu1, processes = tree_cpu_seconds(server.process.pid)
        cpu, rcpu = cpu1 - cpu0, self.nodes.cpu_seconds() - rcpu0
        # what the rest of the machine (other people's work, the hypervisor) took meanwhile, in cores
        others = max(0.0, (machine_busy_seconds() - busy0) - (own_cpu_seconds() - own0) - cpu - rcpu) / wall
        if not server.alive():
            raise RuntimeError(f"{server.name} died during the run{server.log_tail()}")
        n = max(result.requests, 1)
        calls = {k: round(v / n, 2) for k, v in sorted(self.nodes.command_calls().items(), key=lambda kv: -kv[1])
                 if k.partition("|")[0] not in ("config", "info") and v / n >= 0.01}
        extra = {
            "server_cpu_share": round(cpu / wall, 2),  # of one core
            "server_cpu_us_per_request": round(cpu * 1e6 / n, 1),  # user + system, the server's processes and workers
            "server_processes": processes,
            "redis_cpu_us_per_request": round(rcpu * 1e6 / n, 1),
            "redis_calls_per_request": calls,  # commands run inside Lua scripts included
            "other_load_cores": round(others, 2),
        }
        self.say(f"  {result.rps:,.0f} requests/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                 f"errors {result.error_count}; server CPU {cpu / wall:.0%} ({cpu * 1e6 / n:,.0f} µs/request), "
                 f"other load {others:.2f} cores")
        return result, extra

    def add(self, name: str, label: str, group: str, result: WrkResult | None = None, *, skipped: str | None = None,
            server: str | None = None, **extra: Any) -> dict[str, Any]:
        """A scenario's record; ``server``: the one it ran on (default: the
        current service's). On a server other than uvicorn, the name and
        label say which (e.g. lp-get-granian); ``scenario`` is the name
        without it."""
        server = server or self.service.server
        full, shown = (name, label) if server == "uvicorn" else (f"{name}-{server}", f"{label}, on {server}")
        record = report.scenario(full, shown, group, result.to_json() if result else None, yardstick_rps=self.yardstick_rps,
                                 skipped=skipped, server=server, scenario=name, **extra)
        self.records.append(record)
        if skipped:
            self.say(f"{shown}: skipped: {skipped}")
        return record

    def generation(self, namespace: str) -> int:
        key = keys.namespace(TENANT, namespace)
        g = self.nodes.call(key, "HGET", key, "g")
        return int(g) if isinstance(g, bytes) else 0

    def lp_namespace(self, namespace: str, count: int) -> None:
        """Namespace ``namespace`` with ``count`` sessions of ten properties
        (ids ID % 0..count-1): made with one HTTP call, filled straight into Redis."""
        if self.filled.get((self.nodes.ports[0], namespace)) == count:
            return
        started = time.monotonic()
        self.http.expect("POST", f"/v1/account/{TENANT}", {"name": namespace})
        filler = self.nodes.filler(TENANT, namespace, self.generation(namespace))
        filler.fill(session_ids(count, ID), progress=f"filling {namespace}" if count >= 50_000 else None)
        last = self.http.expect("GET", lp_path(namespace) + ID % (count - 1) + "/properties").json()
        expected = {name: json.loads(value) for name, value in PROPERTIES}
        if last != expected:
            raise RuntimeError(f"a filled session does not read back as written: {last!r}")
        self.filled[(self.nodes.ports[0], namespace)] = count
        where = f" on the {len(self.nodes.ports)} nodes" if len(self.nodes.ports) > 1 else ""
        self.say(f"filled {namespace}{where}: {count:,} sessions in {time.monotonic() - started:.1f} s")

    # -- the run ---------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        started = datetime.now(UTC)
        binary = ensure_wrk()
        self.server_cpus, self.load_cpus = cpu_split() if self.opts.pin else (None, None)
        self.wrk = Wrk(self.procs, binary, connections=self.opts.connections, cpus=self.load_cpus)
        if self.opts.api_key_rate is not None:
            self.wrk.headers = Http.headers = {API_KEY_HEADER: API_KEY}
        machine = describe(wrk_version(binary))
        self.doc = {
            "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "complete": self.opts.complete,
            "settings": {
                "duration_s": self.opts.duration_s, "warmup_s": self.opts.warmup_s,
                "connections": self.opts.connections, "wrk_threads": self.wrk.threads,
                "servers": list(self.opts.servers),
                "uvicorn": " ".join(UVICORN_FLAGS), "uvicorn_service_http": SERVICE_HTTP,
                "granian": " ".join(GRANIAN_FLAGS), "quick": self.opts.quick,
                "cpus": {"server": self.server_cpus, "wrk_and_redis": self.load_cpus},
                "retries_when_noisy": {"max": self.opts.retries, "above_other_load_cores": NOISY_CORES},
                "only": sorted(self.opts.only) if self.opts.only else None,
                "api_key_rate": self.opts.api_key_rate,
                "sessions": {"small": self.opts.small_sessions, "mix": self.opts.mix_sessions,
                             "large": None if not self.wanted("reads-1m") else self.opts.large_sessions},
                "cluster_primaries": CLUSTER_PRIMARIES if self.wanted("lp-get-cluster") else None,
            },
            "machine": machine,
        }
        self.redis = RedisServer(self.procs, self.workdir, cpus=self.load_cpus).start()
        self.nodes = self.single = Nodes([self.redis.port])
        self.raw = self.single.first
        self.say(f"redis-server on port {self.redis.port}")

        for server in self.opts.servers:
            self.yardstick(server, "")

        self.service = self.start_service(self.primary, self.redis.url)
        with Http(self.service.port) as self.http:
            self.small_phase()
            if self.wanted("memory"):
                self.memory()
            if self.wanted("mix"):
                self.mix()
            if self.wanted("ns-delete"):
                self.namespace_deletes()
            if self.wanted("reads-1m"):
                self.scaling()
            elif self.opts.skip_million:
                self.doc["scaling"] = {"status": "skipped", "reason": "--skip-million"}
        self.service.stop()
        for server in self.opts.servers[1:]:
            if any(self.wanted(s) for s in OTHER_SERVER_SCENARIOS):
                self.other_server_phase(server)
        if self.wanted("lp-get-cluster"):
            self.cluster_phase()
        self.doc["service_log"] = self.service_log()

        # The yardsticks again: how much did the machine drift? Of each
        # server's two, the quieter is the reference of that server's ratios.
        for server in self.opts.servers:
            self.yardstick(server, "-end")
        report.apply_reference(self.doc, self.records)
        if self.wanted("lp-get-cluster"):
            self.doc["cluster"] = report.cluster_figure(self.records)

        self.doc["scenarios"] = self.records
        self.doc["targets"] = report.evaluate_targets(self.doc)
        self.doc["wall_s"] = round(time.monotonic() - self.t0, 1)
        return self.doc

    def yardstick(self, server: str, suffix: str) -> None:
        """The yardstick on ``server``, measured, then stopped (``suffix``: "" at the start, "-end" at the end)."""
        name = "yardstick" + suffix + ("" if server == "uvicorn" else f"-{server}")
        yardstick = AppServer(self.procs, self.workdir, "bench.yardstick:app", name, server=server,
                              cpus=self.server_cpus).start()
        self.say(f"yardstick (bare Starlette) on {server}, port {yardstick.port}" + (", again" if suffix else ""))
        result, extra = self.measure(yardstick, "plain.lua", [], url=yardstick.base + "/")
        if self.yardstick_rps is None:
            self.yardstick_rps = result.rps  # for now; the quieter of the two yardsticks is the reference in the end
        self.add("yardstick" + suffix, f"yardstick (bare Starlette), at the {'end' if suffix else 'start'}", "yardstick",
                 result, server=server, **extra)
        yardstick.stop()

    def start_service(self, server: str, redis_url: str, name: str = "service") -> AppServer:
        """The service on ``server``, on the Redis (or cluster) at ``redis_url``."""
        env = {"SESSIONSTORE_REDIS_URL": redis_url}
        if self.opts.api_key_rate is not None:
            env["SESSIONSTORE_AUTH_FILE"] = str(auth_file(self.workdir, self.opts.api_key_rate))
        service = AppServer(self.procs, self.workdir, "bench.service_app:app", name, server=server, factory=True,
                            cpus=self.server_cpus, env=env, ready_path="/readyz",
                            http=SERVICE_HTTP).start()
        self.service_names.append(name)
        self.say(f"service on {server}, port {service.port}, Redis {redis_url}")
        return service

    def other_server_phase(self, server: str) -> None:
        """OTHER_SERVER_SCENARIOS on the service on ``server``, on the same Redis and sessions."""
        n, ns = self.opts.small_sessions, "lp1k"
        self.service = self.start_service(server, self.redis.url, name=f"service-{server}")
        try:
            with Http(self.service.port) as self.http:
                self.lp_namespace(ns, n)  # filled already, unless only native GET ran before
                if self.wanted("lp-get"):
                    self.lp_get(ns, n)
                if self.wanted("native-get"):
                    self.native_get(self.probe_native(ns), ns, n)
                if self.wanted("lp-patch"):
                    self.lp_patch(ns, n)
        finally:
            self.service.stop()

    def cluster_phase(self) -> None:
        """LivePerson GET on a private Redis Cluster of CLUSTER_PRIMARIES
        primaries, through the service on the first server, on sessions
        filled as on the one Redis (each to the node of its slot)."""
        n, ns = self.opts.small_sessions, "lp1k"
        self.say(f"a Redis Cluster of {CLUSTER_PRIMARIES} primaries")
        cluster = RedisCluster(self.procs, self.workdir, size=CLUSTER_PRIMARIES, cpus=self.load_cpus)
        try:
            try:
                cluster.start()
            except RuntimeError as exc:  # no redis-cli, or a cluster that did not settle: the rest of the run stands
                self.add("lp-get-cluster", f"LivePerson GET on a {CLUSTER_PRIMARIES}-primary Redis Cluster", "cluster",
                         skipped=f"the Redis Cluster did not start: {exc}", server=self.primary)
                return
            self.nodes = Nodes(cluster.ports, cluster=True)
            self.service = self.start_service(self.primary, cluster.url, name="service-cluster")
            with Http(self.service.port) as self.http:
                self.lp_namespace(ns, n)
                self.say(f"LivePerson GET of a random session of {n:,}, on the Redis Cluster")
                result, extra = self.measure(self.service, "random.lua", ["GET", lp_path(ns), "/properties", str(n), ID])
                self.add("lp-get-cluster", f"LivePerson GET on a {CLUSTER_PRIMARIES}-primary Redis Cluster", "cluster", result,
                         primaries=CLUSTER_PRIMARIES, **extra)
            self.service.stop()
        finally:
            if self.nodes is not self.single:
                self.nodes.close()
            self.nodes = self.single
            cluster.stop()

    def close(self) -> None:
        try:
            if getattr(self, "raw", None) is not None:
                self.raw.sock.close()
        finally:
            self.procs.stop_all()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def service_log(self) -> list[str]:
        """What the services logged (at warning and above): the first lines
        of each, marked with the service's name."""
        lines: list[str] = []
        for name in dict.fromkeys(self.service_names):
            path = self.workdir / f"{name}.log"
            if path.exists():
                lines += [line if name == "service" else f"[{name}] {line}" for line in path.read_text(errors="replace").splitlines()]
        return lines[:20] + ([f"... {len(lines) - 20} more lines"] if len(lines) > 20 else [])

    # -- scenarios on 1,000 sessions ------------------------------------------------------

    def small_phase(self) -> None:
        n, ns = self.opts.small_sessions, "lp1k"
        needs_lp = {"lp-get", "lp-patch", "native-get", "native-get-304", "native-patch"}
        if any(self.wanted(s) for s in needs_lp):
            self.lp_namespace(ns, n)
        if self.wanted("lp-get"):
            self.lp_get(ns, n)
        probe = None
        if any(self.wanted(s) for s in ("native-get", "native-get-304", "native-patch")):
            probe = self.probe_native(ns)
        if self.wanted("native-get"):
            self.native_get(probe, ns, n)
        if self.wanted("native-get-304"):
            self.native_conditional(probe, ns, n)
        emporix = None
        if self.wanted("emporix-get") or self.wanted("emporix-put"):
            emporix = self.probe_emporix()
        if self.wanted("emporix-get"):
            self.emporix_get(emporix, n)
        if self.wanted("lp-patch"):
            self.lp_patch(ns, n)
        if self.wanted("native-patch"):
            self.native_patch(probe, ns, n)
        if self.wanted("emporix-put"):
            self.emporix_put(emporix)

    def lp_get(self, ns: str, n: int) -> None:
        self.say(f"LivePerson GET of a random session of {n:,}, on {self.service.server}")
        result, extra = self.measure(self.service, "random.lua", ["GET", lp_path(ns), "/properties", str(n), ID])
        self.add("lp-get", "LivePerson GET (10 properties)", "read", result, **extra)

    def lp_patch(self, ns: str, n: int) -> None:
        self.say(f"LivePerson PATCH of one property of a random session of {n:,}, on {self.service.server}")
        result, extra = self.measure(self.service, "random.lua",
                                     ["PATCH", lp_path(ns), "/properties", str(n), ID, PATCH_BODY, "application/json"])
        self.add("lp-patch", "LivePerson PATCH of one property", "write", result, **extra)

    # -- native API ------------------------------------------------------------------------

    def probe_native(self, ns: str) -> NativeProbe:
        path = native_path(ns) + ID % 0
        reply = self.http.request("GET", path)
        if is_router_404(reply):
            return NativeProbe(False, "face not present")
        if reply.status != 200:
            return NativeProbe(False, f"probe GET {path} answered {reply.status}: {reply.body[:120]!r}")
        probe = NativeProbe(True, etag=reply.headers.get("etag"))
        if probe.etag is None:
            probe.conditional = "the native GET answers no ETag"
        else:
            again = self.http.request("GET", path, headers={"If-None-Match": probe.etag})
            if again.status != 304:
                probe.conditional = f"If-None-Match with the current ETag answered {again.status}, not 304"
        return probe

    def native_get(self, probe: NativeProbe | None, ns: str, n: int) -> None:
        label = "native GET"
        if probe is None or not probe.present:
            self.add("native-get", label, "read", skipped=probe.reason if probe else "not probed")
            return
        self.say(f"native GET of a random session of {n:,}")
        result, extra = self.measure(self.service, "random.lua", ["GET", native_path(ns), "", str(n), ID])
        self.add("native-get", label, "read", result, **extra)

    def native_conditional(self, probe: NativeProbe | None, ns: str, n: int) -> None:
        label = "native conditional GET (304)"
        if probe is None or not probe.present or probe.conditional:
            reason = (probe.reason or probe.conditional) if probe else "not probed"
            self.add("native-get-304", label, "read", skipped=reason)
            return
        # the current ETag of every session, fetched now (the writes come later)
        lines = []
        for i in range(n):
            path = native_path(ns) + ID % i
            etag = self.http.expect("GET", path).headers.get("etag")
            if etag:
                lines.append(f"{path}\t{etag}\n")
        tags = self.workdir / "etags.tsv"
        tags.write_text("".join(lines))
        self.say(f"native conditional GET (If-None-Match) of a random session of {n:,}")
        result, extra = self.measure(self.service, "conditional.lua", [str(tags)])
        self.add("native-get-304", label, "read", result, **extra)

    PATCH_CANDIDATES = (
        ("{{\"step\":\"{v}\"}}", "application/merge-patch+json"),
        ("{{\"properties\":{{\"step\":\"{v}\"}}}}", "application/merge-patch+json"),
        ("{{\"step\":\"{v}\"}}", "application/json"),
        ("{{\"properties\":{{\"step\":\"{v}\"}}}}", "application/json"),
    )

    def probe_native_patch(self, ns: str) -> tuple[tuple[str, str] | None, str]:
        """The body shape and content type the native PATCH takes: tried in
        turn, a shape counts when a GET afterwards shows the merged property
        among the session's other properties."""
        path = native_path(ns) + ID % 1
        answers = []
        for n, (shape, content_type) in enumerate(self.PATCH_CANDIDATES):
            marker = f"probe-{n}"
            reply = self.http.request("PATCH", path, shape.format(v=marker).encode(), {"Content-Type": content_type})
            answers.append(f"{content_type} {shape.format(v='…')}: {reply.status}")
            if reply.status == 428:
                return None, "the native PATCH wants If-Match (428); this benchmark sends unconditional merges"
            if reply.status in (200, 204):
                found = find_properties(self.http.expect("GET", path).json())
                if found is not None and found.get("step") == marker:
                    return (shape.format(v="paid"), content_type), ""
        return None, "no PATCH body shape was taken (" + "; ".join(answers) + ")"

    def native_patch(self, probe: NativeProbe | None, ns: str, n: int) -> None:
        label = "native PATCH of one property"
        if probe is None or not probe.present:
            self.add("native-patch", label, "write", skipped=probe.reason if probe else "not probed")
            return
        shape, reason = self.probe_native_patch(ns)
        if shape is None:
            self.add("native-patch", label, "write", skipped=reason)
            return
        body, content_type = shape
        self.say(f"native PATCH ({content_type}) of a random session of {n:,}")
        result, extra = self.measure(self.service, "random.lua", ["PATCH", native_path(ns), "", str(n), ID, body, content_type])
        self.add("native-patch", label, "write", result, body=body, content_type=content_type, **extra)

    # -- Emporix -----------------------------------------------------------------------------

    def probe_emporix(self) -> str:
        """"" when the Emporix face answers, else why not."""
        reply = self.http.request("GET", emporix_path() + "probe-missing")
        if is_router_404(reply):
            return "face not present"
        if reply.status != 404:
            return f"probe GET of a missing context answered {reply.status}: {reply.body[:120]!r}"
        return ""

    def emporix_contexts(self, fmt: str, count: int) -> int:
        """Creates contexts fmt % 0..count-1 (PUT with upsert); returns their version."""
        body = ("{" + EMPORIX_FIELDS + '"metadata":{"version":1}}').encode()
        calls = [("PUT", emporix_path() + fmt % i + "?upsert=true", body) for i in range(count)]
        parallel(self.service.port, calls)
        first = self.http.expect("GET", emporix_path() + fmt % 0).json()
        return int(first["metadata"]["version"])

    def emporix_get(self, absent: str | None, n: int) -> None:
        label = "Emporix GET"
        if absent:
            self.add("emporix-get", label, "read", skipped=absent)
            return
        self.emporix_contexts(CTX, n)
        self.say(f"Emporix GET of a random context of {n:,}")
        result, extra = self.measure(self.service, "random.lua", ["GET", emporix_path(), "", str(n), CTX])
        self.add("emporix-get", label, "read", result, **extra)

    def emporix_put(self, absent: str | None) -> None:
        label = "Emporix PUT with the right version"
        if absent:
            self.add("emporix-put", label, "write", skipped=absent)
            return
        pool = EMPORIX_POOL * self.wrk.threads
        head = "{" + EMPORIX_FIELDS + '"metadata":{"version":'
        warm_fmt = "put-w-%07d"
        warm_start = self.emporix_contexts(warm_fmt, pool) if self.opts.warmup_s > 0 else 1
        starts: list[int] = []

        def fresh_pool(attempt: int) -> list[str]:
            # every measured run (a repeat too) PUTs to contexts of its own, all at one known version
            starts.append(self.emporix_contexts(f"put-m{attempt}-%07d", pool))
            return [emporix_path(), f"put-m{attempt}-%07d", str(EMPORIX_POOL), str(starts[-1]), head]

        self.say(f"Emporix PUT with the right version, round robin over {pool:,} contexts")
        result, extra = self.measure(self.service, "versioned_put.lua", fresh_pool,
                                     warm_args=[emporix_path(), warm_fmt, str(EMPORIX_POOL), str(warm_start), head])
        # the versions moved as the script counted: every context is now at the
        # start version + the rounds completed (or one more), unless a PUT failed
        fmt = f"put-m{extra['attempt']}-%07d"
        versions = [self.http.expect("GET", emporix_path() + fmt % i).json()["metadata"]["version"]
                    for i in range(0, pool, max(1, pool // 50))]
        self.add("emporix-put", label, "write", result, pool=pool, start_version=starts[extra["attempt"]],
                 versions_after={"min": min(versions), "max": max(versions)}, **extra)

    # -- memory ------------------------------------------------------------------------------

    def memory(self) -> None:
        """MEMORY USAGE of one session written by the service (10 short
        properties) against a bare HSET of the same fields and values under a
        key of the same length; and used_memory per session over many."""
        self.say("Redis memory per session")
        ns, sid = "mem", "sess-mem-0000001"
        body = b"{" + b",".join(json.dumps(name).encode() + b":" + value for name, value in PROPERTIES) + b"}"
        self.http.expect("PATCH", lp_path(ns) + sid + "/properties", body, {"Content-Type": "application/json"})
        key = keys.session(TENANT, ns, self.generation(ns), sid).session
        stored = self.raw.call("HGETALL", key)
        assert isinstance(stored, list)
        fields = [(stored[i], stored[i + 1]) for i in range(0, len(stored), 2) if stored[i] != keys.META_FIELD.encode()]
        bare = "bare:".ljust(len(key), "x")
        self.raw.call("HSET", bare, *(x for pair in fields for x in pair))
        session_bytes = self.raw.integer("MEMORY", "USAGE", key, "SAMPLES", "0")
        bare_bytes = self.raw.integer("MEMORY", "USAGE", bare, "SAMPLES", "0")
        encoding = self.raw.call("OBJECT", "ENCODING", key)
        self.raw.call("DEL", bare)
        memory: dict[str, Any] = {
            "key": key, "key_length": len(key), "fields": len(fields),
            "session_bytes": session_bytes, "bare_bytes": bare_bytes,
            "ratio": round(session_bytes / bare_bytes, 3), "encoding": encoding.decode() if isinstance(encoding, bytes) else None,
        }
        # amortised: used_memory per session, the service's indexes included
        count = self.opts.memory_sessions
        before = int(info(self.raw, "memory")["used_memory"])
        ns_many = "mem-many"
        self.http.expect("POST", f"/v1/account/{TENANT}", {"name": ns_many})
        generation = self.generation(ns_many)
        Filler(self.redis.port, TENANT, ns_many, generation).fill(session_ids(count, ID))
        after_sessions = int(info(self.raw, "memory")["used_memory"])
        bare_keys = []
        for i in range(count):
            length = len(keys.session(TENANT, ns_many, generation, ID % i).session)
            bare_keys.append(f"bare:{i}:".ljust(length, "x"))
        flat = [x for pair in fields for x in pair]
        self.pipeline(command("HSET", k, *flat) for k in bare_keys)
        after_bare = int(info(self.raw, "memory")["used_memory"])
        self.pipeline(command("UNLINK", *bare_keys[i:i + 1000]) for i in range(0, count, 1000))
        per_session, per_bare = (after_sessions - before) / count, (after_bare - after_sessions) / count
        memory["amortised"] = {"sessions": count, "session_bytes": round(per_session, 1), "bare_bytes": round(per_bare, 1),
                               "ratio": round(per_session / per_bare, 3)}
        self.doc["memory"] = memory
        self.say(f"  MEMORY USAGE {session_bytes} B vs bare HSET {bare_bytes} B ({memory['ratio']:.2f} ×); "
                 f"used_memory {per_session:.0f} vs {per_bare:.0f} B per session")

    def pipeline(self, commands: Iterator[bytes] | Sequence[bytes], chunk: int = 2000) -> None:
        batch: list[bytes] = []

        def flush() -> None:
            self.raw.send(b"".join(batch))
            for reply in self.raw.replies(len(batch)):
                if isinstance(reply, Exception):
                    raise reply
            batch.clear()

        for c in commands:
            batch.append(c)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()

    # -- the mix, scaling, namespace deletes ------------------------------------------------------

    def mix(self) -> None:
        n, ns = self.opts.mix_sessions, "mix"
        self.lp_namespace(ns, n)
        self.say(f"90/10 read/write mix (LivePerson GET / PATCH) over {n:,} sessions")
        result, extra = self.measure(self.service, "mix.lua", [lp_path(ns), "/properties", str(n), ID, "0.9", PATCH_BODY])
        self.add("mix", f"90/10 read/write mix over {n:,} sessions", "mix", result, **extra)

    def scaling(self) -> None:
        n, ns = self.opts.large_sessions, "lp1m"
        self.lp_namespace(ns, n)
        self.wait_for_sweeper()
        stored = self.raw.integer("DBSIZE")
        self.say(f"LivePerson GET of a random session of {n:,} ({stored:,} keys in Redis)")
        result, extra = self.measure(self.service, "random.lua", ["GET", lp_path(ns), "/properties", str(n), ID])
        record = self.add("reads-1m", f"LivePerson GET at {n:,} stored sessions", "scaling", result,
                          redis_keys=stored, **extra)
        small = next((r for r in self.records if r.get("scenario") == "lp-get" and r["server"] == self.service.server
                      and r["status"] == "ok"), None)
        if small is None:
            self.doc["scaling"] = {"status": "skipped", "reason": "no LivePerson GET at 1,000 sessions to compare with"}
            return
        self.doc["scaling"] = {"status": "ok", "small": self.opts.small_sessions, "large": n,
                               "small_rps": small["rps"], "large_rps": record["rps"],
                               "ratio": round(record["rps"] / small["rps"], 3)}

    def wait_for_sweeper(self, timeout_s: float = 150.0) -> None:
        """Until the service's sweeper has reclaimed every deleted namespace
        (it wakes every 30 s), so that it does not run during a measurement."""
        deadline = time.monotonic() + timeout_s
        waited = False
        while self.raw.integer("SCARD", keys.GRAVES) and time.monotonic() < deadline:
            if not waited:
                self.say("waiting for the sweeper to reclaim the deleted namespaces")
                waited = True
            time.sleep(1)
        if self.raw.integer("SCARD", keys.GRAVES):
            self.say(f"the sweeper had not finished after {timeout_s:.0f} s; measuring anyway")

    def namespace_deletes(self) -> None:
        entries = []
        for size, reps in zip(self.opts.delete_sessions, self.opts.delete_reps, strict=True):
            times = []
            for rep in range(reps):
                ns = f"del{size}-{rep}"
                self.lp_namespace(ns, size)
                self.http.expect("GET", "/healthz")  # the connection is open and warm
                t = time.perf_counter()
                self.http.expect("DELETE", f"/v1/account/{TENANT}/{ns}", ok=(204,))
                times.append((time.perf_counter() - t) * 1000)
                if self.http.expect("GET", lp_path(ns) + ID % 0 + "/properties").json() != {}:
                    raise RuntimeError(f"namespace {ns} still answers after its DELETE")
            entries.append({"sessions": size, "times_ms": [round(x, 3) for x in times], "median_ms": round(report.median(times), 3)})
            self.say(f"DELETE of a namespace of {size:,} sessions: median {report.median(times):.2f} ms of {reps}")
        self.doc["namespace_delete"] = entries


# -- entry point --------------------------------------------------------------------------------


def save(doc: dict[str, Any], opts: Options) -> list[Path]:
    stamp = doc["started_utc"].replace("-", "").replace(":", "")
    written = []
    if opts.complete:
        path = opts.results_dir / f"{stamp}.json"
        report.write_json(doc, path)
        report.write_json(doc, opts.results_dir / "latest.json")
        written += [path, opts.results_dir / "latest.json"]
        chart = opts.results_dir / "latest.png"
    elif opts.save:
        path = opts.results_dir / f"{stamp}-partial.json"
        report.write_json(doc, path)
        written.append(path)
        chart = opts.results_dir / f"{stamp}-partial.png"
    else:
        return written
    try:
        report.draw_chart(doc, chart)
        written.append(chart)
    except ImportError:
        print("bench: matplotlib is missing, no chart (pip install -e '.[bench]')", file=sys.stderr)
    return written


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None, run: Callable[[Options], dict[str, Any]] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a shell may start us with it ignored
        signal.signal(sig, _interrupt)
    if "--soak" in given or "--hot-key" in given or "--instructions" in given:  # scenarios of their own
        from . import hotkey, instructions, soak  # bench/soak.py, bench/hotkey.py, bench/instructions.py

        try:
            if "--instructions" in given:
                return instructions.main(given)
            return soak.main(given) if "--soak" in given else hotkey.main(given)
        except KeyboardInterrupt:
            print("\nbench: interrupted; stopping everything it started", file=sys.stderr)
            return 130
    opts = parse_args(given)
    bench = Bench(opts)
    try:
        doc = run(opts) if run is not None else bench.execute()
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    finally:
        bench.close()
    print()
    print(report.render(doc))
    if doc.get("service_log"):
        print("\nThe service logged:\n  " + "\n  ".join(doc["service_log"]))
    for path in save(doc, opts):
        print(f"wrote {path}")
    if not opts.complete and not opts.save:
        print("(a partial run: nothing written; --save writes it as bench/results/<time>-partial.json)")
    print(f"wall time {doc['wall_s']:.0f} s")
    return 0
