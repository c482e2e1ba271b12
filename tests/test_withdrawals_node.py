"""A withdrawal through a real solo node and its HTTP API: the user's signed `withdraw`, the
batch closing, the validator's signer service signing it, and `GET /v1/withdrawals/{id}`
serving what a claim needs (proof and signatures that check out)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from eth_account import Account

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, running_node
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import eip712
from bridge.withdrawals.merkle import verify

USER = Account.from_key(b"\x61" * 32)
RECIPIENT = "0x" + "ab" * 20
ESCROW = eip712.Domain(31337, bytes.fromhex("ee" * 20))


def with_escrow(home: Path) -> bytes:
    """Give the home's genesis an escrow and fund USER; returns the validator's signer."""
    path = home / "genesis.json"
    genesis = json.loads(path.read_text())
    genesis["escrow"] = {"chain_id": ESCROW.chain_id, "address": "0x" + ESCROW.escrow.hex()}
    genesis["accounts"] = [{"id": account_id(bytes.fromhex(USER.address[2:])), "balance": "1000"}]
    path.write_text(json.dumps(genesis))
    return bytes.fromhex(genesis["validators"][0]["eth_signer"][2:])


async def test_a_withdrawal_is_signed_by_the_validator_and_served_for_its_claim(
    node_home: NodeHomeFactory,
) -> None:
    home = node_home()
    signer = with_escrow(home)
    tx = Tx(
        "test-chain",
        "withdraw",
        bytes.fromhex(USER.address[2:]),
        0,
        Withdraw(bytes.fromhex(RECIPIENT[2:]), 300).encode(),
    )
    async with running_node(home) as node, aiohttp.ClientSession() as http:
        raw = tx.sign_eth(USER.key, ESCROW).encode()
        async with http.post(f"{node.api_url}/v1/tx", json={"tx": raw.hex()}) as answer:
            assert answer.status == 200, await answer.text()

        async def signed() -> dict[str, object] | None:
            async with http.get(f"{node.api_url}/v1/withdrawals/0") as answer:
                found: dict[str, object] = await answer.json()
            return found if found.get("status") == "signed" else None

        await node.wait_until(signed, timeout=30)
        status = await signed()
        assert status is not None
        assert await node.balance(account_id(bytes.fromhex(USER.address[2:]))) == 700
        assert (status["recipient"], status["amount"], status["batch"]) == (RECIPIENT, "300", 0)
        leaf = eip712.withdrawal_leaf(ESCROW, 0, 0, bytes.fromhex(RECIPIENT[2:]), 300)
        root = bytes.fromhex(str(status["root"])[2:])
        assert verify([bytes.fromhex(p[2:]) for p in status["proof"]], root, leaf)  # type: ignore[attr-defined]
        valset = status["valset"]
        assert valset == {"nonce": 0, "signers": ["0x" + signer.hex()], "powers": ["10"]}
        signatures = status["signatures"]
        assert isinstance(signatures, list) and len(signatures) == 1
        signature = str(signatures[0])
        digest = eip712.batch_digest(ESCROW, 0, root, 300, 0)
        assert eip712.recover(digest, bytes.fromhex(signature[2:])) == signer

        for path, code in (
            ("/v1/withdrawals/7", 404),
            ("/v1/withdrawals/x", 400),
            ("/v1/withdrawals/-1", 400),
        ):
            async with http.get(node.api_url + path) as answer:
                assert answer.status == code, path
                assert "error" in await answer.json()
