"""Audit lines: one log record per export or erasure of a customer's data
(logger ``sessionstore.audit``), for whoever must show who did what and when.

A line names the caller (the API key's id, or ``cli:<user>`` for the command
line), the tenant, the customer id *hashed* (SHA-256, hex: the line can be
matched to a request without spreading the id itself) and the counts; never
a session's data. In the JSON log format each field is a member of the line
(``observability.JsonFormatter``); the record's time is the line's time.
"""

from __future__ import annotations

import hashlib
import logging
import time

log = logging.getLogger("sessionstore.audit")


def customer_hash(customer: str) -> str:
    return hashlib.sha256(customer.encode()).hexdigest()


def record(action: str, *, key: str, tenant: str, customer: str, started: float, **counts: int | bool) -> None:
    """Log one audit line; ``started`` is the action's time.monotonic() at its start."""
    fields: dict[str, object] = {
        "audit": action,
        "key": key,
        "tenant": tenant,
        "customer_sha256": customer_hash(customer),
        **counts,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    text = " ".join(f"{name}={value}" for name, value in fields.items() if name != "audit")
    log.info("customer %s: %s", action, text, extra={"audit": fields})
