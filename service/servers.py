"""The HTTP servers that ``sessionstore serve`` runs the app on (``--server``):
uvicorn, the default, and granian. Both serve the same app, with the same
options: address and port, worker processes (a worker that dies is
replaced), the log format (their own lines too), no access log of their own
(observability.Observe writes it), on SIGTERM a graceful shutdown
bounded by ``--shutdown-grace``, and the header timeout (``--header-timeout``:
service/server_timeouts.py on uvicorn, hyper's own on granian, which serves
HTTP/1.1 only, as uvicorn; docs/operating.md, Timeouts for slow and abusive
clients).

- uvicorn: one worker is served in this process; with ``--workers N`` uvicorn
  spawns N worker processes, each building the app from the environment
  (cli_serve.app_from_environment).
- granian: always worker processes (its main process only supervises), so
  the app always comes from the environment. They are spawned, not forked,
  as uvicorn's are: a fresh interpreter imports prometheus-client after
  ``PROMETHEUS_MULTIPROC_DIR`` is set. On SIGTERM granian stops accepting,
  closes idle connections, and waits for the open ones to end (the app's
  ``shutting_down`` event ends event streams); a worker still busy after the
  grace is killed, where uvicorn cancels the requests left and then runs the
  lifespan's shutdown. Each worker listens with SO_REUSEPORT, so a port in
  use is refused here first (port_taken), as uvicorn refuses it.
"""

from __future__ import annotations

import importlib
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings

SERVERS = ("uvicorn", "granian")
STARTUP_FAILURE = 3  # the exit code of a server that could not start (uvicorn's)
NO_TIMEOUT_S = 30 * 86400  # granian's header timeout when there is to be none


@dataclass(frozen=True)
class Serving:
    """What serve tells its HTTP server."""

    host: str
    port: int
    workers: int
    shutdown_grace_s: float
    log_level: str
    log_config: dict[str, Any]  # logs.logging_config: for the server's own loggers, in every process
    # the timeouts of the server itself (the body's is the app's: service/body_timeout.py); 0: none
    header_timeout_s: float = Settings.header_timeout_s
    keep_alive_timeout_s: float = Settings.keep_alive_timeout_s


def _exit_on_termination(signum: int, frame: Any) -> None:
    # uvicorn hands SIGTERM back to the handler it found once its graceful
    # shutdown is done: the shutdown went as planned, so exit 0.
    raise SystemExit(0)


def run_uvicorn(app: Any, serving: Serving) -> int:
    """``app``: the app itself, served in this process, or the import path of
    the factory that each of ``serving.workers`` worker processes calls."""
    import uvicorn

    from .server_timeouts import http_protocol

    options: dict[str, Any] = {
        "host": serving.host,
        "port": serving.port,
        "log_level": serving.log_level,
        "log_config": serving.log_config,
        "access_log": False,  # observability.Observe writes the access log
        "proxy_headers": False,
        "timeout_graceful_shutdown": serving.shutdown_grace_s,
        "timeout_keep_alive": serving.keep_alive_timeout_s,  # a float works: uvicorn only waits for it
        "http": http_protocol(serving.header_timeout_s),
    }
    if isinstance(app, str):
        options.update(factory=True, workers=serving.workers)
    signal.signal(signal.SIGTERM, _exit_on_termination)
    uvicorn.run(app, **options)
    return 0


class ErrorsLoggedOnce:
    """The app as granian serves it: an exception that observability.Observe
    has logged (with the request id, and answered with a 500 when it could)
    goes no further. To granian a raised exception is the same as a return (a
    500 if no response has started) and a second report in its log, with the
    traceback as text and no request id. (uvicorn's second report is dropped
    by logs.RequestContextFilter instead.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not getattr(exc, "_sessionstore_logged", False):
                raise


def granian_app(factory: str) -> ErrorsLoggedOnce:
    """In a granian worker: the app that ``factory`` (module:function) builds."""
    module, _, name = factory.partition(":")
    return ErrorsLoggedOnce(getattr(importlib.import_module(module), name)())


def run_granian(factory: str, serving: Serving) -> int:
    """``serving.workers`` granian worker processes, each serving the app that
    ``factory`` (an import path) builds; returns once all have stopped."""
    import multiprocessing

    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import MPServer

    taken = port_taken(serving.host, serving.port)
    if taken is not None:  # granian's workers would share it (SO_REUSEPORT) with whoever has it
        print(f"sessionstore: cannot listen on {serving.host}:{serving.port}: {taken}", file=sys.stderr)
        return STARTUP_FAILURE
    multiprocessing.set_start_method("spawn", force=True)  # granian's workers use the default method
    server = MPServer(
        factory,
        address=serving.host,
        port=serving.port,
        interface=Interfaces.ASGI,  # with lifespan
        # HTTP/1.1, as uvicorn: in its "auto" mode (HTTP/2 with prior knowledge too)
        # a connection that sends nothing is never timed out (hyper-util has no
        # timer until a first byte says which protocol it is)
        http=HTTPModes.http1,
        workers=serving.workers,
        respawn_failed_workers=True,  # as uvicorn restarts a worker that died
        log_level=LogLevels(serving.log_level),
        log_dictconfig=serving.log_config,
        log_access=False,  # observability.Observe writes the access log
        # after SIGTERM, a worker whose requests have not ended is killed once the
        # grace is up (a float works: granian only waits for it and subtracts from it)
        workers_kill_timeout=max(serving.shutdown_grace_s, 0.001),  # type: ignore[arg-type]
        # hyper's own header timeout, from the connection or the previous response
        # (so it is also granian's keep-alive timeout: it has no other), in whole
        # milliseconds; 0 would cut every connection at once, so "none" is 30 days
        http1_settings=HTTP1Settings(header_read_timeout=round((serving.header_timeout_s or NO_TIMEOUT_S) * 1000)),
    )
    server.serve(target_loader=granian_app)  # exits 1 itself when a worker died unasked
    return 0


def port_taken(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on alone (in use, or not an
    address here), or None. granian's workers listen with SO_REUSEPORT, so a
    second service started on a port in use would share it and serve half of
    its connections: uvicorn refuses to start, and so does this check."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc
    return None


def run(server: str, factory: str, serving: Serving) -> int:
    """Serve the app of ``factory`` on ``server`` (one of SERVERS), in worker processes."""
    runners = {"uvicorn": run_uvicorn, "granian": run_granian}
    return runners[server](factory, serving)
