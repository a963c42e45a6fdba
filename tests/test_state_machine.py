"""The storage core against a plain Python model: a hypothesis state machine
makes random sequences of writes (set, delete, clear, RFC 7396 merge, with or
without a version check, an existence condition, property TTLs, an idle TTL,
drop_empty), session deletes and namespace deletes, on two tenants, and after
every step every session the model knows of (and every listing) must read
back exactly as the model says, version included.

Time: property TTLs are either long (an hour: they never expire here) or
short (SHORT_TTL_MS). Short-lived properties are "pending" in the model
until it settles them: it sleeps past every one of their expiries and then
drops them, and the sessions that held nothing else (they expire as a whole).
It settles in the sleep rule, and by itself before any step that might
otherwise run close to such an expiry, so what is compared never depends on
timing. Until settled, a pending property must read as its value.

Runs on a fresh fakeredis per example and on the private redis-server of
tests/conftest.py (flushed per example).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from service.store import clients
from service.store.clients import EMBEDDED_CONNECTIONS
from service.store.core import Changes, Existence, SessionStore, Status

TENANTS = ["t1", "t2"]
NAMESPACES = ["ns1", "ns2"]
SESSION_IDS = ["s1", "s:2 é"]
NAMES = ["a", "ü {x}"]
SHORT_TTL_MS = 1000
LONG_TTL_MS = 3_600_000
MARGIN_MS = 600  # settle this long before the first short TTL could run out

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.text(alphabet="ab é\"\\/\n☃", max_size=4),
)
values = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), children, max_size=3),
    ),
    max_leaves=6,
)
patches = st.one_of(st.dictionaries(st.sampled_from(["x", "y", "z"]), values, max_size=3), values)
objects = st.dictionaries(st.sampled_from(["x", "y", "z"]), values, min_size=1, max_size=3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(NAMES), st.one_of(objects, values)),
        st.tuples(st.just("mrg"), st.sampled_from(NAMES), st.one_of(objects, patches)),
        st.tuples(st.just("del"), st.sampled_from(NAMES)),
        st.tuples(st.just("clr")),
    ),
    min_size=1,
    max_size=4,
)
# half of the steps on one session, so that writes build on each other (merges into stored objects...)
targets = st.one_of(
    st.just((TENANTS[0], NAMESPACES[0], SESSION_IDS[0])),
    st.tuples(st.sampled_from(TENANTS), st.sampled_from(NAMESPACES), st.sampled_from(SESSION_IDS)),
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def text(value: Any) -> bytes:
    """JSON to compare by (True and 1 differ here, unlike in ==)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass
class Prop:
    value: Any
    ttl: str  # "none", "long" or "short"


@dataclass
class Model:
    props: dict[str, Prop] = field(default_factory=dict)
    version: int = 1
    idle: bool = False


class StoreMachine(RuleBasedStateMachine):
    make_client: Callable[[], Any]
    flush: bool

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = self.make_client()
        if self.flush:
            self.run(self.client.flushall())
        self.store = SessionStore(self.client)
        self.run(self.store.load_scripts())
        self.namespaces: set[tuple[str, str]] = set()
        self.sessions: dict[tuple[str, str, str], Model] = {}
        self.first_risk_ms: float | None = None  # when the first pending short TTL could run out
        self.last_expiry_ms = 0.0  # by when every pending short TTL has run out

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()

    # -- time -------------------------------------------------------------

    def settle(self) -> None:
        if self.first_risk_ms is None:
            return
        wait = (self.last_expiry_ms + 30 - time.time() * 1000) / 1000
        if wait > 0:
            time.sleep(wait)
        for where, model in list(self.sessions.items()):
            short = [n for n, p in model.props.items() if p.ttl == "short"]
            if not short:
                continue
            only_short = len(short) == len(model.props)
            for name in short:
                del model.props[name]
            if only_short and not model.idle:
                del self.sessions[where]  # its key expired with its last property
        self.first_risk_ms = None
        self.last_expiry_ms = 0.0

    def settle_if_close(self) -> None:
        if self.first_risk_ms is not None and time.time() * 1000 >= self.first_risk_ms - MARGIN_MS:
            self.settle()

    # -- rules ------------------------------------------------------------

    @rule(
        where=targets,
        ops=operations,
        check=st.sampled_from(["none", "none", "right", "wrong"]),
        existence=st.sampled_from([Existence.ANY, Existence.ANY, Existence.MUST, Existence.NONE]),
        ttl=st.sampled_from(["none", "none", "none", "none", "long", "short"]),
        idle=st.sampled_from([None, None, 0, LONG_TTL_MS]),
        drop_empty=st.sampled_from([False, False, True]),
    )
    def write(
        self, where: tuple[str, str, str], ops: list[tuple[Any, ...]], check: str, existence: Existence,
        ttl: str, idle: int | None, drop_empty: bool,
    ) -> None:  # fmt: skip
        self.settle_if_close()
        tenant, ns, sid = where
        before = self.sessions.get(where)
        version = None
        if check == "right":
            version = before.version if before else 7
        elif check == "wrong":
            version = before.version + 1 if before else 7
        changes = Changes()
        for op in ops:
            if op[0] == "set":
                changes.set(op[1], text(op[2]))
            elif op[0] == "del":
                changes.delete(op[1])
            elif op[0] == "mrg":
                changes.merge(op[1], text(op[2]))
            else:
                changes.clear()
        property_ttl = {"none": None, "long": LONG_TTL_MS, "short": SHORT_TTL_MS}[ttl]
        started = time.time() * 1000
        result = self.run(
            self.store.write(
                tenant, ns, sid, changes, version=version, existence=existence, idle_ttl_ms=idle,
                property_ttl_ms=property_ttl, drop_empty=drop_empty,
            )
        )  # fmt: skip
        finished = time.time() * 1000
        self.namespaces.add((tenant, ns))  # a write makes its namespace, whatever its outcome

        # what the model expects
        if before is not None and existence is Existence.NONE:
            assert result.status is Status.EXISTS and result.version == before.version
            return
        if before is not None and version is not None and version != before.version:
            assert result.status is Status.VERSION and result.version == before.version
            return
        if before is None and existence is Existence.MUST:
            assert result.status is Status.MISSING
            return
        props = dict(before.props) if before else {}
        touched: dict[str, Prop | None] = {}  # name -> its new property (None: deleted)
        for op in ops:
            if op[0] == "set":
                touched[op[1]] = Prop(op[2], ttl)
            elif op[0] == "del":
                touched[op[1]] = None
            elif op[0] == "mrg":
                base = touched[op[1]] if op[1] in touched else props.get(op[1])
                touched[op[1]] = Prop(merge_patch(base.value if base else None, op[2]), ttl)
            else:
                touched.update(dict.fromkeys(list(props) + list(touched)))
        changed = sum(1 for n, p in touched.items() if p is not None or n in props)
        for name, prop in touched.items():
            if prop is None:
                props.pop(name, None)
            else:
                props[name] = prop
        assert result.status is Status.OK, result
        if changed == 0 and before is not None and idle is None:
            assert result.version == before.version
            return
        if drop_empty and not props:
            if before is None:
                assert result.version == 0 and not result.created
            else:
                assert result.version == before.version + 1
                del self.sessions[where]
            return
        new_version = (before.version + (1 if changed else 0)) if before else 1
        assert result.version == new_version and result.created == (before is None)
        model = self.sessions[where] = Model(props, new_version, before.idle if before else False)
        if idle is not None:
            model.idle = idle > 0
        if ttl == "short" and any(p.ttl == "short" for p in touched.values() if p is not None):
            risk = started + SHORT_TTL_MS
            self.first_risk_ms = risk if self.first_risk_ms is None else min(self.first_risk_ms, risk)
            self.last_expiry_ms = max(self.last_expiry_ms, finished + SHORT_TTL_MS)

    @rule(where=targets, check=st.sampled_from(["none", "right", "wrong"]))
    def delete_session(self, where: tuple[str, str, str], check: str) -> None:
        self.settle_if_close()
        before = self.sessions.get(where)
        version = None if check == "none" or before is None else before.version + (check == "wrong")
        result = self.run(self.store.delete_session(*where, version=version))
        if before is None:
            assert result.status is Status.MISSING
        elif check == "wrong":
            assert result.status is Status.VERSION and result.version == before.version
        else:
            assert result.status is Status.OK and result.version == before.version + 1
            del self.sessions[where]

    @rule(tenant=st.sampled_from(TENANTS), ns=st.sampled_from(NAMESPACES))
    def delete_namespace(self, tenant: str, ns: str) -> None:
        self.settle_if_close()
        deleted = self.run(self.store.delete_namespace(tenant, ns))
        assert deleted == ((tenant, ns) in self.namespaces)
        self.namespaces.discard((tenant, ns))
        for where in [w for w in self.sessions if w[:2] == (tenant, ns)]:
            del self.sessions[where]

    @rule(where=targets, names=st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    def read_some(self, where: tuple[str, str, str], names: list[str]) -> None:
        self.settle_if_close()
        found = self.run(self.store.read(*where, names))
        model = self.sessions.get(where)
        if model is None:
            assert found is None
            return
        assert found is not None and found.version == model.version
        assert {n: orjson.loads(v) for n, v in found.properties.items()} == {
            n: model.props[n].value for n in names if n in model.props
        } and all(text(orjson.loads(found.properties[n])) == text(model.props[n].value) for n in found.properties)

    @rule(tenant=st.sampled_from(TENANTS), ns=st.sampled_from(NAMESPACES), limit=st.integers(1, 3))
    def list_sessions(self, tenant: str, ns: str, limit: int) -> None:
        """Page by page (a Lua call per bucket on the way: a rule, not an invariant, to stay fast)."""
        self.settle_if_close()
        ids: list[str] = []
        cursor = None
        for _ in range(len(SESSION_IDS) + 1):
            page, cursor = self.run(self.store.list_sessions(tenant, ns, limit, cursor))
            ids += page
            if cursor is None:
                break
        assert cursor is None
        assert sorted(ids) == sorted(sid for (t, n, sid) in self.sessions if (t, n) == (tenant, ns))

    @precondition(lambda self: self.first_risk_ms is not None)
    @rule()
    def sleep_past_short_ttls(self) -> None:
        self.settle()

    # -- the invariant ------------------------------------------------------

    @invariant()
    def reads_equal_the_model(self) -> None:
        self.settle_if_close()
        for tenant in TENANTS:
            for ns in NAMESPACES:
                found = self.run(self.store.read_many(tenant, ns, SESSION_IDS))
                for sid, session in zip(SESSION_IDS, found, strict=True):
                    model = self.sessions.get((tenant, ns, sid))
                    if model is None:
                        assert session is None, (tenant, ns, sid, session)
                        continue
                    assert session is not None, (tenant, ns, sid)
                    assert session.version == model.version
                    assert (session.idle_ms > 0) == model.idle
                    # every session expires, at the latest the retention after its last write
                    assert 0 < session.expires_ms <= session.modified_ms + self.store.limits.retention_ms
                    stored = {n: text(orjson.loads(v)) for n, v in session.properties.items()}
                    assert stored == {n: text(p.value) for n, p in model.props.items()}, (tenant, ns, sid)
            names = {n.name for n in self.run(self.store.list_namespaces(tenant))}
            assert names == {n for (t, n) in self.namespaces if t == tenant}


def machine_settings() -> settings:
    return settings(
        max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "50")),
        stateful_step_count=20,
        deadline=None,
        derandomize=os.environ.get("FUZZ_RANDOM") is None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_store_against_a_model(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "fake":

        def make() -> Any:
            return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=EMBEDDED_CONNECTIONS)

        flush = False
    else:
        url = request.getfixturevalue("redis_server").url

        def make() -> Any:
            return clients.connect(url, timeout_s=5)

        flush = True

    machine = type("Machine", (StoreMachine,), {"make_client": staticmethod(make), "flush": flush})
    run_state_machine_as_test(machine, settings=machine_settings())
