"""Paging through a namespace's sessions: by cursor (the native API), by page
number (LivePerson), and the sessions that have a session TTL.

A namespace's session ids sit in keys.BUCKETS sorted sets (one per bucket of
the generation, so no key covers a whole namespace); lua/bucket_list.lua
reads one, dropping ids whose session has expired. A cursor is the bucket
and the last id given, base64url of their JSON.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import orjson

from . import calls, keys
from .model import TtlSession, now_ms
from .record import session_of_meta

if TYPE_CHECKING:
    from .core import SessionStore


def encode_cursor(bucket: int, last: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([bucket, last])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raises ValueError for a cursor this store did not make."""
    try:
        bucket, last = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(bucket, int) or not isinstance(last, str) or not 0 <= bucket < keys.BUCKETS:
        raise ValueError("invalid cursor")
    return bucket, last


async def list_sessions(
    store: SessionStore, tenant: str, namespace: str, limit: int, cursor: str | None = None, prefix: str = ""
) -> tuple[list[str], str | None]:
    """Up to ``limit`` session ids after ``cursor``, and the cursor of the
    next page (None at the end); with ``prefix``, only the ids that start
    with it (each bucket reads just that range of its index). Raises
    ValueError for a bad cursor."""
    bucket, last = decode_cursor(cursor) if cursor else (0, "")
    # the ids from prefix up to (not including) prefix + 0xFF, a byte no UTF-8 text holds
    low, high = ("[" + prefix, b"(" + prefix.encode() + b"\xff") if prefix else ("-", b"+")
    ns = await store.namespace(tenant, namespace)
    if ns is None:
        return [], None
    ids: list[str] = []
    batch = 8
    while bucket < keys.BUCKETS:
        span = range(bucket, min(bucket + batch, keys.BUCKETS))
        now, want = now_ms(), limit - len(ids) + 1  # one more, to know whether a bucket has more
        runs: list[calls.Call] = [
            (keys.bucket(tenant, namespace, ns.generation, b),
             calls.BucketList(now, "(" + last if b == bucket and last and last >= prefix else low, want, 0, high).args())
            for b in span
        ]  # fmt: skip
        for b, reply in zip(span, await store.seam.run_many(store.scripts.bucket_list, runs), strict=True):
            found = [i.decode() for i in reply[1:]]
            room = limit - len(ids)
            if len(found) > room:
                ids += found[:room]
                return ids, encode_cursor(b, ids[-1])
            ids += found
            if len(ids) == limit:
                return ids, encode_cursor(b + 1, "") if b + 1 < keys.BUCKETS else None
        bucket, last, batch = span[-1] + 1, "", min(batch * 2, 64)
    return ids, None


async def page_sessions(store: SessionStore, tenant: str, namespace: str, page: int, per_page: int) -> list[str]:
    """Page ``page`` (from 0) of the session ids, ``per_page`` a page."""
    ns = await store.namespace(tenant, namespace)
    if ns is None:
        return []
    now = now_ms()
    buckets = [keys.bucket(tenant, namespace, ns.generation, b) for b in range(keys.BUCKETS)]
    counting: list[calls.Call] = [(bk, calls.BucketList(now, "-", 0, 0).args()) for bk in buckets]
    counts = [int(r[0]) for r in await store.seam.run_many(store.scripts.bucket_list, counting)]
    skip, want = page * per_page, per_page
    runs: list[calls.Call] = []
    for b, count in enumerate(counts):
        if want <= 0:
            break
        if skip >= count:
            skip -= count
            continue
        runs.append((buckets[b], calls.BucketList(now, "-", min(want, count - skip), skip).args()))
        want -= count - skip
        skip = 0
    ids: list[str] = []
    for reply in await store.seam.run_many(store.scripts.bucket_list, runs):
        ids += [i.decode() for i in reply[1:]]
    return ids[:per_page]


async def ttl_sessions(store: SessionStore, tenant: str, namespace: str) -> list[TtlSession]:
    """The sessions that have a session TTL, with their creation time."""
    ns = await store.namespace(tenant, namespace)
    if ns is None:
        return []
    replies = await store.seam.batch(
        [("HGETALL", keys.bucket(tenant, namespace, ns.generation, b).ttl) for b in range(keys.BUCKETS)]
    )
    entries = [(sid.decode(), int(ttl)) for reply in replies for sid, ttl in reply.items()]
    if not entries:
        return []
    metas = await store.seam.batch(
        [("HGET", keys.session(tenant, namespace, ns.generation, sid).session, keys.META_FIELD) for sid, _ttl in entries]
    )
    found = []
    for (sid, ttl), meta in zip(entries, metas, strict=True):
        if meta is not None:
            found.append(TtlSession(sid, session_of_meta(sid, {}, meta).created_ms, ttl))
    return sorted(found, key=lambda s: s.session_id)
