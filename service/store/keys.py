"""The Redis key layout: the one place that builds key names.

Every key carries a hash tag (the part in braces), so that all the keys one
Lua script touches live in one Redis Cluster slot, while one namespace's
sessions still spread over many slots:

    ss:{T}:namespaces                 set     names of tenant T's namespaces (an index; may hold deleted ones)
    ss:{T/N}:ns                       hash    namespace N: c = created (ms), t = TTL (s), g = generation
    ss:{T/N/G/B}:s:<session id>       hash    one session: ":" = metadata, every other field a property
    ss:{T/N/G/B}:ids                  zset    ids of the sessions in bucket B (score 0, id order)
    ss:{T/N/G/B}:exp                  zset    ids of bucket B's sessions that expire, scored by expiry (ms)
    ss:{T/N/G/B}:ttl                  hash    id -> session TTL (s), for bucket B's sessions that have one
    ss:{T/N/G/B}:ev:<session id>      channel change events of one session
    ss:{sweep}:graves                 set     "T/N/G" of deleted namespace generations still to reclaim

G is the namespace's generation: deleting a namespace moves it on, which
orphans every key of the old generation at once; the sweeper reclaims those.
B is the session's bucket, crc32(session id) mod BUCKETS: a bucket's
sessions and their indexes share one tag, so a write and its index update are
one script on one slot, and a namespace spreads over BUCKETS slots.
Tenant and namespace names are validated to [A-Za-z0-9_.-] before they get
here, so they cannot contain braces or slashes; a session id may hold
anything, since it stands after the tag.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

BUCKETS = 256
PREFIX = "ss:"
GRAVES = "ss:{sweep}:graves"
SWEEP_LOCK = "ss:{sweep}:lock"


class SessionKeys(NamedTuple):
    """The keys a script on one session is given, in the order scripts expect."""

    session: str
    ids: str
    expiry: str
    ttl: str
    events: str


class BucketKeys(NamedTuple):
    ids: str
    expiry: str
    ttl: str


def bucket_of(session_id: str) -> int:
    return zlib.crc32(session_id.encode()) % BUCKETS


def tenant_namespaces(tenant: str) -> str:
    return f"ss:{{{tenant}}}:namespaces"


def namespace(tenant: str, name: str) -> str:
    return f"ss:{{{tenant}/{name}}}:ns"


def bucket(tenant: str, name: str, generation: int, number: int) -> BucketKeys:
    tag = f"ss:{{{tenant}/{name}/{generation}/{number}}}:"
    return BucketKeys(tag + "ids", tag + "exp", tag + "ttl")


def session(tenant: str, name: str, generation: int, session_id: str) -> SessionKeys:
    tag = f"ss:{{{tenant}/{name}/{generation}/{bucket_of(session_id)}}}:"
    return SessionKeys(tag + "s:" + session_id, tag + "ids", tag + "exp", tag + "ttl", tag + "ev:" + session_id)


def session_in_bucket(tenant: str, name: str, generation: int, number: int, session_id: str) -> str:
    return f"ss:{{{tenant}/{name}/{generation}/{number}}}:s:{session_id}"


def grave(tenant: str, name: str, generation: int) -> str:
    return f"{tenant}/{name}/{generation}"


def parse_grave(entry: str) -> tuple[str, str, int]:
    tenant, name, generation = entry.split("/")
    return tenant, name, int(generation)


# Session hash fields. A property named ":x" is stored as "::x", so no
# property can take the metadata field's name.
META_FIELD = ":"


def property_field(name: str) -> str:
    return ":" + name if name[:1] == ":" else name


def property_name(field: str) -> str:
    return field[1:] if field[:1] == ":" else field
