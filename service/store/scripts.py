"""The Lua scripts: loaded from lua/ once, run with EVALSHA.

A script that starts with the line ``-- include: lib`` gets lua/lib.lua put in
front of it. The SHA-1 of every script is computed here, so the first call
goes straight to EVALSHA; when Redis answers NOSCRIPT (its script cache is
emptied by a restart, a failover or SCRIPT FLUSH) the script is loaded again
and the call retried once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import NoScriptError

log = logging.getLogger("sessionstore.scripts")

INCLUDE = "-- include: "


class ScriptClient(Protocol):
    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any: ...

    async def script_load(self, script: str) -> Any: ...


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
    """Every script the store runs, loaded once."""

    def __init__(self, directory: Path | None = None) -> None:
        self.session_mutate = load("session_mutate", directory)
        self.session_delete = load("session_delete", directory)
        self.session_settings = load("session_settings", directory)
        self.bucket_list = load("bucket_list", directory)
        self.namespace_ensure = load("namespace_ensure", directory)
        self.namespace_delete = load("namespace_delete", directory)

        self.reloads = 0  # NOSCRIPT answers seen (and recovered from)

    def all(self) -> list[Script]:
        return [v for v in vars(self).values() if isinstance(v, Script)]

    async def run(self, client: ScriptClient, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.reloads += 1
            log.warning("script %s was not in the Redis script cache; loading it again", script.name)
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
