"""The command line: ``sessionstore serve | check | export | import | customers | keys new``.

One module a command: cli_serve.py (and servers.py, the HTTP servers),
cli_check.py, cli_transfer.py (export, import), cli_customers.py,
cli_keys.py; what they share: cli_common.py and cli_progress.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import cli_check, cli_customers, cli_keys, cli_serve, cli_transfer


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sessionstore", description="HTTP session store on Redis.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_serve.add_parser(commands)
    cli_check.add_parser(commands)
    cli_transfer.add_parsers(commands)
    cli_keys.add_parser(commands)
    cli_customers.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {
        "serve": cli_serve.serve,
        "check": cli_check.check,
        "export": cli_transfer.export,
        "import": cli_transfer.import_,
        "customers": cli_customers.run,
        "keys": cli_keys.keys_new,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
