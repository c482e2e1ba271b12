"""The escrow side of the example: deploying a BridgeEscrow (and a test token), making
deposits, the listener's table for a deployment, and ``bridge devnet``'s setup step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.logs import DISCARD

from listeners import DevnetContext, register_devnet_setup
from listeners.eth_claims import ETH_CLAIMS
from listeners.ethereum import Chain

ETH_DEPOSITS = "eth_deposits"  # the listener's name (and its config table's)
DEVNET_CONFIRMATIONS = 2


async def deploy_bridge(
    chain: Chain, token: str | None = None, signers: Sequence[tuple[str, int]] | None = None
) -> dict[str, Any]:
    """Deploy a TestToken (unless ``token`` is given: then 10**24 are minted to the deployer)
    and a BridgeEscrow for it, whose first validator set is ``signers`` ((address, power);
    default: the deployer alone, for a network that only deposits)."""
    if token is None:
        token, _ = await chain.deploy("TestToken", "Bridge Test Token", "BTT")
        await chain.call(chain.contract("TestToken", token).functions.mint(chain.account.address, 10**24))
    members = sorted((int(a, 16), p) for a, p in (signers or [(chain.account.address, 1)]))
    addresses = [chain.w3.to_checksum_address(a.to_bytes(20, "big")) for a, _ in members]
    escrow, block = await chain.deploy(
        "BridgeEscrow", chain.w3.to_checksum_address(token), addresses, [p for _, p in members]
    )
    return {
        "chain_id": await chain.w3.eth.chain_id,
        "token": token,
        "escrow": escrow,
        "deployment_block": block,
    }


async def deposit(chain: Chain, escrow: str, amount: int, recipient: str | None = None) -> dict[str, Any]:
    """Approve the escrow and deposit ``amount`` for ``recipient`` (default: the sender)."""
    bridge = chain.contract("BridgeEscrow", escrow)
    token = chain.contract("TestToken", await bridge.functions.token().call())
    await chain.call(token.functions.approve(bridge.address, amount))
    fn = (
        bridge.functions.deposit(amount, chain.w3.to_checksum_address(recipient))
        if recipient
        else bridge.functions.deposit(amount)
    )
    receipt = await chain.call(fn)
    events = bridge.events.Deposit().process_receipt(receipt, errors=DISCARD)
    return {
        "tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(),
        "block": int(receipt["blockNumber"]),
        "nonce": int(events[0]["args"]["nonce"]),
        "amount": int(events[0]["args"]["amount"]),
        "recipient": str(events[0]["args"]["recipient"]),
    }


def devnet_table(rpc_url: str, deployed: dict[str, Any]) -> dict[str, Any]:
    """A local network node's ``[app.extensions.eth_deposits]`` table, from
    ``bridge contracts deploy``'s output."""
    return {
        "rpc_url": rpc_url,
        "contract_address": deployed["escrow"],
        "chain_id": deployed["chain_id"],
        "starting_height": deployed["deployment_block"],
        "required_confirmations": DEVNET_CONFIRMATIONS,
        "poll_interval": 0.5,
    }


@register_devnet_setup
async def devnet_setup(ctx: DevnetContext) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``bridge devnet``: deploy a test token and the escrow, whose first set is the
    validators' signers; every node watches its deposits and its claims."""
    chain = await Chain.connect(ctx.rpc_url, ctx.private_key)
    try:
        deployed = await deploy_bridge(chain, signers=ctx.signers or None)
    finally:
        await chain.close()
    table = devnet_table(ctx.rpc_url, deployed)
    if not ctx.signers:  # deposits only
        return {ETH_DEPOSITS: table}, {"contracts": deployed}
    escrow = {"chain_id": deployed["chain_id"], "address": deployed["escrow"]}
    return {ETH_DEPOSITS: table, ETH_CLAIMS: table}, {"contracts": deployed, "escrow": escrow}
