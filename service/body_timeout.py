"""The body timeout (``--body-timeout``): a request's body must all have
come within it of the moment its reading began (right after the headers),
else the request is answered 408, in the face's error format, and nothing of
it is stored. One bound for the whole body rather than one between its
chunks: a client that sends a byte just before each idle bound would hold
its request for ever, and one whole-body bound stops a slow upload and a
body that never ends (a Content-Length larger than what comes, a chunked
body with no last chunk) alike. It is kept in the app, not in the server, so
it holds on uvicorn and granian the same.

No timer per request: :class:`BodyDeadlines` keeps the tasks reading a body
with the time each must be done by, and looks at them every quarter of the
timeout (at most every second) while there are any; a task past its
deadline is cancelled, and its read (bodies.read) turns that cancellation
into the 408. So a body is cut between one timeout and one interval more
after its reading began, and a request costs a dictionary entry.
"""

from __future__ import annotations

import asyncio


class BodyDeadlines:
    """The tasks reading a request body, of one app, each with its deadline."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.interval_s = min(timeout_s / 4, 1.0)
        self.reading: dict[asyncio.Task[object], float] = {}
        self.cut: set[asyncio.Task[object]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[object] | None:
        """The current task, now reading a body (None: no timeout)."""
        if self.timeout_s <= 0:
            return None
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a request is always served by a task
            return None
        loop = task.get_loop()
        if loop is not self.loop:  # a new loop (tests run several): the old one's timer is gone
            self.loop, self.timer = loop, None
            self.reading.clear()
            self.cut.clear()
        self.reading[task] = loop.time() + self.timeout_s
        if self.timer is None:
            self.timer = loop.call_later(self.interval_s, self.sweep)
        return task

    def done(self, task: asyncio.Task[object]) -> None:
        """The task's body has been read, or its reading has failed."""
        self.reading.pop(task, None)
        if self.cut:
            self.cut.discard(task)

    def timed_out(self, task: asyncio.Task[object]) -> bool:
        """After a CancelledError in the task's reading: whether it was this
        timeout's (then it is taken back, and the request is answered 408)."""
        if task not in self.cut:
            return False
        self.cut.discard(task)
        task.uncancel()
        return True

    def sweep(self) -> None:
        assert self.loop is not None
        now = self.loop.time()
        for task, deadline in list(self.reading.items()):
            if deadline <= now:
                del self.reading[task]
                self.cut.add(task)
                task.cancel()
        self.timer = self.loop.call_later(self.interval_s, self.sweep) if self.reading else None
