"""A small keep-alive HTTP client (standard library only) for setting up
scenarios, probing faces and timing single calls; the load itself is wrk's."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .procs import HOST


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def is_router_404(reply: Reply) -> bool:
    """The app's answer for a path no route matches (the face is not mounted),
    as opposed to a face's own 404 for something it does not hold."""
    if reply.status != 404:
        return False
    try:
        body = reply.json()
    except ValueError:
        return True
    return not isinstance(body, dict) or body.get("message") in (None, "no such resource", "Not Found")


class Http:
    headers: ClassVar[dict[str, str]] = {}  # sent with every request (bench --api-key-rate: its API key)

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        """``body``: bytes as they are, anything else as JSON."""
        data: bytes | None
        sent = {**self.headers, **(headers or {})}
        if body is None or isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
            sent.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):  # one retry on a connection the server closed
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                payload = response.read()
                return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def expect(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
               ok: tuple[int, ...] = (200, 201, 204)) -> Reply:
        reply = self.request(method, path, body, headers)
        if reply.status not in ok:
            raise RuntimeError(f"{method} {path} answered {reply.status}: {reply.body[:300]!r}")
        return reply
