"""Running wrk (installed with apt-get when missing) and reading its figures.

Every wrk script under bench/wrk/ ends with the done() hook of common.lua,
which prints one line ``BENCH_JSON {...}`` with the request count, the
duration, the errors and exact latency percentiles (microseconds); that line
is what is read here, not wrk's text summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import ProcessGroup, pinned

SCRIPTS = Path(__file__).resolve().parent / "wrk"
MARKER = "BENCH_JSON "
THREADS = 1  # one wrk thread drives all 64 connections: one core for wrk, one for the server under test


class WrkError(RuntimeError):
    pass


def ensure_wrk() -> str:
    """The path of wrk, installed with apt-get when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        raise WrkError("wrk is not installed and this user cannot apt-get it: apt-get install -y wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("bench: wrk is missing; installing it with apt-get", flush=True)
    install = [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL, timeout=600, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, timeout=600, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, timeout=600, check=True)
    found = shutil.which("wrk")
    if not found:
        raise WrkError("apt-get install wrk did not give a wrk command")
    return found


def wrk_version(binary: str = "wrk") -> str:
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (out.stdout + out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run's figures."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, Any]  # min, max, mean, stdev, percentiles {"50": us, "99": us, ...}
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, p: str) -> float:
        return float(self.latency_us["percentiles"][p]) / 1000.0

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms("50")

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms("99")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_share(self) -> float:
        return self.error_count / self.requests if self.requests else (1.0 if self.error_count else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "errors": self.errors,
            "latency_us": self.latency_us,
        }


def parse_output(text: str) -> WrkResult:
    """The figures of the BENCH_JSON line wrk printed (the last one wins)."""
    found = None
    for line in text.splitlines():
        if line.startswith(MARKER):
            found = line[len(MARKER):]
    if found is None:
        raise WrkError("wrk printed no BENCH_JSON line (did the script use common.done?):\n" + text[-2000:])
    data = json.loads(found)
    percentiles = {_percentile_key(k): v for k, v in data["latency_us"]["percentiles"].items()}
    latency = dict(data["latency_us"], percentiles=percentiles)
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_us=latency,
    )


def _percentile_key(key: str) -> str:
    """"50" and "50.0" are both "50"; "99.9" stays."""
    value = float(key)
    return str(int(value)) if value.is_integer() else str(value)


def non_2xx_3xx(text: str) -> int:
    """wrk's own count of answers that are not 2xx or 3xx (from its text summary)."""
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return int(match.group(1)) if match else 0


@dataclass
class Wrk:
    procs: ProcessGroup
    binary: str = "wrk"
    connections: int = 64
    threads: int = THREADS
    timeout_s: int = 5
    cpus: str | None = None  # taskset CPU list for wrk
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (scripts that add wrk.headers)

    def run(self, url: str, script: str, args: Sequence[str] = (), duration_s: float = 10.0) -> WrkResult:
        """One wrk run of ``duration_s`` on ``url`` with bench/wrk/``script``."""
        seconds = max(1, round(duration_s))
        argv = [self.binary, f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s", f"--timeout={self.timeout_s}s",
                "--latency", "-s", str(SCRIPTS / script), url]
        for name, value in self.headers.items():
            argv[-1:-1] = ["-H", f"{name}: {value}"]
        if args:
            argv += ["--", *args]
        argv = pinned(argv, self.cpus)
        env = dict(os.environ, LUA_PATH=f"{SCRIPTS}/?.lua;;")
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.running.append(process)
        try:
            out, _ = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise WrkError(f"wrk did not finish within {seconds + 60} s") from None
        finally:
            self.procs.stop(process)
        text = out.decode(errors="replace")
        if process.returncode not in (0, None):
            raise WrkError(f"wrk exited with status {process.returncode}:\n{text[-2000:]}")
        result = parse_output(text)
        return result
