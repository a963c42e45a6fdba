"""``sessionstore keys new``: a new API key, and its auth file entry."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    new = key_commands.add_parser("new", help="make a new API key: prints the secret once, and its auth file entry")
    new.add_argument("--tenant", required=True, help='the tenant the key may act for ("*" = every tenant)')
    new.add_argument("--scopes", default="read,write", help="comma-separated: read, write, admin (default read,write)")
    new.add_argument("--id", help="a label for the key in logs (default: a random one)")


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
