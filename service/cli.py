"""The command line: ``sessionstore serve | check | export | import | customers | keys new``
(``customers`` and ``check --repair``: cli_customers.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import ipaddress
import logging
import logging.config
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

ENV_PREFIX = "SESSIONSTORE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
APP_FACTORY = "service.cli:app_from_environment"  # what each worker process of serve --workers N builds


def env(name: str, default: str | None = None) -> str | None:
    """SESSIONSTORE_<NAME>, else ``default``. Given as an option's default it
    stays a string: argparse converts string defaults with the option's
    type=, so a bad value is reported like a bad flag."""
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


def tls_from_args(args: argparse.Namespace) -> Any:
    """The RedisTls of the --redis-tls-* options, or None when none is given."""
    from .store.clients import RedisTls

    return RedisTls.of(args.redis_tls_ca, args.redis_tls_cert, args.redis_tls_key)


def split_origins(text: str | None) -> list[str]:
    return [origin.strip() for origin in (text or "").split(",") if origin.strip()]


class ReplaceDefaultAppend(argparse.Action):
    """A repeatable option whose default (from the environment) is replaced,
    not appended to, once the option is given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if current is self.default else current), values])


def parser() -> argparse.ArgumentParser:
    from .store.core import RETENTION_13_MONTHS_S
    top = argparse.ArgumentParser(prog="sessionstore", description="HTTP session store on Redis.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API",
        description="Serve the HTTP API. Every option can also be given as an environment "
        f"variable {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}REDIS_URL); the option wins.",
    )
    serve.add_argument("--host", default=env("host", "127.0.0.1"), help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=env("port", "8080"), help="port (default 8080)")
    serve.add_argument(
        "--redis-url",
        default=env("redis_url"),
        help="redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path.sock?db=N; "
        "default: an embedded in-memory store (data lives in this process only)",
    )
    add_tls_options(serve)
    serve.add_argument("--auth-file", default=env("auth_file"), help="TOML file of API keys (default: none)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=env_flag("insecure_no_auth"),
        help="allow serving a non-loopback address with no auth file (anyone may do anything)",
    )
    serve.add_argument("--log-level", default=env("log_level", "info"), choices=LOG_LEVELS, help="default info")
    serve.add_argument(
        "--log-format",
        default=env("log_format", "text"),
        choices=LOG_FORMATS,
        help="log lines as text or as one JSON object each (default text)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        default=env_flag("access_log"),
        help="log one line per request (method, path, route, status, duration, API key id, request id)",
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action=ReplaceDefaultAppend,
        default=split_origins(env("cors_origins")),
        metavar="ORIGIN",
        help="an origin browsers may call the APIs from (scheme://host[:port], or * for any); repeatable "
        f"(default: ${ENV_PREFIX}CORS_ORIGINS, comma-separated; none: no CORS)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=env("workers", "1"),
        metavar="N",
        help="worker processes sharing the port (default 1); more than 1 needs --redis-url",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=env("shutdown_grace", "10"),
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests and event streams may take to end (default 10)",
    )
    serve.add_argument(
        "--genesys-idle-ttl",
        type=int,
        default=env("genesys_idle_ttl", "86400"),
        metavar="SECONDS",
        help="Genesys API: a session expires this long after its last read or write (default 86400; 0 = never)",
    )
    serve.add_argument(
        "--emporix-idle-ttl",
        type=int,
        default=env("emporix_idle_ttl", "2592000"),
        metavar="SECONDS",
        help="Emporix API: a session context expires this long after its last write "
        "(default 2592000 = 30 days; 0 = never)",
    )
    serve.add_argument(
        "--max-retention",
        type=int,
        default=env("max_retention", str(RETENTION_13_MONTHS_S)),
        metavar="SECONDS",
        help="every session (of every API) expires at the latest this long after its last write; LivePerson's "
        f"retention of context documents (default {RETENTION_13_MONTHS_S} = 13 months; 0 = none)",
    )
    serve.add_argument(
        "--durable-writes",
        type=int,
        default=env("durable_writes", "0"),
        metavar="N",
        help="acknowledge a write only once N replicas of its Redis primary have it (Redis WAIT), "
        "else answer 503 (default 0: once the primary has it)",
    )
    serve.add_argument(
        "--durable-timeout",
        type=int,
        default=env("durable_timeout", "500"),
        metavar="MS",
        help="with --durable-writes: how long a write waits for its replicas, in milliseconds; "
        "less than the Redis command timeout (default 500)",
    )
    # limits on what a client may send or store (see docs/index.md, Configuration: Limits)
    for flag, default, meaning in (
        ("max-body-bytes", 1024 * 1024, "largest request body, in bytes (413 over it)"),
        ("max-session-chars", 800_000, "most characters of names and values stored in one session (413)"),
        ("max-properties", 10_000, "most properties in one session (413)"),
        ("max-name-chars", 256, "longest tenant, namespace, session, property or attribute name (400)"),
        ("max-json-depth", 64, "deepest nesting of arrays and objects in a JSON body (400)"),
        ("max-list-items", 1000, "most names in include= and most session ids in one batch read (400)"),
    ):
        serve.add_argument(
            f"--{flag}",
            type=int,
            default=env(flag.replace("-", "_"), str(default)),
            metavar="N",
            help=f"{meaning} (default {default})",
        )

    redis_help = "redis://[user:password@]host:port/db, rediss:// or unix:// (default: $SESSIONSTORE_REDIS_URL)"
    check = commands.add_parser(
        "check",
        help="check a Redis: does it answer, its version and mode, do the scripts load",
        description=(
            "Check that a Redis can serve sessionstore: it answers, its version and mode (standalone or "
            "cluster), and every Lua script loads. Exits 0 when all is well, 1 otherwise. With --repair, then "
            "rebuild the customer indexes from the sessions (after an import or a restore)."
        ),
    )
    check.add_argument("--redis-url", default=env("redis_url"), help=redis_help)
    add_tls_options(check)
    check.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="per Redis command (default 2)")
    check.add_argument(
        "--repair",
        action="store_true",
        help="rebuild every customer index from the sessions, and drop its dead entries (safe while serving)",
    )
    check.add_argument("--no-progress", action="store_true", help="--repair: no progress bar")

    export = commands.add_parser(
        "export",
        help="write a tenant's sessions as JSON lines",
        description="Write a tenant's sessions (properties, versions, remaining TTLs) as JSON lines, with a "
        "progress bar on stderr. A file name ending in .gz is compressed.",
    )
    export.add_argument("--tenant", required=True, help="the tenant to export")
    export.add_argument("--namespace", help="only this namespace (default: every namespace of the tenant)")
    export.add_argument("--out", default="-", metavar="FILE", help="the file to write (default: standard output)")
    export.add_argument("--redis-url", default=env("redis_url"), help=redis_help)
    add_tls_options(export)
    export.add_argument("--no-progress", action="store_true", help="no progress bar")

    load = commands.add_parser(
        "import",
        help="load sessions from an export file",
        description="Load the sessions of a sessionstore export file (from any Redis) into a Redis, with their "
        "versions and remaining TTLs; a session that exists is replaced unless --skip-existing. A file name "
        "ending in .gz is read compressed; - reads standard input.",
    )
    load.add_argument("file", metavar="FILE", help="the export file")
    load.add_argument("--redis-url", default=env("redis_url"), help=redis_help)
    add_tls_options(load)
    load.add_argument(
        "--skip-existing", action="store_true", help="keep sessions that exist, instead of replacing them"
    )
    load.add_argument("--no-progress", action="store_true", help="no progress bar")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    new = key_commands.add_parser("new", help="make a new API key: prints the secret once, and its auth file entry")
    new.add_argument("--tenant", required=True, help='the tenant the key may act for ("*" = every tenant)')
    new.add_argument("--scopes", default="read,write", help="comma-separated: read, write, admin (default read,write)")
    new.add_argument("--id", help="a label for the key in logs (default: a random one)")

    from . import cli_customers

    cli_customers.add_parser(commands, redis_help)
    return top


def settings_from_args(args: argparse.Namespace) -> Any:
    from .config import Settings
    from .store.core import Durability, Limits

    return Settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        redis_tls_ca=args.redis_tls_ca,
        redis_tls_cert=args.redis_tls_cert,
        redis_tls_key=args.redis_tls_key,
        auth_file=args.auth_file,
        insecure_no_auth=args.insecure_no_auth,
        log_level=args.log_level,
        access_log=args.access_log,
        cors_origins=tuple(args.cors_origins),
        genesys_idle_ttl_s=args.genesys_idle_ttl,
        emporix_idle_ttl_s=args.emporix_idle_ttl,
        max_body_bytes=args.max_body_bytes,
        max_name_chars=args.max_name_chars,
        max_json_depth=args.max_json_depth,
        max_list_items=args.max_list_items,
        limits=Limits(
            max_chars=args.max_session_chars, max_properties=args.max_properties, max_retention_s=args.max_retention
        ),
        durability=Durability(replicas=args.durable_writes, timeout_ms=args.durable_timeout),
    )


def export_to_environment(args: argparse.Namespace) -> None:
    """Every serve option as its SESSIONSTORE_<NAME> variable, for the worker
    processes: each one reads them back (app_from_environment)."""
    for name, value in vars(args).items():
        if name == "command":
            continue
        variable = ENV_PREFIX + name.upper()
        if value is None:
            os.environ.pop(variable, None)
        elif isinstance(value, list):  # --cors-origin: comma-separated
            os.environ[variable] = ",".join(value)
        else:
            os.environ[variable] = ("true" if value else "false") if isinstance(value, bool) else str(value)


def app_from_environment() -> Any:
    """The app of one worker process of ``serve --workers N``, from the
    SESSIONSTORE_* variables that serve set (uvicorn imports this by name)."""
    from .app import build_app, tune_gc_for_serving
    from .auth import AuthConfig

    args = parser().parse_args(["serve"])
    auth = AuthConfig.load(args.auth_file) if args.auth_file else None
    app = build_app(settings_from_args(args), auth=auth, watch_signals=True)
    tune_gc_for_serving()
    return app


def _exit_on_termination(signum: int, frame: Any) -> None:
    # uvicorn hands SIGTERM back to the handler it found once its graceful
    # shutdown is done: the shutdown went as planned, so exit 0.
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import build_app, tune_gc_for_serving
    from .auth import AuthConfig, AuthFileError
    from .config import Settings
    from .cors import check_origins
    from .logs import logging_config
    from .observability import MULTIPROC_ENV
    from .store.clients import redact, validate_tls, validate_url

    log_config = logging_config(args.log_format, args.log_level)
    logging.config.dictConfig(log_config)
    logging.captureWarnings(True)
    log = logging.getLogger("sessionstore")
    if args.auth_file is None and not is_loopback(args.host) and not args.insecure_no_auth:
        print(
            f"sessionstore: refusing to serve {args.host} with no --auth-file (give one, or --insecure-no-auth)",
            file=sys.stderr,
        )
        return 2
    if args.workers < 1 or args.shutdown_grace < 0:
        print("sessionstore: --workers must be at least 1 and --shutdown-grace at least 0", file=sys.stderr)
        return 2
    if args.durable_writes < 0 or args.durable_writes and not args.redis_url:
        print("sessionstore: --durable-writes needs --redis-url (a Redis with replicas), and is 0 or more", file=sys.stderr)
        return 2
    command_timeout_ms = int(Settings.redis_timeout_s * 1000)  # a WAIT must end within it
    if args.durable_writes and not 0 < args.durable_timeout < command_timeout_ms:
        print(
            f"sessionstore: --durable-timeout must be above 0 and below the Redis command timeout ({command_timeout_ms} ms)",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1 and not args.redis_url:
        print(
            "sessionstore: --workers above 1 needs --redis-url (the embedded store lives in one process)",
            file=sys.stderr,
        )
        return 2
    try:
        auth = AuthConfig.load(args.auth_file) if args.auth_file else None
        args.cors_origins = list(check_origins(args.cors_origins))
        if args.redis_url:
            validate_url(args.redis_url, tls_from_args(args))
        else:
            validate_tls(None, tls_from_args(args))  # TLS files without a URL
    except (AuthFileError, ValueError) as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    if auth is None:
        log.warning(
            "no auth file: every request may do anything%s",
            "" if is_loopback(args.host) else " (--insecure-no-auth on a non-loopback address)",
        )
    try:
        # faces check their auth file sections, e.g. [customer_tokens]; with
        # workers, each builds its own app and this one only checks
        app = build_app(settings_from_args(args), auth=auth, watch_signals=True)
    except AuthFileError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    if args.redis_url:
        log.info("Redis: %s", redact(args.redis_url))
    if args.cors_origins:
        log.info("CORS: requests from %s", ", ".join(args.cors_origins))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "log_config": log_config,
        "access_log": False,  # observability.Observe writes the access log
        "proxy_headers": False,
        "timeout_graceful_shutdown": args.shutdown_grace,
    }
    signal.signal(signal.SIGTERM, _exit_on_termination)
    if args.workers == 1:
        tune_gc_for_serving()
        uvicorn.run(app, **options)
        return 0
    del app
    export_to_environment(args)
    # prometheus-client's multiprocess mode: each worker's counters in files
    # here, summed by whichever worker answers GET /metrics
    with tempfile.TemporaryDirectory(prefix="sessionstore-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        uvicorn.run(APP_FACTORY, factory=True, workers=args.workers, **options)
    return 0


# -- check, export, import -------------------------------------------------------


def redis_client(url: str | None, timeout_s: float = 5.0, tls: Any = None) -> Any:
    """A client of the Redis at ``url`` (``tls``: its clients.RedisTls);
    raises ValueError for a missing or bad URL, or TLS files it cannot use."""
    from .store import clients

    if not url:
        raise ValueError("give the Redis with --redis-url (or SESSIONSTORE_REDIS_URL)")
    return clients.connect(url, timeout_s=timeout_s, tls=tls)  # which checks the URL and the files


def check(args: argparse.Namespace) -> int:
    from .store.checks import check as check_redis
    from .store.clients import redact

    try:
        client = redis_client(args.redis_url, args.timeout, tls_from_args(args))
    except ValueError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2

    from .cli_customers import repair
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
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    report, repaired = asyncio.run(run())
    where = redact(args.redis_url)
    if not report.answers:
        print(f"redis: does not answer at {where}: {report.problems[0]}")
        return 1
    print(f"redis: answers at {where} ({report.version}, {report.mode})")
    print(f"scripts: {report.scripts_loaded} loaded")
    for problem in report.problems:
        print(f"problem: {problem}")
    if repaired is not None:
        bar.close("repair done")
        print(repaired)
    return 0 if report.ok and not (repaired or "").startswith("repair failed") else 1


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


def export(args: argparse.Namespace) -> int:
    from .store.clients import redact
    from .store.core import UNAVAILABLE, SessionStore
    from .store.transfer import TransferError, export_sessions

    try:
        client = redis_client(args.redis_url, tls=tls_from_args(args))
    except ValueError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar("export", enabled=not args.no_progress)

    async def run() -> Any:
        try:
            with output_file(args.out) as out:
                return await export_sessions(
                    SessionStore(client), out, args.tenant, args.namespace, progress=bar.update
                )
        finally:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    try:
        stats = asyncio.run(run())
    except TransferError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 1
    except UNAVAILABLE as exc:
        print(f"sessionstore: Redis at {redact(args.redis_url)} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sessionstore: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bar.close(f"exported {stats.sessions:,} sessions of {stats.namespaces} namespaces")
    return 0


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


def import_(args: argparse.Namespace) -> int:
    from .store.clients import redact
    from .store.core import UNAVAILABLE, SessionStore
    from .store.transfer import TransferError, import_sessions

    try:
        client = redis_client(args.redis_url, tls=tls_from_args(args))
    except ValueError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    try:
        source = ReadProgress(args.file)
    except OSError as exc:
        print(f"sessionstore: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
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
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    try:
        stats = asyncio.run(run())
    except TransferError as exc:
        print(f"sessionstore: {args.file}: {exc}", file=sys.stderr)
        return 1
    except UNAVAILABLE as exc:
        print(f"sessionstore: Redis at {redact(args.redis_url)} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, EOFError) as exc:
        print(f"sessionstore: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    summary = f"imported {stats.imported:,} sessions ({stats.namespaces} namespaces)"
    if stats.skipped:
        summary += f", kept {stats.skipped:,} that existed"
    if stats.failed:
        summary += f", {stats.failed:,} refused"
    bar.close(summary)
    for problem in stats.problems:
        print(f"sessionstore: {problem}", file=sys.stderr)
    return 1 if stats.failed else 0


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
    from . import cli_customers

    commands = {
        "serve": serve,
        "check": check,
        "export": export,
        "import": import_,
        "customers": cli_customers.run,
        "keys": keys_new,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
