"""The built-in listener ``solvency``: does the escrow hold what the ledger owes?

Each pass reads, at one Ethereum block, the escrow's token balance, its ``outstanding``
(posted batches not yet claimed) and which of the ledger's batches it has; and from the node,
at one ledger height, every balance and every batch (``GET /v1/liabilities``). Then

    owed = balances - genesis balances + batches not posted yet + outstanding

Genesis balances are no deposits' (a devnet's observers' join bonds): nothing backs them.
Deposits the escrow has and the ledger has not credited yet only make the escrow richer. The
figures are in ``/v1/status`` and ``/metrics`` (``bridge_listener_value{listener="solvency"}``);
while the escrow holds less than the ledger owes, ``escrow_short`` makes ``/ready`` answer
503: how an operator learns of a bug before users do. Its table is
``[app.extensions.solvency]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from eth_account import Account
from pydantic import BaseModel, ConfigDict, Field
from web3.exceptions import Web3Exception

from listeners import ConfigError, EventStore, Service, parse_config, register_listener
from listeners.ethereum import Chain


class SolvencyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpc_url: str = Field(description="the Ethereum RPC URL of the escrow's chain")
    chain_id: int = Field(gt=0, description="that chain's id (checked against the endpoint)")
    escrow: str = Field(description="the BridgeEscrow's address")
    poll_interval: float = Field(5.0, gt=0, le=3600, description="seconds between checks")


async def check(service: Service, chain: Chain, escrow: Any, token: Any, first: int) -> int:
    """One check; returns the first batch the escrow may still lack."""
    block = await chain.w3.eth.block_number
    at = {"block_identifier": block}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{service.node_api}/v1/liabilities?from={first}") as response:
            response.raise_for_status()
            ledger = await response.json()
    balance = int(await token.functions.balanceOf(escrow.address).call(**at))
    owed = (
        int(ledger["balances"])
        - int(ledger["genesis_balances"])
        + int(await escrow.functions.outstanding().call(**at))
    )
    for batch in ledger["batches"]:
        posted = bytes(await escrow.functions.batchRoots(batch["batch"]).call(**at)) != bytes(32)
        if not posted:
            owed += int(batch["total"])
        elif batch["batch"] == first:
            first += 1
    service.status.report(
        escrow_balance=balance, ledger_owes=owed, checked_block=block, ledger_height=ledger["height"]
    )
    service.status.problem("escrow_short", balance < owed)
    if balance < owed:
        service.logger.error("the escrow holds %d, the ledger owes %d (block %d)", balance, owed, block)
    return first


@register_listener("solvency", config=SolvencyConfig, every_node=True)
async def listen(service: Service, store: EventStore) -> None:
    if service.config is None:
        service.logger.info("no [app.extensions.solvency] table: not checking the escrow on this node")
        return
    config = parse_config(service, SolvencyConfig)
    chain = await Chain.connect(config.rpc_url, Account.create().key.hex())  # reads only
    try:
        if await chain.w3.eth.chain_id != config.chain_id:
            raise ConfigError(
                f"app.extensions.solvency.chain_id is {config.chain_id}, but {config.rpc_url} serves"
                " another chain"
            )
        escrow = chain.contract("BridgeEscrow", config.escrow)
        token = chain.contract("TestToken", await escrow.functions.token().call())  # any ERC-20's ABI
        first = 0
        while True:
            try:
                first = await check(service, chain, escrow, token, first)
                service.status.problem("solvency_unchecked", False)
            except (aiohttp.ClientError, TimeoutError, ValueError, Web3Exception) as exc:
                service.logger.warning("solvency check failed: %r", exc)
                service.status.problem("solvency_unchecked")
            await asyncio.sleep(config.poll_interval)
    finally:
        await chain.close()
