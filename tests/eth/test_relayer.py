"""The built-in relayer on a real anvil chain and a real solo node: a withdrawal's batch,
once the validator signed it, reaches the escrow without anyone sending it by hand, exactly
once; the user then claims it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from bridge.keys import account_id
from bridge.testing import NodeHomeFactory, running_node
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import onchain
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import Chain
from tests.eth.withdrawals import escrow_home

USER = Account.from_key(b"\x65" * 32)
# anvil's second default account: funded, and not the deployer, so the relayer pays its own gas.
RELAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


async def test_the_relayer_posts_each_signed_batch_once(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory, tmp_path: Path
) -> None:
    key_file = tmp_path / "relayer.key"
    key_file.write_text(RELAYER_KEY)

    def relayer(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            "relayer": {
                "rpc_url": anvil_url,
                "chain_id": deployed["chain_id"],
                "escrow": deployed["escrow"],
                "private_key_file": str(key_file),
                "poll_interval": 0.1,
            }
        }

    home, deployed, escrow = await escrow_home(eth, anvil_url, node_home, tables=relayer)
    contract = eth.contract("BridgeEscrow", deployed["escrow"])
    recipient = Account.create().address
    signer = bytes.fromhex(USER.address[2:])

    async with running_node(home) as node, aiohttp.ClientSession() as http:
        await deposit(eth, deployed["escrow"], 1000, USER.address)
        await node.wait_until(lambda: node.balance(account_id(signer)), timeout=30)
        tx = Tx("test-chain", "withdraw", signer, 0, Withdraw(bytes.fromhex(recipient[2:]), 250).encode())
        async with http.post(
            f"{node.api_url}/v1/tx", json={"tx": tx.sign_eth(USER.key, escrow).encode().hex()}
        ) as r:
            assert r.status == 200, await r.text()

        async def posted() -> bool:
            return bytes(await contract.functions.batchRoots(0).call()) != bytes(32)

        await node.wait_until(posted, timeout=60)
        async with http.get(f"{node.api_url}/v1/withdrawals/0") as r:
            status = await r.json()
        assert bytes(await contract.functions.batchRoots(0).call()).hex() == status["root"][2:]
        # More passes send nothing more: the escrow already has it.
        passes = node.listener("relayer")["counters"]
        height = node.node.ledger.height
        await node.wait_until(lambda: node.node.ledger.height >= height + 10, timeout=30)
        assert node.listener("relayer")["counters"] == passes == {"batches_sent": 1}
        assert node.listener("relayer")["problems"] == []

    await onchain.claim(eth, deployed["escrow"], status)
    token = eth.contract("TestToken", deployed["token"])
    assert await token.functions.balanceOf(recipient).call() == 250


async def test_a_misconfigured_relayer_stops_the_node_with_one_line(
    anvil_url: str, node_home: NodeHomeFactory, tmp_path: Path
) -> None:
    """A wrong key name, an unreadable key file or a chain id the endpoint does not serve:
    the node stops on the listener's ConfigError, which names the key."""
    key_file = tmp_path / "relayer.key"
    key_file.write_text(RELAYER_KEY)
    base = {
        "rpc_url": anvil_url,
        "chain_id": 31337,
        "escrow": "0x" + "ee" * 20,
        "private_key_file": str(key_file),
    }
    cases = {
        "app.extensions.relayer.poll_intervall": base | {"poll_intervall": 1},
        "app.extensions.relayer.private_key_file": base | {"private_key_file": str(tmp_path / "missing.key")},
        "app.extensions.relayer.chain_id": base | {"chain_id": 1},
    }
    for i, (named, table) in enumerate(cases.items()):
        home = node_home({"relayer": table}, name=f"n{i}")
        async with running_node(home) as node:
            await node.wait_until(lambda: node.node.fatal is not None, timeout=30)
        assert node.node.fatal is not None
        name, error = node.node.fatal
        assert name == "relayer" and named in str(error), (named, error)
