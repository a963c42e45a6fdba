"""Concurrency: 32 clients on a handful of shared sessions, through two service
instances on one Redis, doing version-checked updates (If-Match, retried on
412 after reading again), merge patches, atomic increments and LivePerson
merges at once; afterwards the history they recorded is checked against the
final state: no lost update, versions unique and gap-free per session,
counters exact.

In-process (``serve_app``) on every backend of the ``redis_factory`` fixture
(fakeredis, a real redis-server), and on the private Redis Cluster (conftest
leaves the cluster run of modules outside its CLUSTER_MODULES out, so that
one is a test of its own here). In-process rather than a subprocess: the
same checks then cover each backend, and the atomicity under test lives in
the Lua scripts on Redis, not in the HTTP server around them."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from service.store import clients

from .conftest import TENANT, RedisClusterServers, serve_app

pytestmark = pytest.mark.anyio

CLIENTS = 32
OPERATIONS = 40  # per client
MAX_TRIES = 50  # of one conditional update, each after reading again
SESSIONS = [f"shared{n}" for n in range(6)]
COUNTERS = ("hits", "score")
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces/conc/sessions"
LIVEPERSON = f"/v1/account/{TENANT}/conc"
MERGE = {"Content-Type": "application/merge-patch+json"}


def version_of(response: httpx.Response) -> int:
    tag = response.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"'), tag
    return int(tag[1:-1])


@dataclass
class History:
    """What the clients saw succeed, per session."""

    native_versions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    liveperson_writes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    merged: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))  # keys that must survive
    conditional_reads: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    increments: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    retries: int = 0
    gave_up: int = 0
    requests: int = 0


async def conditional_update(client: httpx.AsyncClient, history: History, me: int, n: int, session: str,
                             use_put: bool) -> None:  # fmt: skip
    """Read, then write what was read plus this write's mark, If-Match the
    version read; on 412 read again. Every success appends the version it
    read to the session's "chain": a lost update would lose an entry."""
    for attempt in range(MAX_TRIES):
        read = await client.get(f"{NATIVE}/{session}")
        history.requests += 1
        assert read.status_code == 200, read.text
        seen = version_of(read)
        properties = read.json()["properties"]
        assert read.json()["metadata"]["version"] == seen
        chain = [*properties["chain"], seen]
        mark = f"c{me}_{n}"
        if use_put:  # the whole session back, as read, with the changes
            body = {"properties": {**properties, "chain": chain, mark: n}}
            r = await client.put(f"{NATIVE}/{session}", json=body, headers={"If-Match": f'"{seen}"'})
        else:
            body = {"properties": {"chain": chain, mark: n}}
            r = await client.patch(f"{NATIVE}/{session}", json=body, headers={"If-Match": f'"{seen}"', **MERGE})
        history.requests += 1
        if r.status_code == 412:
            history.retries += 1
            await anyio.sleep(random.random() * 0.001 * 2 ** min(attempt, 5))  # backing off
            continue
        assert r.status_code == 200, r.text
        written = version_of(r)
        # it wrote on the version it read, so it made the next one
        assert written == seen + 1, (seen, written)
        assert r.json()["properties"]["chain"] == chain
        history.native_versions[session].append(written)
        history.conditional_reads[session].append(seen)
        history.merged[session][mark] = n
        return
    history.gave_up += 1


async def one_client(client: httpx.AsyncClient, history: History, me: int) -> None:
    rng = random.Random(me)
    step = 1 + me % 3
    for n in range(OPERATIONS):
        session = rng.choice(SESSIONS)
        kind = rng.choice(("put-if-match", "patch-if-match", "merge", "merge", "increment", "increment", "liveperson"))
        if kind in ("put-if-match", "patch-if-match"):
            await conditional_update(client, history, me, n, session, kind == "put-if-match")
        elif kind == "merge":  # a key no one else writes
            r = await client.patch(f"{NATIVE}/{session}", json={"properties": {f"m{me}_{n}": n}}, headers=MERGE)
            history.requests += 1
            assert r.status_code == 200, r.text
            history.native_versions[session].append(version_of(r))
            history.merged[session][f"m{me}_{n}"] = n
        elif kind == "increment":
            counter = rng.choice(COUNTERS)
            r = await client.post(f"{NATIVE}/{session}/properties/{counter}:increment", json={"by": step})
            history.requests += 1
            assert r.status_code == 200, r.text
            history.native_versions[session].append(version_of(r))
            history.increments[(session, counter)].append((step, r.json()["value"]))
        else:  # the LivePerson face's merge, on the same session
            r = await client.patch(f"{LIVEPERSON}/{session}/properties", json={f"lp{me}_{n}": {"by": me}})
            history.requests += 1
            assert r.status_code == 204, r.text
            history.liveperson_writes[session] += 1
            history.merged[session][f"lp{me}_{n}"] = {"by": me}


async def run_and_check(instances: list[httpx.AsyncClient], label: str) -> None:
    first = instances[0]
    for session in SESSIONS:  # version 1 of each: the chain and a counter at 0
        r = await first.put(
            f"{NATIVE}/{session}", json={"properties": {"chain": [], "hits": 0}}, headers={"If-None-Match": "*"}
        )
        assert r.status_code == 201 and version_of(r) == 1, r.text
    history = History()
    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for me in range(CLIENTS):  # the clients alternate between the service instances
            tg.start_soon(one_client, instances[me % len(instances)], history, me)
    took = anyio.current_time() - started

    successes = 0
    for session in SESSIONS:
        r = await instances[-1].get(f"{NATIVE}/{session}")
        assert r.status_code == 200, r.text
        final = r.json()
        properties, version = final["properties"], final["metadata"]["version"]
        assert version_of(r) == version
        versions = history.native_versions[session]
        writes = len(versions) + history.liveperson_writes[session]
        successes += writes
        # no two successful writes got the same version, and every write made exactly one
        assert len(set(versions)) == len(versions), "two writes got the same version"
        assert all(2 <= v <= version for v in versions), (min(versions), max(versions), version)
        assert version == 1 + writes, (session, version, writes)
        # no lost update: every key a write added is there, with its value
        lost = {k: v for k, v in history.merged[session].items() if properties.get(k) != v}
        assert not lost, f"{session}: lost {len(lost)} writes, e.g. {list(lost.items())[:5]}"
        # the version-checked writes form one chain: each read the one before's result
        reads = history.conditional_reads[session]
        assert reads, f"no conditional update succeeded on {session}"
        assert properties["chain"] == sorted(reads), "a conditional write overwrote one it had not read"
        assert all(a < b for a, b in zip(properties["chain"], properties["chain"][1:], strict=False))
        # counters exact; each increment saw its own total
        for counter in COUNTERS:
            done = history.increments[(session, counter)]
            assert properties.get(counter, 0) == sum(step for step, _ in done), (session, counter)
            totals = [total for _, total in done]
            assert len(set(totals)) == len(totals)  # steps are positive: every total is a new one
            assert max(totals, default=0) == properties.get(counter, 0)
    print(
        f"\n{label}: {CLIENTS} clients x {OPERATIONS} operations on {len(SESSIONS)} sessions via "
        f"{len(instances)} instances in {took:.2f} s: {history.requests} requests, {successes} successful writes, "
        f"{history.retries} retries on 412, {history.gave_up} conditional updates given up"
    )


async def test_concurrent_updates_lose_nothing(redis_factory: Callable[[], Any], backend: str) -> None:
    async with AsyncExitStack() as stack:
        instances = [await stack.enter_async_context(serve_app(redis_factory(), open_access=True)) for _ in range(2)]
        await run_and_check(instances, backend)


@pytest.fixture
def cluster_url(request: pytest.FixtureRequest) -> str:
    if os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return cluster.url


async def test_concurrent_updates_lose_nothing_on_a_cluster(cluster_url: str) -> None:
    made = [clients.connect(cluster_url, timeout_s=5) for _ in range(2)]
    try:
        await made[0].flushall()
        await made[0].script_flush()
        async with AsyncExitStack() as stack:
            instances = [await stack.enter_async_context(serve_app(r, open_access=True)) for r in made]
            await run_and_check(instances, "cluster")
    finally:
        for client in made:
            await client.aclose()
