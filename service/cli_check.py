"""``sessionstore check``: can a Redis serve sessionstore (store/checks.py);
with ``--repair``, then rebuild the customer indexes (cli_customers.repair)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .cli_common import add_redis_options, close_quietly, complain, redis_client, tls_from_args
from .cli_customers import repair
from .cli_progress import ProgressBar


def add_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="check a Redis: does it answer, its version and mode, do the scripts load",
        description=(
            "Check that a Redis can serve sessionstore: it answers, its version and mode (standalone or "
            "cluster), and every Lua script loads; it warns about an eviction policy (maxmemory-policy) that is "
            "not safe for sessionstore's keys (safe: noeviction and the volatile-* policies). Exits 0 when all is "
            "well (warnings or not), 1 otherwise. With --repair, then "
            "rebuild the customer indexes from the sessions (after an import or a restore)."
        ),
    )
    add_redis_options(check)
    check.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="per Redis command (default 2)")
    check.add_argument(
        "--repair",
        action="store_true",
        help="rebuild every customer index from the sessions, and drop its dead entries (safe while serving)",
    )
    check.add_argument("--no-progress", action="store_true", help="--repair: no progress bar")


def check(args: argparse.Namespace) -> int:
    from .store.checks import check as check_redis
    from .store.clients import redact

    try:
        client = redis_client(args.redis_url, args.timeout, tls_from_args(args))
    except ValueError as exc:
        return complain(str(exc))

    from .store.core import UNAVAILABLE

    bar = ProgressBar("repair", enabled=not args.no_progress)

    async def run() -> tuple[Any, str | None]:
        try:
            report = await check_redis(client)
            if not (args.repair and report.ok):
                return report, None
            try:
                return report, await repair(client, bar)
            except UNAVAILABLE as exc:
                return report, f"repair failed: {type(exc).__name__}: {exc}"
        finally:
            await close_quietly(client)

    report, repaired = asyncio.run(run())
    where = redact(args.redis_url)
    if not report.answers:
        print(f"redis: does not answer at {where}: {report.problems[0]}")
        return 1
    print(f"redis: answers at {where} ({report.version}, {report.mode})")
    print(f"scripts: {report.scripts_loaded} loaded")
    for problem in report.problems:
        print(f"problem: {problem}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    if repaired is not None:
        bar.close("repair done")
        print(repaired)
    return 0 if report.ok and not (repaired or "").startswith("repair failed") else 1
