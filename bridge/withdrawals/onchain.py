"""Sending what the ledger signed to the escrow: ``submitBatch``, ``claim`` and
``updateValidatorSet``, from the JSON the node serves (``GET /v1/withdrawals/{id}``).
Anyone may send these: a relayer, or the user claiming for itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from listeners.ethereum import Chain, artifact


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def valset_arg(chain: Chain, valset: Mapping[str, Any]) -> tuple[int, list[str], list[int]]:
    """A ``ValidatorSet`` struct from its JSON (``nonce``, ``signers``, ``powers``)."""
    signers = [str(chain.w3.to_checksum_address(a)) for a in valset["signers"]]
    return int(valset["nonce"]), signers, [int(p) for p in valset["powers"]]


def signatures_arg(signatures: Sequence[str]) -> list[tuple[int, bytes, bytes]]:
    """``Signature`` structs from 65-byte hex ``r | s | v`` (all zero: a missing one, ``v = 0``)."""
    out = []
    for text in signatures:
        raw = _hex(text)
        out.append((raw[64], raw[:32], raw[32:64]))
    return out


async def submit_batch(chain: Chain, escrow: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Post a signed batch's root, from a withdrawal status whose ``status`` is ``signed``."""
    contract = chain.contract("BridgeEscrow", escrow)
    call = contract.functions.submitBatch(
        int(status["batch"]),
        _hex(status["root"]),
        int(status["total"]),
        valset_arg(chain, status["valset"]),
        signatures_arg(status["signatures"]),
    )
    return await chain.call(call)


async def claim(chain: Chain, escrow: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Pay a withdrawal of a posted batch to its recipient."""
    contract = chain.contract("BridgeEscrow", escrow)
    withdrawal = (int(status["id"]), chain.w3.to_checksum_address(status["recipient"]), int(status["amount"]))
    call = contract.functions.claim(int(status["batch"]), withdrawal, [_hex(p) for p in status["proof"]])
    return await chain.call(call)


async def update_valset(
    chain: Chain, escrow: str, new: Mapping[str, Any], current: Mapping[str, Any], signatures: Sequence[str]
) -> dict[str, Any]:
    """Move the escrow to validator set ``new``, signed by members of ``current``."""
    contract = chain.contract("BridgeEscrow", escrow)
    call = contract.functions.updateValidatorSet(
        valset_arg(chain, new), valset_arg(chain, current), signatures_arg(signatures)
    )
    return await chain.call(call)


def claim_calls(escrow: str, status: Mapping[str, Any]) -> dict[str, str]:
    """The calldata a wallet sends to claim a signed withdrawal itself (the explorer's claim
    button): ``batch_root`` asks whether the batch's root is posted (an ``eth_call``; zero:
    not yet), ``submit_batch`` posts it, ``claim`` pays."""
    contract = Web3().eth.contract(address=to_checksum_address(escrow), abi=artifact("BridgeEscrow")["abi"])
    valset = status["valset"]
    batch, proof = int(status["batch"]), [_hex(p) for p in status["proof"]]
    withdrawal = (int(status["id"]), to_checksum_address(status["recipient"]), int(status["amount"]))
    signers = [to_checksum_address(a) for a in valset["signers"]]
    return {
        "batch_root": contract.encode_abi("batchRoots", [batch]),
        "submit_batch": contract.encode_abi(
            "submitBatch",
            [
                batch,
                _hex(status["root"]),
                int(status["total"]),
                (int(valset["nonce"]), signers, [int(p) for p in valset["powers"]]),
                signatures_arg(status["signatures"]),
            ],
        ),
        "claim": contract.encode_abi("claim", [batch, withdrawal, proof]),
    }
