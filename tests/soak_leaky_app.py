"""A leaking variant of the benchmark's service, for tests/test_soak.py
(SOAK_TEST_LEAK=1): to show that the soak's asserts fail when memory or file
descriptors grow with the requests served. Each request keeps LEAK_BYTES in a
list that is never emptied, and every FD_EVERY requests one more descriptor
of /dev/null is opened and never closed; SOAK_TEST_LEAK=memory or =fds
leaks only that one. Never served otherwise."""

from __future__ import annotations

import os
from typing import Any

from bench.service_app import app as service_app

LEAK_BYTES = 2048
FD_EVERY = 1000

kept: list[bytes] = []
descriptors: list[int] = []
served = [0]


def app() -> Any:
    inner = service_app()
    kind = os.environ.get("SOAK_TEST_LEAK", "")
    memory, fds = kind != "fds", kind != "memory"

    async def leaking(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            served[0] += 1
            if memory:
                kept.append(os.urandom(LEAK_BYTES))
            if fds and served[0] % FD_EVERY == 0:
                descriptors.append(os.open(os.devnull, os.O_RDONLY))
        await inner(scope, receive, send)

    return leaking
