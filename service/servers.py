"""The HTTP server that ``sessionstore serve`` runs the app on: uvicorn. It
serves one worker in this process; with ``--workers N`` it spawns N worker
processes, each building the app from the environment
(cli_serve.app_from_environment). Its own log lines come in the service's log
format; it writes no access log of its own (observability.Observe does); on
SIGTERM it shuts down gracefully, within ``--shutdown-grace``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Serving:
    """What serve tells its HTTP server."""

    host: str
    port: int
    workers: int
    shutdown_grace_s: float
    log_level: str
    log_config: dict[str, Any]  # logs.logging_config: for the server's own loggers, in every process


def _exit_on_termination(signum: int, frame: Any) -> None:
    # uvicorn hands SIGTERM back to the handler it found once its graceful
    # shutdown is done: the shutdown went as planned, so exit 0.
    raise SystemExit(0)


def run_uvicorn(app: Any, serving: Serving) -> int:
    """``app``: the app itself, served in this process, or the import path of
    the factory that each of ``serving.workers`` worker processes calls."""
    import uvicorn

    options: dict[str, Any] = {
        "host": serving.host,
        "port": serving.port,
        "log_level": serving.log_level,
        "log_config": serving.log_config,
        "access_log": False,  # observability.Observe writes the access log
        "proxy_headers": False,
        "timeout_graceful_shutdown": serving.shutdown_grace_s,
    }
    if isinstance(app, str):
        options.update(factory=True, workers=serving.workers)
    signal.signal(signal.SIGTERM, _exit_on_termination)
    uvicorn.run(app, **options)
    return 0
