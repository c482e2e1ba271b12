"""The solvency check on a real anvil chain and a real solo node: it follows deposits,
withdrawals and claims with the escrow holding exactly what the ledger owes, and when the
escrow holds less (its token balance cut on anvil, as a bug or a theft would), `/ready`
answers 503 with `escrow_short` and `/metrics` shows both figures."""

from __future__ import annotations

from typing import Any

import aiohttp
from eth_account import Account
from eth_utils.crypto import keccak

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, running_node
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import onchain
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import Chain
from tests.eth.withdrawals import escrow_home

USER = Account.from_key(b"\x66" * 32)


async def test_the_escrow_is_checked_against_what_the_ledger_owes(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory
) -> None:
    def solvency(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
        table = {"rpc_url": anvil_url, "chain_id": deployed["chain_id"], "escrow": deployed["escrow"]}
        return {"solvency": table | {"poll_interval": 0.1}}

    home, deployed, escrow = await escrow_home(eth, anvil_url, node_home, tables=solvency)
    signer = bytes.fromhex(USER.address[2:])
    recipient = Account.create().address
    async with running_node(home) as node, aiohttp.ClientSession() as http:

        async def figures(balance: int, owes: int) -> bool:
            info = node.listener("solvency")
            return (info.get("escrow_balance"), info.get("ledger_owes")) == (balance, owes)

        await deposit(eth, deployed["escrow"], 1000, USER.address)
        await node.wait_until(lambda: node.balance(account_id(signer)), timeout=30)
        await node.wait_until(lambda: figures(1000, 1000), timeout=30)

        # A withdrawal: debited on the ledger, still owed (its batch is not posted) ...
        tx = Tx("test-chain", "withdraw", signer, 0, Withdraw(bytes.fromhex(recipient[2:]), 300).encode())
        async with http.post(
            f"{node.api_url}/v1/tx", json={"tx": tx.sign_eth(USER.key, escrow).encode().hex()}
        ):
            pass

        async def signed() -> dict[str, Any] | None:
            async with http.get(f"{node.api_url}/v1/withdrawals/0") as r:
                found: dict[str, Any] = await r.json()
            return found if found.get("status") == "signed" else None

        await node.wait_until(signed, timeout=30)
        await node.wait_until(lambda: figures(1000, 1000), timeout=30)
        # ... posted: owed as the escrow's outstanding; claimed: gone from both sides.
        status = await signed()
        assert status is not None
        await onchain.submit_batch(eth, deployed["escrow"], status)
        await onchain.claim(eth, deployed["escrow"], status)
        await node.wait_until(lambda: figures(700, 700), timeout=30)
        assert node.listener("solvency")["problems"] == []

        # The escrow loses tokens it owes: OpenZeppelin's ERC20 keeps balances at slot 0.
        slot = keccak(bytes(12) + bytes.fromhex(deployed["escrow"][2:]) + bytes(32))
        await eth.w3.provider.make_request(
            "anvil_setStorageAt",
            [deployed["token"], "0x" + slot.hex(), "0x" + (500).to_bytes(32, "big").hex()],
        )
        await node.wait_until(lambda: figures(500, 700), timeout=30)
        assert node.listener("solvency")["problems"] == ["escrow_short"]
        async with http.get(f"{node.api_url}/ready") as r:
            assert r.status == 503 and "escrow_short" in await r.text()
        async with http.get(f"{node.api_url}/metrics") as r:
            metrics = await r.text()
        assert 'bridge_listener_value{field="escrow_balance",listener="solvency"} 500.0' in metrics
        assert 'bridge_listener_value{field="ledger_owes",listener="solvency"} 700.0' in metrics
