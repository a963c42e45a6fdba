"""python -m bench --instructions: the service's CPU instructions per request,
counted by valgrind's callgrind (issue 16: "nothing here slows the hot path by
more than 3 %").

wrk's requests per second move by ±15 % between runs on these shared
machines, so a 3 % change cannot be told from them. An instruction count can:
callgrind counts what the service's process executes, not how long it took,
and gives the same total to within 0.1 % whatever else the machine is doing.

For each scenario (a LivePerson v1 GET of a session of ten properties; a
PATCH of one of them), on a private redis-server: ``sessionstore``'s app on
uvicorn (one worker, uvloop, httptools under the header timeout, as the
benchmark runs it) inside callgrind; 50 sessions made, a warm-up of 300
requests, the counters zeroed, ``--requests`` requests one after another on
one keep-alive connection, the counters dumped after each half. Reported: instructions per
request (the server, its HTTP parsing and the app; Redis and the client are
other processes), and how far apart the two halves' counts are. ``--source DIR`` serves another checkout's service and
bench/service_app.py (a worktree of an earlier commit) with this script, so
before and after are counted the same way; ``--api-key-rate`` serves with an
auth file of one key, as ``python -m bench --api-key-rate`` does ('none': a
key without a rate), so the cost of a rate limit is counted too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .client import Http
from .fill import PROPERTIES, RawRedis
from .procs import ROOT, SERVICE_HTTP, UVICORN_FLAGS, ProcessGroup, RedisServer, free_port, wait_until
from .run import API_KEY, API_KEY_HEADER, ID, PATCH_BODY, TENANT, auth_file, lp_path

SCENARIOS = ("lp-get", "lp-patch")
NAMESPACE = "cg"
SESSIONS, WARMUP = 50, 300


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench --instructions", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--instructions", action="store_true", required=True, help="count instructions per request (alone)")
    p.add_argument("--requests", type=int, default=3000, help="requests counted per scenario (default 3,000)")
    p.add_argument("--only", choices=SCENARIOS, action="append", help="only this scenario (repeatable)")
    p.add_argument("--source", type=Path, default=ROOT, help="the checkout whose service is served (default this one)")
    p.add_argument("--api-key-rate", metavar="RATE", help="an auth file of one key with this rate ('none': no rate)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    a = p.parse_args(list(argv))
    if not 10 <= a.requests <= 1_000_000:
        p.error("--requests must be 10 to 1,000,000")
    if not (a.source / "service").is_dir() or not (a.source / "bench" / "service_app.py").is_file():
        p.error(f"--source {a.source}: not a checkout of sessionstore (no service/ or bench/service_app.py)")
    return a


def count(scenario: str, source: Path, redis: RedisServer, procs: ProcessGroup, workdir: Path, requests: int,
          rate: str | None) -> dict[str, Any]:
    """Instructions per request of ``scenario``, the service under callgrind."""
    port = free_port()
    flags = list(UVICORN_FLAGS)  # the benchmark's, with its service's HTTP protocol where the checkout has it
    if (source / "service" / "server_timeouts.py").is_file():
        flags[flags.index("--http") + 1] = SERVICE_HTTP
    out = workdir / scenario
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONSTORE_", "GRANIAN_"))}
    env.update(SESSIONSTORE_REDIS_URL=redis.url, PYTHONPATH=str(source), PYTHONMALLOC="malloc")
    if rate is not None:
        env["SESSIONSTORE_AUTH_FILE"] = str(auth_file(out, rate))
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p",
            sys.executable, "-m", "uvicorn", "--factory", "bench.service_app:app", "--port", str(port), *flags]  # fmt: skip
    log = out / "service.log"
    process = procs.start(argv, log=log, env=env, cwd=source)
    headers = {API_KEY_HEADER: API_KEY} if rate is not None else {}

    def ready() -> bool:
        with Http(port, timeout_s=5) as probe:
            return probe.request("GET", "/readyz").status == 200

    wait_until(ready, 300, f"the service under callgrind ({scenario})", process, log)
    body = b"{" + b",".join(json.dumps(name).encode() + b":" + value for name, value in PROPERTIES) + b"}"
    with Http(port, timeout_s=120) as client:
        client.expect("POST", f"/v1/account/{TENANT}", {"name": NAMESPACE}, headers=headers)
        for n in range(SESSIONS):
            client.expect("PATCH", lp_path(NAMESPACE) + ID % n + "/properties", body, headers=headers)

        def one(n: int) -> None:
            path = lp_path(NAMESPACE) + ID % (n % SESSIONS) + "/properties"
            if scenario == "lp-get":
                client.expect("GET", path, headers=headers)
            else:
                client.expect("PATCH", path, PATCH_BODY.encode(), headers=headers)

        for n in range(WARMUP):
            one(n)
        subprocess.run(["callgrind_control", "--zero", str(process.pid)], check=True, capture_output=True)
        started = time.monotonic()
        halves = (requests // 2, requests - requests // 2)
        for half in halves:  # a dump per half (each dump zeroes the counters): their agreement is the repeatability
            for n in range(half):
                one(n)
            subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True, capture_output=True)
        seconds = time.monotonic() - started
    procs.stop(process)
    totals = [dump_total(out / f"callgrind.{process.pid}.{n}") for n in (1, 2)]
    per_half = [total / half for total, half in zip(totals, halves, strict=True)]
    return {"scenario": scenario, "requests": requests, "instructions": sum(totals),
            "instructions_per_request": round(sum(totals) / requests),
            "halves_differ": round(abs(per_half[0] - per_half[1]) / max(per_half), 4),
            "seconds_under_callgrind": round(seconds, 1)}  # fmt: skip


def dump_total(dump: Path) -> int:
    """The instructions a callgrind dump counted (its "summary:" line)."""
    return next(int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("summary:"))


def main(argv: Sequence[str]) -> int:
    a = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"bench --instructions: {' and '.join(missing)} not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    procs = ProcessGroup()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        workdir = Path(tmp)
        try:
            redis = RedisServer(procs, workdir).start()
            for scenario in a.only or SCENARIOS:
                with RawRedis(redis.port) as raw:  # the private redis-server emptied between scenarios (never 6379)
                    raw.call("FLUSHALL")
                rows.append(count(scenario, a.source.resolve(), redis, procs, workdir, a.requests, a.api_key_rate))
                r = rows[-1]
                print(f"{r['scenario']}: {r['instructions_per_request']:,} instructions per request "
                      f"({r['requests']:,} requests, the two halves {r['halves_differ']:.2%} apart, "
                      f"{r['seconds_under_callgrind']} s under callgrind)", flush=True)  # fmt: skip
        finally:
            procs.stop_all()
    doc = {"source": str(a.source.resolve()), "api_key_rate": a.api_key_rate, "scenarios": rows}
    if a.json:
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0

