"""Where is my deposit: what this node knows of the deposits of one Ethereum transaction.

A deposit is, from first to last: ``seen`` (in the local event store), ``voted`` (this
node's vote is in the ledger), ``pending`` (a resolution exists, with x of y power) and
``credited`` (at a ledger height). Pending resolutions and local events are scanned, so
the cost grows with the backlog, not with history.
"""

from __future__ import annotations

from typing import Any

from bridge.eventstore import VOTED, EventStore
from bridge.ledger import Ledger, required_power
from resolutions import get_resolution
from resolutions.credit import CREDIT_ACCOUNT, Deposit, credited_key


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
        credited = await ledger.kv_prefix(CREDIT_ACCOUNT, credited_key(deposit_key), limit=1)
        if credited:
            value = credited[0][1]
            rid = value[8:]
            processed = await ledger.processed_body(rid)
            entry = {
                "status": "credited",
                "credited_height": int.from_bytes(value[:8], "big"),
                "resolution_id": rid.hex(),
            }
            if processed is not None:
                entry = {**_describe(Deposit.decode(processed)), **entry}
            found[int.from_bytes(key[-8:], "big")] = entry
    return [found[i] for i in sorted(found)]
