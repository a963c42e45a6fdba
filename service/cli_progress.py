"""The progress bars of the commands that go through many sessions (export,
import, customers, check --repair), and the files they write and read."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import time
from collections.abc import Iterator
from typing import IO


class ProgressBar:
    """A progress bar on stderr: redrawn in place on a terminal (at most ten
    times a second), else a line every few seconds; always a last line."""

    def __init__(self, what: str, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.started = time.monotonic()
        self.shown_at = 0.0
        self.done = 0
        self.fraction: float | None = None

    def text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = f"{self.done / elapsed:,.0f}/s"
        if self.fraction is None:
            return f"{self.what}: {self.done:,} sessions, {rate}"
        filled = int(self.fraction * 30)
        return f"{self.what}: [{'#' * filled}{'.' * (30 - filled)}] {self.fraction:4.0%} {self.done:,} sessions, {rate}"

    def update(self, done: int, fraction: float | None = None) -> None:
        self.done, self.fraction = done, fraction
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.shown_at < (0.1 if self.tty else 5.0):
            return
        self.shown_at = now
        if self.tty:
            self.stream.write("\r" + self.text() + "\x1b[K")
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def close(self, summary: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        if self.enabled:
            self.stream.write(f"{summary} in {time.monotonic() - self.started:.1f} s\n")
            self.stream.flush()


@contextlib.contextmanager
def output_file(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(name, "wb") as raw:
        if name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as packed:
                yield packed  # type: ignore[misc]
        else:
            yield raw


class ReadProgress:
    """The lines of a file, and how far into the file (0 to 1) they have got."""

    def __init__(self, name: str) -> None:
        self.raw: IO[bytes] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        self.size = 0
        if name != "-":
            self.size = os.fstat(self.raw.fileno()).st_size
        packed = name.endswith(".gz")
        self.lines: IO[bytes] = gzip.GzipFile(fileobj=self.raw, mode="rb") if packed else self.raw  # type: ignore[assignment]

    def fraction(self) -> float | None:
        if not self.size:
            return None
        with contextlib.suppress(OSError, ValueError):
            return min(self.raw.tell() / self.size, 1.0)
        return None

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.raw.close()
