"""The session record's codec: a session hash as Redis holds it (see
lua/lib.lua) to a Session, and back where Python writes one (transfer.py).

A session is one hash: the field ":" holds its metadata, numbers joined by
commas in the order of META_NAMES (lua/lib.lua's, which a test holds to this
one); every other field is a property, its value compact JSON text, or
"@" + a 13-digit expiry (ms) + the JSON text for a property with a TTL.
"""

from __future__ import annotations

from .model import Session

# The numbers of a session's metadata field, in order: lua/lib.lua's META_NAMES
# (a test holds the two together). After them, optionally: the origin tag,
# then the customer id, which may itself hold commas (so: maxsplit).
META_NAMES = ("v", "c", "m", "p", "z", "e", "x", "t", "i", "a")


def session_of_meta(session_id: str, properties: dict[str, bytes], meta: bytes) -> Session:
    parts = meta.split(b",", len(META_NAMES) + 1)
    v, c, m, _p, _z, _e, _x, t, i, a = parts[: len(META_NAMES)]
    origin = parts[10].decode() if len(parts) > 10 else ""
    customer = parts[11].decode() if len(parts) > 11 and parts[11] else None
    return Session(
        session_id, properties, int(v), int(c), int(m), int(t or 0), int(i or 0), int(a or 0), customer, origin
    )



def session_from_hash(session_id: str, raw: dict[bytes, bytes], now: int) -> Session | None:
    meta = raw.pop(b":", None)
    if meta is None:
        return None
    properties: dict[str, bytes] = {}
    for field_, value in raw.items():
        if value[:1] == b"@":
            if int(value[1:14]) <= now:
                continue
            value = value[14:]
        name = field_.decode()
        properties[name[1:] if name[:1] == ":" else name] = value
    return session_of_meta(session_id, properties, meta)

