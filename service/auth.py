"""API keys and tenants, from the auth file (TOML).

    [[keys]]
    id = "bot-emea"          # a label for logs; never the secret
    tenant = "739483"        # the tenant this key may act for; "*" = every tenant
    sha256 = "<hex SHA-256 of the secret>"
    scopes = ["read", "write", "admin"]
    rate = "200/s"           # optional: at most 200 requests a second, shared by every instance

Only the SHA-256 of a secret is kept; a presented secret is hashed and
compared in constant time. Sections other than [[keys]] belong to other parts
of the service (the Emporix face reads [customer_tokens]) and are left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCOPES = ("read", "write", "admin")
ANY_TENANT = "*"
# Scope names that other products use for the same rights, accepted in the file.
SCOPE_ALIASES: dict[str, tuple[str, ...]] = {
    "sessioncontext.context_manage": ("read", "write"),
    "session_context.context_manage": ("read", "write"),
}
KEY_HEADERS = ("maven-api-key", "x-api-key")
# The request-state name under which the face that authenticated the request
# (web.Context.caller, once per request) leaves the key's id for the access log.
KEY_ID_STATE = "api_key_id"


class AuthFileError(ValueError):
    """The auth file cannot be used; the message says why and where."""


RATE_RE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{0,6})\s*(s|m|h)\s*")
RATE_UNITS_S = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, slots=True)
class Rate:
    """A key's request rate limit, ``"<N>/<period>"``: N requests per period,
    the period ``s``, ``m`` or ``h``, optionally a whole number of them
    (``"200/s"``, ``"1000/m"``, ``"50/10s"``). N requests may come at once
    (the burst); past that, one each period/N (GCRA, service/rate_limits.py)."""

    requests: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        found = RATE_RE.fullmatch(text)
        count = int(found.group(1)) if found else 0
        period = int(found.group(2) or 1) * RATE_UNITS_S[found.group(3)] if found else 0
        if count < 1 or period < 1:
            raise ValueError(f"rate {text!r}: write <requests>/<period>, e.g. \"200/s\", \"1000/m\", \"50/10s\" (s, m or h)")
        return cls(count, period)

    @property
    def interval_us(self) -> int:
        """The time one request takes of the budget (GCRA's emission interval), in µs (at least 1)."""
        return max(1, math.ceil(self.period_s * 1_000_000 / self.requests))

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h"}.get(self.period_s, f"{self.period_s}s")
        return f"{self.requests}/{unit}"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    scopes: frozenset[str]
    rate: Rate | None = None  # None: never rate limited (no Redis call spent on it)

    def may(self, tenant: str, scope: str) -> bool:
        return (self.tenant == ANY_TENANT or self.tenant == tenant) and scope in self.scopes


# The principal of a request when the service runs with no auth file (loopback only).
OPEN_ACCESS = ApiKey("open-access", ANY_TENANT, frozenset(SCOPES))


class Denied(Exception):
    """Authentication (401) or authorisation (403) failed; or (429) the
    client's address failed to authenticate too often (``headers``: its
    Retry-After)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class AuthConfig:
    """The parsed auth file: API keys by the SHA-256 of their secret, and the
    raw document for the sections other modules read."""

    keys_by_hash: Mapping[bytes, ApiKey]
    document: Mapping[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> AuthConfig:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AuthFileError(f"cannot read auth file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise AuthFileError(f"auth file {path} is not valid TOML: {exc}") from exc
        return cls.from_document(document, str(path))

    @classmethod
    def from_document(cls, document: Mapping[str, Any], where: str = "auth file") -> AuthConfig:
        entries = document.get("keys", [])
        if not isinstance(entries, list):
            raise AuthFileError(f"{where}: 'keys' must be an array of tables ([[keys]])")
        by_hash: dict[bytes, ApiKey] = {}
        for n, entry in enumerate(entries, 1):
            label = f"{where}: key {n}"
            if not isinstance(entry, dict):
                raise AuthFileError(f"{label} is not a table")
            key_id, tenant, digest, scopes = (entry.get(f) for f in ("id", "tenant", "sha256", "scopes"))
            if not isinstance(key_id, str) or not key_id:
                raise AuthFileError(f"{label}: 'id' must be a non-empty string")
            if not isinstance(tenant, str) or not tenant:
                raise AuthFileError(f"{label} ({key_id}): 'tenant' must be a non-empty string")
            if not isinstance(digest, str) or len(digest) != 64:
                raise AuthFileError(f"{label} ({key_id}): 'sha256' must be 64 hex digits")
            try:
                raw = bytes.fromhex(digest)
            except ValueError:
                raise AuthFileError(f"{label} ({key_id}): 'sha256' must be 64 hex digits") from None
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise AuthFileError(f"{label} ({key_id}): 'scopes' must be a list of strings")
            rate = entry.get("rate")
            if rate is not None:
                if not isinstance(rate, str):
                    raise AuthFileError(f"{label} ({key_id}): 'rate' must be a string such as \"200/s\"")
                try:
                    rate = Rate.parse(rate)
                except ValueError as exc:
                    raise AuthFileError(f"{label} ({key_id}): {exc}") from None
            by_hash[raw] = ApiKey(key_id, tenant, expand_scopes(scopes, f"{label} ({key_id})"), rate)
        return cls(by_hash, document)

    @property
    def rated(self) -> bool:
        """Whether any key has a rate limit (else the service never checks one)."""
        return any(key.rate is not None for key in self.keys_by_hash.values())

    def find(self, secret: str | None) -> ApiKey | None:
        """The key a secret belongs to, or None (nothing recorded, nothing raised)."""
        try:
            return self.authenticate(secret)
        except Denied:
            return None

    def authenticate(self, secret: str | None) -> ApiKey:
        """The key a presented secret belongs to; Denied(401) otherwise."""
        if not secret:
            raise Denied(401, "missing API key")
        digest = hashlib.sha256(secret.encode()).digest()
        found = None
        # Compared with every known hash, in constant time each: how long this
        # takes says nothing about which key, or how much of one, matched.
        for known, key in self.keys_by_hash.items():
            if hmac.compare_digest(digest, known):
                found = key
        if found is None:
            raise Denied(401, "unknown API key")
        return found


def expand_scopes(scopes: Iterable[str], where: str = "scopes") -> frozenset[str]:
    out: set[str] = set()
    for scope in scopes:
        if scope in SCOPES:
            out.add(scope)
        elif scope in SCOPE_ALIASES:
            out.update(SCOPE_ALIASES[scope])
        else:
            raise AuthFileError(f"{where}: unknown scope {scope!r} (known: {', '.join([*SCOPES, *SCOPE_ALIASES])})")
    if "admin" in out:
        out.update(SCOPES)
    return frozenset(out)


def presented_secret(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: maven-api-key, X-API-Key or Authorization: Bearer."""
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            return value.strip()
    authorization = headers.get("authorization")
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def authorize(key: ApiKey, tenant: str, scope: str) -> None:
    if key.tenant != ANY_TENANT and key.tenant != tenant:
        raise Denied(403, "this API key may not act for this tenant")
    if scope not in key.scopes:
        raise Denied(403, f"this API key lacks the '{scope}' scope")


def new_key(tenant: str, scopes: Iterable[str], key_id: str | None = None) -> tuple[str, str]:
    """A fresh secret and the TOML entry (with its SHA-256) for the auth file."""
    scope_list = list(scopes)
    expand_scopes(scope_list)
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    key_id = key_id or f"key-{secrets.token_hex(4)}"
    entry = (
        "[[keys]]\n"
        f"id = {toml_string(key_id)}\n"
        f"tenant = {toml_string(tenant)}\n"
        f'sha256 = "{digest}"\n'
        f"scopes = [{', '.join(toml_string(s) for s in scope_list)}]\n"
    )
    return secret, entry


def toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
