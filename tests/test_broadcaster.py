"""The broadcaster with a real ledger, solo engine (blocks made by hand) and event store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.broadcaster import Broadcaster
from bridge.encoding import event_id
from bridge.eventstore import PENDING, VOTED
from bridge.keys import NodeKey
from bridge.ledger import BlockResult, Genesis, TxResult
from bridge.txs import Tx, Vote, VoteIds, decode_payload
from resolutions import ResolutionConfig, ResolveContext, register_resolution
from tests.node_helpers import FakeClock, NodeParts, genesis, node_key

TYPE = "test_note"
KEY = node_key(1)


async def _resolve(ctx: ResolveContext) -> None:
    count = int(await ctx.app.get(ctx.resolution.body) or b"0")
    await ctx.app.set(ctx.resolution.body, str(count + 1).encode())


@pytest.fixture(autouse=True)
def _register_type() -> None:
    register_resolution(TYPE, ResolutionConfig(resolve=_resolve))


def wire(parts: NodeParts, broadcaster: Broadcaster) -> None:
    async def after_commit(result: BlockResult) -> None:
        await broadcaster.on_commit()

    parts.engine.on_commit.append(after_commit)


@pytest.fixture
async def solo(tmp_path: Path) -> AsyncIterator[NodeParts]:
    parts = await NodeParts.open(tmp_path, genesis((KEY, 10)), KEY)
    yield parts
    await parts.close()


async def store_events(parts: NodeParts, bodies: list[bytes]) -> None:
    """What a listener does with a chunk: every event in one event-store transaction."""
    async with parts.store.scoped("listener").transaction() as tx:
        for body in bodies:
            await tx.broadcast(TYPE, body)


async def resolved_count(parts: NodeParts, body: bytes) -> int:
    """How many times ``resolve`` ran for ``body``, read from committed ledger state."""
    return sum(int(v) for k, v in await parts.ledger.kv_items(TYPE) if k == body)


async def test_broadcast_event_is_voted_confirmed_and_dropped(solo: NodeParts) -> None:
    clock = FakeClock(1000.0)
    broadcaster = Broadcaster(solo.store, solo.ledger, solo.engine.submit, KEY, clock=clock)
    await broadcaster.start()
    wire(solo, broadcaster)

    await solo.store.scoped("listener").broadcast(TYPE, b"hello")
    await solo.blocks(1)  # the vote is sent after this block's commit
    assert broadcaster.votes_sent == 1
    assert await solo.status(TYPE, b"hello") is None
    assert await solo.store.counts() == {PENDING: 1}

    await solo.blocks(2)  # included, confirmed, then settled by the broadcaster
    assert await solo.status(TYPE, b"hello") == "confirmed"
    assert await resolved_count(solo, b"hello") == 1
    assert await solo.store.counts() == {}
    assert await solo.ledger.nonce(KEY.public) == 1

    await solo.blocks(3)  # nothing left to send
    assert broadcaster.votes_sent == 1
    assert await solo.ledger.nonce(KEY.public) == 1


async def test_many_events_are_batched_and_all_confirmed(solo: NodeParts) -> None:
    broadcaster = Broadcaster(solo.store, solo.ledger, solo.engine.submit, KEY, max_votes_per_tx=2)
    await broadcaster.start()
    wire(solo, broadcaster)
    bodies = [f"event-{i}".encode() for i in range(5)]
    await store_events(solo, bodies)

    await solo.blocks(8)
    assert [await solo.status(TYPE, b) for b in bodies] == ["confirmed"] * 5
    assert [await resolved_count(solo, b) for b in bodies] == [1] * 5
    assert await solo.ledger.nonce(KEY.public) == 3  # 2 + 2 + 1 events
    assert await solo.store.counts() == {}


async def test_dropped_vote_is_sent_again_after_the_timeout(solo: NodeParts) -> None:
    sent: list[bytes] = []

    async def lossy_submit(raw: bytes) -> TxResult:
        sent.append(raw)
        if len(sent) == 1:  # accepted, then lost before reaching the mempool
            result = await solo.ledger.check_tx(raw)
            assert result.ok
            return result
        return await solo.engine.submit(raw)

    clock = FakeClock(0.0)  # e.g. a monotonic clock: 0.0 is a valid time
    broadcaster = Broadcaster(solo.store, solo.ledger, lossy_submit, KEY, resend_timeout=5.0, clock=clock)
    await broadcaster.start()
    wire(solo, broadcaster)

    await solo.store.scoped("listener").broadcast(TYPE, b"lost")
    await solo.blocks(1)
    assert len(sent) == 1

    clock.advance(1.0)
    await solo.blocks(2)  # before the timeout: no second copy
    assert len(sent) == 1
    assert await solo.status(TYPE, b"lost") is None
    assert await solo.store.counts() == {PENDING: 1}

    clock.advance(10.0)
    await solo.blocks(1)  # overdue: sent again
    assert len(sent) == 2
    assert Tx.decode(sent[1]).nonce == Tx.decode(sent[0]).nonce == 0

    await solo.blocks(2)
    assert await solo.status(TYPE, b"lost") == "confirmed"
    assert await resolved_count(solo, b"lost") == 1
    assert await solo.store.counts() == {}


async def test_rejected_vote_is_retried_on_the_next_block(solo: NodeParts) -> None:
    calls = 0

    async def flaky_submit(raw: bytes) -> TxResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            from bridge.errors import TxCode

            return TxResult(TxCode.MEMPOOL_FULL, "mempool is full")
        return await solo.engine.submit(raw)

    broadcaster = Broadcaster(solo.store, solo.ledger, flaky_submit, KEY, clock=FakeClock(1.0))
    await broadcaster.start()
    wire(solo, broadcaster)
    await solo.store.scoped("listener").broadcast(TYPE, b"retry")
    await solo.blocks(1)
    assert calls == 1 and broadcaster.votes_sent == 0
    await solo.blocks(3)  # no timeout needed: the rejected vote was never in flight
    assert calls == 2
    assert await solo.status(TYPE, b"retry") == "confirmed"


async def test_pending_events_are_voted_again_after_a_restart(tmp_path: Path) -> None:
    gen = genesis((KEY, 10))
    clock = FakeClock(1000.0)
    parts = await NodeParts.open(tmp_path, gen, KEY)
    try:
        broadcaster = Broadcaster(parts.store, parts.ledger, parts.engine.submit, KEY, clock=clock)
        await broadcaster.start()
        wire(parts, broadcaster)
        await parts.store.scoped("listener").broadcast(TYPE, b"survivor")
        await parts.blocks(1)  # the vote sits in the mempool, which dies with the process
        assert broadcaster.votes_sent == 1
    finally:
        await parts.close()

    parts = await NodeParts.open(tmp_path, gen, KEY)  # same clock: the resend timeout is far off
    try:
        assert await parts.status(TYPE, b"survivor") is None
        assert await parts.store.counts() == {PENDING: 1}
        broadcaster = Broadcaster(
            parts.store, parts.ledger, parts.engine.submit, KEY, resend_timeout=3600.0, clock=clock
        )
        await broadcaster.start()
        wire(parts, broadcaster)
        await parts.blocks(1)
        assert broadcaster.votes_sent == 1
        await parts.blocks(2)
        assert await parts.status(TYPE, b"survivor") == "confirmed"
        assert await resolved_count(parts, b"survivor") == 1
        assert await parts.store.counts() == {}
    finally:
        await parts.close()


def _votes_rows(path: Path, rid: bytes) -> list[bytes]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT voter FROM votes WHERE resolution_id = ?", (rid,)).fetchall()
    return [bytes(r[0]) for r in rows]


async def _send_vote(
    parts: NodeParts, key: NodeKey, events: tuple[tuple[str, bytes], ...], nonce: int | None = None
) -> None:
    if nonce is None:
        nonce = await parts.ledger.nonce(key.public)
    tx = Tx(parts.ledger.chain_id, "vote", key.public, nonce, Vote(events).encode()).sign_ed25519(key)
    result = await parts.engine.submit(tx.encode())
    assert result.ok, result.log


async def test_no_validator_vote_is_counted_twice(tmp_path: Path) -> None:
    others = [node_key(n) for n in (2, 3, 4)]
    gen: Genesis = genesis((KEY, 1), *((k, 1) for k in others))
    parts = await NodeParts.open(tmp_path, gen, KEY)
    try:
        clock = FakeClock(1000.0)
        broadcaster = Broadcaster(
            parts.store, parts.ledger, parts.engine.submit, KEY, resend_timeout=1.0, clock=clock
        )
        await broadcaster.start()
        wire(parts, broadcaster)
        body = b"needs three of four"
        rid = event_id(TYPE, body)
        await parts.store.scoped("listener").broadcast(TYPE, body)

        for _ in range(4):  # overdue again and again: the landed vote is not re-sent
            clock.advance(5.0)
            await parts.blocks(1)
        assert broadcaster.votes_sent == 1
        assert [e.state for e in await parts.store.select(VOTED, 10)] == [VOTED]

        # The same validator votes again, alone and twice in one transaction.
        await _send_vote(parts, KEY, ((TYPE, body),), nonce=1)
        await _send_vote(parts, KEY, ((TYPE, body), (TYPE, body)), nonce=2)
        await parts.blocks(2)
        assert await parts.ledger.nonce(KEY.public) == 3  # all three votes were executed

        assert _votes_rows(tmp_path / "ledger.sqlite", rid) == [KEY.public]
        [row] = await parts.ledger.list_resolutions(status="pending", type_=TYPE)
        assert row["id"] == rid.hex()
        assert row["approved_power"] == 1
        assert row["votes"] == 1
        assert row["required_power"] == 3
        assert await resolved_count(parts, body) == 0

        # Two more distinct validators make it pass: the threshold itself works.
        await _send_vote(parts, others[0], ((TYPE, body),))
        await parts.blocks(1)
        assert await parts.status(TYPE, body) == "pending"
        await _send_vote(parts, others[1], ((TYPE, body),))
        await parts.blocks(2)
        assert await parts.status(TYPE, body) == "confirmed"
        assert await resolved_count(parts, body) == 1
        assert await parts.store.counts() == {}
    finally:
        await parts.close()


async def test_vote_that_landed_before_a_crash_does_not_block_the_queue(tmp_path: Path) -> None:
    # The block with our vote commits, then the process dies before the broadcaster settles
    # it. After the restart the ledger already has the vote: it must not be sent again, and
    # it must not keep newer events from being sent either.
    gen = genesis((KEY, 1), *((node_key(n), 1) for n in (2, 3, 4)))  # nothing confirms alone
    clock = FakeClock(1000.0)
    parts = await NodeParts.open(tmp_path, gen, KEY)
    try:
        broadcaster = Broadcaster(parts.store, parts.ledger, parts.engine.submit, KEY, clock=clock)
        await broadcaster.start()
        await parts.store.scoped("listener").broadcast(TYPE, b"first")
        await parts.blocks(1)
        await broadcaster.on_commit()  # sends the vote
        await parts.blocks(1)  # the vote lands; the crash comes before on_commit
        assert (await parts.ledger.vote_status([event_id(TYPE, b"first")], KEY.public)) == {
            event_id(TYPE, b"first"): "voted"
        }
    finally:
        await parts.close()

    parts = await NodeParts.open(tmp_path, gen, KEY)
    try:
        broadcaster = Broadcaster(
            parts.store, parts.ledger, parts.engine.submit, KEY, max_votes_per_tx=1, clock=clock
        )
        await broadcaster.start()
        wire(parts, broadcaster)
        await parts.store.scoped("listener").broadcast(TYPE, b"second")
        for _ in range(4):
            clock.advance(10.0)
            await parts.blocks(1)

        ids = [event_id(TYPE, b"first"), event_id(TYPE, b"second")]
        assert await parts.ledger.vote_status(ids, KEY.public) == dict.fromkeys(ids, "voted")
        assert broadcaster.votes_sent == 1  # only "second"
        assert await parts.ledger.nonce(KEY.public) == 2
        assert _votes_rows(tmp_path / "ledger.sqlite", ids[0]) == [KEY.public]
        assert await parts.store.counts() == {VOTED: 2}
    finally:
        await parts.close()


async def test_proposer_injects_its_vote_into_its_own_block(solo: NodeParts) -> None:
    clock = FakeClock(1000.0)
    broadcaster = Broadcaster(solo.store, solo.ledger, solo.engine.submit, KEY, clock=clock)
    await broadcaster.start()
    wire(solo, broadcaster)
    solo.engine.injector = broadcaster.proposal_votes

    await solo.store.scoped("listener").broadcast(TYPE, b"fast")
    await solo.blocks(1)  # the vote rides in the block this node proposes: no mempool round trip
    assert await solo.status(TYPE, b"fast") == "confirmed"
    assert await resolved_count(solo, b"fast") == 1
    assert broadcaster.votes_sent == 1 and await solo.ledger.nonce(KEY.public) == 1
    assert solo.engine.mempool_size == 0  # and it was not also sent through the mempool

    await solo.store.scoped("listener").broadcast(TYPE, b"too big for the block")
    assert await broadcaster.proposal_votes(10) == []  # over the byte cap: left for the mempool
    async with broadcaster._lock:  # busy settling a commit: never waited for
        assert await broadcaster.proposal_votes(1 << 20) == []


class Recorder:
    """A submit that remembers every transaction it passes to the engine."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts
        self.sent: list[Tx] = []

    async def __call__(self, raw: bytes) -> TxResult:
        self.sent.append(Tx.decode(raw))
        return await self.parts.engine.submit(raw)

    def payloads(self) -> list[Vote | VoteIds]:
        return [p for tx in self.sent if isinstance(p := decode_payload(tx), Vote | VoteIds)]


async def test_a_validator_votes_by_id_for_what_another_introduced(tmp_path: Path) -> None:
    other = node_key(2)
    parts = await NodeParts.open(tmp_path, genesis((KEY, 1), (other, 1), (node_key(3), 1)), KEY)
    try:
        submit = Recorder(parts)
        broadcaster = Broadcaster(parts.store, parts.ledger, submit, KEY, clock=FakeClock(1000.0))
        await broadcaster.start()
        await _send_vote(parts, other, ((TYPE, b"seen by both"),))
        await parts.blocks(1)  # the other validator's vote carried the body
        wire(parts, broadcaster)
        await parts.store.scoped("listener").broadcast(TYPE, b"seen by both")
        await parts.blocks(3)
        rid = event_id(TYPE, b"seen by both")
        assert submit.payloads() == [VoteIds((rid,))]  # 32 bytes, not the body again
        assert await parts.status(TYPE, b"seen by both") == "confirmed"
        assert await resolved_count(parts, b"seen by both") == 1
        assert await parts.store.counts() == {}
    finally:
        await parts.close()


async def test_a_flood_is_introduced_by_shares_then_voted_by_id(tmp_path: Path) -> None:
    keys = sorted([KEY, node_key(2), node_key(3), node_key(4)], key=lambda k: k.public)
    parts = await NodeParts.open(tmp_path, genesis(*((k, 1) for k in keys)), KEY)
    try:
        clock, submit = FakeClock(1000.0), Recorder(parts)
        broadcaster = Broadcaster(
            parts.store, parts.ledger, submit, KEY, max_votes_per_tx=4, resend_timeout=5.0, clock=clock
        )
        await broadcaster.start()
        wire(parts, broadcaster)
        bodies = [f"flood-{i}".encode() for i in range(16)]  # more than one transaction carries
        await store_events(parts, bodies)
        me = keys.index(KEY)
        mine = {b for b in bodies if int.from_bytes(event_id(TYPE, b)[:8], "big") % 4 == me}
        assert 0 < len(mine) < len(bodies)

        await parts.blocks(1)
        introduced = {body for p in submit.payloads() if isinstance(p, Vote) for _, body in p.events}
        assert introduced == mine  # the others' shares wait for their introductions

        # Another validator introduces its share: this one votes for it by id.
        theirs = sorted(set(bodies) - mine)[:3]
        await _send_vote(parts, node_key(2), tuple((TYPE, b) for b in theirs))
        await parts.blocks(2)
        by_id = {i for p in submit.payloads() if isinstance(p, VoteIds) for i in p.ids}
        assert by_id == {event_id(TYPE, b) for b in theirs}

        # Nobody introduced the rest in time: this validator does.
        clock.advance(6.0)
        await parts.blocks(2)
        introduced = {body for p in submit.payloads() if isinstance(p, Vote) for _, body in p.events}
        assert introduced == set(bodies) - set(theirs)
        votes = [i for p in submit.payloads() for i in (p.ids if isinstance(p, VoteIds) else ())]
        votes += [event_id(*e) for p in submit.payloads() if isinstance(p, Vote) for e in p.events]
        assert sorted(votes) == sorted(event_id(TYPE, b) for b in bodies)  # each voted once
    finally:
        await parts.close()


async def test_several_vote_transactions_wait_in_the_mempool_at_once(solo: NodeParts) -> None:
    submit = Recorder(solo)
    broadcaster = Broadcaster(
        solo.store, solo.ledger, submit, KEY, max_votes_per_tx=2, max_inflight=3, clock=FakeClock(1.0)
    )
    await broadcaster.start()
    wire(solo, broadcaster)
    bodies = [f"event-{i}".encode() for i in range(7)]
    await store_events(solo, bodies)

    await solo.blocks(1)
    assert [tx.nonce for tx in submit.sent] == [0, 1, 2]  # three in flight, consecutive
    await solo.blocks(3)
    assert [tx.nonce for tx in submit.sent] == [0, 1, 2, 3]
    assert [await solo.status(TYPE, b) for b in bodies] == ["confirmed"] * 7
    assert await solo.store.counts() == {}


async def test_a_run_behind_a_lost_transaction_is_sent_again_from_the_ledgers_nonce(
    solo: NodeParts,
) -> None:
    sent: list[Tx] = []

    async def loses_the_first(raw: bytes) -> TxResult:
        sent.append(Tx.decode(raw))
        if len(sent) == 1:  # accepted, then lost: the two behind it wait on the gap
            return await solo.ledger.check_tx(raw)
        return await solo.engine.submit(raw)

    clock = FakeClock(0.0)
    broadcaster = Broadcaster(
        solo.store, solo.ledger, loses_the_first, KEY, max_votes_per_tx=1, max_inflight=3, clock=clock
    )
    await broadcaster.start()
    wire(solo, broadcaster)
    bodies = [b"a", b"b", b"c"]
    await store_events(solo, bodies)
    await solo.blocks(1)
    assert [tx.nonce for tx in sent] == [0, 1, 2]
    await solo.blocks(2)
    assert await solo.ledger.nonce(KEY.public) == 0  # stuck behind the gap
    assert len(sent) == 3

    clock.advance(6.0)
    await solo.blocks(4)
    assert sent[3].nonce == 0  # the run starts again where the ledger is
    assert [await solo.status(TYPE, b) for b in bodies] == ["confirmed"] * 3
    assert [await resolved_count(solo, b) for b in bodies] == [1] * 3
    assert await solo.store.counts() == {}
