"""python -m bench --hot-key: other sessions' latency while one session is
hammered with writes (issue 16, point 3: "10,000 writes per second aimed at
one session keep other sessions' latency within 2× of normal").

In one run, on a private redis-server, three phases of ``--hot-key-seconds``
each (after a warm-up of their own, not counted):

1. ``alone``: the normal load, the 90/10 read/write mix (bench/wrk/mix.lua)
   at 64 connections over 10,000 sessions, on the service (uvicorn, one
   worker): its p50 and p99 are "normal";
2. ``same-instance``: the same load while a second wrk (64 connections,
   bench/wrk/hot.lua) PATCHes ONE session as fast as it can, through the
   same service instance;
3. ``other-instance``: the same, the hammer going through a second service
   instance on the same Redis (instances are stateless: a fleet behind a
   load balancer, one of which takes the abusive client).

The hammer starts a second before the normal load's measured run and ends a
second after it. Reported: the write rate the hammer reached (against the
issue's 10,000/s), and the normal load's p50 and p99 in each phase over
those of ``alone``. The JSON goes to <results-dir>/<UTC time>-hot-key.json.
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
from .procs import AppServer
from .rig import ID, PATCH_BODY, LoadMeter, Rig, lp_path, run_and_report, targets_table
from .run import RESULTS, native_path
from .wrk import WrkResult

NAMESPACE = "hot"
HOT_SESSION = "hot-session"
TARGET_WRITES = 10_000  # per second, the issue's
TARGET_RATIO = 2.0
LEAD_S = 1  # the hammer runs this long before and after the measured normal load


@dataclass
class HotKeyOptions:
    seconds: float = 20.0
    warmup_s: float = 5.0
    connections: int = 64
    hammer_connections: int = 64
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
    p.add_argument("--hot-key-sessions", type=int, default=10_000, help="sessions of the normal load (default 10,000)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)")
    a = p.parse_args(list(argv))
    if not 1 <= a.hot_key_seconds <= 600 or not 0 <= a.warmup <= 60:
        p.error("--hot-key-seconds must be 1 to 600 and --warmup 0 to 60 s")
    if not 1 <= a.connections <= 1024 or not 1 <= a.hammer_connections <= 1024 or not 100 <= a.hot_key_sessions <= 1_000_000:
        p.error("--connections and --hammer-connections 1 to 1024, --hot-key-sessions 100 to 1,000,000")
    return HotKeyOptions(seconds=a.hot_key_seconds, warmup_s=a.warmup, connections=a.connections,
                         hammer_connections=a.hammer_connections, sessions=a.hot_key_sessions, results_dir=a.results_dir)


def figures(result: WrkResult) -> dict[str, Any]:
    found = result.to_json()
    found.pop("latency_us")
    return {**found, "error_count": result.error_count}


@dataclass
class HotKey:
    opts: HotKeyOptions

    def __post_init__(self) -> None:
        self.rig = Rig(self.opts.connections)

    def normal_args(self) -> list[str]:
        return [lp_path(NAMESPACE), "/properties", str(self.opts.sessions), ID, str(self.opts.read_share), PATCH_BODY]

    def run(self) -> dict[str, Any]:
        rig = self.rig.start()
        service = rig.service()
        rig.fill(service, NAMESPACE, self.opts.sessions)
        doc = rig.header({**asdict(self.opts), "results_dir": str(self.opts.results_dir), "normal_script": "mix.lua",
                          "hammer_script": "hot.lua", "hot_session": HOT_SESSION, "lead_s": LEAD_S})
        self.hammer = rig.wrk_with(self.opts.hammer_connections)
        phases = [self.phase("alone", service, None)]
        phases.append(self.phase("same-instance", service, service))
        second = rig.service("service-hammer")
        try:
            phases.append(self.phase("other-instance", service, second))
        finally:
            second.stop()
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

    def loads(self, service: AppServer, target: AppServer | None, seconds: float) -> tuple[WrkResult, WrkResult | None]:
        """The normal load for ``seconds`` on ``service``; with ``target``,
        the hammer meanwhile on it, from LEAD_S before to LEAD_S after."""
        if target is None:
            return self.rig.wrk.run(service.base, "mix.lua", self.normal_args(), seconds), None
        path = lp_path(NAMESPACE) + HOT_SESSION + "/properties"
        with ThreadPoolExecutor(1) as pool:
            hammering = pool.submit(self.hammer.run, target.base, "hot.lua", [path], seconds + 2 * LEAD_S)
            time.sleep(LEAD_S)
            normal = self.rig.wrk.run(service.base, "mix.lua", self.normal_args(), seconds)
            return normal, hammering.result()

    def phase(self, name: str, service: AppServer, target: AppServer | None) -> dict[str, Any]:
        rig = self.rig
        if self.opts.warmup_s > 0:
            self.loads(service, target, self.opts.warmup_s)
        pids = tuple(server.process.pid for server in (service, target) if server is not None and server.process is not None)
        meter = LoadMeter(tuple(dict.fromkeys(pids)), rig.nodes).start()
        normal, hammer = self.loads(service, target, self.opts.seconds)
        record: dict[str, Any] = {"phase": name, "normal": figures(normal), "other_load_cores": meter.cores()}
        line = (f"{name}: normal load {normal.rps:,.0f} requests/s, p50 {normal.p50_ms:.2f} ms, p99 {normal.p99_ms:.2f} ms, "
                f"errors {normal.error_count}")
        if hammer is not None:
            record["hammer"] = figures(hammer)
            line += f"; hammer {hammer.rps:,.0f} writes/s on one session, errors {hammer.error_count}"
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
        hammered.append({
            "phase": phase["phase"], "hammer_writes_per_s": hammer["rps"], "hammer_errors": hammer["error_count"],
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


def render(doc: dict[str, Any]) -> str:
    rows = []
    for phase in doc["phases"]:
        n, h = phase["normal"], phase.get("hammer")
        rows.append([phase["phase"], f"{n['rps']:,.0f}", f"{n['p50_ms']:.2f}", f"{n['p99_ms']:.2f}", f"{n['error_count']:,}",
                     f"{h['rps']:,.0f}" if h else "-", f"{h['error_count']:,}" if h else "-",
                     f"{phase['other_load_cores']:.2f}"])
    table = report.markdown_table(["phase", "requests/s", "p50 ms", "p99 ms", "errors", "hammer writes/s",
                                   "hammer errors", "other load (cores)"], rows, "lrrrrrrr")
    s = doc["settings"]
    lines = [(f"Hot key: the {s['read_share']:.0%} read mix at {s['connections']} connections over {s['sessions']:,} "
             f"sessions, {s['seconds']:g} s per phase, while {s['hammer_connections']} connections PATCH one session "
             f"({doc['machine'].get('cpu', '?')}, {doc['machine'].get('cores', '?')} cores)"), "", table, ""]
    for h in doc["summary"]["hammered"]:
        lines.append(f"{h['phase']}: {h['hammer_writes_per_s']:,.0f} writes/s on one session; other sessions' p50 "
                     f"× {h['p50_ratio']}, p99 × {h['p99_ratio']}, requests/s × {h['rps_ratio']} of normal")
    lines.append(f"the hot session's version at the end: {doc.get('hot_session_version')}")
    lines += ["", targets_table(doc["summary"]["targets"])]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    hot = HotKey(opts)
    return run_and_report(hot.rig, hot.run, render, opts.results_dir, "hot-key")
