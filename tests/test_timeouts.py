"""Timeouts for slow and abusive clients (issue 16, point 3), on a served
process of each HTTP server: 50 slowloris connections (headers trickled) and
50 slow bodies (a Content-Length larger than what comes, or a chunked body
with no last chunk, trickled) are held open while normal requests are
served, and each is then cut by the server: the headers' with a 408 where
the server sends one (uvicorn; granian's hyper only closes), the bodies'
with a 408 in the face's own error format, nothing stored. Connections that
send nothing, or nothing after a response, are closed too.

No timing asserts: the only bound is how long the test waits for the cuts
before it fails (the timeout and a generous margin)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from service.bodies import CLOSE
from service.faces import emporix_wire, genesys, liveperson_wire, native_wire
from service.routing import Answers
from service.server_timeouts import MESSAGE
from service.web import ApiError

from .conftest import SERVER_SAYS, RedisServer, serve_process, stop_process

TIMEOUT_S = 4  # the header and the body timeout of the served process
WAIT_S = TIMEOUT_S + 20  # how long the test waits for the cuts before it fails (a bound, not a figure;
# below granian's own default header timeout, 30 s, so that --header-timeout is seen to reach it)
DRIP_S = 0.5  # each abusive connection sends one more piece this often
SLOW = 10  # slow bodies per face
CONTEXT = {"siteCode": "main", "currency": "EUR", "metadata": {"version": 1}}


@dataclass
class Abuser:
    """A connection that sends ``head`` at once, then ``drip`` one piece at a time."""

    port: int
    head: bytes
    drip: bytes
    received: bytes = b""
    closed: bool = False
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        if self.head:
            self.sock.sendall(self.head)
        self.sock.setblocking(False)

    def step(self) -> None:
        """Read what has come (the end too), then send one piece more."""
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
            self.closed = True  # b"": the server closed it
        except BlockingIOError:
            pass
        except ConnectionError:
            self.closed = True
        if self.closed:
            self.sock.close()
            return
        if self.drip:
            try:
                self.sock.send(self.drip)
            except (BlockingIOError, ConnectionError):
                pass

    def response(self) -> tuple[int, bytes]:
        """The status and body of the last response received (0, b"": none)."""
        head, _, body = self.received.rpartition(b"HTTP/1.1 ")[2].partition(b"\r\n\r\n")
        return (int(head[:3]) if head[:3].isdigit() else 0), body


def head(method: str, path: str, chunked: bool) -> bytes:
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 100000"
    start = b"1\r\n{\r\n" if chunked else b"{"
    return b"%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%s\r\n\r\n%s" % (
        method.encode(), path.encode(), framing, start)  # fmt: skip


# (method, path of a session "slow-<i>", the face's error format)
SLOW_WRITES = [
    ("PATCH", "/v1/account/acct1/ns1/slow-{i}/properties", liveperson_wire.ANSWERS),
    ("POST", "/v2/context/document/create?sessionId=slow-{i}", liveperson_wire.ANSWERS),
    ("PUT", "/api/v1/tenants/acme/namespaces/bot/sessions/slow-{i}", native_wire.ANSWERS),
    ("PUT", "/session-context/shop1/context/slow-{i}?upsert=true", emporix_wire.ANSWERS),
    ("POST", "/sessions/slow-{i}?tenantId=t1", genesys.ANSWERS),
]


def normal_requests(url: str) -> None:
    """A write and a read on each face, each answered as usual."""
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.patch("/v1/account/acct1/ns1/ok-1/properties", json={"a": 1}).status_code == 204
        assert http.get("/v1/account/acct1/ns1/ok-1/properties").json() == {"a": 1}
        assert http.put("/api/v1/tenants/acme/namespaces/bot/sessions/ok-2", json={"properties": {"b": 2}}).status_code in (200, 201)
        assert http.get("/api/v1/tenants/acme/namespaces/bot/sessions/ok-2").json()["properties"] == {"b": 2}
        assert http.put("/session-context/shop1/context/ok-3?upsert=true", json=CONTEXT).status_code == 204
        assert http.get("/session-context/shop1/context/ok-3").json()["currency"] == "EUR"
        assert http.post("/sessions/ok-4?tenantId=t1", json={"customerId": "c4"}).status_code == 200
        assert http.get("/healthz").status_code == 200


def drip_all(abusers: list[Abuser], until_closed: bool) -> None:
    """One round (``until_closed``: rounds until every connection is closed, or WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        for abuser in abusers:
            if not abuser.closed:
                abuser.step()
        if not until_closed or all(a.closed for a in abusers) or time.monotonic() > deadline:
            return
        time.sleep(DRIP_S)


@pytest.mark.parametrize("server", SERVER_SAYS)
def test_slow_clients_are_cut_off_without_holding_the_server(private_redis: RedisServer, server: str) -> None:
    process, url = serve_process(
        "--server", server, "--redis-url", private_redis.url, "--header-timeout", str(TIMEOUT_S),
        "--body-timeout", str(TIMEOUT_S), "--keep-alive-timeout", "600",  # idle ones: the header timeout's
    )  # fmt: skip
    port = int(url.rsplit(":", 1)[1])
    abusers: list[Abuser] = []
    try:
        slowloris = [Abuser(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"a") for _ in range(50)]
        bodies = [
            (Abuser(port, head(method, path.format(i=f"{n}-{i}"), chunked=i % 2 == 1), b"1\r\n \r\n" if i % 2 else b" "),
             answers)
            for n, (method, path, answers) in enumerate(SLOW_WRITES)
            for i in range(SLOW)
        ]  # fmt: skip
        silent = [Abuser(port, b"", b"") for _ in range(5)]
        after_one = [Abuser(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", b"") for _ in range(5)]
        abusers += [*slowloris, *(a for a, _ in bodies), *silent, *after_one]
        drip_all(abusers, until_closed=False)

        normal_requests(url)  # answered while all of them are held
        drip_all(abusers, until_closed=False)
        assert not any(a.closed for a in abusers), "cut before the normal requests were answered"

        drip_all(abusers, until_closed=True)
        assert all(a.closed for a in abusers), f"{sum(not a.closed for a in abusers)} still open after {WAIT_S} s"
        header_408 = server == "uvicorn"  # granian's hyper closes without an answer
        for abuser in slowloris:
            assert abuser.response() == ((408, MESSAGE) if header_408 else (0, b"")), abuser.received[:200]
        message = f"the request body did not arrive within {TIMEOUT_S} s"
        for abuser, answers in bodies:
            status, body = abuser.response()
            assert status == 408, abuser.received[:300]
            assert json.loads(body) == json.loads(expected(answers, message)), body
        assert all(a.received == b"" for a in silent)
        assert all(a.response()[0] == 200 for a in after_one)  # its response, then the close
        direct = redis.Redis(port=private_redis.port)
        try:
            assert list(direct.scan_iter(match="*slow-*")) == []  # nothing of a cut body stored
            assert list(direct.scan_iter(match="*ok-2*"))  # (where the normal writes are)
        finally:
            direct.close()
        normal_requests(url)
    finally:
        for abuser in abusers:
            abuser.sock.close()
        code, output = stop_process(process)
    assert code == 0, output


def expected(answers: Answers, message: str) -> bytes:
    return bytes(answers.render(ApiError(408, message, CLOSE)).body)
