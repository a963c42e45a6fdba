"""The service under test, as an app factory, for uvicorn and granian alike:

    python -m uvicorn --factory bench.service_app:app --loop uvloop --http httptools ...
    python -m granian --interface asgi --factory bench.service_app:app --loop uvloop --http 1 ...

It is the app each worker of ``sessionstore serve --workers N`` builds
(app_from_environment, from the SESSIONSTORE_* variables), on the
Redis (or Redis Cluster) named by SESSIONSTORE_REDIS_URL, with no auth file
(loopback, open access), logging at warning. The servers are run directly
(not through ``sessionstore serve``) so that the benchmark sets the event
loop, the HTTP parser and the access log itself, the same way for the service
and for the yardstick.
"""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette

try:  # serve's worker factory: in service.cli_serve on branches where serve has --server, else in service.cli
    from service.cli_serve import app_from_environment
except ImportError:
    from service.cli import app_from_environment


def app() -> Starlette:
    if not os.environ.get("SESSIONSTORE_REDIS_URL"):
        raise RuntimeError("SESSIONSTORE_REDIS_URL must name the benchmark's private redis-server")
    os.environ.setdefault("SESSIONSTORE_LOG_LEVEL", "warning")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    built: Starlette = app_from_environment()  # tunes the garbage collector as sessionstore serve does
    return built
