"""``sessionstore export`` and ``sessionstore import``: a tenant's sessions as
JSON lines, out of a Redis and into one (store/transfer.py does the work)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .cli_common import add_redis_options, close_quietly, complain, redis_client, redis_failed, tls_from_args
from .cli_progress import ProgressBar, ReadProgress, output_file


def add_parsers(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write a tenant's sessions as JSON lines",
        description="Write a tenant's sessions (properties, versions, remaining TTLs) as JSON lines, with a "
        "progress bar on stderr. A file name ending in .gz is compressed.",
    )
    export.add_argument("--tenant", required=True, help="the tenant to export")
    export.add_argument("--namespace", help="only this namespace (default: every namespace of the tenant)")
    export.add_argument("--out", default="-", metavar="FILE", help="the file to write (default: standard output)")
    add_redis_options(export)
    export.add_argument("--no-progress", action="store_true", help="no progress bar")

    load = commands.add_parser(
        "import",
        help="load sessions from an export file",
        description="Load the sessions of a sessionstore export file (from any Redis) into a Redis, with their "
        "versions and remaining TTLs; a session that exists is replaced unless --skip-existing. A file name "
        "ending in .gz is read compressed; - reads standard input.",
    )
    load.add_argument("file", metavar="FILE", help="the export file")
    add_redis_options(load)
    load.add_argument(
        "--skip-existing", action="store_true", help="keep sessions that exist, instead of replacing them"
    )
    load.add_argument("--no-progress", action="store_true", help="no progress bar")


def export(args: argparse.Namespace) -> int:
    from .store.core import UNAVAILABLE, SessionStore
    from .store.transfer import TransferError, export_sessions

    try:
        client = redis_client(args.redis_url, tls=tls_from_args(args))
    except ValueError as exc:
        return complain(str(exc))
    bar = ProgressBar("export", enabled=not args.no_progress)

    async def run() -> Any:
        try:
            with output_file(args.out) as out:
                return await export_sessions(
                    SessionStore(client), out, args.tenant, args.namespace, progress=bar.update
                )
        finally:
            await close_quietly(client)

    try:
        stats = asyncio.run(run())
    except TransferError as exc:
        return complain(str(exc), 1)
    except UNAVAILABLE as exc:
        return redis_failed(args.redis_url, exc)
    except OSError as exc:
        return complain(f"cannot write {args.out}: {exc.strerror or exc}", 1)
    bar.close(f"exported {stats.sessions:,} sessions of {stats.namespaces} namespaces")
    return 0


def import_(args: argparse.Namespace) -> int:
    from .store.core import UNAVAILABLE, SessionStore
    from .store.transfer import TransferError, import_sessions

    try:
        client = redis_client(args.redis_url, tls=tls_from_args(args))
    except ValueError as exc:
        return complain(str(exc))
    try:
        source = ReadProgress(args.file)
    except OSError as exc:
        return complain(f"cannot read {args.file}: {exc.strerror or exc}")
    bar = ProgressBar("import", enabled=not args.no_progress)

    async def run() -> Any:
        try:
            return await import_sessions(
                SessionStore(client),
                source.lines,
                skip_existing=args.skip_existing,
                progress=lambda done: bar.update(done, source.fraction()),
            )
        finally:
            source.close()
            await close_quietly(client)

    try:
        stats = asyncio.run(run())
    except TransferError as exc:
        return complain(f"{args.file}: {exc}", 1)
    except UNAVAILABLE as exc:
        return redis_failed(args.redis_url, exc)
    except (OSError, EOFError) as exc:
        return complain(f"cannot read {args.file}: {exc}", 1)
    summary = f"imported {stats.imported:,} sessions ({stats.namespaces} namespaces)"
    if stats.skipped:
        summary += f", kept {stats.skipped:,} that existed"
    if stats.failed:
        summary += f", {stats.failed:,} refused"
    bar.close(summary)
    for problem in stats.problems:
        print(f"sessionstore: {problem}", file=sys.stderr)
    return 1 if stats.failed else 0
