"""The last version of each session the client has seen, for ``If-None-Match``."""

from __future__ import annotations

import threading
from collections import OrderedDict


class SeenVersions:
    """Up to ``size`` sessions (the least recently used go first), each as
    its ETag and the JSON body it came with; safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, etag: str | None, body: bytes) -> None:
        if self.size <= 0 or not etag:
            return
        with self._lock:
            self._entries[key] = (etag, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
