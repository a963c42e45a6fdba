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
    ss:{T/c/<customer>}:customer      zset    the sessions tied to one customer of tenant T (see customers.py):
                                              member namespace + NUL + session id, score the last touch (ms)
    ss:{sweep}:graves                 set     "T/N/G" of deleted namespace generations still to reclaim
    ss:{rate/<key id>}:limit          string  the rate limit state of one API key (see rate_limits.py): its
                                              own tag, one slot per key; its id escaped as a customer's is

G is the namespace's generation: deleting a namespace moves it on, which
orphans every key of the old generation at once; the sweeper reclaims those.
A namespace made afresh starts at the time (ms) instead of 0, so a record
lost to eviction never brings an earlier generation's sessions back.
B is the session's bucket, crc32(session id) mod BUCKETS: a bucket's
sessions and their indexes share one tag, so a write and its index update are
one script on one slot, and a namespace spreads over BUCKETS slots.
Tenant and namespace names are validated to [A-Za-z0-9_.-] before they get
here, so they cannot contain braces or slashes; a session id may hold
anything, since it stands after the tag. A customer id stands inside its
index's tag (one slot per tenant and customer), so its '%', '{' and '}' are
written %25, %7B and %7D there: nothing in it can end the tag early.
"""

from __future__ import annotations

import re
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


def in_tag(text: str) -> str:
    """Any text, written so it can stand inside a hash tag: its '%', '{' and '}' as %25, %7B and %7D."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def customer_index(tenant: str, customer: str) -> str:
    return f"ss:{{{tenant}/c/{in_tag(customer)}}}:customer"


def rate_limit(key_id: str) -> str:
    """The rate limiter of one API key (by its id: the entries of one key
    being rotated, old and new secret, share it)."""
    return f"ss:{{rate/{in_tag(key_id)}}}:limit"


CUSTOMER_INDEX_PATTERN = "ss:{*/c/*}:customer"  # SCAN MATCH for every customer index


CUSTOMER_INDEX_RE = re.compile(r"ss:\{([A-Za-z0-9_.-]+)/c/([^{}]+)\}:customer", re.DOTALL)
UNESCAPE_RE = re.compile(r"%(25|7B|7D)")
UNESCAPED = {"25": "%", "7B": "{", "7D": "}"}


def parse_customer_index(key: str) -> tuple[str, str] | None:
    """The (tenant, customer) of a customer index key; None for any other key."""
    found = CUSTOMER_INDEX_RE.fullmatch(key)
    if found is None:
        return None
    return found.group(1), UNESCAPE_RE.sub(lambda m: UNESCAPED[m.group(1)], found.group(2))


def customer_member(namespace: str, session_id: str) -> str:
    """A session's member in a customer index (ids hold no control character)."""
    return namespace + "\x00" + session_id


def parse_customer_member(member: str) -> tuple[str, str]:
    namespace, _, session_id = member.partition("\x00")
    return namespace, session_id


TENANT_NAMESPACES_PATTERN = "ss:{*}:namespaces"  # SCAN MATCH for every tenant's namespace set


TENANT_NAMESPACES_RE = re.compile(r"ss:\{([A-Za-z0-9_.-]+)\}:namespaces")


def parse_tenant_namespaces(key: str) -> str | None:
    """The tenant of a tenant's namespace-set key; None for any other key."""
    found = TENANT_NAMESPACES_RE.fullmatch(key)
    return None if found is None else found.group(1)


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
