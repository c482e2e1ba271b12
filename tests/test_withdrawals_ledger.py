"""The ledger's half of the way back on a real SQLite ledger: withdraw debits and batches,
batches close into OpenZeppelin-compatible Merkle roots, validators' Ethereum signatures are
checked and summed to > 2/3, signing keys are registered with a proof, and the validator set
the escrow follows moves when the ledger's does. Bad input changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bridge.errors import TxCode
from bridge.ledger import Genesis
from bridge.ledger.app import LedgerApp
from bridge.ledger.withdrawals import BATCH_BLOCKS, NAMESPACE, Withdrawals
from bridge.txs import Join, SignBatch, SignValset, Tx, Withdraw, sign_claim
from bridge.withdrawals import eip712
from bridge.withdrawals.merkle import MerkleTree, verify
from tests.ledger_helpers import CHAIN_ID, Chain, Chains, address, eth_account_id, node_keys

KEYS = node_keys(4)
SIGNERS = [Account.from_key(bytes([0x40 + i]) * 32) for i in range(4)]
ESCROW = eip712.Domain(31337, bytes.fromhex("ee" * 20))
USER = Account.from_key(b"\x77" * 32)
RECIPIENT = bytes.fromhex("12" * 20)


def escrow_genesis(balance: int = 1000) -> Genesis:
    return Genesis(
        CHAIN_ID,
        tuple(sorted((k.public, 1) for k in KEYS)),
        ((eth_account_id(USER), balance),),
        escrow=ESCROW,
        signers=tuple(sorted((k.public, address(s)) for k, s in zip(KEYS, SIGNERS, strict=True))),
    )


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Chain]:
    pool = Chains(tmp_path)
    yield await pool.open("ledger", escrow_genesis())
    await pool.close_all()


def state(chain: Chain) -> Withdrawals:
    return Withdrawals(LedgerApp(chain.ledger.view, NAMESPACE, chain.ledger.height), ESCROW)


def withdraw(chain: Chain, amount: int, to: bytes = RECIPIENT, nonce: int | None = None) -> bytes:
    return chain.user_tx(USER, "withdraw", Withdraw(to, amount).encode(), nonce)


async def sign_batch(
    chain: Chain, i: int, batch_id: int, nonce: int = 0, key: LocalAccount | None = None
) -> bytes:
    batch = await state(chain).batch(batch_id)
    assert batch is not None and batch.root is not None
    digest = eip712.batch_digest(ESCROW, batch_id, batch.root, batch.total, nonce)
    signature = eip712.sign(digest, (key or SIGNERS[i]).key)
    return chain.tx(KEYS[i], "sign_batch", SignBatch(batch_id, nonce, signature).encode())


async def test_withdrawals_are_debited_batched_and_signed_by_two_thirds(chain: Chain) -> None:
    result = await chain.block(withdraw(chain, 100), withdraw(chain, 50, bytes.fromhex("34" * 20)))
    assert [r.code for r in result.tx_results] == [TxCode.OK, TxCode.OK]
    assert await chain.ledger.balance(eth_account_id(USER)) == 850
    open_batch = await state(chain).batch(0)
    assert open_batch is not None and open_batch.root is None and len(open_batch.entries) == 2

    await chain.blocks(BATCH_BLOCKS)  # the batch closes BATCH_BLOCKS after it opened
    batch = await state(chain).batch(0)
    assert batch is not None and batch.root is not None and batch.total == 150
    leaves = state(chain).leaves(batch)
    tree = MerkleTree(leaves)
    assert tree.root == batch.root
    assert all(verify(tree.proof(leaf), batch.root, leaf) for leaf in leaves)

    # Two of four (power 2 of 4) is not more than 2/3; the third is.
    await chain.block(await sign_batch(chain, 0, 0), await sign_batch(chain, 1, 0))
    assert await state(chain).signed_power(0, 0) == 2
    again = await chain.block(await sign_batch(chain, 1, 0))
    assert again.tx_results[0].code == TxCode.INVALID_PAYLOAD and "already signed" in again.tx_results[0].log
    wrong_key = await chain.block(await sign_batch(chain, 2, 0, key=SIGNERS[3]))
    assert wrong_key.tx_results[0].code == TxCode.BAD_SIGNATURE
    await chain.block(await sign_batch(chain, 2, 0))
    assert await state(chain).signed_power(0, 0) == 3
    # A signature under set 1 is refused: set 0 is the newest.
    batch0 = await state(chain).batch(0)
    assert batch0 is not None and batch0.root is not None
    digest = eip712.batch_digest(ESCROW, 0, batch0.root, batch0.total, 1)
    named = chain.tx(KEYS[3], "sign_batch", SignBatch(0, 1, eip712.sign(digest, SIGNERS[3].key)).encode())
    refused = await chain.block(named)
    assert refused.tx_results[0].code == TxCode.INVALID_PAYLOAD and "newest" in refused.tx_results[0].log


async def test_bad_withdrawals_are_refused_and_change_nothing(chain: Chain) -> None:
    before = (chain.ledger.app_hash, await chain.ledger.balance(eth_account_id(USER)))
    signer = address(USER)
    other_ledger = Tx("another-ledger", "withdraw", signer, 0, Withdraw(RECIPIENT, 5).encode())
    other_escrow = replace(ESCROW, escrow=bytes.fromhex("dd" * 20))
    cases = {
        "above the balance": (withdraw(chain, 1001, nonce=0), TxCode.INSUFFICIENT_BALANCE),
        "wrong nonce": (withdraw(chain, 5, nonce=9), TxCode.OK),  # waits in the mempool...
        "zero amount": (
            USER_TX(chain, b"".join([(20).to_bytes(4, "big"), RECIPIENT, (0).to_bytes(4, "big")])),
            TxCode.INVALID_PAYLOAD,
        ),
        "malformed recipient": (
            USER_TX(chain, (19).to_bytes(4, "big") + RECIPIENT[:19] + (1).to_bytes(4, "big") + b"\x05"),
            TxCode.INVALID_PAYLOAD,
        ),
        "zero recipient": (
            USER_TX(chain, (20).to_bytes(4, "big") + bytes(20) + (1).to_bytes(4, "big") + b"\x05"),
            TxCode.INVALID_PAYLOAD,
        ),
        "oversized amount": (
            USER_TX(chain, (20).to_bytes(4, "big") + RECIPIENT + (33).to_bytes(4, "big") + b"\x01" * 33),
            TxCode.INVALID_PAYLOAD,
        ),
        "signed for another ledger": (
            replace(
                other_ledger, chain_id=CHAIN_ID, signature=other_ledger.sign_eth(USER.key, ESCROW).signature
            ).encode(),
            TxCode.BAD_SIGNATURE,
        ),
        "signed for another escrow": (
            Tx(CHAIN_ID, "withdraw", signer, 0, Withdraw(RECIPIENT, 5).encode())
            .sign_eth(USER.key, other_escrow)
            .encode(),
            TxCode.BAD_SIGNATURE,
        ),
    }
    for name, (raw, code) in cases.items():
        checked = await chain.ledger.check_tx(raw)
        if name == "wrong nonce":
            result = await chain.block(raw)  # ...and fails if a proposer includes it anyway
            assert result.tx_results[0].code == TxCode.BAD_NONCE, name
            continue
        assert checked.code == code, (name, checked)
        result = await chain.block(raw)
        assert result.tx_results[0].code == code, (name, result.tx_results[0])
    assert await chain.ledger.balance(eth_account_id(USER)) == before[1]
    assert await state(chain).batch(0) is None


def USER_TX(chain: Chain, payload: bytes) -> bytes:
    """A withdraw with raw payload bytes, signed over a well-formed payload of the same nonce
    (a malformed payload cannot be signed as typed data at all)."""
    tx = Tx(CHAIN_ID, "withdraw", address(USER), 0, Withdraw(RECIPIENT, 5).encode()).sign_eth(
        USER.key, ESCROW
    )
    return replace(tx, payload=payload).encode()


async def test_withdraw_without_an_escrow_is_refused(tmp_path: Path) -> None:
    pool = Chains(tmp_path)
    gen = replace(escrow_genesis(), escrow=None)
    chain = await pool.open("plain", gen)
    raw = withdraw(chain, 5)
    assert (await chain.ledger.check_tx(raw)).code == TxCode.INVALID_PAYLOAD
    result = await chain.block(raw)
    assert result.tx_results[0].code == TxCode.INVALID_PAYLOAD and "no escrow" in result.tx_results[0].log
    assert await chain.ledger.balance(eth_account_id(USER)) == 1000
    await pool.close_all()


async def test_a_joining_validator_registers_its_signer_and_the_set_rotates(chain: Chain) -> None:
    newcomer, signer = node_keys(1, offset=20)[0], Account.from_key(b"\x55" * 32)
    proof = sign_claim(CHAIN_ID, newcomer.public, signer.key)
    # A proof by another key, or none on a network with an escrow, is refused.
    forged = Join(7, address(signer), sign_claim(CHAIN_ID, newcomer.public, SIGNERS[0].key)).encode()
    bare = Join(7).encode()
    result = await chain.block(chain.tx(newcomer, "join", forged), chain.tx(newcomer, "join", bare))
    assert [r.code for r in result.tx_results] == [TxCode.BAD_SIGNATURE, TxCode.INVALID_PAYLOAD]
    # Taking a sitting validator's address is refused too.
    taken = Join(7, address(SIGNERS[0]), sign_claim(CHAIN_ID, newcomer.public, SIGNERS[0].key)).encode()
    result = await chain.block(chain.tx(newcomer, "join", taken))
    assert result.tx_results[0].code == TxCode.INVALID_PAYLOAD and "another key" in result.tx_results[0].log

    result = await chain.block(chain.tx(newcomer, "join", Join(2, address(signer), proof).encode()))
    assert result.tx_results[0].ok
    set0 = await state(chain).valset()
    assert set0 is not None and set0.nonce == 0 and len(set0.members) == 4
    join_id = bytes.fromhex(str((await chain.ledger.list_resolutions("pending"))[0]["id"]))
    await chain.block(*(chain.tx(k, "approve", join_id) for k in KEYS[:3]))
    set1 = await state(chain).valset()
    assert set1 is not None and set1.nonce == 1
    assert set1.members == tuple(sorted([*((address(s), 1) for s in SIGNERS), (address(signer), 2)]))

    # Set 0 signs set 1: the newcomer (not in set 0) cannot; three of set 0 pass 2/3 of 4.
    digest = eip712.valset_digest(ESCROW, 1, set1.signers, set1.powers)
    by_newcomer = chain.tx(newcomer, "sign_valset", SignValset(1, eip712.sign(digest, signer.key)).encode())
    result = await chain.block(by_newcomer)
    assert result.tx_results[0].code == TxCode.NOT_VALIDATOR
    sigs = [
        chain.tx(KEYS[i], "sign_valset", SignValset(1, eip712.sign(digest, SIGNERS[i].key)).encode())
        for i in range(3)
    ]
    result = await chain.block(*sigs)
    assert all(r.ok for r in result.tx_results)
    assert await state(chain).app.get(b"vpower:" + (1).to_bytes(8, "big")) == (3).to_bytes(32, "big")
