"""``sessionstore export`` and ``sessionstore import``: the file format, what
a round trip keeps (properties byte for byte, versions, times, every kind of
TTL), replacing or keeping existing sessions, bad files, constant memory,
and 100,000 sessions through the command line."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.store import clients, keys
from service.store.core import Changes, Limits, SessionStore
from service.store.transfer import (
    TransferError,
    export_sessions,
    import_sessions,
    parse_session,
)

from .conftest import OTHER_TENANT, TENANT, RedisServer

J = orjson.dumps
WEIRD_ID = "we{ir}d id/ü"
HEADER = b'{"format":"sessionstore-export","version":1}\n'


@pytest.fixture
def store(redis: Any) -> SessionStore:
    """No retention: these tests compare key expiry times before and after a
    round trip, and import records written in 1970 (test_retention covers
    the retention of imported sessions)."""
    return SessionStore(redis, limits=Limits(max_retention_s=0))


async def fill(store: SessionStore) -> None:
    """Sessions with everything a session can have."""
    t = TENANT
    # values kept byte for byte: a big integer, the text of a float, nesting, a name starting with ':'
    changes = Changes().set("big", b"123456789012345678901234567890").set("price", b"1.50")
    changes.set("nested", J({"a": [1, None, {"b": "ü x"}]})).set(":meta", J("colon"))
    await store.write(t, "plain", "a", changes)
    await store.write(t, "plain", "a", Changes().set("n", J(1)))
    await store.write(t, "plain", "a", Changes().increment("n", 2))  # version 3
    await store.write(t, "plain", WEIRD_ID, Changes().set("x", J("y")))
    # per-property TTLs, one already expired
    await store.write(t, "plain", "ttl", Changes().set("keep", J(1)))
    await store.write(t, "plain", "ttl", Changes().set("short", J(2)), property_ttl_ms=60_000)
    await store.write(t, "plain", "ttl", Changes().set("gone", J(3)), property_ttl_ms=1)
    # a LivePerson session TTL (stamped on later writes), and a session with only that TTL
    await store.session_settings(t, "plain", "lp", ttl_s=600, create=True)
    await store.write(t, "plain", "lp", Changes().set("p", J("stamped")))
    await store.session_settings(t, "plain", "lp-empty", ttl_s=300, create=True)
    # an idle TTL (Genesys, Emporix), in a reserved namespace
    await store.write(t, "__genesys__", "g", Changes().set("q", J(True)), idle_ttl_ms=3_600_000)
    await store.read_or_create(t, "__genesys__", "g-empty", idle_ttl_ms=3_600_000)
    # a namespace TTL
    await store.ensure_namespace(t, "short", ttl_s=120)
    await store.write(t, "short", "s", Changes().set("v", J([1, 2])))
    # another tenant: not exported
    await store.write(OTHER_TENANT, "plain", "other", Changes().set("z", J(0)))
    await asyncio.sleep(0.01)  # "gone" has expired


class About:
    """A time left (ms), equal to another within 6 s: an export, a flush and
    an import take a few seconds on the embedded store of a busy machine."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, About) and abs(self.ms - other.ms) <= 6000

    def __repr__(self) -> str:
        return f"About({self.ms})"


async def snapshot(store: SessionStore, tenant: str = TENANT) -> dict[str, Any]:
    """Everything observable about a tenant's data (times left to within 6 s)."""
    out: dict[str, Any] = {}
    now = int(time.time() * 1000)
    for ns in await store.list_namespaces(tenant):
        ids, _ = await store.list_sessions(tenant, ns.name, 1000)
        sessions = {}
        for sid in ids:
            raw = await store.redis.hgetall(keys.session(tenant, ns.name, ns.generation, sid).session)
            parsed = parse_session(sid, raw, now)
            assert parsed is not None
            session, properties = parsed
            sessions[sid] = {
                "version": session.version,
                "created": session.created_ms,
                "modified": session.modified_ms,
                "ttl_s": session.ttl_s,
                "idle_ms": session.idle_ms,
                "expires": About(session.expires_ms - now) if session.expires_ms else 0,
                "properties": {p.name: (p.json, About(p.left_ms)) for p in properties},
                "key_ttl": About(await store.redis.pttl(keys.session(tenant, ns.name, ns.generation, sid).session)),
            }
        ttls = [(s.session_id, s.created_ms, s.ttl_s) for s in await store.ttl_sessions(tenant, ns.name)]
        out[ns.name] = {"created": ns.created_ms, "ttl": ns.ttl_s, "sessions": sessions, "session_ttls": ttls}
    return out


async def export_bytes(store: SessionStore, namespace: str | None = None) -> bytes:
    out = io.BytesIO()
    await export_sessions(store, out, TENANT, namespace)
    return out.getvalue()


pytestmark = pytest.mark.anyio


async def test_parse_session_agrees_with_the_core(store: SessionStore) -> None:
    await fill(store)
    now = int(time.time() * 1000)
    checked = 0
    for ns in await store.list_namespaces(TENANT):
        ids, _ = await store.list_sessions(TENANT, ns.name, 100)
        for sid in ids:
            raw = await store.redis.hgetall(keys.session(TENANT, ns.name, ns.generation, sid).session)
            parsed = parse_session(sid, raw, now)
            core = await store.read(TENANT, ns.name, sid)
            assert parsed is not None and core is not None
            session, properties = parsed
            assert session == core
            assert {p.name: p.json for p in properties} == core.properties
            checked += 1
    assert checked == 8
    assert parse_session("x", {b"a": b"1"}, now) is None


async def test_the_file_format(store: SessionStore) -> None:
    await fill(store)
    lines = [orjson.loads(line) for line in (await export_bytes(store)).splitlines()]
    header = lines[0]
    assert header["format"] == "sessionstore-export" and header["version"] == 1 and header["tenant"] == TENANT
    assert abs(header["exportedMs"] - time.time() * 1000) < 10_000
    kinds = [line["type"] for line in lines[1:]]
    assert kinds.count("namespace") == 3 and kinds.count("session") == 8
    by_id = {line["sessionId"]: line for line in lines[1:] if line["type"] == "session"}
    assert set(by_id) == {"a", WEIRD_ID, "ttl", "lp", "lp-empty", "g", "g-empty", "s"}
    a = by_id["a"]
    assert a["version"] == 3 and a["namespace"] == "plain" and a["properties"][":meta"] == "colon"
    assert "propertyTtlMs" not in a and "idleTtlMs" not in a  # zero and empty fields are left out
    text = (await export_bytes(store)).decode()
    assert '"big":123456789012345678901234567890' in text and '"price":1.50' in text
    assert set(by_id["ttl"]["properties"]) == {"keep", "short"}  # not the expired one
    assert 55_000 < by_id["ttl"]["propertyTtlMs"]["short"] <= 60_000
    assert by_id["lp"]["sessionTtlSecond"] == 600 and 595_000 < by_id["lp"]["propertyTtlMs"]["p"] <= 600_000
    assert by_id["lp-empty"]["version"] == 0 and by_id["lp-empty"]["sessionTtlSecond"] == 300
    assert "properties" not in by_id["lp-empty"]
    assert by_id["g"]["idleTtlMs"] == 3_600_000 and 3_595_000 < by_id["g"]["expiresInMs"] <= 3_600_000
    namespaces = {line["namespace"]: line for line in lines if line.get("type") == "namespace"}
    assert namespaces["short"]["ttlSecond"] == 120 and "ttlSecond" not in namespaces["plain"]
    one = [orjson.loads(line) for line in (await export_bytes(store, "short")).splitlines()]
    assert one[0]["namespace"] == "short" and [line.get("sessionId") for line in one[1:]] == [None, "s"]
    with pytest.raises(TransferError, match="no namespace"):
        await export_bytes(store, "nope")


async def test_a_round_trip_keeps_everything(store: SessionStore) -> None:
    await fill(store)
    before = await snapshot(store)
    other_before = await snapshot(store, OTHER_TENANT)
    data = await export_bytes(store)
    await store.redis.flushall()
    stats = await import_sessions(store, io.BytesIO(data))
    assert (stats.namespaces, stats.imported, stats.skipped, stats.failed) == (3, 8, 0, 0)
    after = await snapshot(store)
    assert after == before
    assert await snapshot(store, OTHER_TENANT) == {} != other_before
    # and the imported sessions behave as written by the service
    result = await store.write(TENANT, "plain", "lp", Changes().set("later", J(1)))
    assert result.version == before["plain"]["sessions"]["lp"]["version"] + 1
    lp = (await snapshot(store))["plain"]["sessions"]["lp"]
    assert lp["properties"]["later"] == (b"1", About(600_000))  # stamped with the session TTL (600 s)
    assert (await store.write(TENANT, "short", "new", Changes().set("v", J(1)))).status.value == "ok"
    assert (await snapshot(store))["short"]["sessions"]["new"]["properties"]["v"][1] == About(120_000)  # the namespace TTL, 120 s
    deleted = await store.delete_session(TENANT, "plain", WEIRD_ID)
    assert deleted.status.value == "ok"
    assert WEIRD_ID not in (await store.list_sessions(TENANT, "plain", 100))[0]
    # a second import is the same again (sessions that exist are replaced)
    await import_sessions(store, io.BytesIO(data))
    again = await snapshot(store)
    assert again["plain"]["sessions"]["a"] == before["plain"]["sessions"]["a"]
    assert WEIRD_ID in again["plain"]["sessions"] and "new" in again["short"]["sessions"]


async def test_import_replaces_or_keeps_a_session_that_exists(store: SessionStore) -> None:
    await store.write(TENANT, "ns", "s", Changes().set("x", J(0)).set("y", J(0)))
    for _ in range(6):
        await store.write(TENANT, "ns", "s", Changes().increment("x", 1))
    line = b'{"type":"session","tenant":"%s","namespace":"ns","sessionId":"s","version":2,"createdMs":5,"modifiedMs":6,"properties":{"x":1}}'
    data = b'{"format":"sessionstore-export","version":1}\n' + line % TENANT.encode() + b"\n"
    kept = await import_sessions(store, io.BytesIO(data), skip_existing=True)
    assert (kept.imported, kept.skipped) == (0, 1)
    session = await store.read(TENANT, "ns", "s")
    assert session is not None and session.version == 7 and set(session.properties) == {"x", "y"}
    subscription = await store.subscribe(TENANT, "ns", "s")
    try:
        replaced = await import_sessions(store, io.BytesIO(data))
        assert (replaced.imported, replaced.skipped) == (1, 0)
        event = await subscription.next(5)
    finally:
        await subscription.aclose()
    assert orjson.loads(event or b"null") == {"version": 2, "changed": ["x"], "deleted": ["y"]}
    session = await store.read(TENANT, "ns", "s")
    assert session is not None and (session.version, session.created_ms, session.modified_ms) == (2, 5, 6)
    assert session.properties == {"x": b"1"}


async def test_import_keeps_to_the_limits(redis: Any) -> None:
    store = SessionStore(redis, limits=Limits(max_chars=100, max_properties=2, max_retention_s=0))
    head = b'{"format":"sessionstore-export","version":1}\n'
    record = b'{"type":"session","tenant":"t","namespace":"ns","sessionId":"%s","version":1,"createdMs":1,"modifiedMs":1,"properties":%s}\n'
    data = head + record % (b"ok", b'{"a":1}') + record % (b"many", b'{"a":1,"b":2,"c":3}')
    data += record % (b"large", orjson.dumps({"a": "x" * 200})) + record % (
        b"spaced",
        b'{"a": {"b": [1, 2]}, "c": "x y"}',
    )
    stats = await import_sessions(store, io.BytesIO(data))
    assert (stats.imported, stats.failed) == (2, 2)
    assert stats.problems == [
        "line 3: session 'many' of t/ns: too many properties",
        "line 4: session 'large' of t/ns: too large",
    ]
    assert [s for s in await store.read_many("t", "ns", ["ok", "many", "large"])][1:] == [None, None]
    spaced = await store.read("t", "ns", "spaced")
    assert spaced is not None and spaced.properties == {"a": b'{"b":[1,2]}', "c": b'"x y"'}  # made compact


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: not a sessionstore export"),
        (b'{"type":"session"}\n', "line 1: not a sessionstore export"),
        (b'{"format":"other","version":1}\n', "line 1: not a sessionstore export"),
        (b'{"format":"sessionstore-export","version":2}\n', "line 1: export format version 2"),
        (b'{"format":"sessionstore-export","version":1}\n\n{"type":"namespace","tenant":"t"\n', "line 3: "),
        (
            b'{"format":"sessionstore-export","version":1}\n{"type":"namespace","tenant":"t/x","namespace":"n"}\n',
            "line 2: tenant",
        ),
        (
            b'{"format":"sessionstore-export","version":1}\n{"type":"namespace","tenant":"t","namespace":"{n}"}\n',
            "line 2: tenant",
        ),
        (b'{"format":"sessionstore-export","version":1}\n{"type":"thing","tenant":"t"}\n', "line 2: "),
        (
            HEADER
            + b'{"type":"session","tenant":"t","namespace":"n","sessionId":"","version":1,"createdMs":1,"modifiedMs":1}\n',
            "line 2: a session needs a sessionId",
        ),
        (
            HEADER
            + b'{"type":"session","tenant":"t","namespace":"n","sessionId":"s","version":"1","createdMs":1,"modifiedMs":1}\n',
            "line 2: Expected `int`",
        ),
    ],
)
async def test_bad_files_are_refused_with_the_line(store: SessionStore, data: bytes, message: str) -> None:
    with pytest.raises(TransferError) as caught:
        await import_sessions(store, io.BytesIO(data))
    assert str(caught.value).startswith(message), str(caught.value)


async def test_memory_does_not_grow_with_the_number_of_sessions(
    redis_factory: Callable[[], Any], backend: str, tmp_path: Path
) -> None:
    if backend == "fake":
        pytest.skip("the embedded store keeps its data in this process: measured on a real Redis")
    store = SessionStore(redis_factory())
    peaks = {}
    for count in (1_000, 8_000):
        await store.redis.flushall()
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(store.write("t", "ns", f"s{n}", Changes().set("v", J("x" * 100))) for n in range(start, start + 1000))
            )
        path = tmp_path / f"{count}.jsonl"
        tracemalloc.start()
        try:
            with path.open("wb") as out:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                await export_sessions(store, out, "t")
                exported = tracemalloc.get_traced_memory()[1] - base
            await store.redis.flushall()
            with path.open("rb") as lines:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                await import_sessions(store, lines)
                imported = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        peaks[count] = (exported, imported)
        assert len((await store.list_sessions("t", "ns", 10_000))[0]) == count
    small, large = peaks[1_000], peaks[8_000]
    assert large[0] < small[0] * 1.5 + 300_000, peaks
    assert large[1] < small[1] * 1.5 + 300_000, peaks


# -- the command line, on 100,000 sessions ------------------------------------------


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SESSIONSTORE_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], check=False, capture_output=True, timeout=240, env=env, input=stdin
    )


def test_cli_round_trip_of_100000_sessions(tmp_path: Path) -> None:
    if os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    source, target = RedisServer().start(), RedisServer().start()
    try:
        began = time.monotonic()

        async def load() -> None:
            client = clients.connect(source.url, timeout_s=10)
            store = SessionStore(client)
            try:
                for start in range(0, 100_000, 2000):
                    await asyncio.gather(
                        *(
                            store.write(
                                TENANT,
                                f"ns{n % 4}",
                                f"session-{n}",
                                Changes().set("n", J(n)).set("who", J(f"user {n}")),
                            )
                            for n in range(start, start + 2000)
                        )
                    )
                for n in range(0, 100_000, 1000):  # a few later versions
                    await store.write(TENANT, f"ns{n % 4}", f"session-{n}", Changes().increment("n", 1))
            finally:
                await client.aclose()

        asyncio.run(load())
        filled = time.monotonic()
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl.gz"
        exported = run_cli("export", "--tenant", TENANT, "--out", str(first), "--redis-url", source.url)
        assert exported.returncode == 0, exported.stderr
        assert exported.stderr.decode().splitlines()[-1].startswith("exported 100,000 sessions of 4 namespaces in ")
        imported = run_cli("import", str(first), "--redis-url", target.url)
        assert imported.returncode == 0, imported.stderr
        assert imported.stderr.decode().splitlines()[-1].startswith("imported 100,000 sessions (4 namespaces) in ")
        assert "import: [" in imported.stderr.decode()  # the progress bar
        again = run_cli("export", "--tenant", TENANT, "--out", str(second), "--redis-url", target.url)
        assert again.returncode == 0, again.stderr
        done = time.monotonic()
    finally:
        source.cleanup()
        target.cleanup()
    with first.open("rb") as a, gzip.open(second, "rb") as b:
        header_a, header_b = orjson.loads(a.readline()), orjson.loads(b.readline())
        assert header_a.pop("exportedMs") <= header_b.pop("exportedMs") and header_a == header_b
        count = 0
        for line_a, line_b in zip(a, b, strict=True):
            assert line_a == line_b
            count += 1
    assert count == 100_000 + 4
    assert done - filled < 60, f"export, import and export took {done - filled:.1f} s (filling {filled - began:.1f} s)"


def test_cli_usage_errors(tmp_path: Path) -> None:
    no_url = run_cli("export", "--tenant", "t")
    assert no_url.returncode == 2 and b"--redis-url" in no_url.stderr
    missing = run_cli("import", str(tmp_path / "missing.jsonl"), "--redis-url", "redis://127.0.0.1:1/0")
    assert missing.returncode == 2 and b"cannot read" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"format":"sessionstore-export","version":1}\nnot json\n')
    redis = RedisServer().start()
    try:
        refused = run_cli("import", str(bad), "--redis-url", redis.url)
        from_stdin = run_cli("import", "-", "--redis-url", redis.url, "--no-progress", stdin=bad.read_bytes())
        unknown = run_cli("export", "--tenant", "t", "--namespace", "nope", "--redis-url", redis.url)
    finally:
        redis.cleanup()
    assert refused.returncode == 1 and b"bad.jsonl: line 2: " in refused.stderr
    assert from_stdin.returncode == 1 and b"line 2: " in from_stdin.stderr
    assert unknown.returncode == 1 and b"no namespace nope" in unknown.stderr
