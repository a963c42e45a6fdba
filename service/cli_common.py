"""What the commands of the command line share: options from the
environment (SESSIONSTORE_<NAME>), the TLS files of a Redis, and a Redis
client for the commands that work straight on a Redis."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

ENV_PREFIX = "SESSIONSTORE_"
REDIS_HELP = "redis://[user:password@]host:port/db, rediss:// or unix:// (default: $SESSIONSTORE_REDIS_URL)"


def env(name: str, default: str | None = None) -> str | None:
    """SESSIONSTORE_<NAME>, else ``default``. Given as an option's default it
    stays a string: argparse converts string defaults with the option's
    type=, so a bad value is reported like a bad flag."""
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def env_flag(name: str, default: bool = False) -> bool:
    """SESSIONSTORE_<NAME> as a switch (1, true, yes, on), else ``default``."""
    value = env(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


def add_tls_options(command: argparse.ArgumentParser) -> None:
    """The TLS files of a rediss:// Redis URL."""
    for flag, meaning in (
        ("ca", "PEM file of the CA that signed the Redis server's certificate (default: the system's CAs)"),
        ("cert", "PEM file of the client certificate, for a Redis that asks for one (with --redis-tls-key)"),
        ("key", "PEM file of the client certificate's private key, not encrypted (with --redis-tls-cert)"),
    ):
        command.add_argument(
            f"--redis-tls-{flag}",
            default=env(f"redis_tls_{flag}"),
            metavar="FILE",
            help=f"{meaning}; needs a rediss:// URL (default: ${ENV_PREFIX}REDIS_TLS_{flag.upper()})",
        )


def add_redis_options(command: argparse.ArgumentParser) -> None:
    """--redis-url and its TLS files, for a command that works on a Redis."""
    command.add_argument("--redis-url", default=env("redis_url"), help=REDIS_HELP)
    add_tls_options(command)


def tls_from_args(args: argparse.Namespace) -> Any:
    """The RedisTls of the --redis-tls-* options, or None when none is given."""
    from .store.clients import RedisTls

    return RedisTls.of(args.redis_tls_ca, args.redis_tls_cert, args.redis_tls_key)


def redis_client(url: str | None, timeout_s: float = 5.0, tls: Any = None) -> Any:
    """A client of the Redis at ``url`` (``tls``: its clients.RedisTls);
    raises ValueError for a missing or bad URL, or TLS files it cannot use."""
    from .store import clients

    if not url:
        raise ValueError("give the Redis with --redis-url (or SESSIONSTORE_REDIS_URL)")
    return clients.connect(url, timeout_s=timeout_s, tls=tls)  # which checks the URL and the files


def complain(message: str, code: int = 2) -> int:
    """A command's error, one line on stderr; returns the exit code it ends with."""
    print(f"sessionstore: {message}", file=sys.stderr)
    return code


def redis_failed(url: str, exc: BaseException) -> int:
    """The line for a Redis that failed mid-command (its password hidden); exit code 1."""
    from .store.clients import redact

    return complain(f"Redis at {redact(url)} failed: {type(exc).__name__}: {exc}", 1)


async def close_quietly(client: Any) -> None:
    """Close a command's Redis client, whatever state it is in."""
    with contextlib.suppress(Exception):
        await client.aclose(close_connection_pool=True)
