"""The node-local event store: idempotent broadcasts, atomic transactions, scoped KV."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.encoding import event_id
from bridge.eventstore import _MAX_ROWS_PER_INSERT, PENDING, EventStore
from resolutions import ResolutionConfig, ResolveContext, register_resolution

TYPE = "test_event"


async def _noop(ctx: ResolveContext) -> None:
    pass


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    register_resolution(TYPE, ResolutionConfig(resolve=_noop))
    s = await EventStore.open(tmp_path / "events.sqlite")
    yield s
    await s.close()


async def test_broadcast_is_idempotent(store: EventStore) -> None:
    a = store.scoped("a")
    await a.broadcast(TYPE, b"one")
    await a.broadcast(TYPE, b"one")
    await store.scoped("b").broadcast(TYPE, b"one")  # same event seen by another listener
    await a.broadcast(TYPE, b"two")

    events = await store.select(PENDING, 10)
    assert [(e.id, e.body) for e in events] == [
        (event_id(TYPE, b"one"), b"one"),
        (event_id(TYPE, b"two"), b"two"),
    ]
    assert await store.counts() == {PENDING: 2}


async def test_broadcast_of_unregistered_type_raises(store: EventStore) -> None:
    with pytest.raises(ValueError, match="not_registered"):
        await store.scoped("a").broadcast("not_registered", b"x")
    assert await store.select(PENDING, 10) == []


async def _usable_again(store: EventStore, key: bytes) -> None:
    """The store is usable after a transaction that went wrong, and a successful one commits
    all of its writes."""
    a = store.scoped("a")
    async with a.transaction() as tx:
        await tx.broadcast(TYPE, b"event")
        await tx.set(key, b"value")
    assert [e.body for e in await store.select(PENDING, 10)] == [b"event"]
    assert await a.get(key) == b"value"


async def test_failed_transaction_leaves_nothing_behind(store: EventStore) -> None:
    a = store.scoped("a")
    await a.set(b"kept", b"before")
    with pytest.raises(RuntimeError, match="boom"):
        async with a.transaction() as tx:
            await tx.broadcast(TYPE, b"event")
            await tx.set(b"kept", b"overwritten")
            await tx.set(b"new", b"value")
            await tx.delete(b"kept")
            raise RuntimeError("boom")

    assert await store.select(PENDING, 10) == []
    assert await a.get(b"kept") == b"before"
    assert await a.get(b"new") is None
    await _usable_again(store, b"new")


async def test_cancelled_transaction_leaves_nothing_behind(store: EventStore) -> None:
    a = store.scoped("a")
    inside = asyncio.Event()

    async def body() -> None:
        async with a.transaction() as tx:
            await tx.broadcast(TYPE, b"event")
            await tx.set(b"k", b"v")
            inside.set()
            await asyncio.Event().wait()  # cancelled here, like a demoted listener

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.select(PENDING, 10) == []
    assert await a.get(b"k") is None


async def test_uncommitted_events_are_not_visible_to_the_broadcaster(store: EventStore) -> None:
    # The broadcaster shares the store's connection: it must not vote on an event whose
    # transaction may still roll back.
    a = store.scoped("a")
    with pytest.raises(RuntimeError):
        async with a.transaction() as tx:
            await tx.broadcast(TYPE, b"event")
            selecting = asyncio.create_task(store.select(PENDING, 10))
            counting = asyncio.create_task(store.counts())
            await tx.get(b"k")  # a round trip through the connection, after the reads queued
            raise RuntimeError("rolled back")
    assert await selecting == []
    assert await counting == {}


async def test_listeners_cannot_read_each_others_keys(store: EventStore) -> None:
    a, b = store.scoped("a"), store.scoped("b")
    await a.set(b"key", b"from a")
    assert await b.get(b"key") is None
    await b.set(b"key", b"from b")
    assert await a.get(b"key") == b"from a"
    assert await b.get(b"key") == b"from b"
    await b.delete(b"key")
    assert await a.get(b"key") == b"from a"
    assert await b.get(b"key") is None


async def test_get_missing_key_returns_none(store: EventStore) -> None:
    assert await store.scoped("a").get(b"missing") is None


async def test_set_overwrites_and_delete_removes(store: EventStore) -> None:
    a = store.scoped("a")
    await a.set(b"k", b"1")
    await a.set(b"k", b"2")
    assert await a.get(b"k") == b"2"
    await a.delete(b"k")
    assert await a.get(b"k") is None
    await a.delete(b"k")  # deleting an absent key is not an error
    assert await a.get(b"k") is None


async def test_transactions_do_not_nest(store: EventStore) -> None:
    async with store.scoped("a").transaction() as tx:
        with pytest.raises(RuntimeError, match="nest"):
            async with tx.transaction():
                pass


async def test_data_survives_reopening(tmp_path: Path, store: EventStore) -> None:
    path = tmp_path / "other.sqlite"
    first = await EventStore.open(path)
    async with first.scoped("a").transaction() as tx:
        await tx.broadcast(TYPE, b"event")
        await tx.set(b"k", b"v")
    await first.close()
    second = await EventStore.open(path)
    try:
        assert [e.body for e in await second.select(PENDING, 10)] == [b"event"]
        assert await second.scoped("a").get(b"k") == b"v"
    finally:
        await second.close()


async def test_concurrent_transactions_do_not_interleave(store: EventStore) -> None:
    log: list[tuple[str, str]] = []
    rounds = 20

    async def listener(name: str) -> None:
        scoped = store.scoped(name)
        for i in range(rounds):
            async with scoped.transaction() as tx:
                log.append(("begin", name))
                raw = await tx.get(b"counter")
                await asyncio.sleep(0)  # give the other listener every chance to cut in
                await tx.set(b"counter", str(int(raw or b"0") + 1).encode())
                await tx.broadcast(TYPE, f"{name}-{i}".encode())
                log.append(("end", name))

    await asyncio.gather(listener("a"), listener("b"))

    assert len(log) == 4 * rounds
    for begin, end in zip(log[::2], log[1::2], strict=True):
        assert begin[0] == "begin" and end == ("end", begin[1]), log
    assert await store.scoped("a").get(b"counter") == str(rounds).encode()
    assert await store.scoped("b").get(b"counter") == str(rounds).encode()
    assert len(await store.select(PENDING, 1000)) == 2 * rounds


async def test_plain_write_is_not_swallowed_by_another_listeners_rollback(store: EventStore) -> None:
    a, b = store.scoped("a"), store.scoped("b")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def failing() -> None:
        async with a.transaction() as tx:
            await tx.set(b"k", b"a")
            inside.set()
            await release.wait()
            raise RuntimeError("a fails")

    async def writer() -> None:
        await inside.wait()
        writing = asyncio.create_task(b.set(b"k", b"b"))
        await asyncio.sleep(0)
        release.set()
        await writing

    results = await asyncio.gather(failing(), writer(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None
    assert await a.get(b"k") is None
    assert await b.get(b"k") == b"b"


async def test_a_large_transaction_stores_every_event_once_in_order(store: EventStore) -> None:
    # A transaction's events go in with multi-row INSERTs of a few sizes (powers of two):
    # a count that is none of them, repeats inside the transaction and events stored before
    # must come out as one row per id, in the order they were first broadcast.
    a = store.scoped("a")
    await a.broadcast(TYPE, b"event 7")
    bodies = [f"event {i}".encode() for i in range(_MAX_ROWS_PER_INSERT * 2 + 333)]
    async with a.transaction() as tx:
        for body in bodies:
            await tx.broadcast(TYPE, body)
        await tx.broadcast(TYPE, bodies[-1])  # a repeat, in the last (smallest) INSERT
        await tx.broadcast(TYPE, bodies[0])  # and one in its own
    events = await store.select(PENDING, len(bodies) + 10)
    expected = [b"event 7", *(b for b in bodies if b != b"event 7")]
    assert [e.body for e in events] == expected
    assert [e.id for e in events] == [event_id(TYPE, b) for b in expected]
    assert await store.counts() == {PENDING: len(bodies)}


async def test_transaction_cancelled_before_it_began_leaves_the_store_usable(store: EventStore) -> None:
    # Cancelled while its BEGIN is still on the way to SQLite's thread (a listener stopped
    # while a chunk's store had just started): the BEGIN runs all the same, and must not
    # leave a transaction open that every later BEGIN would trip over.
    a = store.scoped("a")

    async def body() -> None:
        async with a.transaction() as tx:
            await tx.broadcast(TYPE, b"never")

    task = asyncio.create_task(body())
    await asyncio.sleep(0)  # the task holds the lock and waits for its BEGIN
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _usable_again(store, b"k")


async def test_a_transaction_reads_its_own_writes(store: EventStore) -> None:
    # KV writes inside a transaction reach SQLite only at its end: reads before then see them.
    a = store.scoped("a")
    await a.set(b"stored", b"before")
    await a.set(b"gone", b"before")
    async with a.transaction() as tx:
        assert await tx.get(b"stored") == b"before"
        await tx.set(b"new", b"1")
        await tx.set(b"new", b"2")
        await tx.delete(b"gone")
        await tx.set(b"stored", b"after")
        assert await tx.get(b"new") == b"2"
        assert await tx.get(b"gone") is None
        assert await tx.get(b"stored") == b"after"
    assert [await a.get(k) for k in (b"new", b"gone", b"stored")] == [b"2", None, b"after"]
