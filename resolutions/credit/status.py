"""Where is my deposit: what this node knows of the deposits of one Ethereum transaction,
served as ``GET /v1/deposits/{tx_hash}`` (``resolutions.register_query``); and the
``orphaned_credits`` readiness problem (``resolutions.register_readiness``).

A deposit is, from first to last: ``seen`` (in the local event store), ``voted`` (this
node's vote is in the ledger), ``pending`` (a resolution exists, with x of y power) and
``credited`` (at a ledger height); or ``orphaned``: credited, then a reorg deeper than the
safety point gave its escrow nonce to another deposit (its credit stays, unbacked: see
``resolutions.credit``). Pending resolutions and local events are scanned, so the cost
grows with the backlog, not with history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_utils.address import to_checksum_address

from resolutions import NodeReader, register_query, register_readiness
from resolutions.credit import (
    CREDIT_ACCOUNT,
    ORPHANED,
    ORPHANED_TOTAL,
    Deposit,
    credited_key,
    described_key,
    orphans,
)

__all__ = ["deposit_status", "find_deposits", "orphaned_credits", "orphaned_credits_problem"]


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


async def orphaned_credits(reader: NodeReader) -> tuple[int, int]:
    """(number, total amount) of the orphaned credits in the committed state: what the ledger
    credited that no escrow deposit backs any more."""
    raw = await reader.get(CREDIT_ACCOUNT, ORPHANED_TOTAL)
    return (0, 0) if raw is None else (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))


@register_readiness
async def orphaned_credits_problem(reader: NodeReader) -> list[str]:
    """Credits a deep reorg left unbacked (the ledger's committed state, so every node says
    it): a liability an operator must settle; it clears when they are reconciled."""
    count, amount = await orphaned_credits(reader)
    return [f"orphaned_credits:count={count},amount={amount}"] if count else []


async def find_deposits(tx_hash: bytes, reader: NodeReader) -> list[dict[str, Any]]:
    """Every deposit of Ethereum transaction ``tx_hash`` this node knows of, by log index."""
    found: dict[int, dict[str, Any]] = {}  # by log index; the most advanced status wins
    for event in await reader.local_events(CREDIT_ACCOUNT):
        deposit = Deposit.decode(event.body)
        if deposit.tx_hash == tx_hash:
            found[deposit.log_index] = {**_describe(deposit), "status": "voted" if event.voted else "seen"}

    pending = await reader.pending(CREDIT_ACCOUNT)
    if pending:
        total, need = reader.total_power(), reader.required_power(CREDIT_ACCOUNT)
    for p in pending:
        deposit = Deposit.decode(p.body)
        if deposit.tx_hash == tx_hash:
            voted = found.get(deposit.log_index, {}).get("status") == "voted"
            found[deposit.log_index] = {
                **_describe(deposit),
                "status": "pending",
                "voted_by_this_node": voted,
                "resolution_id": p.id.hex(),
                "approved_power": p.approved_power,
                "voters": [v.hex() for v in p.voters],
                "required_power": need,
                "total_power": total,
            }

    for key, deposit_key in await reader.prefix(CREDIT_ACCOUNT, b"tx:" + tx_hash):
        value = await reader.get(CREDIT_ACCOUNT, credited_key(deposit_key))
        described = await reader.get(CREDIT_ACCOUNT, described_key(deposit_key))
        if value is None or (described is not None and described[:32] != tx_hash):
            continue  # the key's credit is another transaction's deposit now (see orphans)
        rid = value[8:]
        processed = await reader.processed_body(rid)
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
    for key, value in await reader.prefix(CREDIT_ACCOUNT, ORPHANED + tx_hash):
        for o in orphans(key, value):
            processed = await reader.processed_body(o.resolution_id)
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


async def deposit_status(reader: NodeReader, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET /v1/deposits/{tx_hash}``: ``{"tx_hash": ..., "deposits": [...]}``."""
    try:
        tx_hash = bytes.fromhex(params["tx_hash"].removeprefix("0x"))
    except ValueError:
        tx_hash = b""
    if len(tx_hash) != 32:
        raise ValueError("the transaction hash must be 32 bytes of hex")
    found = await find_deposits(tx_hash, reader)
    if not found:
        raise LookupError(f"no deposit of transaction 0x{tx_hash.hex()} is known to this node")
    return {"tx_hash": "0x" + tx_hash.hex(), "deposits": found}


register_query("deposits/{tx_hash}", deposit_status)
