"""Where is my deposit: what this node knows of the deposits of one Ethereum transaction.

A deposit is, from first to last: ``seen`` (in the local event store), ``voted`` (this
node's vote is in the ledger), ``pending`` (a resolution exists, with x of y power) and
``credited`` (at a ledger height); or ``orphaned``: credited, then a reorg deeper than the
safety point gave its escrow nonce to another deposit (its credit stays, unbacked: see
``resolutions.credit``). Pending resolutions and local events are scanned, so the cost
grows with the backlog, not with history.
"""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address

from bridge.eventstore import VOTED, EventStore
from bridge.ledger import Ledger, required_power
from resolutions import get_resolution
from resolutions.credit import (
    CREDIT_ACCOUNT,
    ORPHANED,
    ORPHANED_TOTAL,
    Deposit,
    credited_key,
    described_key,
    orphans,
)


def _describe(deposit: Deposit) -> dict[str, Any]:
    return {
        "log_index": deposit.log_index,
        "nonce": deposit.nonce,
        "block_number": deposit.block_number,
        "sender": deposit.sender,
        "recipient": deposit.recipient,
        "amount": str(deposit.amount),
        "escrow": deposit.escrow,
        "chain_id": deposit.chain_id,
    }


def _from_key(deposit_key: bytes) -> dict[str, Any]:
    """What a deposit key says: chain id, escrow, nonce."""
    return {
        "nonce": int.from_bytes(deposit_key[64:96], "big"),
        "escrow": to_checksum_address(deposit_key[44:64]),
        "chain_id": int.from_bytes(deposit_key[:32], "big"),
    }


async def _one(ledger: Ledger, key: bytes) -> bytes | None:
    """The committed value of ``credit_account``'s ``key``."""
    found = await ledger.kv_prefix(CREDIT_ACCOUNT, key, limit=1)
    return found[0][1] if found and found[0][0] == key else None


async def orphaned_credits(ledger: Ledger) -> tuple[int, int]:
    """(number, total amount) of the orphaned credits in the committed state: what the ledger
    credited that no escrow deposit backs any more."""
    raw = await _one(ledger, ORPHANED_TOTAL)
    return (0, 0) if raw is None else (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))


async def find_deposits(tx_hash: bytes, ledger: Ledger, store: EventStore) -> list[dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}  # by log index; the most advanced status wins
    for event in await store.of_type(CREDIT_ACCOUNT):
        deposit = Deposit.decode(event.body)
        if deposit.tx_hash == tx_hash:
            status = "voted" if event.state == VOTED else "seen"
            found[deposit.log_index] = {**_describe(deposit), "status": status}

    total = sum(ledger.validators.values())
    need = required_power(total, get_resolution(CREDIT_ACCOUNT).confirmation_threshold)
    for rid, body, power in await ledger.pending(CREDIT_ACCOUNT):
        deposit = Deposit.decode(body)
        if deposit.tx_hash == tx_hash:
            voted = found.get(deposit.log_index, {}).get("status") == "voted"
            found[deposit.log_index] = {
                **_describe(deposit),
                "status": "pending",
                "voted_by_this_node": voted,
                "resolution_id": rid.hex(),
                "approved_power": power,
                "required_power": need,
                "total_power": total,
            }

    for key, deposit_key in await ledger.kv_prefix(CREDIT_ACCOUNT, b"tx:" + tx_hash):
        value = await _one(ledger, credited_key(deposit_key))
        described = await _one(ledger, described_key(deposit_key))
        if value is None or (described is not None and described[:32] != tx_hash):
            continue  # the key's credit is another transaction's deposit now (see orphans)
        rid = value[8:]
        processed = await ledger.processed_body(rid)
        entry: dict[str, Any] = {"log_index": int.from_bytes(key[-8:], "big"), **_from_key(deposit_key)}
        if described is not None:  # what the key's credit is (credits since it is kept)
            entry["log_index"] = int.from_bytes(described[32:40], "big")
            entry["recipient"] = to_checksum_address(described[40:60])
            entry["amount"] = str(int.from_bytes(described[60:], "big"))
        if processed is not None:
            entry = _describe(Deposit.decode(processed))
        entry.update(
            status="credited", credited_height=int.from_bytes(value[:8], "big"), resolution_id=rid.hex()
        )
        found[entry["log_index"]] = entry

    # Credits of this transaction's deposits that a deep reorg orphaned: listed beside what
    # became of the deposit since (its transaction mined again: pending, credited...).
    orphaned = []
    for key, value in await ledger.kv_prefix(CREDIT_ACCOUNT, ORPHANED + tx_hash):
        for o in orphans(key, value):
            processed = await ledger.processed_body(o.resolution_id)
            orphaned.append(
                {
                    "log_index": o.log_index,
                    **_from_key(o.deposit_key),
                    "recipient": to_checksum_address(o.recipient),
                    "amount": str(o.amount),
                    **(_describe(Deposit.decode(processed)) if processed is not None else {}),
                    "status": "orphaned",
                    "credited_height": o.credited_height,
                    "orphaned_height": o.orphaned_height,
                    "resolution_id": o.resolution_id.hex(),
                }
            )
    orphaned.sort(key=lambda e: (e["log_index"], e["orphaned_height"], e["nonce"]))
    listed = [found[i] for i in sorted(found)]
    return sorted(listed + orphaned, key=lambda e: int(e["log_index"]))  # stable: orphans last
