"""Changes to Emporix session contexts, applied under their checks: read,
check, then write pinned to the version read (see :meth:`Contexts.change`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..store.core import Changes, Existence, SessionStore, Status, WriteResult
from ..web import ApiError
from .emporix_checks import Check
from .emporix_wire import CUSTOMER_ID, NAMESPACE, busy, not_found, version_conflict

# Writes that must see what they checked (an owner, an attribute that is there)
# are pinned to the version read with the check; when another write comes in
# between, those without a client version start over, at most this many
# times, and then answer 503 (the server's own read and write kept colliding).
MAX_ATTEMPTS = 32


def written(result: WriteResult, session_id: str) -> WriteResult:
    if result.status is Status.MISSING:
        raise not_found(session_id)
    if result.status is Status.TOO_LARGE:
        raise ApiError(413, "the session context would be too large")
    if result.status is Status.TOO_MANY:
        raise ApiError(413, "the session context would have too many properties")
    return result


class Contexts:
    """The contexts of the face's namespace, and the idle TTL every write gives them."""

    def __init__(self, store: SessionStore, idle_ttl_ms: int) -> None:
        self.store = store
        self.idle_ttl_ms = idle_ttl_ms

    async def change(
        self,
        tenant: str,
        session_id: str,
        changes: Callable[[bool], Changes],
        *,
        check: Check | None = None,
        read: Sequence[str] = (CUSTOMER_ID,),
        version: int | None = None,
        upsert: bool = False,
    ) -> WriteResult:
        """Apply ``changes(created)`` to a context.

        With nothing to check (a management attribute POST) that is one write
        to a context that must exist. Otherwise the stored context (its
        ``read`` fields; None when there is none) is read first: ``check``
        may refuse the change (an owner rule, an attribute that is not
        there), and ``version``, the client's ``metadata.version``, must be
        the stored one (else 404 naming it, as Emporix answers a conflict).
        The check and the write must see the same context: between the read
        and the write another request could give the context to a customer,
        or remove the attribute. So the write is pinned to the version that
        was read (``version=`` of the one mutate script, which refuses the
        write when the version moved), and a write to a missing context must
        create it (Existence.NONE), not replace one made in between. A pinned
        write refused that way is a conflict of the client's version when it
        named one (that version is stale now); without one (attributes) it
        starts over with a fresh read, and after MAX_ATTEMPTS answers 503.
        """
        if check is None and version is None and not upsert:
            result = await self.store.write(
                tenant, NAMESPACE, session_id, changes(False), existence=Existence.MUST, idle_ttl_ms=self.idle_ttl_ms
            )
            return written(result, session_id)
        for _ in range(MAX_ATTEMPTS):
            stored = await self.store.read(tenant, NAMESPACE, session_id, read)
            if stored is None:
                if not upsert:
                    raise not_found(session_id)
                if check is not None:
                    check(None)
                result = await self.store.write(
                    tenant, NAMESPACE, session_id, changes(True), existence=Existence.NONE, idle_ttl_ms=self.idle_ttl_ms
                )
                if result.status is Status.EXISTS:
                    continue  # created in between: check it and its version
            else:
                if check is not None:
                    check(stored)
                if version is not None and version != stored.version:
                    raise version_conflict(session_id, version)
                result = await self.store.write(
                    tenant,
                    NAMESPACE,
                    session_id,
                    changes(False),
                    version=stored.version,
                    existence=Existence.MUST,
                    idle_ttl_ms=self.idle_ttl_ms,
                )
                if result.status is Status.VERSION:
                    if version is not None:
                        raise version_conflict(session_id, version)
                    continue
                if result.status is Status.MISSING:
                    continue  # expired or gone in between
            return written(result, session_id)
        raise busy()
