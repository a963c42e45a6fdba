"""What machine and software the figures came from."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .procs import ROOT

PACKAGES = ("starlette", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "orjson", "msgspec", "fakeredis")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    except OSError:
        return None
    return round(int(match.group(1)) / (1024 * 1024), 1) if match else None


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else out.strip()


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_revision() -> str:
    """The checkout's commit, with "+changes" when the work tree differs from it (read only)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


def describe(wrk: str) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "redis_server": redis_version(),
        "wrk": wrk,
        "packages": package_versions(),
        "load_average_at_start": [round(x, 2) for x in load],
        "git": git_revision(),
    }


def one_line(machine: dict[str, Any]) -> str:
    """E.g. "AMD EPYC, 2 cores, 23.5 GiB, Debian GNU/Linux 12 (bookworm), Python 3.11.7, Redis 7.0.15"."""
    parts = [str(machine.get("cpu", "?")), f"{machine.get('cores', '?')} cores"]
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB")
    parts += [str(machine.get("os", "?")), f"Python {machine.get('python', '?')}", f"Redis {machine.get('redis_server', '?')}"]
    return ", ".join(parts)
