"""The Lua scripts: loaded from lua/ once, run with EVALSHA.

A script that starts with the line ``-- include: lib`` gets lua/lib.lua put in
front of it. The SHA-1 of every script is computed here, so the first call
goes straight to EVALSHA; when Redis answers NOSCRIPT (its script cache is
emptied by a restart, a failover or SCRIPT FLUSH) the seam (seam.py) loads
the script again and retries the call once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INCLUDE = "-- include: "
LIBRARY = "lib"  # lua/lib.lua: helpers included by scripts, not a script itself


def lua_dir() -> Path:
    """lua/ inside the installed package, or at the top of a source checkout."""
    packaged = resources.files("service") / "lua"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "lua"


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def load(name: str, directory: Path | None = None) -> Script:
    directory = directory or lua_dir()
    body = (directory / f"{name}.lua").read_text(encoding="utf-8")
    parts = []
    for line in body.splitlines():
        if not line.startswith(INCLUDE):
            break
        parts.append((directory / f"{line[len(INCLUDE):].strip()}.lua").read_text(encoding="utf-8"))
    source = "\n".join([*parts, body])
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


class Scripts:
    """Every script in lua/ (but the library), loaded once; one attribute each,
    named after its file: ``scripts.session_mutate`` is lua/session_mutate.lua."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or lua_dir()
        self.by_name = {
            path.stem: load(path.stem, directory) for path in sorted(directory.glob("*.lua")) if path.stem != LIBRARY
        }
        self.reloads = 0  # NOSCRIPT answers seen (and recovered from)

    def __getattr__(self, name: str) -> Script:
        try:
            return self.__dict__["by_name"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"no script lua/{name}.lua") from None

    def all(self) -> list[Script]:
        return list(self.by_name.values())
