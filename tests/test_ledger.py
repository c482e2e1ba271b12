"""The ledger on a real SQLite file: votes, resolutions, expiry, check_tx, transfers,
validator governance and crash recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

import resolutions
from bridge.encoding import event_id
from bridge.errors import TxCode
from bridge.keys import NodeKey, account_id
from bridge.ledger import Block, Genesis, governance
from bridge.ledger.types import Movement
from bridge.txs import Transfer, Tx, Vote, VoteIds
from resolutions import ResolutionConfig, ResolveContext, register_resolution
from tests.ledger_helpers import (
    CHAIN_ID,
    Chain,
    Chains,
    address,
    credit_body,
    eth_account_id,
    genesis,
    new_eth_account,
    node_keys,
    register_credit,
)

KEYS = node_keys(4)
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


@pytest.fixture
async def chains(tmp_path: Path) -> AsyncIterator[Chains]:
    pool = Chains(tmp_path)
    yield pool
    await pool.close_all()


@pytest.fixture
async def chain(chains: Chains) -> Chain:
    return await chains.open("ledger", genesis(KEYS))


def statuses(result_resolved: tuple[tuple[bytes, str, str], ...]) -> dict[bytes, str]:
    return {rid: status for rid, _, status in result_resolved}


async def pending(chain: Chain) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in await chain.ledger.list_resolutions("pending")}  # type: ignore[misc]


# -- genesis -- #


async def test_init_chain_sets_state_and_is_idempotent(chains: Chains) -> None:
    gen = genesis(KEYS, [1, 2, 3, 4], [(ALICE, 50)])
    ledger = (await chains.open("l")).ledger
    assert await ledger.info() == (0, b"")
    app_hash = await ledger.init_chain(gen)
    assert len(app_hash) == 32
    assert await ledger.info() == (0, app_hash)
    assert ledger.chain_id == CHAIN_ID
    assert ledger.validators == dict(gen.validators)
    assert await ledger.balance(ALICE) == 50
    assert await ledger.init_chain(gen) == app_hash
    with pytest.raises(ValueError, match="belongs to chain"):
        await ledger.init_chain(Genesis("other", gen.validators))

    other = (await chains.open("other")).ledger
    assert await other.init_chain(genesis(KEYS, [1, 2, 3, 5], [(ALICE, 50)])) != app_hash


async def test_block_height_must_follow(chain: Chain) -> None:
    with pytest.raises(ValueError, match="expected block 1"):
        await chain.ledger.finalize_block(Block(2, 0, KEYS[0].public))
    with pytest.raises(RuntimeError, match="commit without"):
        await chain.ledger.commit()


# -- votes and resolutions -- #


async def test_three_of_four_confirm_and_resolve_once(chain: Chain) -> None:
    calls = register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 100))
    rid = event_id(*event)

    r1 = await chain.block(chain.vote(KEYS[0], event), chain.vote(KEYS[1], event))
    assert all(t.ok for t in r1.tx_results)
    assert r1.resolved == ()
    row = (await pending(chain))[rid.hex()]
    assert row["approved_power"] == 2
    assert row["required_power"] == 3
    assert row["votes"] == 2
    assert row["proposer"] == KEYS[0].public.hex()
    assert await chain.ledger.balance(ALICE) == 0
    assert calls == []

    r2 = await chain.block(chain.vote(KEYS[2], event))
    assert r2.tx_results[0].ok
    assert r2.resolved == ((rid, "test_credit", "confirmed"),)
    assert await chain.ledger.balance(ALICE) == 100
    assert len(calls) == 1
    res = calls[0]
    assert res.id == rid and res.type == "test_credit" and res.body == event[1]
    assert res.approved_power == 3
    assert res.voters == tuple(sorted(k.public for k in KEYS[:3]))
    assert res.proposer == KEYS[0].public
    assert res.expiration_height == 1 + 14400
    assert await chain.ledger.kv_items("test_credit") == [(b"resolved:" + rid, (2).to_bytes(8, "big"))]
    assert await pending(chain) == {}
    assert await chain.ledger.vote_status([rid], KEYS[3].public) == {rid: "processed"}

    # The fourth, late vote is accepted but changes nothing but the voter's nonce.
    hash_before = chain.ledger.app_hash
    r3 = await chain.block(chain.vote(KEYS[3], event))
    assert r3.tx_results[0].ok
    assert r3.resolved == ()
    assert len(calls) == 1
    assert await chain.ledger.balance(ALICE) == 100
    assert await chain.ledger.nonce(KEYS[3].public) == 1
    assert chain.ledger.app_hash != hash_before
    processed = await chain.ledger.list_resolutions("confirmed")
    assert [(p["id"], p["height"]) for p in processed] == [(rid.hex(), 2)]


async def test_vote_status_reports_own_vote(chain: Chain) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 1))
    rid = event_id(*event)
    await chain.block(chain.vote(KEYS[0], event))
    assert await chain.ledger.vote_status([rid], KEYS[0].public) == {rid: "voted"}
    assert await chain.ledger.vote_status([rid], KEYS[1].public) == {rid: "open"}
    other = event_id("test_credit", credit_body(ALICE, 2))
    assert await chain.ledger.vote_status([other], KEYS[1].public) == {other: "absent"}


async def test_votes_by_id_count_as_votes_with_the_body(chains: Chains) -> None:
    """The same votes, the later ones by id: the same state, block by block."""
    register_credit("test_credit")
    events = [("test_credit", credit_body(ALICE, n)) for n in (1, 2)]
    ids = [event_id(*e) for e in events]
    by_body = await chains.open("by_body", genesis(KEYS))
    by_id = await chains.open("by_id", genesis(KEYS))
    first = await by_body.block(by_body.vote(KEYS[0], *events))
    assert first.app_hash == (await by_id.block(by_id.vote(KEYS[0], *events))).app_hash
    for key in KEYS[1:3]:
        body = await by_body.block(by_body.vote(key, *events))
        vote_ids = await by_id.block(by_id.tx(key, "vote_ids", VoteIds(tuple(ids)).encode()))
        assert vote_ids.tx_results[0].ok, vote_ids.tx_results[0].log
        assert vote_ids.app_hash == body.app_hash
        assert vote_ids.resolved == body.resolved
    assert statuses(vote_ids.resolved) == dict.fromkeys(ids, "confirmed")
    assert await by_id.ledger.balance(ALICE) == 3


async def test_a_vote_by_id_counts_only_for_an_open_resolution(chain: Chain) -> None:
    register_credit("test_credit")
    opened = ("test_credit", credit_body(ALICE, 1))
    unknown = event_id("test_credit", credit_body(ALICE, 2))
    await chain.block(chain.vote(KEYS[0], opened))
    [candidate] = node_keys(1, offset=10)
    assert (await chain.block(chain.join(candidate, 1))).tx_results[0].ok
    request = event_id(governance.JOIN, governance.join_body(candidate.public, 1, 0))
    ids = [unknown, event_id(*opened), event_id(*opened), request]
    result = await chain.block(chain.tx(KEYS[1], "vote_ids", VoteIds(tuple(ids)).encode()))
    assert result.tx_results[0].ok  # the unknown id counts nothing; the transaction is fine
    assert await chain.ledger.nonce(KEYS[1].public) == 1
    assert await chain.ledger.vote_status([unknown], KEYS[1].public) == {unknown: "absent"}
    rows = await pending(chain)
    assert rows[event_id(*opened).hex()]["votes"] == 2  # once, however many times it is listed
    assert rows[request.hex()]["votes"] == 0  # a join is approved with approve, not by id
    await chain.block(chain.tx(KEYS[2], "vote_ids", VoteIds((event_id(*opened),)).encode()))
    assert await chain.ledger.balance(ALICE) == 1
    # Processed since: a late vote by id changes nothing but the voter's nonce.
    late = await chain.block(chain.tx(KEYS[3], "vote_ids", VoteIds((event_id(*opened),)).encode()))
    assert late.tx_results[0].ok and late.resolved == ()
    assert await chain.ledger.balance(ALICE) == 1


async def test_failing_resolve_rolls_back_and_does_not_stop_the_block(chain: Chain) -> None:
    boom_calls = register_credit("test_boom", fail_after_write=True)
    ok_calls = register_credit("test_credit")
    boom = ("test_boom", credit_body(ALICE, 70))
    ok = ("test_credit", credit_body(BOB, 30))
    boom_id, ok_id = event_id(*boom), event_id(*ok)

    result = await chain.block(*(chain.vote(k, boom, ok) for k in KEYS[:3]))
    assert all(t.ok for t in result.tx_results)
    assert statuses(result.resolved) == {boom_id: "failed", ok_id: "confirmed"}
    assert len(boom_calls) == 1 and len(ok_calls) == 1
    # The failed resolve credited and wrote kv before raising: both were rolled back.
    assert await chain.ledger.balance(ALICE) == 0
    assert await chain.ledger.kv_items("test_boom") == []
    assert await chain.ledger.balance(BOB) == 30
    assert await chain.ledger.kv_items("test_credit") == [(b"resolved:" + ok_id, (1).to_bytes(8, "big"))]

    listed = {r["id"]: r for r in await chain.ledger.list_resolutions()}
    assert listed[boom_id.hex()]["status"] == "failed"
    assert listed[boom_id.hex()]["error"] == "RuntimeError"
    assert listed[ok_id.hex()]["status"] == "confirmed"
    assert listed[ok_id.hex()]["error"] == ""
    failed = await chain.ledger.list_resolutions("failed")
    assert [r["id"] for r in failed] == [boom_id.hex()]

    # A failed resolution is processed: voting it again does not run it again.
    later = await chain.block(chain.vote(KEYS[3], boom))
    assert later.tx_results[0].ok and later.resolved == ()
    assert len(boom_calls) == 1


async def test_failed_resolve_leaves_no_trace_in_the_app_hash(chains: Chains) -> None:
    """Rolled-back writes must leave the app hash too: a resolve that wrote before raising
    gives the same hash as one that raised at once."""

    async def raise_at_once(ctx: ResolveContext) -> None:
        raise RuntimeError("no writes")

    event = ("test_x", credit_body(ALICE, 5))
    hashes = []
    for name, writes_first in (("a", True), ("b", False)):
        resolutions._registry.pop("test_x", None)
        if writes_first:
            calls = register_credit("test_x", fail_after_write=True)
        else:
            register_resolution("test_x", ResolutionConfig(resolve=raise_at_once))
        c = await chains.open(f"{name}", genesis(KEYS))
        result = await c.block(*(c.vote(k, event) for k in KEYS[:3]))
        assert result.resolved == ((event_id(*event), "test_x", "failed"),)
        hashes.append(result.app_hash)
        await c.close()
    assert len(calls) == 1
    assert hashes[0] == hashes[1]


async def test_expired_resolution_can_be_voted_again(chain: Chain) -> None:
    calls = register_credit("test_short", expiration_period=3)
    event = ("test_short", credit_body(ALICE, 9))
    rid = event_id(*event)

    await chain.block(chain.vote(KEYS[0], event))  # height 1: expires at 4
    assert (await pending(chain))[rid.hex()]["expiration_height"] == 4
    for height in (2, 3):
        result = await chain.block()
        assert result.resolved == ()
        assert rid.hex() in await pending(chain), height
    result = await chain.block()  # height 4
    assert result.resolved == ((rid, "test_short", "expired"),)
    assert await pending(chain) == {}
    assert await chain.ledger.list_resolutions() == []  # expired ones are not processed
    assert await chain.ledger.vote_status([rid], KEYS[0].public) == {rid: "absent"}

    # The old vote of KEYS[0] is gone with the expired resolution: two new votes are 2 of 4.
    result = await chain.block(chain.vote(KEYS[1], event), chain.vote(KEYS[2], event))
    assert all(t.ok for t in result.tx_results) and result.resolved == ()
    row = (await pending(chain))[rid.hex()]
    assert row["approved_power"] == 2
    assert row["expiration_height"] == 5 + 3
    assert row["proposer"] == KEYS[1].public.hex()

    result = await chain.block(chain.vote(KEYS[0], event))
    assert result.resolved == ((rid, "test_short", "confirmed"),)
    assert len(calls) == 1
    assert await chain.ledger.balance(ALICE) == 9


async def test_vote_at_expiration_height_still_confirms(chain: Chain) -> None:
    register_credit("test_short", expiration_period=2)
    event = ("test_short", credit_body(ALICE, 4))
    rid = event_id(*event)
    await chain.block(chain.vote(KEYS[0], event), chain.vote(KEYS[1], event))  # expires at 3
    await chain.block()
    result = await chain.block(chain.vote(KEYS[2], event))  # height 3
    assert result.resolved == ((rid, "test_short", "confirmed"),)
    assert await chain.ledger.balance(ALICE) == 4


async def test_same_validator_voting_twice_counts_once(chain: Chain) -> None:
    calls = register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 5))
    rid = event_id(*event)

    result = await chain.block(chain.vote(KEYS[0], event, event), chain.vote(KEYS[0], event))
    assert all(t.ok for t in result.tx_results)
    result = await chain.block(chain.vote(KEYS[0], event), chain.vote(KEYS[1], event))
    assert result.resolved == ()
    row = (await pending(chain))[rid.hex()]
    assert row["approved_power"] == 2 and row["votes"] == 2
    assert calls == []
    assert await chain.ledger.nonce(KEYS[0].public) == 3

    result = await chain.block(chain.vote(KEYS[2], event))
    assert result.resolved == ((rid, "test_credit", "confirmed"),)
    assert calls[0].voters == tuple(sorted(k.public for k in KEYS[:3]))
    assert await chain.ledger.balance(ALICE) == 5


async def test_weighted_power_confirms_with_one_heavy_voter(chains: Chains) -> None:
    keys = node_keys(3)
    c = await chains.open("w", genesis(keys, [1, 10, 1]))
    register_credit("test_credit")
    light = ("test_credit", credit_body(ALICE, 1))
    heavy = ("test_credit", credit_body(BOB, 2))
    result = await c.block(c.vote(keys[0], light), c.vote(keys[2], light), c.vote(keys[1], heavy))
    assert statuses(result.resolved) == {event_id(*heavy): "confirmed"}
    assert await c.ledger.balance(BOB) == 2 and await c.ledger.balance(ALICE) == 0
    await c.close()


# -- check_tx -- #


async def test_check_tx_rejections_leave_state_unchanged(chain: Chain) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 1))
    user = new_eth_account()
    poor = new_eth_account()
    used = chain.vote(KEYS[0], event)
    await chain.block(used)
    info = await chain.ledger.info()

    outsider = NodeKey.generate()
    vote = Vote((event,)).encode()
    other_chain = Tx("other-chain", "vote", KEYS[1].public, 0, vote).sign_ed25519(KEYS[1])
    signed = Tx(CHAIN_ID, "vote", KEYS[1].public, 0, vote).sign_ed25519(KEYS[1])
    bad_signature = replace(signed, signature=bytes([signed.signature[0] ^ 1]) + signed.signature[1:])
    cases = {
        "wrong chain": (other_chain.encode(), TxCode.WRONG_CHAIN),
        "bad signature": (bad_signature.encode(), TxCode.BAD_SIGNATURE),
        "replayed nonce": (used, TxCode.BAD_NONCE),
        "not a validator": (chain.vote(outsider, event), TxCode.NOT_VALIDATOR),
        "unknown resolution": (chain.vote(KEYS[1], ("no_such_type", b"x")), TxCode.UNKNOWN_TYPE),
        "above balance": (chain.transfer(poor, address(user), 1), TxCode.INSUFFICIENT_BALANCE),
        "malformed": (b"\x01garbage", TxCode.MALFORMED),
        "bad payload": (chain.tx(KEYS[1], "join", b"\x00"), TxCode.INVALID_PAYLOAD),
        "validator joins": (chain.join(KEYS[1], 5), TxCode.INVALID_PAYLOAD),
        # A user signs only transfers and withdrawals: no typed data exists for anything else.
        "user removes": (
            Tx(CHAIN_ID, "remove", address(user), 0, KEYS[1].public, bytes(64) + b"\x1b").encode(),
            TxCode.BAD_SIGNATURE,
        ),
    }
    for name, (raw, code) in cases.items():
        result = await chain.ledger.check_tx(raw)
        assert result.code == code, (name, result)
        assert result.log, name
    assert await chain.ledger.info() == info
    assert chain.ledger.height == 1
    listed = await chain.ledger.list_resolutions()
    assert [(r["id"], r["approved_power"]) for r in listed] == [(event_id(*event).hex(), 1)]
    assert await chain.ledger.nonce(KEYS[1].public) == 0


async def test_check_tx_accepts_valid_and_future_nonces(chain: Chain) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 1))
    assert (await chain.ledger.check_tx(chain.vote(KEYS[0], event))).ok
    future = chain.tx(KEYS[1], "vote", Vote((event,)).encode(), nonce=5)
    assert (await chain.ledger.check_tx(future)).ok
    # ...but a block does not accept a nonce gap.
    result = await chain.block(future)
    assert result.tx_results[0].code == TxCode.BAD_NONCE
    assert await chain.ledger.nonce(KEYS[1].public) == 0


async def test_check_tx_sees_committed_state_only(chain: Chain) -> None:
    register_credit("test_credit")
    raw = chain.vote(KEYS[0], ("test_credit", credit_body(ALICE, 1)))
    await chain.block(raw, commit=False)
    assert (await chain.ledger.check_tx(raw)).ok  # nonce 0 is not used yet in committed state
    await chain.ledger.commit()
    assert (await chain.ledger.check_tx(raw)).code == TxCode.BAD_NONCE


async def test_delivered_failures_consume_nonce_and_change_nothing_else(chain: Chain) -> None:
    register_credit("test_credit")
    outsider = NodeKey.generate()
    result = await chain.block(
        chain.vote(outsider, ("test_credit", credit_body(ALICE, 1))),
        chain.vote(KEYS[0], ("no_such_type", b"")),
        chain.tx(KEYS[0], "approve", b"\x00" * 32),
    )
    assert [t.code for t in result.tx_results] == [
        TxCode.NOT_VALIDATOR,
        TxCode.UNKNOWN_TYPE,
        TxCode.INVALID_PAYLOAD,
    ]
    assert await chain.ledger.nonce(outsider.public) == 1
    assert await chain.ledger.nonce(KEYS[0].public) == 2
    assert await chain.ledger.list_resolutions() == []


# -- transfers -- #


async def test_transfers_between_genesis_accounts(chains: Chains) -> None:
    alice, bob = new_eth_account(), new_eth_account()
    accounts = [(eth_account_id(alice), 1000), (eth_account_id(bob), 10)]
    c = await chains.open("t", genesis(KEYS, accounts=accounts))
    assert await c.ledger.balance(eth_account_id(alice)) == 1000

    raw = c.transfer(alice, address(bob), 300)
    assert (await c.ledger.check_tx(raw)).ok
    result = await c.block(raw)
    assert result.tx_results[0].ok, result.tx_results[0].log
    assert await c.ledger.balance(eth_account_id(alice)) == 700
    assert await c.ledger.balance(eth_account_id(bob)) == 310
    assert await c.ledger.nonce(address(alice)) == 1

    # Two more in one block, then one above the balance: it fails but consumes its nonce.
    result = await c.block(
        c.transfer(alice, address(bob), 200),
        c.transfer(bob, KEYS[0].public, 510),
        c.transfer(alice, address(bob), 501),
    )
    assert [t.code for t in result.tx_results] == [TxCode.OK, TxCode.OK, TxCode.INSUFFICIENT_BALANCE]
    assert await c.ledger.balance(eth_account_id(alice)) == 500
    assert await c.ledger.balance(eth_account_id(bob)) == 0
    assert await c.ledger.balance(account_id(KEYS[0].public)) == 510
    assert await c.ledger.nonce(address(alice)) == 3
    assert await c.ledger.nonce(address(bob)) == 1
    assert (await c.ledger.check_tx(c.transfer(bob, address(alice), 1))).code == TxCode.INSUFFICIENT_BALANCE
    await c.close()


async def test_transfer_signed_by_someone_else_is_rejected(chains: Chains) -> None:
    alice, mallory = new_eth_account(), new_eth_account()
    c = await chains.open("t", genesis(KEYS, accounts=[(eth_account_id(alice), 100)]))
    forged = Tx(CHAIN_ID, "transfer", address(alice), 0, Transfer(address(mallory), 100).encode())
    raw = forged.sign_eth(mallory.key).encode()
    assert (await c.ledger.check_tx(raw)).code == TxCode.BAD_SIGNATURE
    assert not await c.ledger.process_proposal([raw])
    result = await c.block(raw)
    assert result.tx_results[0].code == TxCode.BAD_SIGNATURE
    assert await c.ledger.balance(eth_account_id(alice)) == 100
    assert await c.ledger.nonce(address(alice)) == 0
    await c.close()


# -- validator governance -- #


async def test_join_approved_by_two_thirds(chains: Chains) -> None:
    c = await chains.open("g", genesis(KEYS, [10, 10, 10, 10]))
    candidate = node_keys(1, offset=50)[0]
    join = c.join(candidate, 5)
    assert (await c.ledger.check_tx(join)).ok
    result = await c.block(join)
    assert result.tx_results[0].ok
    rid = event_id(governance.JOIN, governance.join_body(candidate.public, 5, 0))
    row = (await pending(c))[rid.hex()]
    assert row["type"] == governance.JOIN
    assert row["proposer"] == candidate.public.hex()
    assert row["approved_power"] == 0

    result = await c.block(c.tx(KEYS[0], "approve", rid), c.tx(KEYS[1], "approve", rid))
    assert all(t.ok for t in result.tx_results)
    assert result.validator_updates == () and result.resolved == ()
    assert candidate.public not in c.ledger.validators
    early_vote = c.vote(candidate, (governance.JOIN, b""), nonce=1)
    assert (await c.ledger.check_tx(early_vote)).code == TxCode.NOT_VALIDATOR

    result = await c.block(c.tx(KEYS[2], "approve", rid))
    assert result.resolved == ((rid, governance.JOIN, "confirmed"),)
    assert result.validator_updates == ((candidate.public, 5),)
    assert c.ledger.validators[candidate.public] == 5
    assert len(c.ledger.validators) == 5
    # The new validator can now vote.
    register_credit("test_credit")
    assert (await c.ledger.check_tx(c.vote(candidate, ("test_credit", credit_body(ALICE, 1)), nonce=1))).ok
    # A late approval finds no pending request; a second join by a sitting validator is refused.
    late, rejoin = c.tx(KEYS[3], "approve", rid), c.join(candidate, 7, nonce=1)
    assert (await c.ledger.check_tx(rejoin)).code == TxCode.INVALID_PAYLOAD
    result = await c.block(late, rejoin)
    assert [t.code for t in result.tx_results] == [TxCode.INVALID_PAYLOAD, TxCode.INVALID_PAYLOAD]
    assert result.validator_updates == ()
    assert c.ledger.validators[candidate.public] == 5
    await c.close()


async def test_approve_of_unknown_or_non_governance_id_fails(chain: Chain) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 1))
    await chain.block(chain.vote(KEYS[0], event))
    result = await chain.block(
        chain.tx(KEYS[1], "approve", event_id(*event)), chain.tx(KEYS[1], "approve", b"\x01" * 32)
    )
    assert [t.code for t in result.tx_results] == [TxCode.INVALID_PAYLOAD] * 2
    assert (await pending(chain))[event_id(*event).hex()]["approved_power"] == 1


async def test_remove_by_two_thirds_and_recheck_of_pending(chain: Chain) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 3))
    rid = event_id(*event)
    target = KEYS[3]
    # 2 of 4 votes: pending. Once the target is removed, 2 of 3 passes 2/3.
    await chain.block(chain.vote(KEYS[0], event), chain.vote(KEYS[1], event))
    assert rid.hex() in await pending(chain)

    result = await chain.block(chain.tx(KEYS[0], "remove", target.public))
    result = await chain.block(chain.tx(KEYS[1], "remove", target.public))
    assert result.validator_updates == () and target.public in chain.ledger.validators
    result = await chain.block(chain.tx(KEYS[2], "remove", target.public))
    remove_id = event_id(governance.REMOVE, governance.remove_body(target.public, 0))
    assert (remove_id, governance.REMOVE, "confirmed") in result.resolved
    assert result.validator_updates == ((target.public, 0),)
    assert target.public not in chain.ledger.validators
    assert len(chain.ledger.validators) == 3
    assert (await chain.ledger.check_tx(chain.vote(target, event))).code == TxCode.NOT_VALIDATOR

    result = await chain.block()
    assert result.resolved == ((rid, "test_credit", "confirmed"),)
    assert await chain.ledger.balance(ALICE) == 3

    # Removing a key that is not a validator fails.
    result = await chain.block(chain.tx(KEYS[0], "remove", target.public))
    assert result.tx_results[0].code == TxCode.INVALID_PAYLOAD


async def test_leave(chain: Chain) -> None:
    result = await chain.block(chain.tx(KEYS[3], "leave"))
    assert result.tx_results[0].ok
    assert result.validator_updates == ((KEYS[3].public, 0),)
    assert set(chain.ledger.validators) == {k.public for k in KEYS[:3]}
    assert (await chain.ledger.check_tx(chain.tx(KEYS[3], "leave"))).code == TxCode.NOT_VALIDATOR


async def test_last_validator_cannot_leave(chains: Chains) -> None:
    keys = node_keys(2)
    c = await chains.open("l", genesis(keys))
    result = await c.block(c.tx(keys[0], "leave"), c.tx(keys[1], "leave"))
    assert result.tx_results[0].ok
    assert result.tx_results[1].code == TxCode.INVALID_PAYLOAD
    assert "last validator" in result.tx_results[1].log
    assert result.validator_updates == ((keys[0].public, 0),)
    assert c.ledger.validators == {keys[1].public: 1}
    result = await c.block(c.tx(keys[1], "leave"))
    assert result.tx_results[0].code == TxCode.INVALID_PAYLOAD
    assert result.validator_updates == ()
    assert c.ledger.validators == {keys[1].public: 1}
    await c.close()


async def test_removing_the_last_validator_fails_as_a_resolution(chains: Chains) -> None:
    keys = node_keys(1)
    c = await chains.open("one", genesis(keys))
    result = await c.block(c.tx(keys[0], "remove", keys[0].public))
    assert [s for _, _, s in result.resolved] == ["failed"]
    assert result.validator_updates == ()
    assert c.ledger.validators == {keys[0].public: 1}
    await c.close()


async def test_validator_can_leave_and_join_again(chain: Chain) -> None:
    leaver = KEYS[3]
    await chain.block(chain.tx(leaver, "leave"))
    result = await chain.block(chain.join(leaver, 2))  # nonce 1
    assert result.tx_results[0].ok
    rid = event_id(governance.JOIN, governance.join_body(leaver.public, 2, 1))
    result = await chain.block(*(chain.tx(k, "approve", rid) for k in KEYS[:2]))
    assert result.validator_updates == ((leaver.public, 2),)
    assert chain.ledger.validators[leaver.public] == 2


# -- crash recovery -- #


async def test_crash_between_finalize_and_commit(chains: Chains) -> None:
    register_credit("test_credit")
    event = ("test_credit", credit_body(ALICE, 8))
    c = await chains.open("crash", genesis(KEYS))
    block1 = Block(1, 10**9, KEYS[0].public, (c.vote(KEYS[0], event), c.vote(KEYS[1], event)))
    await c.ledger.finalize_block(block1)
    await c.ledger.commit()
    committed = await c.ledger.info()
    assert committed[0] == 1

    txs = (c.vote(KEYS[2], event), c.tx(KEYS[3], "leave"))
    block = Block(2, 2 * 10**9, KEYS[0].public, txs)
    first = await c.ledger.finalize_block(block)
    assert [s for _, _, s in first.resolved] == ["confirmed"]
    await c.close()  # crash: no commit

    ledger = (await chains.open("crash")).ledger
    assert await ledger.info() == committed
    assert await ledger.balance(ALICE) == 0
    assert set(ledger.validators) == {k.public for k in KEYS}
    assert await ledger.nonce(KEYS[2].public) == 0
    again = await ledger.finalize_block(block)
    assert again == first
    # Finalizing the same block twice without commit (an engine retry) is also stable.
    assert (await ledger.finalize_block(block)).app_hash == first.app_hash
    await ledger.commit()
    assert await ledger.info() == (2, first.app_hash)
    assert await ledger.balance(ALICE) == 8

    # A ledger that never crashed computes the same hashes.
    clean = (await chains.open("clean", genesis(KEYS))).ledger
    for b in (block1, block):
        result = await clean.finalize_block(b)
        await clean.commit()
    assert result == first
    assert await clean.info() == (2, first.app_hash)


async def test_governance_types_cannot_be_voted_directly(chain: Chain) -> None:
    """A join request must come from the candidate's own signed ``join``: otherwise one
    validator could put a key nobody proved to hold up for approval."""
    stranger = node_keys(1, offset=80)[0]
    forged = (governance.JOIN, governance.join_body(stranger.public, 100, 0))
    rid = event_id(*forged)
    raw = chain.vote(KEYS[0], forged)
    assert (await chain.ledger.check_tx(raw)).code == TxCode.INVALID_PAYLOAD
    result = await chain.block(raw)
    assert result.tx_results[0].code == TxCode.INVALID_PAYLOAD
    assert await pending(chain) == {}
    # Nothing to approve: the remaining validators cannot complete it either.
    result = await chain.block(*(chain.tx(k, "approve", rid) for k in KEYS[1:3]))
    assert [t.code for t in result.tx_results] == [TxCode.INVALID_PAYLOAD] * 2
    assert stranger.public not in chain.ledger.validators
    removal = (governance.REMOVE, governance.remove_body(KEYS[3].public, 0))
    assert (await chain.ledger.check_tx(chain.vote(KEYS[0], removal))).code == TxCode.INVALID_PAYLOAD


async def test_stale_removal_does_not_remove_a_new_tenure(chains: Chains) -> None:
    a, b, c_, d = KEYS
    c = await chains.open("tenure", genesis(KEYS, [1, 1, 3, 1]))
    # A and B ask to remove D (tenure since 0): 2 of 6, short of 4.
    await c.block(c.tx(a, "remove", d.public), c.tx(b, "remove", d.public))
    # D leaves (2 of 5, still short) and joins again, approved by C and A (4 of 5).
    await c.block(c.tx(d, "leave"))
    await c.block(c.join(d, 1))
    rid = event_id(governance.JOIN, governance.join_body(d.public, 1, 1))
    result = await c.block(c.tx(c_, "approve", rid), c.tx(a, "approve", rid))
    assert result.validator_updates == ((d.public, 1),)
    # C leaves: the old request (A and B, 2 of 3) now passes, though it was about D's
    # previous tenure and nobody asked to remove the new one.
    result = await c.block(c.tx(c_, "leave"))
    result = await c.block()
    assert d.public in c.ledger.validators
    assert await pending(c) == {}  # the old request ended with the tenure it was about
    # A removal of the new tenure still works.
    result = await c.block(c.tx(a, "remove", d.public), c.tx(b, "remove", d.public))
    assert result.validator_updates == ((d.public, 0),)


# -- a resolution type changed or retired at a height (a hard fork) -- #


async def test_a_type_is_added_updated_and_retired_at_its_heights(chains: Chains) -> None:
    """Before ``from_height`` the type's votes are refused; from the update on, the new
    ``resolve`` runs (and not the old one); at the retirement its pending resolutions expire
    and its votes are refused again, in check_tx and in a block. Two nodes agree."""
    name = "test_forked"

    def config(factor: int) -> ResolutionConfig:
        async def resolve(ctx: ResolveContext) -> None:
            body = ctx.resolution.body
            await ctx.app.credit(body[:42].decode(), factor * int(body[42:]))

        return ResolutionConfig(resolve=resolve)

    register_resolution(name, config(1), from_height=2)
    resolutions.update_resolution(name, config(10), at_height=4)
    resolutions.retire_resolution(name, at_height=6)

    def event(amount: int) -> tuple[str, bytes]:
        return (name, f"{ALICE}{amount}".encode())

    nodes = [await chains.open(f"n{i}", genesis(KEYS)) for i in range(2)]
    log: list[list[object]] = [[], []]
    for c, seen in zip(nodes, log, strict=True):
        early = c.vote(KEYS[0], event(1))
        assert (await c.ledger.check_tx(early)).code == TxCode.UNKNOWN_TYPE  # block 1 is next
        r1 = await c.block(early)  # height 1
        assert r1.tx_results[0].code == TxCode.UNKNOWN_TYPE
        r2 = await c.block(*(c.vote(k, event(2)) for k in KEYS[:3]))  # height 2: the old rule

        r3 = await c.block(c.vote(KEYS[0], event(3)), c.vote(KEYS[1], event(5)))  # pending
        r4 = await c.block(*(c.vote(k, event(3)) for k in KEYS[1:3]))  # height 4: the new rule
        r5 = await c.block(c.vote(KEYS[2], event(7)))  # height 5: pending, not confirmed
        assert await c.ledger.balance(ALICE) == 2 + 10 * 3
        late = c.vote(KEYS[3], event(5))
        assert (await c.ledger.check_tx(late)).code == TxCode.UNKNOWN_TYPE  # block 6 is next
        r6 = await c.block(late)  # height 6: retired
        assert r6.tx_results[0].code == TxCode.UNKNOWN_TYPE
        assert statuses(r2.resolved) == {event_id(*event(2)): "confirmed"}
        assert r3.resolved == () and r5.resolved == ()
        assert statuses(r4.resolved) == {event_id(*event(3)): "confirmed"}
        assert statuses(r6.resolved) == {
            event_id(*event(5)): "expired",
            event_id(*event(7)): "expired",
        }
        assert await pending(c) == {}
        assert await c.ledger.balance(ALICE) == 32
        seen += [r.app_hash for r in (r1, r2, r3, r4, r5, r6)]
    assert log[0] == log[1]


async def test_a_block_reports_its_balance_changes_senders_and_new_resolutions(chains: Chains) -> None:
    """BlockResult.movements: each balance change with the transaction or resolution that
    made it; what a failed transaction or resolve wrote and undid is not reported."""
    alice, bob = new_eth_account(), new_eth_account()
    register_credit("credit")
    register_credit("broken", fail_after_write=True)
    c = await chains.open("m", genesis(KEYS, [10, 10, 10, 10], accounts=[(eth_account_id(alice), 100)]))
    good, too_much = c.transfer(alice, address(bob), 30), c.transfer(alice, address(bob), 500)
    deposit, broken = ("credit", credit_body("carol", 7)), ("broken", credit_body("dave", 9))
    votes = [c.vote(k, deposit, broken) for k in KEYS[:3]]
    result = await c.block(good, too_much, b"garbage", *votes)
    good_hash, too_much_hash = result.tx_hashes[:2]
    credit_id = event_id(*deposit)
    assert result.movements == (
        Movement(eth_account_id(alice), -30, "transfer", good_hash),
        Movement(eth_account_id(bob), 30, "transfer", good_hash),
        Movement("carol", 7, "credit", credit_id),  # "broken" credited too, then raised: undone
    )
    assert too_much_hash not in {m.ref for m in result.movements}
    assert result.senders == (
        ("transfer", address(alice)),
        ("transfer", address(alice)),
        ("", b""),
        *[("vote", k.public) for k in KEYS[:3]],
    )
    assert result.opened == (("broken", 1), ("credit", 1))
    assert (await c.block()).movements == ()
    await c.close()


async def test_pending_resolutions_list_their_voters(chains: Chains) -> None:
    """What `GET /v1/deposits/{tx}` and the explorer show as "voted by" for a pending one."""
    register_credit("credit")
    c = await chains.open("v", genesis(KEYS, [10, 10, 10, 10]))
    event = ("credit", credit_body("carol", 7))
    await c.block(c.vote(KEYS[2], event), c.vote(KEYS[0], event))
    assert await c.ledger.pending("credit") == [
        (event_id(*event), event[1], 20, tuple(sorted([KEYS[0].public, KEYS[2].public])))
    ]
    await c.close()
