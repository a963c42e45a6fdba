"""Settings of one service instance: from the command line, the environment
(SESSIONSTORE_<NAME>) or, in tests, given directly. The defaults here are
the only ones: ``sessionstore serve``'s options take theirs from these
fields (cli_serve.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .store.clients import RedisTls
from .store.core import Durability, Limits


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None  # None: the embedded in-memory store
    # PEM files of a rediss:// URL: the CA of the server's certificate (default: the
    # system's), and the client certificate and its key (for tls-auth-clients)
    redis_tls_ca: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    auth_file: str | None = None  # None: no API keys (loopback only, unless insecure_no_auth)
    insecure_no_auth: bool = False
    log_level: str = "info"
    log_format: str = "text"  # or "json" (service/logs.py)
    access_log: bool = False  # one log line per request (service/observability.py)
    # how serve runs: the HTTP server (service/servers.py), its worker processes,
    # and how long in-flight requests and event streams may take to end on SIGTERM
    server: str = "uvicorn"
    workers: int = 1
    shutdown_grace_s: float = 10.0
    # timeouts for slow and abusive clients (docs/operating.md): all of a request's
    # headers within header_timeout_s of the connection or of the previous response
    # (service/server_timeouts.py on uvicorn; granian's own), all of its body within
    # body_timeout_s of the headers (service/body_timeout.py), else 408; an idle
    # keep-alive connection closed after keep_alive_timeout_s (uvicorn). 0: none
    # (but for keep_alive_timeout_s)
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    # --cors-origin: the origins browsers may call the APIs from (service/cors.py); () = no CORS
    cors_origins: tuple[str, ...] = ()
    # limits on what a client may send or store
    max_body_bytes: int = 1024 * 1024
    max_name_chars: int = 256  # tenant, namespace, session and property names
    max_json_depth: int = 64
    max_list_items: int = 1000  # include=, batch sizes
    limits: Limits = field(default_factory=Limits)
    # --durable-writes: replicas that must have a write before it is acknowledged
    durability: Durability = field(default_factory=Durability)
    # failed authentication (service/auth_failures.py): this many unknown keys from one
    # client address within the window, and it is answered 429 for a window (0 = never);
    # at most this many addresses remembered
    auth_failure_limit: int = 20
    auth_failure_window_s: int = 60
    auth_failure_addresses: int = 10_000
    # --forwarded-allow-ips: the proxies whose X-Forwarded-For names the client (uvicorn's
    # ProxyHeadersMiddleware; addresses or networks, "*" = any); () = the peer is the client
    forwarded_allow_ips: tuple[str, ...] = ()
    # Redis
    redis_timeout_s: float = 1.0  # per command
    request_deadline_s: float = 1.8  # /readyz: Redis must answer a PING within this
    sweep_interval_s: float = 30.0  # reclaiming deleted namespaces
    # native API: a comment line this often keeps an idle event stream open
    sse_keepalive_s: float = 15.0
    # --sse-send-timeout: an event stream whose client has taken no data for this long is dropped
    sse_send_timeout_s: float = 10.0
    # Genesys face: a session expires this long after its last read or write (0 = never)
    genesys_idle_ttl_s: int = 24 * 3600
    # Emporix face: a session context expires this long after its last write (0 = never)
    emporix_idle_ttl_s: int = 30 * 24 * 3600

    def redis_tls(self) -> RedisTls | None:
        """The TLS files for the Redis client, or None when none is given."""
        return RedisTls.of(self.redis_tls_ca, self.redis_tls_cert, self.redis_tls_key)
