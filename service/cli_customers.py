"""``sessionstore customers list|export|erase`` and ``sessionstore check --repair``:
a customer's data from the command line, straight on a Redis (no service
needed), as the native API's customer calls answer (service/faces/customers.py).

``list`` prints one JSON object a line per session (the API's listing
entries); ``export`` writes the API's export document; ``erase`` deletes the
sessions (publishing their deletion events) and prints ``{"erased": N}``.
Export and erase write their audit line (JSON, on stderr), naming the caller
``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import time
from typing import Any

from .cli_common import add_redis_options, close_quietly, complain, redis_client, redis_failed, tls_from_args
from .cli_progress import ProgressBar, output_file

ACTIONS = ("list", "export", "erase")


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "customers",
        help="list, export or erase one customer's sessions, in every API",
        description="One customer's sessions, in every API (those tied to the customer: see the README's "
        "'Customer data'). list: one JSON line per session; export: the whole of their data as one JSON "
        'document; erase: delete every such session and print {"erased": N}. Export and erase write an audit '
        "line on stderr.",
    )
    command.add_argument("action", choices=ACTIONS, help="what to do")
    command.add_argument("--tenant", required=True, help="the tenant")
    command.add_argument("--customer", required=True, help="the customer id")
    command.add_argument("--out", default="-", metavar="FILE", help="export: the file to write (default: standard output)")
    add_redis_options(command)
    command.add_argument("--no-progress", action="store_true", help="no progress bar")


def caller() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def audit_to_stderr() -> None:
    """The audit logger, and only it, as JSON lines on stderr."""
    from .logs import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    audit_log = logging.getLogger("sessionstore.audit")
    audit_log.addHandler(handler)
    audit_log.setLevel(logging.INFO)
    audit_log.propagate = False


def run(args: argparse.Namespace) -> int:
    import msgspec
    import orjson

    from . import audit
    from .faces.customers import Export, listed
    from .store import customers
    from .store.core import UNAVAILABLE, SessionStore
    from .web import CONTROL_RE, NAME_RE

    if not NAME_RE.fullmatch(args.tenant) or not args.customer or CONTROL_RE.search(args.customer):
        return complain("give a tenant of letters, digits, '_', '.' or '-', and a customer id")
    try:
        client = redis_client(args.redis_url, tls=tls_from_args(args))
    except ValueError as exc:
        return complain(str(exc))
    audit_to_stderr()
    bar = ProgressBar(args.action, enabled=not args.no_progress)
    tenant, customer, key = args.tenant, args.customer, caller()
    started = time.monotonic()
    counts: dict[str, int] = {}

    async def main() -> str:
        store = SessionStore(client)
        await store.load_scripts()
        total = await customers.size(store, tenant, customer)
        if args.action == "list":
            found = await customers.list_sessions(store, tenant, customer)
            for f in found:
                sys.stdout.buffer.write(msgspec.json.encode(listed(f)) + b"\n")
            sys.stdout.buffer.flush()
            return f"listed {len(found):,} sessions"
        if args.action == "erase":
            counts["erased"] = await customers.erase(store, tenant, customer, progress=bar.update)
            print(orjson.dumps({"erased": counts["erased"]}).decode())
            return f"erased {counts['erased']:,} sessions"
        export = Export(store, tenant, customer)
        await export.start()
        try:
            with output_file(args.out) as out:
                async for chunk in export.document():
                    out.write(chunk)
                    bar.update(export.sessions, min(export.sessions / total, 1.0) if total else None)
        finally:
            counts["sessions"] = export.sessions
            audit.record("export", key=key, tenant=tenant, customer=customer, started=started,
                         sessions=export.sessions, complete=export.complete)  # fmt: skip
        if args.out == "-":
            sys.stdout.buffer.write(b"\n")
        return f"exported {export.sessions:,} sessions"

    async def guarded() -> str:
        try:
            return await main()
        finally:
            await close_quietly(client)

    try:
        summary = asyncio.run(guarded())
    except UNAVAILABLE as exc:
        if args.action == "erase":
            audit.record("erase", key=key, tenant=tenant, customer=customer, started=started, complete=False)
        return redis_failed(args.redis_url, exc)
    except OSError as exc:
        return complain(f"cannot write {args.out}: {exc.strerror or exc}", 1)
    if args.action == "erase":
        audit.record("erase", key=key, tenant=tenant, customer=customer, started=started,
                     erased=counts["erased"], complete=True)  # fmt: skip
    bar.close(summary)
    return 0


async def repair(client: Any, bar: ProgressBar) -> str:
    """``check --repair``: rebuild the customer indexes (store/customers.repair);
    the line that says what it did."""
    from .store import customers
    from .store.core import SessionStore

    stats = await customers.repair(SessionStore(client), progress=bar.update)
    return (
        f"repair: {stats.sessions:,} sessions of {stats.tenants} tenants read, {stats.tied:,} tied ones indexed; "
        f"{stats.indexes:,} customer indexes verified, {stats.dropped:,} dead entries dropped"
    )
