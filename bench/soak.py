"""python -m bench --soak: the long soak of issue 16 (point 4).

The 90/10 read/write mix (bench/wrk/mix.lua: LivePerson GET / PATCH of one
property, on random sessions) at 64 connections, on the service (uvicorn, one
worker) on a private redis-server, for ``--soak-minutes`` (default 10) after
a warm-up (default 20 s) whose figures are kept apart. wrk runs one minute
at a time, so each minute has its own requests/s, p50, p99 and errors
(answers of 400 and above, and socket errors: connect, read, write,
timeout). Every ``--soak-sample`` seconds (default 5) of each minute, from
2 s after wrk started to 2 s before it ends (so that no sample falls
between two wrk runs, when its 64 connections close and open again), the
service's process tree is sampled: RSS (/proc/<pid>/statm) and open file
descriptors (/proc/<pid>/fd).

The figures, against the issue's targets: RSS growth from the first sample
after the warm-up to the last, under 5 %; file descriptors flat (max - min
within FD_SLACK); the worst minute's p99 within 1.5 × of the first minute's
(also given against the quietest minute, the one during which other work on
the machine took least, since on a shared machine the first minute may be
the busiest); no error. The JSON goes to <results-dir>/<UTC time>-soak.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import report
from .procs import AppServer, tree_memory
from .rig import ID, PATCH_BODY, SERVICE_APP, LoadMeter, Rig, lp_path, run_and_report, targets_table
from .run import RESULTS
from .wrk import WrkResult

RSS_GROWTH_PCT = 5.0  # the targets
P99_RATIO = 1.5
# Open descriptors may differ by this much between samples with nothing
# leaking: the Redis client opens a pooled connection when concurrency reaches
# a new peak (pub/sub and pipelines take their own), and uvicorn may be
# accepting or closing one of wrk's 64 sockets at the moment of a sample.
FD_SLACK = 2
EDGE_S = 2.0  # no sample this close to a wrk run's start or end
NAMESPACE = "soak"


@dataclass
class SoakOptions:
    minutes: int = 10
    warmup_s: float = 20.0
    connections: int = 64
    sessions: int = 100_000
    sample_s: float = 5.0
    read_share: float = 0.9
    app: str = SERVICE_APP
    results_dir: Path = RESULTS


def parse_args(argv: Sequence[str]) -> SoakOptions:
    p = argparse.ArgumentParser(prog="python -m bench --soak", description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--soak", action="store_true", required=True, help="run the soak (this scenario alone)")
    p.add_argument("--soak-minutes", type=int, default=10, help="minutes measured after the warm-up (default 10)")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of warm-up, not counted (default 20)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--soak-sessions", type=int, default=100_000, help="sessions of the mix (default 100,000)")
    p.add_argument("--soak-sample", type=float, default=5.0, help="seconds between RSS and FD samples (default 5)")
    p.add_argument("--soak-app", default=SERVICE_APP,
                   help=f"the app factory served (default {SERVICE_APP}; the tests give a leaking variant)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)")
    a = p.parse_args(list(argv))
    if not 1 <= a.soak_minutes <= 240 or not 0 <= a.warmup <= 600:
        p.error("--soak-minutes must be 1 to 240 and --warmup 0 to 600 s")
    if not 1 <= a.connections <= 1024 or not 100 <= a.soak_sessions <= 5_000_000 or not 1 <= a.soak_sample <= 30:
        p.error("--connections 1 to 1024, --soak-sessions 100 to 5,000,000, --soak-sample 1 to 30 s")
    return SoakOptions(minutes=a.soak_minutes, warmup_s=a.warmup, connections=a.connections, sessions=a.soak_sessions,
                       sample_s=a.soak_sample, app=a.soak_app, results_dir=a.results_dir)


@dataclass
class Soak:
    opts: SoakOptions

    def __post_init__(self) -> None:
        self.rig = Rig(self.opts.connections)
        self.samples: list[dict[str, Any]] = []

    def args(self) -> list[str]:
        return [lp_path(NAMESPACE), "/properties", str(self.opts.sessions), ID, str(self.opts.read_share), PATCH_BODY]

    def run(self) -> dict[str, Any]:
        rig = self.rig.start()
        service = rig.service(app=self.opts.app)
        rig.fill(service, NAMESPACE, self.opts.sessions)
        assert service.process is not None
        pid = service.process.pid
        doc = rig.header({**asdict(self.opts), "results_dir": str(self.opts.results_dir), "wrk_threads": rig.wrk.threads,
                          "script": "mix.lua", "fd_slack": FD_SLACK})
        t0 = time.monotonic()
        if self.opts.warmup_s > 0:
            rig.say(f"warm-up: {self.opts.warmup_s:.0f} s of the {self.opts.read_share:.0%} read mix, "
                    f"{self.opts.connections} connections, {self.opts.sessions:,} sessions")
            doc["warmup"] = rig.wrk.run(service.base, "mix.lua", self.args(), self.opts.warmup_s).to_json()
        minutes = []
        for index in range(1, self.opts.minutes + 1):
            minutes.append(self.minute(service, pid, index, t0))
            if not service.alive():
                raise RuntimeError(f"the service died in minute {index}{service.log_tail()}")
        doc["minutes"] = minutes
        doc["samples"] = self.samples
        doc["summary"] = summarise(minutes, self.samples)
        doc["service_log"] = rig.service_log()
        doc["wall_s"] = round(time.monotonic() - rig.bench.t0, 1)
        return doc

    def minute(self, service: AppServer, pid: int, index: int, t0: float) -> dict[str, Any]:
        """One minute of wrk, sampled meanwhile."""
        meter = LoadMeter((pid,), self.rig.nodes).start()
        first = len(self.samples)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            running = pool.submit(self.rig.wrk.run, service.base, "mix.lua", self.args(), 60)
            due = started + EDGE_S
            while due <= started + 60 - EDGE_S:  # the minute's samples, none near its edges
                done, _ = wait_for([running], timeout=max(0.0, due - time.monotonic()))
                if done:
                    break
                found = tree_memory(pid)
                self.samples.append({"t_s": round(time.monotonic() - t0, 1), "minute": index, "rss_bytes": found.rss_bytes,
                                     "fds": found.fds, "processes": found.processes})
                due += self.opts.sample_s
            result: WrkResult = running.result()
        taken = self.samples[first:]
        record = {"minute": index, **result.to_json(), "error_count": result.error_count,
                  "other_load_cores": meter.cores(),
                  "rss_mib_last": round(taken[-1]["rss_bytes"] / 2**20, 1) if taken else None,
                  "fds_min": min((s["fds"] for s in taken), default=None),
                  "fds_max": max((s["fds"] for s in taken), default=None)}
        record.pop("latency_us")
        self.rig.say(f"minute {index}: {result.rps:,.0f} requests/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                     f"errors {result.error_count}, RSS {record['rss_mib_last']} MiB, FDs {record['fds_min']}-"
                     f"{record['fds_max']}, other load {record['other_load_cores']:.2f} cores")
        return record


def summarise(minutes: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The soak's figures and the issue's targets, from its minutes and samples."""
    rss = [s["rss_bytes"] for s in samples]
    fds = [s["fds"] for s in samples]
    p99 = [m["p99_ms"] for m in minutes]
    quietest = min(minutes, key=lambda m: m["other_load_cores"])
    growth = (rss[-1] - rss[0]) / rss[0] * 100 if rss else 0.0
    requests = sum(m["requests"] for m in minutes)
    errors = sum(m["error_count"] for m in minutes)
    summary = {
        "rss": {"start_bytes": rss[0] if rss else None, "end_bytes": rss[-1] if rss else None,
                "max_bytes": max(rss, default=None), "growth_pct": round(growth, 2),
                "max_growth_pct": round((max(rss) - rss[0]) / rss[0] * 100, 2) if rss else 0.0},
        "fds": {"start": fds[0] if fds else None, "end": fds[-1] if fds else None,
                "min": min(fds, default=None), "max": max(fds, default=None)},
        "p99_ms": {"first": p99[0], "max": max(p99), "min": min(p99),
                   "max_over_first": round(max(p99) / p99[0], 3) if p99[0] else None,
                   "quietest_minute": quietest["minute"], "quietest_other_load_cores": quietest["other_load_cores"],
                   "max_over_quietest": round(max(p99) / quietest["p99_ms"], 3) if quietest["p99_ms"] else None},
        "requests": requests,
        "rps": round(requests / sum(m["duration_s"] for m in minutes), 1),
        "errors": errors,
        "samples": len(samples),
    }
    fd_spread = (max(fds) - min(fds)) if fds else 0
    summary["targets"] = [
        {"figure": "RSS growth after warm-up", "target": f"< {RSS_GROWTH_PCT:g} %", "measured": f"{growth:+.2f} %",
         "result": "PASS" if rss and growth < RSS_GROWTH_PCT else "MISS"},
        {"figure": "open file descriptors", "target": f"flat (max - min <= {FD_SLACK})",
         "measured": f"{min(fds, default=0)}-{max(fds, default=0)}", "result": "PASS" if fds and fd_spread <= FD_SLACK else "MISS"},
        {"figure": "worst minute's p99 / first minute's", "target": f"<= {P99_RATIO:g}",
         "measured": f"{summary['p99_ms']['max_over_first']}",
         "result": "PASS" if p99[0] and max(p99) <= P99_RATIO * p99[0] else "MISS"},
        {"figure": "errors", "target": "0", "measured": f"{errors:,}", "result": "PASS" if errors == 0 else "MISS"},
    ]
    return summary


def render(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    rows = [[str(m["minute"]), f"{m['requests']:,}", f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
             f"{m['error_count']:,}", f"{m['rss_mib_last']}", f"{m['fds_min']}-{m['fds_max']}", f"{m['other_load_cores']:.2f}"]
            for m in doc["minutes"]]
    minutes = report.markdown_table(["minute", "requests", "requests/s", "p50 ms", "p99 ms", "errors", "RSS MiB",
                                     "FDs", "other load (cores)"], rows, "rrrrrrrrr")
    rss, fds, p99 = s["rss"], s["fds"], s["p99_ms"]
    mib = 2**20
    lines = [
        (f"Soak: {doc['settings']['minutes']} min of the {doc['settings']['read_share']:.0%} read mix at "
        f"{doc['settings']['connections']} connections over {doc['settings']['sessions']:,} sessions, after "
        f"{doc['settings']['warmup_s']:g} s of warm-up ({doc['machine'].get('cpu', '?')}, {doc['machine'].get('cores', '?')} cores)"),
        "",
        minutes,
        "",
        (f"RSS after warm-up: {rss['start_bytes'] / mib:.1f} MiB -> {rss['end_bytes'] / mib:.1f} MiB ({rss['growth_pct']:+.2f} %; "
        f"highest {rss['max_bytes'] / mib:.1f} MiB, {rss['max_growth_pct']:+.2f} %), {s['samples']} samples"),
        f"open file descriptors: {fds['start']} at the start, {fds['end']} at the end, min {fds['min']}, max {fds['max']}",
        (f"p99: first minute {p99['first']:.2f} ms, worst {p99['max']:.2f} ms ({p99['max_over_first']} × the first), "
        f"{p99['max_over_quietest']} × the quietest minute's (minute {p99['quietest_minute']}, other load "
        f"{p99['quietest_other_load_cores']:.2f} cores)"),
        f"requests: {s['requests']:,} ({s['rps']:,.0f}/s), errors: {s['errors']:,}",
        "",
        targets_table(s["targets"]),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    soak = Soak(opts)
    return run_and_report(soak.rig, soak.run, render, opts.results_dir, "soak")
