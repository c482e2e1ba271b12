"""Escrow ``Deposit`` logs into ``credit_account`` bodies: the general decoder, and a fast
path for whole backfill chunks that gives exactly the same bytes."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address

from listeners.ethereum import topic
from resolutions.credit import Deposit

DEPOSIT_TOPIC = topic("Deposit(uint256,address,address,uint256)")


def _deposit_topics(log: dict[str, Any], escrow: str) -> list[str] | None:
    """The four topics of one of the escrow's Deposit logs; None for any other log."""
    topics = log.get("topics") or []
    if (
        len(topics) != 4
        or topics[0].lower() != DEPOSIT_TOPIC
        or str(log.get("address", "")).lower() != escrow.lower()
        or log.get("removed")
    ):
        return None
    return list(topics)


def decode_log(log: dict[str, Any], chain_id: int, escrow: str) -> Deposit | None:
    """The deposit a raw log describes, or None if it is not one of the escrow's Deposit logs."""
    topics = _deposit_topics(log, escrow)
    if topics is None:
        return None
    return Deposit(
        chain_id=chain_id,
        escrow=escrow,
        nonce=int(topics[1], 16),
        tx_hash=bytes.fromhex(log["transactionHash"][2:]),
        log_index=int(log["logIndex"], 16),
        block_number=int(log["blockNumber"], 16),
        sender=to_checksum_address("0x" + topics[2][-40:]),
        recipient=to_checksum_address("0x" + topics[3][-40:]),
        amount=int(log["data"], 16),
    )


def deposit_bodies(logs: list[dict[str, Any]], chain_id: int, escrow: str) -> list[bytes]:
    """``decode_log(log, chain_id, escrow).encode()`` of each of ``logs`` that is a deposit, in
    order, without the Deposit objects (this runs for every log of a backfill).

    The body is the ABI encoding of static types, i.e. 32-byte words, and the log carries the
    nonce, sender, recipient and amount as such words already: they are copied as hex, not
    decoded and re-encoded, and a chunk of usual logs is turned into bytes at once (one
    ``bytes.fromhex`` per chunk, not per log). Anything unusual takes the general path.
    """
    address, pad = escrow.lower(), "0" * 24
    words = []
    try:
        for log in logs:
            topics = log["topics"]
            topic, nonce, sender, recipient = topics
            tx_hash, amount, index, number = (
                log["transactionHash"],
                log["data"],
                log["logIndex"],
                log["blockNumber"],
            )
            if not (
                type(topics) is list
                and topic == DEPOSIT_TOPIC
                and log["address"] == address
                and not log.get("removed")
                and len(nonce) == len(sender) == len(recipient) == len(tx_hash) == len(amount) == 66
                and 2 < len(index) <= 66
                and 2 < len(number) <= 66
                and f"{nonce[:2]}{sender[:2]}{recipient[:2]}{tx_hash[:2]}{amount[:2]}{index[:2]}{number[:2]}"
                == "0x0x0x0x0x0x0x"
            ):
                break
            words.append(
                f"{nonce[2:]}{tx_hash[2:]}{index[2:]:0>64}{number[2:]:0>64}"
                f"{pad}{sender[26:]}{pad}{recipient[26:]}{amount[2:]}"
            )
        else:
            raw = bytes.fromhex("".join(words))
            # fromhex skips whitespace: any would leave fewer bytes than 7 words a log.
            if len(raw) == 224 * len(logs):
                head = bytes.fromhex(f"{chain_id:064x}{escrow[2:]:0>64}")
                return [head + raw[i : i + 224] for i in range(0, len(raw), 224)]
    except (KeyError, TypeError, ValueError):
        pass  # not the usual shape, or not hex
    return [body for body in (deposit_body(log, chain_id, escrow) for log in logs) if body is not None]


def deposit_body(log: dict[str, Any], chain_id: int, escrow: str) -> bytes | None:
    """``decode_log(log, chain_id, escrow).encode()``, or None: the nonce, sender, recipient
    and amount words copied from the log when it has the usual shape (see
    :func:`deposit_bodies`)."""
    topics = _deposit_topics(log, escrow)
    if topics is None:
        return None
    _, nonce, sender, recipient = topics
    tx_hash, amount = log["transactionHash"], log["data"]
    if all(len(v) == 66 and v[:2] == "0x" for v in (nonce, sender, recipient, tx_hash, amount)):
        try:
            body = bytes.fromhex(
                f"{chain_id:064x}{escrow[2:]:0>64}{nonce[2:]}{tx_hash[2:]}{int(log['logIndex'], 16):064x}"
                f"{int(log['blockNumber'], 16):064x}{sender[-40:]:0>64}{recipient[-40:]:0>64}{amount[2:]}"
            )
            if len(body) == 288:  # fromhex skips whitespace; an index past 2**256 makes it longer
                return body
        except ValueError:
            pass  # not hex: the general path decides (and raises as it always did)
    deposit = decode_log(log, chain_id, escrow)
    return None if deposit is None else deposit.encode()
