"""Processes the benchmark starts: each in its own process group, each
stopped (SIGTERM, then SIGKILL) when the run ends, however it ends."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"  # every server and every load stays on loopback
ROOT = Path(__file__).resolve().parents[1]  # the repository: bench/ and service/ import from here


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` run on the CPUs ``cpus`` (taskset's list, e.g. "0" or "1-3"); as it is for None."""
    if not cpus:
        return list(argv)
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpus, *argv] if taskset else list(argv)


def cpu_split() -> tuple[str | None, str | None]:
    """The CPU the server under test gets to itself, and the ones wrk and
    Redis share: (first, the rest) of the CPUs this process may use; no
    pinning (None, None) with fewer than two."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(map(str, cpus[1:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ProcessGroup:
    """Every process the run started; ``stop_all`` ends them (their whole
    process groups), newest first."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        try:
            process = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True,
            )
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(5)
        else:
            # the leader is gone; anything it left in its group goes too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}{log_tail(log)}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout_s:.0f} s{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " (last lines) ---\n" + "\n".join(text)


@dataclass
class RedisServer:
    """A private redis-server on a free port, in its own directory (never the
    machine's shared Redis on 6379)."""

    procs: ProcessGroup
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    cpus: str | None = None
    extra: list[str] = field(default_factory=list)  # more redis-server options (a cluster node's)
    name: str = "redis"  # of its log file, <name>.log

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server, or run ./scripts/test once)")
        directory = Path(tempfile.mkdtemp(prefix="redis-", dir=self.workdir))
        log = self.workdir / f"{self.name}.log"
        self.process = self.procs.start(
            pinned([binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                    "--dir", str(directory), "--protected-mode", "yes", *self.extra], self.cpus),
            log=log,
        )
        wait_until(self._pong, 15, self.name, self.process, log)
        return self

    def _pong(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is not None:
            self.procs.stop(self.process)
            self.process = None


UVICORN_FLAGS = ("--host", HOST, "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                 "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "30")
# granian with what the uvicorn flags give: one worker (one Rust runtime thread
# under it), uvloop, HTTP/1 only, no access log; the service serves no WebSocket
GRANIAN_FLAGS = ("--interface", "asgi", "--host", HOST, "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                 "--http", "1", "--no-ws", "--log-level", "warning", "--no-access-log")
SERVERS = ("uvicorn", "granian")
# the service's HTTP protocol on uvicorn: httptools under the header timeout, as
# sessionstore serve runs it (service/server_timeouts.py); the yardstick's is httptools
SERVICE_HTTP = "service.server_timeouts:HttpToolsTimeouts"


@dataclass
class AppServer:
    """One worker of ``server`` (uvicorn or granian) serving ``app``
    (module:attribute, or an app factory with ``factory``), with the same
    settings for the service and the yardstick."""

    procs: ProcessGroup
    workdir: Path
    app: str
    name: str
    server: str = "uvicorn"
    factory: bool = False
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    cpus: str | None = None
    http: str = "httptools"  # uvicorn's --http

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        factory = ["--factory"] if self.factory else []
        if self.server == "granian":
            command = [sys.executable, "-m", "granian", *GRANIAN_FLAGS, "--port", str(self.port), *factory, self.app]
        elif self.server == "uvicorn":
            flags = list(UVICORN_FLAGS)
            flags[flags.index("--http") + 1] = self.http
            command = [sys.executable, "-m", "uvicorn", *factory, self.app, "--port", str(self.port), *flags]
        else:
            raise ValueError(f"unknown server {self.server!r}: {', '.join(SERVERS)}")
        return pinned(command, self.cpus)

    def start(self) -> AppServer:
        log = self.workdir / f"{self.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONSTORE_", "GRANIAN_"))}
        env.update(self.env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.process = self.procs.start(self.argv(), log=log, env=env, cwd=ROOT)
        wait_until(self._ready, 30, self.name, self.process, log)
        return self

    def _ready(self) -> bool:
        from .client import Http

        with Http(self.port, timeout_s=1.0) as http:
            return http.request("GET", self.ready_path).status == 200

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        return log_tail(self.workdir / f"{self.name}.log")

    def stop(self) -> None:
        if self.process is not None:
            self.procs.stop(self.process)
            self.process = None


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_table() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Every process's stat fields, and each process's children (by parent pid)."""
    children: dict[str, list[str]] = {}
    stats: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:
            stats[entry.name] = fields
            children.setdefault(fields[1], []).append(entry.name)
    return stats, children


def tree_pids(pid: int) -> list[int]:
    """Process ``pid`` and all its descendants (none when it is gone)."""
    stats, children = _process_table()
    if str(pid) not in stats:
        return []
    todo, found = [str(pid)], []
    while todo:
        current = todo.pop()
        found.append(int(current))
        todo += [child for child in children.get(current, []) if child in stats]
    return found


def tree_cpu_seconds(pid: int) -> tuple[float, int]:
    """User + system CPU time so far of process ``pid`` and of all its
    descendants (a granian or uvicorn worker under its supervisor), with
    what its children that have exited and were waited for had spent; and
    how many processes were counted."""
    stats, children = _process_table()
    root = str(pid)
    if root not in stats:
        return 0.0, 0
    ticks = int(stats[root][13]) + int(stats[root][14])  # cutime + cstime: children gone
    todo, counted = [root], 0
    while todo:
        current = todo.pop()
        fields = stats[current]
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
        counted += 1
        todo += [child for child in children.get(current, []) if child in stats]
    return ticks / os.sysconf("SC_CLK_TCK"), counted


@dataclass(frozen=True)
class TreeMemory:
    """The resident memory and open file descriptors of a process tree, now."""

    rss_bytes: int  # the sum of the processes' RSS (shared pages counted once per process)
    fds: int  # entries of /proc/<pid>/fd, summed
    processes: int


def tree_memory(pid: int) -> TreeMemory:
    """RSS (from /proc/<pid>/statm) and open file descriptors (/proc/<pid>/fd)
    of process ``pid`` and of all its descendants; a process that exits
    meanwhile counts as nothing."""
    page = os.sysconf("SC_PAGE_SIZE")
    rss = fds = processes = 0
    for child in tree_pids(pid):
        try:
            resident = int(Path(f"/proc/{child}/statm").read_text().split()[1])
            opened = len(os.listdir(f"/proc/{child}/fd"))
        except (OSError, IndexError, ValueError):
            continue
        rss, fds, processes = rss + resident * page, fds + opened, processes + 1
    return TreeMemory(rss, fds, processes)
