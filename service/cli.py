"""The command line: ``sessionstore serve`` and ``sessionstore keys new``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence

ENV_PREFIX = "SESSIONSTORE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def env_flag(name: str) -> bool:
    return (env(name) or "").lower() in ("1", "true", "yes", "on")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sessionstore", description="HTTP session store on Redis.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API",
        description="Serve the HTTP API. Every option can also be given as an environment "
        f"variable {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}REDIS_URL); the option wins.",
    )
    serve.add_argument("--host", default=env("host", "127.0.0.1"), help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=int(env("port", "8080") or 8080), help="port (default 8080)")
    serve.add_argument(
        "--redis-url",
        default=env("redis_url"),
        help="redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path.sock?db=N; "
        "default: an embedded in-memory store (data lives in this process only)",
    )
    serve.add_argument("--auth-file", default=env("auth_file"), help="TOML file of API keys (default: none)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=env_flag("insecure_no_auth"),
        help="allow serving a non-loopback address with no auth file (anyone may do anything)",
    )
    serve.add_argument("--log-level", default=env("log_level", "info"), choices=LOG_LEVELS, help="default info")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    new = key_commands.add_parser("new", help="make a new API key: prints the secret once, and its auth file entry")
    new.add_argument("--tenant", required=True, help='the tenant the key may act for ("*" = every tenant)')
    new.add_argument("--scopes", default="read,write", help="comma-separated: read, write, admin (default read,write)")
    new.add_argument("--id", help="a label for the key in logs (default: a random one)")
    return top


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import build_app
    from .auth import AuthConfig, AuthFileError
    from .config import Settings
    from .store.clients import validate_url

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.auth_file is None and not is_loopback(args.host) and not args.insecure_no_auth:
        print(
            f"sessionstore: refusing to serve {args.host} with no --auth-file (give one, or --insecure-no-auth)",
            file=sys.stderr,
        )
        return 2
    try:
        auth = AuthConfig.load(args.auth_file) if args.auth_file else None
        if args.redis_url:
            validate_url(args.redis_url)
    except (AuthFileError, ValueError) as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    if auth is None:
        logging.getLogger("sessionstore").warning(
            "no auth file: every request may do anything%s",
            "" if is_loopback(args.host) else " (--insecure-no-auth on a non-loopback address)",
        )
    settings = Settings(host=args.host, port=args.port, redis_url=args.redis_url, log_level=args.log_level)
    app = build_app(settings, auth=auth)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False)
    return 0


def keys_new(args: argparse.Namespace) -> int:
    from .auth import AuthFileError, new_key

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        secret, entry = new_key(args.tenant, scopes, args.id)
    except AuthFileError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    print(f"API key (shown once; keep it secret): {secret}\n")
    print("Add this entry to the auth file:\n")
    print(entry, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return keys_new(args)


if __name__ == "__main__":
    sys.exit(main())
