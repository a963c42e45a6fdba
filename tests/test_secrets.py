"""Secrets never appear in logs or in error bodies: API keys (right, wrong, of
another tenant, in every header a key is read from), customer tokens (the
Emporix JWTs: valid, expired, forged, malformed, in Authorization and in
saas-token) and the Redis password (a Redis that refuses it, one that does
not answer). Every log record of the run is checked (debug level, access log
on, in text and in JSON), with every field of it, and every response body.

tests/test_operations.py::test_logs_carry_request_ids_and_no_secrets checks
the served process's output for API keys and the Redis password; this adds
customer tokens, error bodies, and the failures around Redis."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from typing import Any

import httpx
import jwt
import pytest

from service.app import build_app
from service.auth import AuthConfig
from service.config import Settings
from service.logs import JsonFormatter, TextFormatter

from .conftest import RedisServer, free_port

# its many wrong keys from one address would have it refused (429) before the
# answers it checks: failed authentication is not refused here (test_auth_failures.py)
EVERY_ANSWER: dict[str, Any] = {"auth_failure_limit": 0}

pytestmark = pytest.mark.anyio

T = "acme"
API_KEY = "api-key-secret-5f1d9c"
WRONG_KEY = "wrong-key-secret-77aa01"
OTHER_KEY = "other-tenant-secret-90be3"
TOKEN_SECRET = "token-signing-secret-" + "z" * 44
PASSWORD = "redis-password-3e8a1b"


def auth() -> AuthConfig:
    def key(key_id: str, secret: str, tenant: str) -> dict[str, Any]:
        return {"id": key_id, "tenant": tenant, "sha256": hashlib.sha256(secret.encode()).hexdigest(),
                "scopes": ["read", "write", "admin"]}  # fmt: skip

    return AuthConfig.from_document(
        {
            "keys": [key("main", API_KEY, T), key("other", OTHER_KEY, "zzz")],
            "customer_tokens": {"algorithm": "HS256", "secret": TOKEN_SECRET},
        }
    )


def tokens() -> dict[str, str]:
    now = int(time.time())
    claims = {"tenant": T, "sessionId": "s1", "customerId": "c1"}
    return {
        "valid": jwt.encode({**claims, "exp": now + 600}, TOKEN_SECRET, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 600}, TOKEN_SECRET, algorithm="HS256"),
        "forged": jwt.encode({**claims, "exp": now + 600}, "f" * 64, algorithm="HS256"),
        "other-tenant": jwt.encode({**claims, "tenant": "zzz", "exp": now + 600}, TOKEN_SECRET, algorithm="HS256"),
        "other-customer": jwt.encode({**claims, "customerId": "c2", "exp": now + 600}, TOKEN_SECRET, algorithm="HS256"),
        "malformed": "eyJhbGciOiJIUzI1NiJ9.not-a-payload-secretish.c2lnbmF0dXJl",
    }


def requests() -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, path, headers, JSON body) for every face, with every kind of secret."""
    calls: list[tuple[str, str, dict[str, str], Any]] = []
    for header in ("maven-api-key", "X-API-Key", "Authorization"):
        for secret in (API_KEY, WRONG_KEY, OTHER_KEY):
            value = f"Bearer {secret}" if header == "Authorization" else secret
            h = {header: value}
            calls += [
                ("PATCH", f"/v1/account/{T}/ns/s/properties", h, {"a": 1}),
                ("GET", f"/v1/account/{T}/ns/s/properties/zz", h, None),
                ("PUT", f"/api/v1/tenants/{T}/namespaces/ns/sessions/s", h, {"bad": 1}),
                ("GET", f"/api/v1/tenants/{T}/namespaces/ns/sessions/missing", h, None),
                ("GET", f"/session-context/{T}/context/missing", h, None),
                ("PUT", f"/session-context/{T}/context/s1?upsert=true", h, {"customerId": "c1", "metadata": {"version": 1}}),
                ("GET", f"/sessions/s?tenantId={T}", h, None),
                ("POST", f"/sessions/s?tenantId={T}", h, {"visitId": 7}),
            ]
    for name, tok in tokens().items():
        for value in (f"Bearer {tok}", tok):
            calls += [
                ("GET", f"/session-context/{T}/me/context", {"Authorization": value}, None),
                ("PATCH", f"/session-context/{T}/me/context?upsert=true", {"Authorization": value},
                 {"currency": "EUR", "metadata": {"version": 1}}),
                ("POST", f"/session-context/{T}/me/context/attributes", {"Authorization": value}, {"key": "k", "value": 1}),
                # saas-token, with the management API key
                ("PUT", f"/session-context/{T}/context/s1?upsert=true", {"X-API-Key": API_KEY, "saas-token": value},
                 {"customerId": "c1", "metadata": {"version": 99}}),
                ("POST", f"/session-context/{T}/context/s1/attributes", {"X-API-Key": API_KEY, "saas-token": value},
                 {"key": "k", "value": 1}),
                # a token where an API key is expected, and an API key where a token is
                ("GET", f"/v1/account/{T}/ns/s/properties", {"Authorization": value}, None),
            ]  # fmt: skip
        del name
    calls.append(("GET", f"/session-context/{T}/me/context", {"Authorization": f"Bearer {API_KEY}"}, None))
    return calls


def secrets() -> list[str]:
    found = [API_KEY, WRONG_KEY, OTHER_KEY, TOKEN_SECRET, PASSWORD, hashlib.sha256(API_KEY.encode()).hexdigest()]
    for tok in tokens().values():
        found += [tok, tok.rsplit(".", 1)[-1]]  # the token, and its signature alone
    return found


def log_text(records: list[logging.LogRecord]) -> str:
    """Every record as both formatters write it, and every attribute of it."""
    text, json_ = TextFormatter(), JsonFormatter()
    return "\n".join(f"{text.format(r)}\n{json_.format(r)}\n{r.__dict__!r}" for r in records)


async def exercise(app: Any) -> list[httpx.Response]:
    answers = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sessionstore"
    ) as api:
        for method, path, headers, body in requests():
            answers.append(await api.request(method, path, headers=headers, json=body))
        answers.append(await api.get("/readyz"))
    return answers


def check(answers: list[httpx.Response], records: list[logging.LogRecord]) -> None:
    logs = log_text(records)
    assert "sessionstore.access" in logs  # the access log was on and is in what is checked
    for secret in secrets():
        assert secret not in logs, secret
        for r in answers:
            assert secret not in r.text, (secret, r.request.method, r.request.url, r.text)
            assert all(secret not in v for k, v in r.headers.items()), (secret, r.headers)


async def test_no_secret_in_logs_or_error_bodies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # a Redis with a password, given the right one: everything answers
    server = RedisServer().start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"CONFIG SET requirepass {PASSWORD}\r\n".encode())
        assert s.recv(16).startswith(b"+OK")
    try:
        url = f"redis://default:{PASSWORD}@127.0.0.1:{server.port}/0"
        answers = await exercise(build_app(Settings(redis_url=url, access_log=True, redis_timeout_s=2, **EVERY_ANSWER), auth=auth()))
        statuses = {r.status_code for r in answers}
        assert {200, 204, 400, 401, 403, 404}.issubset(statuses), statuses
        # an Emporix version conflict (a 404 naming the version) is among the answers checked
        assert any(r.status_code == 404 and "and version 99 has not been found" in r.text for r in answers)
        # the wrong password, and a Redis that does not answer: 503s, warnings in the log
        for bad in (f"redis://default:{PASSWORD}x@127.0.0.1:{server.port}/0",
                    f"redis://default:{PASSWORD}@127.0.0.1:{free_port()}/0"):  # fmt: skip
            failing = await exercise(build_app(Settings(redis_url=bad, access_log=True, redis_timeout_s=0.5, **EVERY_ANSWER), auth=auth()))
            assert 503 in {r.status_code for r in failing}
            answers += failing
    finally:
        server.cleanup()
    check(answers, caplog.records)
