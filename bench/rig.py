"""What the long scenarios (bench/soak.py, bench/hotkey.py) share with the
benchmark run and with each other: a private redis-server, the service on
it (uvicorn, one worker, the benchmark's settings), wrk, LivePerson sessions
filled straight into Redis, and a meter of what the rest of the machine took
meanwhile. Everything started is stopped by ``close``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import report
from .client import Http
from .machine import describe
from .nodes import Nodes
from .procs import AppServer, RedisServer, tree_cpu_seconds
from .run import ID, PATCH_BODY, Bench, Options, lp_path, machine_busy_seconds, own_cpu_seconds
from .wrk import Wrk, ensure_wrk, wrk_version

SERVICE_APP = "bench.service_app:app"  # the benchmark's service (an app factory)

__all__ = ["ID", "PATCH_BODY", "SERVICE_APP", "LoadMeter", "Rig", "lp_path", "run_and_report", "targets_table"]


@dataclass
class LoadMeter:
    """How many cores the rest of the machine (other people's work, the
    hypervisor) kept busy since ``start``: all the machine's busy time less
    this process's and its waited-for children's (wrk), the services' process
    trees and Redis's."""

    server_pids: tuple[int, ...]
    nodes: Nodes
    marks: tuple[float, ...] = ()

    def _now(self) -> tuple[float, ...]:
        return (time.monotonic(), machine_busy_seconds(), own_cpu_seconds(), sum(tree_cpu_seconds(pid)[0] for pid in self.server_pids),
                self.nodes.cpu_seconds())

    def start(self) -> LoadMeter:
        self.marks = self._now()
        return self

    def cores(self) -> float:
        (wall0, busy0, own0, cpu0, rcpu0), (wall1, busy1, own1, cpu1, rcpu1) = self.marks, self._now()
        others = (busy1 - busy0) - (own1 - own0) - (cpu1 - cpu0) - (rcpu1 - rcpu0)
        return round(max(0.0, others) / max(wall1 - wall0, 1e-6), 2)


@dataclass
class Rig:
    """A redis-server, the services started on it, wrk."""

    connections: int = 64
    bench: Bench = field(init=False)
    wrk: Wrk = field(init=False)
    started_utc: str = ""

    def __post_init__(self) -> None:
        self.bench = Bench(Options(connections=self.connections, warmup_s=0, retries=0))

    def start(self) -> Rig:
        b = self.bench
        b.t0 = time.monotonic()
        self.started_utc = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.binary = ensure_wrk()
        self.wrk = b.wrk = Wrk(b.procs, self.binary, connections=self.connections)
        b.redis = RedisServer(b.procs, b.workdir).start()
        b.nodes = b.single = Nodes([b.redis.port])
        b.raw = b.single.first
        self.say(f"redis-server on port {b.redis.port}")
        return self

    @property
    def nodes(self) -> Nodes:
        nodes: Nodes = self.bench.nodes
        return nodes

    @property
    def workdir(self) -> Path:
        return self.bench.workdir

    def say(self, text: str) -> None:
        self.bench.say(text)

    def wrk_with(self, connections: int) -> Wrk:
        """Another wrk, of ``connections`` connections, whose processes are stopped with the rest."""
        return Wrk(self.bench.procs, self.binary, connections=connections)

    def service(self, name: str = "service", app: str = SERVICE_APP) -> AppServer:
        """The service (``app``, an app factory: SERVICE_APP or a test's variant of it) on uvicorn, on the Redis."""
        b = self.bench
        service = AppServer(b.procs, b.workdir, app, name, factory=True, env={"SESSIONSTORE_REDIS_URL": b.redis.url},
                            ready_path="/readyz").start()
        b.service_names.append(name)
        self.say(f"service {app} on uvicorn, port {service.port}")
        return service

    def fill(self, service: AppServer, namespace: str, count: int) -> None:
        """Namespace ``namespace`` (made through ``service``) with ``count`` sessions of ten properties."""
        b = self.bench
        b.service = service
        with Http(service.port) as b.http:
            b.lp_namespace(namespace, count)

    def header(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {"started_utc": self.started_utc, "settings": settings, "machine": describe(wrk_version(self.binary))}

    def service_log(self) -> list[str]:
        lines: list[str] = self.bench.service_log()
        return lines

    def close(self) -> None:
        self.bench.close()


def targets_table(targets: Sequence[dict[str, str]]) -> str:
    return report.markdown_table(["figure", "target", "measured", "result"],
                                 [[t["figure"], t["target"], t["measured"], t["result"]] for t in targets])


def run_and_report(rig: Rig, run: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], str],
                   results_dir: Path, name: str) -> int:
    """``run`` (on ``rig``, closed however it ends), then its report printed
    and its JSON written as <results_dir>/<UTC time>-<name>.json."""
    try:
        doc = run()
    finally:
        rig.close()
    print()
    print(render(doc))
    if doc.get("service_log"):
        print("\nThe service logged:\n  " + "\n  ".join(doc["service_log"]))
    path = results_dir / (doc["started_utc"].replace("-", "").replace(":", "") + f"-{name}.json")
    report.write_json(doc, path)
    print(f"wrote {path}")
    print(f"wall time {doc['wall_s']:.0f} s")
    return 0
