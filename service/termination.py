"""The shutdown signal, for responses that would otherwise outlast it.

:func:`watch_termination`: SIGTERM and SIGINT set an asyncio.Event at once
(``app.state.shutting_down``), before the HTTP server waits for in-flight
requests, so an event stream can end by itself within the grace period. The
signal then goes on to the handler that was there before: the server's, which
starts its graceful shutdown (uvicorn's; in a granian worker, the event loop's
handler, which still runs: a signal is also written to the loop's wakeup fd).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_watched: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
_saved_handlers: dict[int, Any] = {}
_watch_lock = threading.Lock()


def _on_termination(sig: int, frame: Any) -> None:
    for event, loop in list(_watched.items()):
        with contextlib.suppress(RuntimeError):  # its loop is closed
            loop.call_soon_threadsafe(event.set)
    previous = _saved_handlers.get(sig, signal.SIG_DFL)
    if callable(previous):
        previous(sig, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)


def watch_termination(event: asyncio.Event) -> Callable[[], None]:
    """From now on SIGTERM and SIGINT set ``event`` (on the running loop)
    before reaching the handler that was there before (uvicorn's, which
    starts the graceful shutdown). Returns the function that stops watching;
    the previous handlers are back once nothing is watched. Does nothing
    outside the main thread, where no signal handler can be set."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    with _watch_lock:
        if not _watched:
            for sig in TERMINATION_SIGNALS:
                _saved_handlers[sig] = signal.signal(sig, _on_termination)
        _watched[event] = loop

    def unwatch() -> None:
        with _watch_lock:
            if _watched.pop(event, None) is None or _watched:
                return
            for sig, handler in _saved_handlers.items():
                if signal.getsignal(sig) is _on_termination:
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            _saved_handlers.clear()

    return unwatch
