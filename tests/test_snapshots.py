"""State-sync snapshots of the ledger (bridge/ledger/snapshots.py) and their ABCI side: two
ledgers with the same history make the same bytes; a restored ledger has the same app hash
and goes on agreeing; a chunk that lies, a snapshot of another state and an offer to a node
that already has blocks are refused; Commit lets CometBFT prune only below the newest
snapshot. (A node joining a running network this way: tests/network/test_state_sync.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_account import Account

from bridge.engines.abci.types import (
    ApplySnapshotChunkRequest,
    CommitRequest,
    ListSnapshotsRequest,
    LoadSnapshotChunkRequest,
    OfferSnapshotRequest,
)
from bridge.engines.cometbft import CometEngine, LedgerApplication
from bridge.ledger import Block, BlockResult, Ledger
from bridge.ledger.snapshots import CHUNK_BYTES, FORMAT, Apply, Offer, Snapshot, Snapshots, dump, restore
from tests.ledger_helpers import (
    Chains,
    address,
    credit_body,
    genesis,
    node_keys,
    register_credit,
)

KEYS = node_keys(4)


@pytest.fixture
async def chains(tmp_path: Path) -> AsyncIterator[Chains]:
    c = Chains(tmp_path)
    yield c
    await c.close_all()


def dumped(path: Path) -> bytes:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dump(db)


async def history(chains: Chains, name: str) -> Path:
    """A ledger with balances, pending and processed resolutions, nonces and kv state."""
    alice = Account.from_key(b"\x11" * 32)
    c = await chains.open(name, genesis(KEYS, [10, 10, 10, 10], accounts=[("0x" + address(alice).hex(), 50)]))
    for n in range(5):
        event = ("credit", credit_body(f"acct{n}", n + 1))
        await c.block(*[c.vote(k, event) for k in KEYS[: 3 if n % 2 else 1]])
    await c.block(c.transfer(alice, b"\x01" * 20, 20))
    return chains.directory / f"{name}.sqlite"


async def test_same_history_same_bytes_and_a_restore_agrees(chains: Chains, tmp_path: Path) -> None:
    register_credit("credit")
    one, two = await history(chains, "one"), await history(chains, "two")
    data = dumped(one)
    assert data == dumped(two)  # every node serves the same chunks
    [first, second] = chains.chains
    height, app_hash = restore(tmp_path / "restored.sqlite", data)
    assert (height, app_hash) == (first.ledger.height, first.ledger.app_hash)
    assert dumped(tmp_path / "restored.sqlite") == data
    # The restored ledger, adopted by an empty one, executes the next block like the others.
    empty = await chains.open("empty", genesis(KEYS, [10, 10, 10, 10]))
    await empty.ledger.adopt(tmp_path / "restored.sqlite")
    assert (empty.ledger.height, empty.ledger.app_hash) == (height, app_hash)
    event = ("credit", credit_body("late", 9))
    for c in (first, empty):
        c.nonces = dict(second.nonces)
        await c.block(*[c.vote(k, event) for k in KEYS[:3]])
    assert empty.ledger.app_hash == first.ledger.app_hash and await empty.ledger.balance("late") == 9


async def test_lying_chunks_other_states_and_busy_nodes_are_refused(chains: Chains, tmp_path: Path) -> None:
    register_credit("credit")
    data = dumped(await history(chains, "one"))
    [chain] = chains.chains
    good = Snapshot(chain.ledger.height, 1, hashlib.sha256(data).digest())
    joining = Snapshots(tmp_path / "snaps", 0)
    restored = tmp_path / "restored.sqlite"

    assert joining.offer(good, FORMAT, chain.ledger.app_hash, ledger_height=5) == Offer.ABORT
    assert joining.offer(good, FORMAT + 1, chain.ledger.app_hash, 0) == Offer.REJECT_FORMAT
    assert (
        joining.offer(Snapshot(good.height, 0, good.hash), FORMAT, chain.ledger.app_hash, 0) == Offer.REJECT
    )
    assert joining.apply(0, data, restored) == (Apply.ABORT, False)  # nothing accepted yet

    assert joining.offer(good, FORMAT, chain.ledger.app_hash, 0) == Offer.ACCEPT
    assert joining.apply(0, data[:-1] + b"\x00", restored) == (Apply.REJECT_SNAPSHOT, False)
    assert not restored.exists()
    assert joining.offer(good, FORMAT, b"\x07" * 32, 0) == Offer.ACCEPT  # the light client says otherwise
    assert joining.apply(0, data, restored) == (Apply.REJECT_SNAPSHOT, False)
    assert not restored.exists()
    garbage = b"not zlib"
    assert (
        joining.offer(Snapshot(1, 1, hashlib.sha256(garbage).digest()), FORMAT, b"\x07" * 32, 0)
        == Offer.ACCEPT
    )
    assert joining.apply(0, garbage, restored) == (Apply.REJECT_SNAPSHOT, False)

    two = Snapshot(good.height, 2, good.hash)
    assert joining.offer(two, FORMAT, chain.ledger.app_hash, 0) == Offer.ACCEPT
    assert joining.apply(1, data, restored) == (Apply.RETRY_SNAPSHOT, False)  # out of order
    half = len(data) // 2
    assert joining.apply(0, data[:half], restored) == (Apply.ACCEPT, False)
    assert joining.apply(1, data[half:], restored) == (Apply.ACCEPT, True)
    assert restore(tmp_path / "again.sqlite", data)[1] == chain.ledger.app_hash


async def test_the_abci_side_takes_serves_and_restores_snapshots(tmp_path: Path) -> None:
    register_credit("credit")
    ledger = await Ledger.open(tmp_path / "serving" / "ledger.sqlite")
    joiner = await Ledger.open(tmp_path / "joining" / "ledger.sqlite")
    gen = genesis(KEYS, [10, 10, 10, 10])
    try:
        await ledger.init_chain(gen)
        await joiner.init_chain(gen)
        serving = LedgerApplication(ledger, gen, _queue(), Snapshots(tmp_path / "snaps", 2), retain_blocks=3)
        retained, hashes = [], {}
        for _ in range(7):
            await ledger.finalize_block(_block(ledger))
            retained.append((await serving.commit(CommitRequest())).retain_height)
            hashes[ledger.height] = ledger.app_hash
            assert serving.snapshots is not None
            await serving.snapshots.wait()
        # Snapshots at 2, 4, 6 (two kept); pruning never passes the newest snapshot.
        assert retained == [0, 0, 0, 1, 2, 3, 4]
        listed = (await serving.list_snapshots(ListSnapshotsRequest())).snapshots
        assert [(s.height, s.format, s.chunks) for s in listed] == [(4, FORMAT, 1), (6, FORMAT, 1)]
        chunk = (await serving.load_snapshot_chunk(LoadSnapshotChunkRequest(6, FORMAT, 0))).chunk
        assert 0 < len(chunk) <= CHUNK_BYTES
        assert (await serving.load_snapshot_chunk(LoadSnapshotChunkRequest(5, FORMAT, 0))).chunk == b""

        joining = LedgerApplication(joiner, gen, _queue(), Snapshots(tmp_path / "joiner-snaps", 0))
        offer = OfferSnapshotRequest(listed[1], app_hash=hashes[6])
        assert (await joining.offer_snapshot(offer)).result == Offer.ACCEPT
        assert (
            await joining.apply_snapshot_chunk(ApplySnapshotChunkRequest(0, chunk))
        ).result == Apply.ACCEPT
        assert (joiner.height, joiner.app_hash) == (6, hashes[6])
        assert (await joining.offer_snapshot(offer)).result == Offer.ABORT  # it has a state now
    finally:
        await ledger.close()
        await joiner.close()


def _queue() -> asyncio.Queue[BlockResult]:
    return asyncio.Queue()


def _block(ledger: Ledger) -> Block:
    height = ledger.height + 1
    return Block(height, height * 10**9, min(ledger.validators), ())


async def test_the_trust_point_waits_for_a_first_block(tmp_path: Path) -> None:
    """`/v1/network?state_sync=1` offers none while CometBFT has no block (its RPC answers
    `"block": null` then), and the latest block's height and hash after."""
    answers: list[dict[str, Any]] = [{"block": None, "block_id": {"hash": ""}}]

    async def rpc(request: web.Request) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": answers[-1]})

    app = web.Application()
    app.router.add_post("/", rpc)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ledger = await Ledger.open(tmp_path / "ledger.sqlite")
    engine = CometEngine(ledger, genesis(KEYS), binary="", home=tmp_path, rpc_laddr=f"tcp://127.0.0.1:{port}")
    try:
        assert await engine.trust_point() is None
        answers.append({"block": {"header": {"height": "42"}}, "block_id": {"hash": "AB" * 32}})
        assert await engine.trust_point() == {
            "rpc": f"http://127.0.0.1:{port}",
            "trust_height": 42,
            "trust_hash": "AB" * 32,
        }
    finally:
        if engine._session is not None:
            await engine._session.close()
        await ledger.close()
        await runner.cleanup()
