"""What the client repeats after a 503 or a broken connection, and what it
does not: with the AsyncClient and the sync Client, on the embedded store
(the faults are the transport's, see client_harness.InProcess)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import pytest

from service.client import AsyncClient, Client, NetworkError, Retry, SessionStoreError, Unavailable

from .client_harness import KINDS, Harness, in_process
from .conftest import TENANT, free_port

pytestmark = pytest.mark.anyio
FAST = Retry(attempts=3, backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with in_process(fakeredis.FakeAsyncRedis(), request.param, retry=FAST) as h:
        yield h


def statuses(harness: Harness, method: str) -> list[int | None]:
    return [s.status for s in harness.wire.sent(method)]


async def test_reads_are_retried(harness: Harness) -> None:
    api, wire = harness.api, harness.wire
    await api.put("s", {"a": 1})
    wire.fail("GET", "/s", "before", 1)
    wire.fail("GET", "/s", "refused", 1)
    wire.fail("GET", "/s", "dropped", 1)
    assert (await api.get("s")).properties == {"a": 1}
    assert statuses(harness, "GET") == [None, None, None, 304]
    wire.fail("POST", ":batchGet", "before", 1)
    assert [s.session_id for s in (await api.batch_get(["s"])).sessions] == ["s"]
    wire.fail("GET", "/sessions", "before", 1)
    assert await api.all_ids() == ["s"]

    wire.fail("GET", "/s", "before", 4)  # one more than the retries
    with pytest.raises(Unavailable) as unavailable:
        await api.get("s")
    assert unavailable.value.status == 503 and unavailable.value.detail == "storage unavailable"
    assert isinstance(unavailable.value, SessionStoreError)


async def test_writes_that_repeat_safely_are_retried(harness: Harness) -> None:
    api, wire = harness.api, harness.wire
    wire.fail("PUT", "/s", "after", 1)  # applied, then a 503: the same PUT again leaves the same properties
    assert (await api.put("s", {"a": 1})).properties == {"a": 1}
    wire.fail("PUT", "/s", "dropped", 1)
    assert (await api.put("s", {"a": 2})).properties == {"a": 2}
    assert statuses(harness, "PUT") == [None, 200, None, 200]
    wire.fail("PUT", "/properties/p", "after", 1)
    version = await api.put_property("s", "p", 1)
    wire.fail("DELETE", "/properties/p", "after", 1)
    assert await api.delete_property("s", "p") == version + 1  # the second delete changed nothing
    wire.fail("POST", "/s:touch", "before", 2)
    await api.touch("s")
    wire.fail("PATCH", "/s", "before", 1)  # a conditional patch applies at most once
    assert (await api.patch("s", {"b": 1}, if_match=version + 1)).version == version + 2
    assert (await api.get("s")).properties == {"a": 2, "b": 1}


async def test_writes_that_would_count_twice_are_not(harness: Harness) -> None:
    api, wire = harness.api, harness.wire
    await api.put("s", {"n": 0})
    wire.fail("POST", ":increment", "after", 1)
    with pytest.raises(Unavailable):
        await api.increment("s", "n")
    wire.fail("POST", ":increment", "dropped", 1)
    with pytest.raises(NetworkError) as dropped:
        await api.increment("s", "n")
    assert isinstance(dropped.value.__cause__, httpx.ReadError)
    wire.fail("PATCH", "/s", "before", 1)  # even one that was not applied: the client cannot know
    with pytest.raises(Unavailable):
        await api.patch("s", {"x": 1})
    assert len(wire.sent("POST")) == 2 and len(wire.sent("PATCH")) == 1
    assert (await api.get("s")).properties == {"n": 2}  # each applied once, none twice
    # a request that never left is sent again, whatever it is
    wire.fail("POST", ":increment", "refused", 2)
    assert await api.increment("s", "n") == 3


async def test_an_answer_a_first_attempt_could_have_caused_is_not_believed(harness: Harness) -> None:
    """A conditional write, applied but answered with a 503, is retried: the
    retry's 412 would be the first attempt's doing, so the 503 is raised."""
    api, wire = harness.api, harness.wire
    await api.put("s", {"items": []})
    wire.fail("PUT", "/s", "after", 1)
    with pytest.raises(Unavailable):
        await api.put("s", {"items": ["x"]}, if_match=1)
    assert statuses(harness, "PUT")[-2:] == [None, 412]
    wire.fail("PUT", "/t", "after", 1)
    with pytest.raises(Unavailable):
        await api.put("t", {}, create_only=True)
    wire.fail("DELETE", "/t", "dropped", 1)
    with pytest.raises(NetworkError):
        await api.delete("t")
    assert statuses(harness, "DELETE") == [None, 404]

    # update: its write applied, then a 503; the retry's 412 does not make it apply fn again
    calls = 0

    def add(p: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"items": [*p["items"], "y"]}

    wire.fail("PATCH", "/s", "after", 1)
    with pytest.raises(Unavailable):
        await api.update("s", add)
    assert calls == 1 and (await api.get("s")).properties == {"items": ["x", "y"]}


@pytest.mark.parametrize("kind", KINDS)
async def test_nothing_listening(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    options: dict[str, Any] = {"tenant": TENANT, "namespace": "ns", "retry": FAST}
    with pytest.raises(NetworkError, match="ConnectError") as refused:
        if kind == "async":
            async with AsyncClient(url, **options) as async_client:
                await async_client.get("s")
        else:
            with Client(url, **options) as sync_client:
                sync_client.get("s")
    assert isinstance(refused.value.__cause__, httpx.ConnectError)
