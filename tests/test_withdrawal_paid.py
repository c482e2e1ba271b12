"""``withdrawal_paid`` on a real SQLite ledger: the fixed-width body, the claims listener's
decoding of a Claimed log, the first payment of an id kept and a second one recorded as a
duplicate, a malformed body failing, and the withdrawal status saying "paid"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.encoding import event_id
from bridge.ledger.app import LedgerApp
from bridge.ledger.withdrawals import BATCH_BLOCKS, NAMESPACE, PAID_NAMESPACE, Withdrawals
from bridge.txs import Withdraw
from listeners.eth_claims import CLAIMED_TOPIC, EthClaimsConfig, claimed_body
from resolutions import get_resolution
from resolutions.withdrawal_paid import BODY_SIZE, WITHDRAWAL_PAID, PaidWithdrawal, paid_key
from tests.ledger_helpers import Chain, Chains
from tests.test_withdrawals_ledger import ESCROW, KEYS, RECIPIENT, USER, escrow_genesis

TX_HASH = bytes.fromhex("ab" * 32)
PAID = PaidWithdrawal(id=0, batch_id=0, recipient=RECIPIENT, amount=100, tx_hash=TX_HASH, log_index=3)
ESCROW_ADDRESS = "0x" + ESCROW.escrow.hex()


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Chain]:
    pool = Chains(tmp_path)
    yield await pool.open("ledger", escrow_genesis())
    await pool.close_all()


def status_reader(chain: Chain) -> Withdrawals:
    """As ``GET /v1/withdrawals/{id}`` builds it."""
    view, height = chain.ledger.view, chain.ledger.height
    return Withdrawals(LedgerApp(view, NAMESPACE, height), ESCROW, LedgerApp(view, PAID_NAMESPACE, height))


async def vote_paid(chain: Chain, body: bytes) -> str:
    """3 of the 4 validators vote ``body``: its outcome."""
    result = await chain.block(*(chain.vote(k, (WITHDRAWAL_PAID, body)) for k in KEYS[:3]))
    outcomes = {rid: outcome for rid, _, outcome in result.resolved}
    return str(outcomes[event_id(WITHDRAWAL_PAID, body)])


def test_the_body_is_fixed_width_and_round_trips() -> None:
    body = PAID.encode()
    assert len(body) == BODY_SIZE == 108
    assert body == (
        (0).to_bytes(8, "big")
        + (0).to_bytes(8, "big")
        + RECIPIENT
        + (100).to_bytes(32, "big")
        + TX_HASH
        + (3).to_bytes(8, "big")
    )
    assert PaidWithdrawal.decode(body) == PAID
    widest = PaidWithdrawal(2**64 - 1, 2**64 - 1, b"\xff" * 20, 2**256 - 1, b"\xff" * 32, 2**64 - 1)
    assert PaidWithdrawal.decode(widest.encode()) == widest
    for bad in (body[:-1], body + b"\x00", b""):
        with pytest.raises(ValueError, match="108 bytes"):
            PaidWithdrawal.decode(bad)
    for wrong in ({"id": 2**64}, {"amount": -1}, {"recipient": RECIPIENT[:19]}, {"tx_hash": TX_HASH + b"\0"}):
        with pytest.raises(ValueError):
            replace(PAID, **wrong).encode()
    # Claims resolve in withdrawal-id order within a block.
    order = get_resolution(WITHDRAWAL_PAID).order
    assert order is not None and order(body) == body[:8]


def claimed_log(**changes: object) -> dict[str, object]:
    log: dict[str, object] = {
        "address": ESCROW_ADDRESS,
        "topics": [
            CLAIMED_TOPIC,
            "0x" + f"{PAID.id:064x}",
            "0x" + f"{PAID.batch_id:064x}",
            "0x" + RECIPIENT.rjust(32, b"\0").hex(),
        ],
        "data": "0x" + f"{PAID.amount:064x}",
        "transactionHash": "0x" + TX_HASH.hex(),
        "logIndex": hex(PAID.log_index),
        "blockNumber": "0x10",
        "removed": False,
    }
    return log | changes


def test_the_listener_turns_a_claimed_log_into_the_body() -> None:
    config = EthClaimsConfig.parse(
        {"rpc_url": "http://127.0.0.1:8545", "contract_address": ESCROW_ADDRESS, "chain_id": 31337}, "t"
    )
    assert claimed_body(claimed_log(), config) == PAID.encode()
    topics = claimed_log()["topics"]
    assert isinstance(topics, list)
    # Not one of the escrow's Claimed logs: skipped.
    assert claimed_body(claimed_log(address="0x" + "11" * 20), config) is None
    assert claimed_body(claimed_log(topics=["0x" + "00" * 32, *topics[1:]]), config) is None
    assert claimed_body(claimed_log(topics=topics[:3]), config) is None
    # A Claimed log that does not decode is the endpoint's fault.
    for broken in (
        claimed_log(data="0x" + "00" * 31),
        claimed_log(topics=[*topics[:3], "0x" + "ff" * 32]),  # an "address" wider than 20 bytes
        claimed_log(topics=[topics[0], "0x" + "ff" * 32, *topics[2:]]),  # an id beyond uint64
        claimed_log(transactionHash="0x1234"),
        claimed_log(logIndex="0x"),
    ):
        with pytest.raises(ValueError):
            claimed_body(broken, config)


async def test_a_payment_is_recorded_once_and_shown_in_the_status(chain: Chain) -> None:
    result = await chain.block(chain.user_tx(USER, "withdraw", Withdraw(RECIPIENT, 100).encode()))
    assert result.tx_results[0].code == 0
    await chain.blocks(BATCH_BLOCKS)  # the batch closes
    before = await status_reader(chain).status(0)
    assert before is not None and before["status"] == "in_batch" and "paid" not in before
    # Without the second App (the signer's view), nothing about payments is read.
    view = Withdrawals(LedgerApp(chain.ledger.view, NAMESPACE, chain.ledger.height), ESCROW)

    assert await vote_paid(chain, PAID.encode()) == "confirmed"
    assert await chain.ledger.kv_items(WITHDRAWAL_PAID) == [(paid_key(0), PAID.encode())]
    shown = await status_reader(chain).status(0)
    assert shown is not None
    assert shown["status"] == "paid"
    assert shown["paid"] == {"tx_hash": "0x" + TX_HASH.hex(), "log_index": 3, "amount": "100"}
    assert shown["root"] == before["root"] and shown["proof"] == before["proof"]
    assert await view.status(0) == before

    # A second log for the same id (here: re-mined at another log index) changes nothing
    # but its own duplicate record.
    again = replace(PAID, log_index=9).encode()
    hash_before = chain.ledger.app_hash
    assert await vote_paid(chain, again) == "confirmed"
    assert chain.ledger.app_hash != hash_before  # the duplicate record is state too
    assert await chain.ledger.kv_items(WITHDRAWAL_PAID) == [
        (b"duplicate:" + event_id(WITHDRAWAL_PAID, again), again),
        (paid_key(0), PAID.encode()),
    ]
    assert await status_reader(chain).status(0) == shown

    # A body of the wrong width fails and writes nothing.
    assert await vote_paid(chain, PAID.encode()[:-1]) == "failed"
    assert len(await chain.ledger.kv_items(WITHDRAWAL_PAID)) == 2
