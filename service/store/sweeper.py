"""Reclaiming deleted namespaces.

Deleting a namespace only moves its generation on (lua/namespace_delete.lua),
after queueing the old generation in keys.GRAVES; the sweeper, run by every
instance in turn (a lock in Redis), deletes that generation's keys, a batch
of sessions at a time.
"""

from __future__ import annotations

import asyncio
import logging

from . import keys
from .model import UNAVAILABLE
from .seam import RedisSeam

log = logging.getLogger("sessionstore.store")


async def sweep(seam: RedisSeam, batch: int = 500) -> int:
    """Delete the keys of deleted namespace generations; returns how many
    sessions were reclaimed. Safe to run from several instances at once."""
    reclaimed = 0
    for entry in await seam.call("SMEMBERS", keys.GRAVES):
        tenant, name, generation = keys.parse_grave(entry.decode())
        current = await seam.call("HGET", keys.namespace(tenant, name), "g")
        if current is not None and int(current) <= generation:
            continue  # that generation is still the live one: its delete has not happened
        for b in range(keys.BUCKETS):
            bk = keys.bucket(tenant, name, generation, b)
            while True:
                ids = [i.decode() for i in await seam.call("ZRANGE", bk.ids, 0, batch - 1)]
                if not ids:
                    break
                await seam.call("UNLINK", *(keys.session_in_bucket(tenant, name, generation, b, i) for i in ids))
                await seam.call("ZREM", bk.ids, *ids)
                reclaimed += len(ids)
            await seam.call("UNLINK", bk.ids, bk.expiry, bk.ttl)
        await seam.call("SREM", keys.GRAVES, entry)
    return reclaimed


async def sweep_forever(seam: RedisSeam, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await seam.call("SET", keys.SWEEP_LOCK, "1", "NX", "PX", int(interval_s * 1000)):
                count = await sweep(seam)
                if count:
                    log.info("reclaimed %d sessions of deleted namespaces", count)
        except UNAVAILABLE as exc:
            log.warning("sweep skipped: %s", exc)
