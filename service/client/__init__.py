"""A Python client for sessionstore's native API, sync (``Client``) and
async (``AsyncClient``), on httpx::

    from service.client import Client

    with Client("http://127.0.0.1:8080", tenant="acme", namespace="bot", api_key="...") as store:
        store.put("conv-42", {"intent": "refund"})
        store.update("conv-42", lambda p: {**p, "turns": p.get("turns", 0) + 1})
        for event in store.watch("conv-42"):
            ...

Every error is a ``SessionStoreError``: an ``ApiError`` subclass per status
(``NotFound``, ``PreconditionFailed``, ``Unavailable``, ...) carrying the
answer's problem details, or a ``NetworkError``."""

from ._async import AsyncClient, AsyncWatch
from ._errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    SessionStoreError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from ._flow import Retry
from ._models import BatchResult, ChangeEvent, Problem, Resync, Session, SessionMetadata, SessionPage, WatchEvent
from ._options import Options
from ._sync import Client, Watch

__all__ = [
    "ApiError", "AsyncClient", "AsyncWatch", "BadRequest", "BatchResult", "ChangeEvent", "Client", "Conflict",
    "Forbidden", "NetworkError", "NotFound", "Options", "PayloadTooLarge", "PreconditionFailed", "Problem", "Resync",
    "Retry", "Session", "SessionMetadata", "SessionPage", "SessionStoreError", "Unauthorized", "Unavailable",
    "UnsupportedMediaType", "Watch", "WatchEvent",
]  # fmt: skip
