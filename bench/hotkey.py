"""python -m bench --hot-key: other sessions' latency while one session is
hammered with writes (issue 16, point 3: "10,000 writes per second aimed at
one session keep other sessions' latency within 2× of normal").

In one run, on a private redis-server, three phases of ``--hot-key-seconds``
each (after a warm-up of their own, not counted):

1. ``alone``: the normal load, the 90/10 read/write mix at 64 connections
   over 10,000 sessions, on the service (uvicorn, one worker): its p50 and
   p99 are "normal". By default each connection waits ``--normal-delay-ms``
   (20) after each answer (bench/wrk/mix_paced.lua), a load of about half
   what the instance can take, as a service is run; with 0 it is as fast as
   the connections go (bench/wrk/mix.lua), the instance saturated, where
   any work added shows in full as latency;
2. ``same-instance``: the same load while a second wrk (64 connections,
   bench/wrk/hot.lua) PATCHes ONE session as fast as it can, through the
   same service instance;
3. ``other-instance``: the same, the hammer going through a second service
   instance on the same Redis (instances are stateless: a fleet behind a
   load balancer, one of which takes the abusive client);
4. ``fleet``: 10,000 writes per second to the one session as a fleet of ten
   instances behind a load balancer would get them: the instance under test
   takes its tenth (wrk, bench/wrk/hot_paced.lua: about 1,000 writes/s) and
   the other nine's 9,000 writes/s go straight into Redis as those
   instances would send them (bench/fleet.py). Phases 2 and 3 show what one
   instance, or two on these two cores, can take; this one what the shared
   part, Redis, does with a hot key at the rate asked.

The hammer starts a second before the normal load's measured run and ends a
second after it. Reported: the write rate the hammer reached (against the
issue's 10,000/s; in ``fleet`` both parts, and the writes the hot session
took, from its version), and the normal load's p50 and p99 in each phase
over those of ``alone``. The JSON goes to <results-dir>/<UTC time>-hot-key.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import report
from .client import Http
from .fleet import FleetHammer
from .procs import AppServer
from .rig import ID, PATCH_BODY, LoadMeter, Rig, lp_path, run_and_report, targets_table
from .run import RESULTS, TENANT, native_path
from .wrk import WrkResult

NAMESPACE = "hot"
HOT_SESSION = "hot-session"
TARGET_WRITES = 10_000  # per second, the issue's
TARGET_RATIO = 2.0
LEAD_S = 1  # the hammer runs this long before and after the measured normal load
FLEET_SIZE = 10  # fleet phase: instances behind the load balancer, one of them the instance under test
AIM_OVER = 1.02  # the fleet aims 2 % over 10,000/s: the share's rate in the measured run differs from the warm-up's
SHARE_CONNECTIONS, SHARE_DELAY_MS = 32, 20  # its tenth: 32 connections each waiting 20 ms after each answer (about 1,000/s)


@dataclass
class HotKeyOptions:
    seconds: float = 20.0
    warmup_s: float = 5.0
    connections: int = 64
    hammer_connections: int = 64
    normal_delay_ms: int = 20
    sessions: int = 10_000
    read_share: float = 0.9
    results_dir: Path = RESULTS


def parse_args(argv: Sequence[str]) -> HotKeyOptions:
    p = argparse.ArgumentParser(prog="python -m bench --hot-key", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--hot-key", action="store_true", required=True, help="run the hot-key scenario (alone)")
    p.add_argument("--hot-key-seconds", type=float, default=20.0, help="seconds measured per phase (default 20)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up before each phase (default 5)")
    p.add_argument("--connections", type=int, default=64, help="connections of the normal load (default 64)")
    p.add_argument("--hammer-connections", type=int, default=64, help="connections of the hammer (default 64)")
    p.add_argument("--normal-delay-ms", type=int, default=20,
                   help="each normal connection waits this long after each answer (default 20; 0: saturate the instance)")
    p.add_argument("--hot-key-sessions", type=int, default=10_000, help="sessions of the normal load (default 10,000)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)")
    a = p.parse_args(list(argv))
    if not 1 <= a.hot_key_seconds <= 600 or not 0 <= a.warmup <= 60:
        p.error("--hot-key-seconds must be 1 to 600 and --warmup 0 to 60 s")
    if not 1 <= a.connections <= 1024 or not 1 <= a.hammer_connections <= 1024 or not 100 <= a.hot_key_sessions <= 1_000_000:
        p.error("--connections and --hammer-connections 1 to 1024, --hot-key-sessions 100 to 1,000,000")
    if not 0 <= a.normal_delay_ms <= 10_000:
        p.error("--normal-delay-ms must be 0 to 10,000")
    return HotKeyOptions(seconds=a.hot_key_seconds, warmup_s=a.warmup, connections=a.connections,
                         hammer_connections=a.hammer_connections, sessions=a.hot_key_sessions, results_dir=a.results_dir,
                         normal_delay_ms=a.normal_delay_ms)


def figures(result: WrkResult) -> dict[str, Any]:
    found = result.to_json()
    found.pop("latency_us")
    return {**found, "error_count": result.error_count}


@dataclass
class HotKey:
    opts: HotKeyOptions

    def __post_init__(self) -> None:
        self.rig = Rig(self.opts.connections)

    @property
    def normal_script(self) -> str:
        return "mix_paced.lua" if self.opts.normal_delay_ms else "mix.lua"

    def normal_args(self) -> list[str]:
        args = [lp_path(NAMESPACE), "/properties", str(self.opts.sessions), ID, str(self.opts.read_share), PATCH_BODY]
        return [*args, str(self.opts.normal_delay_ms)] if self.opts.normal_delay_ms else args

    def run(self) -> dict[str, Any]:
        rig = self.rig.start()
        service = rig.service()
        rig.fill(service, NAMESPACE, self.opts.sessions)
        doc = rig.header({**asdict(self.opts), "results_dir": str(self.opts.results_dir), "normal_script": self.normal_script,
                          "hammer_script": "hot.lua", "hot_session": HOT_SESSION, "lead_s": LEAD_S})
        self.hammer = rig.wrk_with(self.opts.hammer_connections)
        self.share = rig.wrk_with(SHARE_CONNECTIONS)
        phases = [self.phase("alone", service, None)]
        phases.append(self.phase("same-instance", service, service))
        second = rig.service("service-hammer")
        try:
            phases.append(self.phase("other-instance", service, second))
        finally:
            second.stop()
        phases.append(self.phase("fleet", service, service, fleet=True))
        doc["phases"] = phases
        doc["hot_session_version"] = self.hot_version(service)
        doc["summary"] = summarise(phases)
        doc["service_log"] = rig.service_log()
        doc["wall_s"] = round(time.monotonic() - rig.bench.t0, 1)
        return doc

    def hot_version(self, service: AppServer) -> int | None:
        """The hot session's version (its native ETag): how many writes it took."""
        with Http(service.port) as http:
            etag = http.request("GET", native_path(NAMESPACE) + HOT_SESSION).headers.get("etag", "")
        digits = etag.strip('W/"')
        return int(digits) if digits.isdigit() else None

    def loads(self, service: AppServer, target: AppServer | None, seconds: float,
              fleet: FleetHammer | None = None) -> tuple[WrkResult, WrkResult | None]:
        """The normal load for ``seconds`` on ``service``; with ``target``,
        the hammer meanwhile on it, from LEAD_S before to LEAD_S after: as
        fast as it goes, or with ``fleet`` the paced share of one instance,
        ``fleet`` sending the rest into Redis meanwhile."""
        if target is None:
            return self.rig.wrk.run(service.base, self.normal_script, self.normal_args(), seconds), None
        path = lp_path(NAMESPACE) + HOT_SESSION + "/properties"
        hammer, script, args = self.hammer, "hot.lua", [path]
        if fleet is not None:
            hammer, script, args = self.share, "hot_paced.lua", [path, str(SHARE_DELAY_MS)]
            fleet.start()
        try:
            with ThreadPoolExecutor(1) as pool:
                hammering = pool.submit(hammer.run, target.base, script, args, seconds + 2 * LEAD_S)
                time.sleep(LEAD_S)
                normal = self.rig.wrk.run(service.base, self.normal_script, self.normal_args(), seconds)
                return normal, hammering.result()
        finally:
            if fleet is not None:
                fleet.stop()

    def phase(self, name: str, service: AppServer, target: AppServer | None, fleet: bool = False) -> dict[str, Any]:
        rig = self.rig
        rest = None
        if fleet:
            rest = FleetHammer(rig.bench.redis.url, TENANT, NAMESPACE, HOT_SESSION, TARGET_WRITES * (FLEET_SIZE - 1) / FLEET_SIZE)
        if self.opts.warmup_s > 0:
            _, warm = self.loads(service, target, self.opts.warmup_s, rest)
            if rest is not None and warm is not None:  # the rest of the fleet: what the share leaves of 10,000/s
                rest.rate = max(0.0, TARGET_WRITES * AIM_OVER - warm.rps)
        pids = tuple(server.process.pid for server in (service, target) if server is not None and server.process is not None)
        meter = LoadMeter(tuple(dict.fromkeys(pids)), rig.nodes).start()
        version = self.hot_version(service)
        started = time.monotonic()
        normal, hammer = self.loads(service, target, self.opts.seconds, rest)
        took = (self.hot_version(service) or 0) - (version or 0)
        record: dict[str, Any] = {"phase": name, "normal": figures(normal), "other_load_cores": meter.cores()}
        line = (f"{name}: normal load {normal.rps:,.0f} requests/s, p50 {normal.p50_ms:.2f} ms, p99 {normal.p99_ms:.2f} ms, "
                f"errors {normal.error_count}")
        if hammer is not None:
            record["hammer"] = figures(hammer)
            record["hot_session_writes_per_s"] = round(took / (time.monotonic() - started), 1)
            line += f"; hammer {hammer.rps:,.0f} writes/s on one session, errors {hammer.error_count}"
            if rest is not None:
                record["fleet"] = rest.figures()
                line += f", the rest of the fleet {rest.writes_per_s:,.0f} writes/s into Redis ({rest.failed} failed)"
            line += f"; the session took {record['hot_session_writes_per_s']:,.0f} writes/s"
        for server in (service, target):
            if server is not None and not server.alive():
                raise RuntimeError(f"{server.name} died in phase {name}{server.log_tail()}")
        rig.say(line + f"; other load {record['other_load_cores']:.2f} cores")
        return record


def summarise(phases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    alone = phases[0]["normal"]
    hammered = []
    for phase in phases[1:]:
        normal, hammer = phase["normal"], phase["hammer"]
        fleet = phase.get("fleet")
        hammered.append({
            "phase": phase["phase"], "hammer_writes_per_s": round(hammer["rps"] + (fleet["writes_per_s"] if fleet else 0), 1),
            "hammer_errors": hammer["error_count"] + (fleet["failed"] if fleet else 0),
            "hot_session_writes_per_s": phase.get("hot_session_writes_per_s"),
            "p50_ratio": round(normal["p50_ms"] / alone["p50_ms"], 2) if alone["p50_ms"] else None,
            "p99_ratio": round(normal["p99_ms"] / alone["p99_ms"], 2) if alone["p99_ms"] else None,
            "rps_ratio": round(normal["rps"] / alone["rps"], 2) if alone["rps"] else None,
            "normal_errors": normal["error_count"],
        })
    targets = []
    for h in hammered:
        targets.append({"figure": f"{h['phase']}: hammer writes/s on one session", "target": f">= {TARGET_WRITES:,}",
                        "measured": f"{h['hammer_writes_per_s']:,.0f}",
                        "result": "PASS" if h["hammer_writes_per_s"] >= TARGET_WRITES else "MISS"})
        targets.append({"figure": f"{h['phase']}: other sessions' p99 / normal", "target": f"<= {TARGET_RATIO:g}",
                        "measured": f"{h['p99_ratio']}",
                        "result": "PASS" if h["p99_ratio"] is not None and h["p99_ratio"] <= TARGET_RATIO else "MISS"})
    return {"alone": {k: alone[k] for k in ("rps", "p50_ms", "p99_ms", "error_count")}, "hammered": hammered,
            "targets": targets}


def hammer_cell(phase: dict[str, Any]) -> str:
    h, fleet = phase.get("hammer"), phase.get("fleet")
    if h is None:
        return "-"
    if fleet is None:
        return f"{h['rps']:,.0f}"
    return f"{h['rps']:,.0f} + {fleet['writes_per_s']:,.0f} into Redis"


def render(doc: dict[str, Any]) -> str:
    rows = []
    for phase in doc["phases"]:
        n, h = phase["normal"], phase.get("hammer")
        rows.append([phase["phase"], f"{n['rps']:,.0f}", f"{n['p50_ms']:.2f}", f"{n['p99_ms']:.2f}", f"{n['error_count']:,}",
                     hammer_cell(phase), f"{h['error_count']:,}" if h else "-",
                     f"{phase['other_load_cores']:.2f}"])
    table = report.markdown_table(["phase", "requests/s", "p50 ms", "p99 ms", "errors", "hammer writes/s",
                                   "hammer errors", "other load (cores)"], rows, "lrrrrrrr")
    s = doc["settings"]
    pace = f", each waiting {s['normal_delay_ms']} ms after each answer," if s.get("normal_delay_ms") else ""
    lines = [(f"Hot key: the {s['read_share']:.0%} read mix at {s['connections']} connections{pace} over {s['sessions']:,} "
             f"sessions, {s['seconds']:g} s per phase, while {s['hammer_connections']} connections PATCH one session "
             f"({doc['machine'].get('cpu', '?')}, {doc['machine'].get('cores', '?')} cores)"), "", table, ""]
    for h in doc["summary"]["hammered"]:
        lines.append(f"{h['phase']}: {h['hammer_writes_per_s']:,.0f} writes/s on one session; other sessions' p50 "
                     f"× {h['p50_ratio']}, p99 × {h['p99_ratio']}, requests/s × {h['rps_ratio']} of normal")
    lines.append(f"the hot session's version at the end: {doc.get('hot_session_version')}; "
                 f"in the fleet phase the service under test took the share of one of {FLEET_SIZE} instances, "
                 f"the rest went straight into Redis (bench/fleet.py)")
    lines += ["", targets_table(doc["summary"]["targets"])]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    hot = HotKey(opts)
    return run_and_report(hot.rig, hot.run, render, opts.results_dir, "hot-key")
