"""The service under test, as a uvicorn app factory:

    python -m uvicorn --factory bench.service_app:app --loop uvloop --http httptools ...

It is the app ``sessionstore serve`` builds, on the Redis named by
SESSIONSTORE_REDIS_URL, with no auth file (loopback, open access). uvicorn is
run directly (not through ``sessionstore serve``) so that the benchmark sets
the event loop, the HTTP parser and the access log itself, the same way for
the service and for the yardstick.
"""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette

from service.app import build_app, tune_gc_for_serving
from service.config import Settings


def app() -> Starlette:
    url = os.environ.get("SESSIONSTORE_REDIS_URL")
    if not url:
        raise RuntimeError("SESSIONSTORE_REDIS_URL must name the benchmark's private redis-server")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    built = build_app(Settings(redis_url=url, log_level="warning"))
    tune_gc_for_serving()  # as sessionstore serve does
    return built
