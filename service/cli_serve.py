"""``sessionstore serve``: its options (whose defaults are config.Settings'),
the checks made before serving, and the worker processes' way back from the
environment to the same settings (``app_from_environment``). How each HTTP
server is run: servers.py."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import tempfile
from typing import Any

from .cli_common import ENV_PREFIX, add_tls_options, env, env_flag, tls_from_args
from .config import Settings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
APP_FACTORY = "service.cli_serve:app_from_environment"  # what each worker process builds (servers.py)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_origins(text: str | None) -> list[str]:
    return [origin.strip() for origin in (text or "").split(",") if origin.strip()]


class ReplaceDefaultAppend(argparse.Action):
    """A repeatable option whose default (from the environment) is replaced,
    not appended to, once the option is given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if current is self.default else current), values])


def add_parser(commands: Any) -> None:
    from .logs import LOG_FORMATS
    from .servers import SERVERS

    d = Settings()  # every default below is one of its fields
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API",
        description="Serve the HTTP API. Every option can also be given as an environment "
        f"variable {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}REDIS_URL); the option wins.",
    )
    serve.add_argument("--host", default=env("host", d.host), help=f"address to listen on (default {d.host})")
    serve.add_argument("--port", type=int, default=env("port", str(d.port)), help=f"port (default {d.port})")
    serve.add_argument(
        "--redis-url",
        default=env("redis_url", d.redis_url),
        help="redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path.sock?db=N; "
        "default: an embedded in-memory store (data lives in this process only)",
    )
    add_tls_options(serve)
    serve.add_argument("--auth-file", default=env("auth_file", d.auth_file), help="TOML file of API keys (default: none)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=env_flag("insecure_no_auth", d.insecure_no_auth),
        help="allow serving a non-loopback address with no auth file (anyone may do anything)",
    )
    serve.add_argument(
        "--log-level", default=env("log_level", d.log_level), choices=LOG_LEVELS, help=f"default {d.log_level}"
    )
    serve.add_argument(
        "--log-format",
        default=env("log_format", d.log_format),
        choices=LOG_FORMATS,
        help=f"log lines as text or as one JSON object each (default {d.log_format})",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        default=env_flag("access_log", d.access_log),
        help="log one line per request (method, path, route, status, duration, API key id, request id)",
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action=ReplaceDefaultAppend,
        default=split_origins(env("cors_origins", ",".join(d.cors_origins))),
        metavar="ORIGIN",
        help="an origin browsers may call the APIs from (scheme://host[:port], or * for any); repeatable "
        f"(default: ${ENV_PREFIX}CORS_ORIGINS, comma-separated; none: no CORS)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=env("forwarded_allow_ips", ",".join(d.forwarded_allow_ips)),
        metavar="ADDRESSES",
        help="comma-separated addresses or networks of the proxies whose X-Forwarded-For and X-Forwarded-Proto "
        "name the client (* = any); default none: the connection's peer is the client",
    )
    serve.add_argument(
        "--server",
        default=env("server", d.server),
        choices=SERVERS,
        help=f"the HTTP server the API is served on (default {d.server})",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=env("workers", str(d.workers)),
        metavar="N",
        help=f"worker processes sharing the port (default {d.workers}); more than 1 needs --redis-url",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=env("shutdown_grace", str(d.shutdown_grace_s)),
        metavar="SECONDS",
        help=f"on SIGTERM, how long in-flight requests and event streams may take to end (default {d.shutdown_grace_s:g})",
    )
    for flag, default, meaning in (
        ("header-timeout", d.header_timeout_s,
         ("a connection that has not sent all of a request's headers this long after it was made or after "
          "its previous response is closed, with a 408 if part of a request came")),
        ("body-timeout", d.body_timeout_s,
         "a request whose body has not all come this long after its headers is answered 408, nothing stored"),
        ("keep-alive-timeout", d.keep_alive_timeout_s,
         "an idle connection is closed this long after its last response (uvicorn; granian has none)"),
    ):  # fmt: skip
        serve.add_argument(
            f"--{flag}",
            type=float,
            default=env(flag.replace("-", "_"), str(default)),
            metavar="SECONDS",
            help=f"{meaning} (default {default:g}{'' if flag == 'keep-alive-timeout' else '; 0 = none'})",
        )
    serve.add_argument(
        "--sse-send-timeout",
        type=float,
        default=env("sse_send_timeout", str(d.sse_send_timeout_s)),
        metavar="SECONDS",
        help="native API: drop an event stream (and close its connection) whose client has taken no data for "
        f"this long while events wait for it: one that stopped reading (default {d.sse_send_timeout_s:g})",
    )
    # whole numbers: a TTL, replicas and their timeout, and the limits on what a
    # client may send or store (see docs/index.md, Configuration: Limits)
    retention, replicas = d.limits.max_retention_s, d.durability.replicas
    for flag, default, metavar, meaning in (
        ("genesys-idle-ttl", d.genesys_idle_ttl_s, "SECONDS",
         (f"Genesys API: a session expires this long after its last read or write (default {d.genesys_idle_ttl_s}; "
         "0 = never)")),
        ("emporix-idle-ttl", d.emporix_idle_ttl_s, "SECONDS",
         ("Emporix API: a session context expires this long after its last write "
         f"(default {d.emporix_idle_ttl_s} = {d.emporix_idle_ttl_s / 86400:g} days; 0 = never)")),
        ("max-retention", retention, "SECONDS",
         ("every session (of every API) expires at the latest this long after its last write; LivePerson's "
         f"retention of context documents (default {retention} = 13 months; 0 = none)")),
        ("durable-writes", replicas, "N",
         ("acknowledge a write only once N replicas of its Redis primary have it (Redis WAIT), "
         f"else answer 503 (default {replicas}: once the primary has it)")),
        ("durable-timeout", d.durability.timeout_ms, "MS",
         ("with --durable-writes: how long a write waits for its replicas, in milliseconds; "
         f"less than the Redis command timeout (default {d.durability.timeout_ms})")),
        ("max-body-bytes", d.max_body_bytes, "N", "largest request body, in bytes (413 over it)"),
        ("max-session-chars", d.limits.max_chars, "N", "most characters of names and values stored in one session (413)"),
        ("max-properties", d.limits.max_properties, "N", "most properties in one session (413)"),
        ("max-name-chars", d.max_name_chars, "N", "longest tenant, namespace, session, property or attribute name (400)"),
        ("max-json-depth", d.max_json_depth, "N", "deepest nesting of arrays and objects in a JSON body (400)"),
        ("max-list-items", d.max_list_items, "N", "most names in include= and most session ids in one batch read (400)"),
        ("auth-failure-limit", d.auth_failure_limit, "N",
         ("failed authentications (unknown API keys) from one client address within --auth-failure-window "
         f"after which it is answered 429 for that long (default {d.auth_failure_limit}; 0 = never)")),
        ("auth-failure-window", d.auth_failure_window_s, "SECONDS",
         "the window of --auth-failure-limit, and how long an address is refused"),
        ("auth-failure-addresses", d.auth_failure_addresses, "N",
         "most client addresses whose failed authentications are remembered (the least recent forgotten first)"),
    ):  # fmt: skip
        serve.add_argument(
            f"--{flag}",
            type=int,
            default=env(flag.replace("-", "_"), str(default)),
            metavar=metavar,
            help=meaning if "(default" in meaning else f"{meaning} (default {default})",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
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
        log_format=args.log_format,
        access_log=args.access_log,
        cors_origins=tuple(args.cors_origins),
        forwarded_allow_ips=tuple(split_origins(args.forwarded_allow_ips)),
        server=args.server,
        workers=args.workers,
        shutdown_grace_s=args.shutdown_grace,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        keep_alive_timeout_s=args.keep_alive_timeout,
        sse_send_timeout_s=args.sse_send_timeout,
        genesys_idle_ttl_s=args.genesys_idle_ttl,
        emporix_idle_ttl_s=args.emporix_idle_ttl,
        max_body_bytes=args.max_body_bytes,
        max_name_chars=args.max_name_chars,
        max_json_depth=args.max_json_depth,
        max_list_items=args.max_list_items,
        auth_failure_limit=args.auth_failure_limit,
        auth_failure_window_s=args.auth_failure_window,
        auth_failure_addresses=args.auth_failure_addresses,
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
    """The app of one worker process, from the SESSIONSTORE_* variables that
    serve set (the HTTP server imports this by name: APP_FACTORY)."""
    from .app import build_app, tune_gc_for_serving
    from .auth import AuthConfig
    from .cli import parser

    args = parser().parse_args(["serve"])
    auth = AuthConfig.load(args.auth_file) if args.auth_file else None
    app = build_app(settings_from_args(args), auth=auth, watch_signals=True)
    tune_gc_for_serving()
    return app


def refusal(args: argparse.Namespace) -> str | None:
    """Why serve must not start with these options, or None."""
    if args.auth_file is None and not is_loopback(args.host) and not args.insecure_no_auth:
        return f"refusing to serve {args.host} with no --auth-file (give one, or --insecure-no-auth)"
    if args.workers < 1 or args.shutdown_grace < 0:
        return "--workers must be at least 1 and --shutdown-grace at least 0"
    if min(args.header_timeout, args.body_timeout) < 0 or args.keep_alive_timeout <= 0:
        return "--header-timeout and --body-timeout must be at least 0 and --keep-alive-timeout above 0"
    if args.auth_failure_limit < 0 or args.auth_failure_window < 1 or args.auth_failure_addresses < 1:
        return "--auth-failure-limit must be 0 or more, --auth-failure-window and --auth-failure-addresses at least 1"
    if not args.sse_send_timeout > 0:
        return "--sse-send-timeout must be above 0"
    if args.durable_writes < 0 or args.durable_writes and not args.redis_url:
        return "--durable-writes needs --redis-url (a Redis with replicas), and is 0 or more"
    command_timeout_ms = int(Settings.redis_timeout_s * 1000)  # a WAIT must end within it
    if args.durable_writes and not 0 < args.durable_timeout < command_timeout_ms:
        return f"--durable-timeout must be above 0 and below the Redis command timeout ({command_timeout_ms} ms)"
    if args.workers > 1 and not args.redis_url:
        return "--workers above 1 needs --redis-url (the embedded store lives in one process)"
    return None


def serve(args: argparse.Namespace) -> int:
    from . import servers
    from .app import build_app, tune_gc_for_serving
    from .auth import AuthConfig, AuthFileError
    from .cors import check_origins
    from .logs import configure_logging
    from .observability import MULTIPROC_ENV
    from .store.clients import redact, validate_tls, validate_url

    log_config = configure_logging(args.log_format, args.log_level)
    log = logging.getLogger("sessionstore")
    refused = refusal(args)
    if refused:
        print(f"sessionstore: {refused}", file=sys.stderr)
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
        # faces check their auth file sections, e.g. [customer_tokens]; when the
        # app is served from worker processes, each builds its own and this one only checks
        app = build_app(settings_from_args(args), auth=auth, watch_signals=True)
    except AuthFileError as exc:
        print(f"sessionstore: {exc}", file=sys.stderr)
        return 2
    if args.redis_url:
        log.info("Redis: %s", redact(args.redis_url))
    if args.cors_origins:
        log.info("CORS: requests from %s", ", ".join(args.cors_origins))
    serving = servers.Serving(
        args.host, args.port, args.workers, args.shutdown_grace, args.log_level, log_config,
        header_timeout_s=args.header_timeout, keep_alive_timeout_s=args.keep_alive_timeout,
    )  # fmt: skip
    if args.server == "uvicorn" and args.workers == 1:
        tune_gc_for_serving()
        return servers.run_uvicorn(app, serving)
    del app
    export_to_environment(args)
    if args.workers == 1:  # granian's one worker process
        return servers.run(args.server, APP_FACTORY, serving)
    # prometheus-client's multiprocess mode: each worker's counters in files
    # here, summed by whichever worker answers GET /metrics
    with tempfile.TemporaryDirectory(prefix="sessionstore-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        return servers.run(args.server, APP_FACTORY, serving)
