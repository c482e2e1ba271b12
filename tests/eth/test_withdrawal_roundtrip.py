"""The round trip on a real anvil chain and a real solo node: deposit, credit, transfer,
withdraw, signed by the validator's signer service, the root posted to the escrow, the claim
paid; the recipient's token balance rises by exactly the amount, and a second claim reverts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from web3.exceptions import ContractCustomError

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, running_node
from bridge.txs import Transfer, Tx
from bridge.withdrawals import onchain
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import ANVIL_KEY, Chain, revert_reason
from tests.eth.withdrawals import bridge, escrow_home

USER = Account.from_key(b"\x62" * 32)
FRIEND = "0x" + "cd" * 20


async def post_tx(http: aiohttp.ClientSession, api: str, raw: bytes) -> None:
    async with http.post(f"{api}/v1/tx", json={"tx": raw.hex()}) as answer:
        assert answer.status == 200, await answer.text()


async def test_deposit_withdraw_claim_round_trip(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "user.key"
    key_file.write_text("0x" + bytes(USER.key).hex())
    home, bridge_, escrow = await escrow_home(eth, anvil_url, node_home)
    token = eth.contract("TestToken", bridge_["token"])
    recipient = Account.create().address
    user = account_id(bytes.fromhex(USER.address[2:]))
    signer = bytes.fromhex(USER.address[2:])

    async with running_node(home) as node, aiohttp.ClientSession() as http:
        await deposit(eth, bridge_["escrow"], 1000, USER.address)
        await node.wait_until(lambda: node.balance(user), timeout=30)
        assert await node.balance(user) == 1000

        transfer = Tx("test-chain", "transfer", signer, 0, Transfer(bytes.fromhex(FRIEND[2:]), 100).encode())
        await post_tx(http, node.api_url, transfer.sign_eth(USER.key, escrow).encode())
        await node.wait_until(lambda: node.balance(FRIEND), timeout=30)
        # The user's CLI: `bridge withdraw` signs the typed data and prints the withdrawal's id.
        key = ["--private-key-file", str(key_file), "--node", node.api_url]
        code, out, err = await bridge(capsys, "withdraw", "--recipient", recipient, "--amount", "400", *key)
        assert code == 0 and json.loads(out)["withdrawal"] == 0, err

        async def signed() -> dict[str, Any] | None:  # by the validator's signer service
            async with http.get(f"{node.api_url}/v1/withdrawals/0") as answer:
                found: dict[str, Any] = await answer.json()
            return found if found.get("status") == "signed" else None

        await node.wait_until(signed, timeout=30)
        status = await signed()
        assert status is not None
        assert await node.balance(user) == 500 and await node.balance(FRIEND) == 100

        # `bridge claim` posts the signed root, then pays; anyone may send it (here the deployer).
        before = await token.functions.balanceOf(recipient).call()
        gas = ["--private-key", ANVIL_KEY, "--node", node.api_url, "--rpc", anvil_url]
        code, out, err = await bridge(capsys, "claim", "0", *gas)
        assert code == 0 and {"submit_batch_tx", "claim_tx"} <= set(json.loads(out)), err
        assert await token.functions.balanceOf(recipient).call() == before + 400
        shown_args = ["withdrawal-status", "0", "--json", "--rpc", anvil_url, "--node", node.api_url]
        code, out, err = await bridge(capsys, *shown_args)
        shown = json.loads(out)
        assert code == 0 and shown["claimed_on_chain"] is True and shown["root_on_chain"] is True, err
        # A second claim is refused by the escrow, in one line; nothing moves.
        code, _, err = await bridge(capsys, "claim", "0", *gas)
        assert code == 1 and "AlreadyClaimed" in err
        assert await token.functions.balanceOf(recipient).call() == before + 400

    escrow_contract = eth.contract("BridgeEscrow", bridge_["escrow"])
    assert await escrow_contract.functions.outstanding().call() == 0
    with pytest.raises(ContractCustomError) as again:
        await onchain.claim(eth, bridge_["escrow"], status)
    assert revert_reason(str(again.value.data)).startswith("AlreadyClaimed")
