"""The body timeout (service/body_timeout.py) as bodies.read uses it: a body
that does not end is answered 408 and the request can still answer; any
other cancellation goes through as it came; a body that comes is read as
before. (On served processes of both servers, every API: test_timeouts.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from service.bodies import CLOSE, read
from service.body_timeout import BodyDeadlines
from service.web import ApiError

WAIT_S = 30  # how long a test waits before it fails (a bound, not a figure)


def request(pieces: list[bytes]) -> Request:
    """A request whose body is ``pieces``, then nothing more, ever."""

    async def receive() -> dict[str, Any]:
        if pieces:
            return {"type": "http.request", "body": pieces.pop(0), "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return Request({"type": "http", "method": "PUT", "path": "/", "headers": []}, receive)


@pytest.mark.anyio
async def test_a_body_that_does_not_end_is_answered_408_and_the_request_goes_on() -> None:
    deadlines = BodyDeadlines(0.2)
    with pytest.raises(ApiError) as refused:
        await asyncio.wait_for(read(request([b'{"a": ', b"1"]), 1000, deadlines), WAIT_S)
    assert (refused.value.status, refused.value.headers) == (408, CLOSE)
    assert refused.value.message == "the request body did not arrive within 0.2 s"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the cancellation was taken back
    await asyncio.sleep(0)  # so the task can still answer
    assert not deadlines.reading and not deadlines.cut


@pytest.mark.anyio
async def test_another_cancellation_goes_through() -> None:
    deadlines = BodyDeadlines(WAIT_S)
    reading = asyncio.create_task(read(request([b"{"]), 1000, deadlines))
    while not deadlines.reading:
        await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not deadlines.reading and not deadlines.cut


@pytest.mark.anyio
async def test_a_body_that_comes_is_read_and_leaves_nothing_behind() -> None:
    deadlines = BodyDeadlines(WAIT_S)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}

    body = await read(Request({"type": "http", "method": "PUT", "path": "/", "headers": []}, receive), 1000, deadlines)
    assert body == b'{"a": 1}'
    assert not deadlines.reading
    assert deadlines.timer is not None  # the sweep, armed once: it stops by itself when nothing is read
    while deadlines.timer is not None:
        await asyncio.sleep(0.05)
