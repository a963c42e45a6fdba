"""The header timeout on uvicorn (service/server_timeouts.py), on each of
uvicorn's two HTTP/1.1 protocols, in-process: what it cuts (headers that do
not come, a connection that sends nothing) and what it must never cut (a
response that takes longer than the timeout, an event stream, a slow
handler, pipelined requests)."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from service.server_timeouts import MESSAGE, H11Timeouts, HttpToolsTimeouts

from .conftest import free_port

TIMEOUT_S = 0.5
WAIT_S = 30  # how long a read waits before the test fails (a bound, not a figure)
END = b"ok\r\n0\r\n\r\n"  # the end of every response: "ok", the last piece of its chunked body


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """/slow answers after two timeouts; /stream sends a piece every timeout, four times; else "ok"."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(2 * TIMEOUT_S)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if path == "/stream":
        for n in range(4):
            await send({"type": "http.response.body", "body": b"piece %d\n" % n, "more_body": True})
            await asyncio.sleep(TIMEOUT_S)
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=[HttpToolsTimeouts, H11Timeouts], ids=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A uvicorn server in a thread, on that protocol under the header timeout."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off",
        http=functools.partial(request.param, header_timeout_s=TIMEOUT_S), timeout_keep_alive=600,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield config.port
    server.should_exit = True
    thread.join(WAIT_S)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(WAIT_S)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def read_responses(sock: socket.socket, count: int) -> bytes:
    """What comes until ``count`` whole responses have come (the connection still open)."""
    received = b""
    while received.count(END) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def test_headers_that_do_not_come_in_time_are_answered_408_and_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: a")
        received = read_to_end(sock)
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and received.endswith(b"\r\n\r\n" + MESSAGE)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(port: int) -> None:
    with connect(port) as sock:
        assert read_to_end(sock) == b""
    with connect(port) as sock:  # nothing after a response: closed too (the keep-alive timeout is longer)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        received = read_to_end(sock)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(END)


@pytest.mark.parametrize("path", ["/stream", "/slow"])
def test_a_request_served_for_longer_than_the_timeout_is_not_cut(port: int, path: str) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        first = read_responses(sock, 1)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still good for another
        second = read_responses(sock, 1)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    if path == "/stream":
        assert all(b"piece %d" % n in first for n in range(4))
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")


def test_pipelined_requests_behind_a_slow_one_are_all_answered(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        received = read_responses(sock, 3)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_the_watch_stops_with_its_last_connection(port: int) -> None:
    from service.server_timeouts import WATCHES

    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        read_responses(sock, 1)
    deadline = time.monotonic() + WAIT_S
    watches: list[Any] = []
    while not watches or any(w.connections or w.timer is not None for w in watches):
        assert time.monotonic() < deadline, "the watch kept its connections, or its timer"
        watches = list(WATCHES.values())
        time.sleep(0.05)
