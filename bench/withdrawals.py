"""Benchmark 6: the way back, on chain and through the ledger.

**Gas** (anvil, one measurement each: gas is deterministic for a given state and hardfork).
A TestToken and a BridgeEscrow whose validator set is 4 Ethereum signing keys (fixed seeds,
sorted by address, power 1 each). Measured from the receipts' ``gasUsed``, against a plain
ERC-20 ``transfer`` of TestToken to a new holder (the baseline): a ``deposit``, a
``submitBatch`` of a batch of 8 withdrawals signed by 3 of the 4 (the fourth slot empty,
``v = 0``), and a ``claim`` (a proof of 3 siblings). Storage writes cost more the first time
a slot leaves zero, so each is measured in the escrow's steady state: the measured deposit
follows an earlier one (deposit counter and escrow balance non-zero), the measured batch
follows an unclaimed one (``outstanding`` non-zero); the first-time figures are in the notes.
Roots, leaves, proofs and signatures are built with bridge/withdrawals/eip712.py and
merkle.py, and sent with the helpers of bridge/withdrawals/onchain.py from the JSON shape the
node serves (``GET /v1/withdrawals/{id}``).

**Ledger throughput** (a real ``Ledger`` on a SQLite file, as bench/ledger.py does for
votes): ``withdraw`` transactions from many users (funded in genesis, on a network with an
escrow), a fixed number per block, enough blocks that every batch closes (by size at
``BATCH_SIZE``, else by age after ``BATCH_BLOCKS``). Every transaction is built and signed
(EIP-712, the user's Ethereum key) up front; only ``finalize_block`` + ``commit`` are timed,
and that includes the EIP-712 signature recovery ``finalize_block`` does for every
transaction (``_authenticate``). The baseline is the same users in the same blocks sending
``transfer`` transactions instead, through the same ledger code on a fresh file. Both run
three times, interleaved; their medians are compared. The signature check alone (decode +
``Tx.verify`` over the same withdraw transactions, outside the ledger) is timed once and
given in the notes, as a share of the ledger's time.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from bridge.keys import NodeKey, account_id
from bridge.ledger import Block, Genesis, Ledger
from bridge.ledger.app import LedgerApp
from bridge.ledger.withdrawals import BATCH_BLOCKS, BATCH_SIZE, NAMESPACE, Withdrawals
from bridge.txs import Transfer, Tx, Withdraw
from bridge.withdrawals import onchain
from bridge.withdrawals.eip712 import Domain, batch_digest, sign, withdrawal_leaf
from bridge.withdrawals.merkle import MerkleTree

CHAIN = "bench-withdrawals"
LEDGER_ESCROW = Domain(31337, bytes.fromhex("5FbDB2315678afecb367f032d93F642f64180aa3"))
VALIDATORS = 4
# Targets (issue 16), from the anchors: a deposit costs about an ERC-20 transfer; a Merkle
# claim little more than one (Gravity's and Kwil's batch claims); a batch's root is posted once
# for up to BATCH_SIZE withdrawals, so it may cost a few transfers. Through the ledger, a
# withdrawal is a debit plus its batch's bookkeeping: five key-value writes where a transfer
# makes two balance writes, so half a transfer's rate; and well above what users send.
GAS_TARGETS = {"deposit": 1.1, "submitBatch": 3.0, "claim": 2.0}
RATE_TARGET, RATE_FLOOR = 0.5, 1000

BATCH = 8  # withdrawals per on-chain batch: a proof of 3
SIGNED = 3  # of VALIDATORS
REPEATS = 3


def validator_signers() -> list[LocalAccount]:
    """The validators' Ethereum signing keys (fixed seeds), sorted by address."""
    accounts: list[LocalAccount] = [Account.from_key(bytes([0x40 + i]) * 32) for i in range(VALIDATORS)]
    return sorted(accounts, key=lambda a: int(a.address, 16))


def _fresh(i: int) -> bytes:
    """A 20-byte address nobody has used: a new token holder, a new ledger account."""
    return hashlib.sha256(b"bench-withdrawals-recipient-%d" % i).digest()[:20]


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


# -- gas on anvil -- #


def batch_statuses(
    domain: Domain, batch_id: int, first_id: int, signers: list[LocalAccount]
) -> list[dict[str, Any]]:
    """The node's withdrawal-status JSON for each withdrawal of a batch of ``BATCH``, signed by
    the first ``SIGNED`` signers (zero bytes in the other slots)."""
    entries = [(first_id + k, _fresh(1000 + first_id + k), 10**18 + k) for k in range(BATCH)]
    leaves = [withdrawal_leaf(domain, batch_id, wid, to, amount) for wid, to, amount in entries]
    tree = MerkleTree(leaves)
    total = sum(amount for _, _, amount in entries)
    digest = batch_digest(domain, batch_id, tree.root, total, 0)
    signatures = [_hex(sign(digest, s.key)) for s in signers[:SIGNED]]
    signatures += [_hex(bytes(65))] * (len(signers) - SIGNED)
    common = {
        "batch": batch_id,
        "root": _hex(tree.root),
        "total": str(total),
        "valset": {"nonce": 0, "signers": [s.address for s in signers], "powers": ["1"] * len(signers)},
        "signatures": signatures,
    }
    return [
        common
        | {
            "id": wid,
            "recipient": _hex(to),
            "amount": str(amount),
            "proof": [_hex(p) for p in tree.proof(leaf)],
        }
        for (wid, to, amount), leaf in zip(entries, leaves, strict=True)
    ]


async def measure_gas() -> dict[str, Any]:
    from listeners.eth_deposits.escrow import deploy_bridge, deposit
    from listeners.ethereum import ANVIL_KEY, Chain, anvil

    signers = validator_signers()
    async with anvil() as url:
        chain = await Chain.connect(url, ANVIL_KEY)
        try:
            deployed = await deploy_bridge(chain, signers=[(s.address, 1) for s in signers])
            escrow = str(deployed["escrow"])
            domain = Domain(int(deployed["chain_id"]), bytes.fromhex(escrow[2:]))
            token = chain.contract("TestToken", deployed["token"])

            async def deposit_gas(amount: int) -> int:
                made = await deposit(chain, escrow, amount, chain.account.address)
                receipt = await chain.w3.eth.get_transaction_receipt(HexStr(made["tx_hash"]))
                return int(receipt["gasUsed"])

            to = chain.w3.to_checksum_address(_fresh(0))
            transfer = int((await chain.call(token.functions.transfer(to, 10**18)))["gasUsed"])
            first_deposit = await deposit_gas(10**20)  # the escrow's first: counter and balance leave 0
            steady_deposit = await deposit_gas(10**20)

            batches = [batch_statuses(domain, b, b * BATCH, signers) for b in range(2)]
            if any(len(s["proof"]) != 3 for b in batches for s in b):
                raise RuntimeError(f"a batch of {BATCH} should give proofs of 3 siblings")
            first_batch = int((await onchain.submit_batch(chain, escrow, batches[0][0]))["gasUsed"])
            steady_batch = int((await onchain.submit_batch(chain, escrow, batches[1][0]))["gasUsed"])
            claim = int((await onchain.claim(chain, escrow, batches[1][0]))["gasUsed"])
            paid = await token.functions.balanceOf(
                chain.w3.to_checksum_address(batches[1][0]["recipient"])
            ).call()
            if paid != int(batches[1][0]["amount"]):
                raise RuntimeError(f"the claim paid {paid}, not {batches[1][0]['amount']}")
        finally:
            await chain.close()
    return {
        "transfer": transfer,
        "deposit": steady_deposit,
        "first_deposit": first_deposit,
        "submit_batch": steady_batch,
        "first_submit_batch": first_batch,
        "claim": claim,
    }


def gas_rows(gas: dict[str, Any]) -> list[dict[str, Any]]:
    base = gas["transfer"]
    note = "one measurement (gas is deterministic); gasUsed of the receipt, anvil's default hardfork"
    cases = [
        (
            "deposit",
            "gas: deposit",
            gas["deposit"],
            f"deposit(amount, recipient) after an earlier deposit (counter and escrow balance"
            f" non-zero); the escrow's first deposit: {gas['first_deposit']} gas; the approve"
            f" before it is not counted; {note}",
        ),
        (
            "submitBatch",
            f"gas: submitBatch ({BATCH} withdrawals, {SIGNED} of {VALIDATORS} signatures)",
            gas["submit_batch"],
            f"batch 1 with batch 0 posted and unclaimed (outstanding non-zero); the escrow's first"
            f" batch: {gas['first_submit_batch']} gas; {VALIDATORS} signers of power 1, slot 4"
            f" empty (v = 0); {note}",
        ),
        (
            "claim",
            "gas: claim (proof of 3)",
            gas["claim"],
            f"first claim of batch 1 ({BATCH} leaves), paid to a new token holder; {note}",
        ),
    ]
    return [
        {
            "benchmark": name,
            "measured": measured,
            "unit": "gas",
            "baseline": base,
            "baseline_name": "ERC-20 transfer of TestToken to a new holder",
            "ratio": round(measured / base, 2),
            "target": f"ratio <= {GAS_TARGETS[key]}",
            "met": measured / base <= GAS_TARGETS[key],
            "detail": detail,
            "raw": gas,
        }
        for key, name, measured, detail in cases
    ]


# -- withdrawals per second through the ledger -- #


def build_ledger(
    users: int, rounds: int, per_block: int
) -> tuple[Genesis, dict[str, list[list[bytes]]], int]:
    """A genesis with an escrow and ``users`` funded accounts, and the signed blocks of both
    kinds: round ``r`` is one transaction of every user (nonce ``r``), ``per_block`` a block;
    then ``BATCH_BLOCKS`` empty blocks unless every batch closes by size. Returns the genesis,
    {"withdraw": blocks, "transfer": blocks} and the number of batches the withdrawals fill."""
    nodes = sorted(
        (NodeKey.from_seed(bytes([i + 1]) * 32) for i in range(VALIDATORS)), key=lambda k: k.public
    )
    signers = validator_signers()
    accounts: list[LocalAccount] = [
        Account.from_key(hashlib.sha256(b"bench-withdrawals-user-%d" % i).digest()) for i in range(users)
    ]
    addresses = [bytes.fromhex(a.address[2:]) for a in accounts]
    genesis = Genesis(
        CHAIN,
        tuple((k.public, 1) for k in nodes),
        tuple(sorted((account_id(a), 10**24) for a in addresses)),
        escrow=LEDGER_ESCROW,
        signers=tuple(
            sorted((k.public, bytes.fromhex(s.address[2:])) for k, s in zip(nodes, signers, strict=True))
        ),
    )
    total = users * rounds
    blocks: dict[str, list[list[bytes]]] = {}
    for kind in ("withdraw", "transfer"):
        txs = []
        for r in range(rounds):
            for u, (account, address) in enumerate(zip(accounts, addresses, strict=True)):
                i = r * users + u
                payload = (Withdraw if kind == "withdraw" else Transfer)(_fresh(i), 1000 + i).encode()
                txs.append(Tx(CHAIN, kind, address, r, payload).sign_eth(account.key, LEDGER_ESCROW).encode())
        blocks[kind] = [txs[i : i + per_block] for i in range(0, total, per_block)]
    aligned = total % BATCH_SIZE == 0 and BATCH_SIZE % per_block == 0
    for kind in blocks:
        blocks[kind] += [[] for _ in range(0 if aligned else BATCH_BLOCKS)]
    return genesis, blocks, -(-total // BATCH_SIZE)


async def run_ledger(path: Path, genesis: Genesis, blocks: list[list[bytes]], batches: int | None) -> float:
    """Seconds for ``finalize_block`` + ``commit`` of ``blocks``; with ``batches``, checks that
    the withdrawals filled that many batches and every one closed."""
    ledger = await Ledger.open(path)
    try:
        await ledger.init_chain(genesis)
        proposer = genesis.validators[0][0]
        started = time.perf_counter()
        results = []
        for height, txs in enumerate(blocks, start=1):
            results.append(
                await ledger.finalize_block(Block(height, genesis.time_ns + height, proposer, tuple(txs)))
            )
            await ledger.commit()
        seconds = time.perf_counter() - started
        failed = [r for result in results for r in result.tx_results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} transactions failed, the first: {failed[0]}")
        if batches is not None:
            state = Withdrawals(LedgerApp(ledger.view, NAMESPACE, ledger.height), genesis.escrow)
            made = await state.next_batch()
            closed = [
                b for b in [await state.batch(i) for i in range(made)] if b is not None and b.root is not None
            ]
            entries = sum(len(b.entries) for b in closed)
            expected = sum(len(txs) for txs in blocks)
            if made != batches or len(closed) != batches or entries != expected:
                raise RuntimeError(
                    f"{made} batches ({len(closed)} closed, {entries} withdrawals in them);"
                    f" expected {batches} closed with {expected}"
                )
        return seconds
    finally:
        await ledger.close()


def signature_check_seconds(txs: list[bytes]) -> float:
    """What ``_authenticate`` spends on the user signatures: decode + EIP-712 recovery."""
    started = time.perf_counter()
    for raw in txs:
        if not Tx.decode(raw).verify(LEDGER_ESCROW):
            raise RuntimeError("a pre-signed transaction does not verify")
    return time.perf_counter() - started


def ledger_rows(quick: bool) -> list[dict[str, Any]]:
    # Full: 1,024 withdrawals from 256 users in 8 blocks of 128: four batches, each closing by
    # size in the block that fills it. Quick: 64 from 32 users in 2 blocks, one batch closing
    # by age in the BATCH_BLOCKS empty blocks after them.
    users, rounds, per_block = (32, 2, 32) if quick else (256, 4, 128)
    repeats = 1 if quick else REPEATS
    genesis, blocks, batches = build_ledger(users, rounds, per_block)
    total = users * rounds
    for kind in blocks:  # warm-up, untimed: the first recoveries pay for imports and caches
        signature_check_seconds(blocks[kind][0][:8])
    runs: dict[str, list[float]] = {"transfer": [], "withdraw": []}
    for i in range(repeats):  # interleaved, the order alternating; the medians are compared
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("transfer", "withdraw")[:: -1 if i % 2 else 1]:
                batches_of = batches if kind == "withdraw" else None
                path = Path(tmp) / f"{kind}.sqlite"
                runs[kind].append(asyncio.run(run_ledger(path, genesis, blocks[kind], batches_of)))
    withdraws, transfers = runs["withdraw"], runs["transfer"]
    check = signature_check_seconds([raw for txs in blocks["withdraw"] for raw in txs])
    withdraw_s, transfer_s = statistics.median(withdraws), statistics.median(transfers)
    withdraw_rate, transfer_rate = total / withdraw_s, total / transfer_s
    tx_blocks = -(-total // per_block)
    empty = len(blocks["withdraw"]) - tx_blocks
    detail = (
        f"{total} withdraw txs from {users} users in {tx_blocks} blocks of {per_block}"
        + (f" + {empty} empty" if empty else "")
        + f", {batches} batch(es) closed (BATCH_SIZE {BATCH_SIZE}, BATCH_BLOCKS {BATCH_BLOCKS});"
        f" timed: finalize_block+commit, which recovers every tx's EIP-712 signature"
        f" (_authenticate), so the figure includes it; that check alone:"
        f" {check / total * 1e3:.2f} ms/tx, {check / withdraw_s:.0%} of the ledger's time;"
        f" median of {repeats}; withdrawals {withdraw_s:.2f}s, transfers {transfer_s:.2f}s"
    )
    return [
        {
            "benchmark": "withdrawals: withdrawals/s (finalize_block+commit)",
            "measured": round(withdraw_rate),
            "unit": "withdrawals/s",
            "baseline": round(transfer_rate),
            "baseline_name": "transfer txs/s, same users, blocks and ledger",
            "ratio": round(withdraw_rate / transfer_rate, 3),
            "target": f">= {RATE_TARGET} of transfers/s and >= {RATE_FLOOR} withdrawals/s",
            "met": withdraw_rate / transfer_rate >= RATE_TARGET and withdraw_rate >= RATE_FLOOR,
            "detail": detail,
            "raw": {
                "withdraw_seconds": withdraws,
                "transfer_seconds": transfers,
                "signature_check_seconds": check,
                "withdrawals": total,
                "users": users,
                "blocks": len(blocks["withdraw"]),
                "batches": batches,
            },
        }
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return gas_rows(asyncio.run(measure_gas())) + ledger_rows(quick)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
