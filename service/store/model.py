"""The storage core's data types: what the faces hand the store and get back.

Property values cross the store's boundary as compact JSON text (bytes), so a
read can hand them to the response without decoding them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from redis.exceptions import RedisClusterException, RedisError

from . import keys

# What the faces catch to answer 503: Redis could not be reached or answered
# with an error that is not the client's fault.
# (RedisClusterException: redis-py's own cluster errors, such as a slot that no
# node covers while a failover is under way.)
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)


class NotDurable(RedisError):
    """A write that Redis applied but that fewer replicas than asked for
    confirmed in time (WAIT): it may be lost if its primary fails now."""


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must have every write before it is acknowledged
    (``WAIT replicas timeout_ms`` after each write script; 0: no waiting)."""

    replicas: int = 0
    timeout_ms: int = 500


# LivePerson's default and maximum retention of a context document, 13 months
# (of 30.44 days, a mean month: 396 days).
RETENTION_13_MONTHS_S = 396 * 24 * 3600


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Limits:
    max_chars: int = 800_000  # characters of one session's names and values
    max_properties: int = 10_000  # properties in one session
    # a session expires at the latest this long after its last write (0 = never);
    # LivePerson's "max retention on context documents", 13 months
    max_retention_s: int = RETENTION_13_MONTHS_S

    @property
    def retention_ms(self) -> int:
        return self.max_retention_s * 1000


@dataclass(frozen=True, slots=True)
class Namespace:
    tenant: str
    name: str
    created_ms: int
    ttl_s: int  # TTL stamped on properties written in it; 0 = none
    generation: int


@dataclass(slots=True)
class Session:
    session_id: str
    properties: dict[str, bytes]  # name -> compact JSON text
    version: int
    created_ms: int
    modified_ms: int
    ttl_s: int  # TTL stamped on properties written in this session; 0 = none
    idle_ms: int  # the session expires this long after its last write; 0 = never
    expires_ms: int  # when it expires (with idle_ms); 0 = never
    customer_id: str | None = None  # the customer it is tied to (see customers.py)
    origin: str = ""  # the face that created it: ORIGIN_LIVEPERSON, or "" (another, or not recorded)


class Existence(enum.Enum):
    ANY = "any"
    MUST = "must"  # the session must exist already
    NONE = "none"  # the session must not exist yet


class Status(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # the session (or namespace) does not exist
    EXISTS = "exists"  # Existence.NONE, and it does
    VERSION = "version"  # the expected version is not the stored one
    TOO_LARGE = "toolarge"  # the session would exceed Limits.max_chars
    TOO_MANY = "toomany"  # the session would exceed Limits.max_properties
    NOT_A_NUMBER = "nan"  # increment of a value that is not a number
    UNTIED = "untied"  # delete_session(tied_to=...): the session is tied to no customer or another one


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: Status
    version: int
    created: bool = False
    value: bytes | None = None  # the new value, after an increment
    session: Session | None = None  # the session after the write (write(read_back=True), status OK)


@dataclass(frozen=True, slots=True)
class TtlSession:
    session_id: str
    created_ms: int
    ttl_s: int


# The metadata's "o" of a session created through LivePerson v1 or v2 (lua/lib.lua).
ORIGIN_LIVEPERSON = "l"


class Changes:
    """A list of property changes for one atomic write (see lua/session_mutate.lua),
    and what it does to the session's customer tie (``customer``: "" keep it,
    "-" untie, "=" + id tie)."""

    __slots__ = ("args", "customer")

    def __init__(self) -> None:
        self.args: list[str | bytes] = []
        self.customer = ""

    def tie(self, customer: str) -> Changes:
        """Tie the session to ``customer`` (service/store/customers.py)."""
        self.customer = "=" + customer
        return self

    def untie(self) -> Changes:
        self.customer = "-"
        return self

    @property
    def tied_to(self) -> str | None:
        """The customer this write ties the session to, if it does."""
        return self.customer[1:] if self.customer[:1] == "=" else None

    def set(self, name: str, json: bytes) -> Changes:
        self.args += ("set", keys.property_field(name), json)
        return self

    def set_all(self, properties: Iterable[tuple[str, bytes]]) -> Changes:
        for name, json in properties:
            self.args += ("set", keys.property_field(name), json)
        return self

    def delete(self, name: str) -> Changes:
        self.args += ("del", keys.property_field(name), "")
        return self

    def clear(self) -> Changes:
        self.args += ("clr", "", "")
        return self

    def merge(self, name: str, patch: bytes) -> Changes:
        """RFC 7396 merge of ``patch`` into the property (a non-object patch replaces it)."""
        self.args += ("mrg", keys.property_field(name), patch)
        return self

    def set_in(self, name: str, members: bytes) -> Changes:
        """Set the members of the JSON object ``members`` in the object property ``name``."""
        self.args += ("sin", keys.property_field(name), members)
        return self

    def delete_in(self, name: str, member: str) -> Changes:
        """Remove one member from the object property ``name``."""
        self.args += ("din", keys.property_field(name), orjson.dumps(member))
        return self

    def increment(self, name: str, by: float) -> Changes:
        self.args += ("inc", keys.property_field(name), orjson.dumps(by))
        return self
