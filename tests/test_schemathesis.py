"""Schemathesis against ``/openapi.json``: every operation of every face is
called with generated requests (valid ones and, in the negative mode, invalid
ones), in-process on the embedded store, and every answer must be no 5xx and
must match the document (status, content type, headers and body schema).

Left out, on purpose:

- ``GET …/sessions/{sessionId}/events`` streams for as long as the client
  listens (Server-Sent Events), so a generated call would never end; it is
  covered by tests/test_native.py.

The Emporix ``/me`` operations get a valid customer token for the tenant of
the generated path (the auth file has a ``[customer_tokens]`` section); every
other operation gets an API key of every tenant with every scope.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import build_app
from service.auth import AuthConfig
from service.config import Settings
from service.store.clients import EMBEDDED_CONNECTIONS

SECRET = "schemathesis-all-tenants-secret"
TOKEN_SECRET = "t" * 64  # HS256 customer tokens
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25


def make_app() -> Any:
    auth = AuthConfig.from_document(
        {
            "keys": [{"id": "fuzz", "tenant": "*", "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                      "scopes": ["read", "write", "admin"]}],
            "customer_tokens": {"algorithm": "HS256", "secret": TOKEN_SECRET},
        }
    )  # fmt: skip
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)
    return build_app(Settings(), redis=redis, auth=auth)


CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": os.environ.get("FUZZ_RANDOM") is None, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)
APP = make_app()
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
    # streams until the client goes away: see the module's docstring
    .exclude(path_regex=r"/events$")
)


@pytest.fixture(scope="module", autouse=True)
def stop_app_lifespans() -> Iterator[None]:
    """Schemathesis runs the app's lifespan on its own event-loop thread; end it after the module."""
    yield
    schemathesis_asgi.shutdown_lifespans()


def customer_token(tenant: str) -> str:
    claims = {"tenant": tenant, "sessionId": "fuzz-session", "customerId": "fuzz-customer", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, TOKEN_SECRET, algorithm="HS256")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_document(case: schemathesis.Case) -> None:
    if "/me/" in case.path:
        tenant = str((case.path_parameters or {}).get("tenant", ""))
        headers = {"Authorization": f"Bearer {customer_token(tenant)}"}
    else:
        headers = {"X-API-Key": SECRET}
    case.call_and_validate(headers=headers, checks=CHECKS)
