"""The built-in listener ``relayer``: sends what the validators signed to the escrow, so
nobody has to by hand (registered through the public API, like any listener).

Each pass, it reads the node's API and the escrow and sends, one transaction at a time:

1. every validator-set update the escrow lacks, in order (``GET /v1/valsets/{n}``, signed by
   set ``n - 1``) through ``updateValidatorSet``: batches are signed under the newest set,
   so the escrow must follow first;
2. every signed batch the escrow lacks, signed under the escrow's current set
   (``GET /v1/batches``), through ``submitBatch``.

It never pays twice for the same thing: it asks the escrow before each transaction, sends
nothing while one of its own is still pending (after a restart too: the account's pending
nonce is ahead of its mined one), and lets a transaction the escrow would refuse fail in
the gas estimate instead of on chain. Claims stay with the users (``bridge claim``), or
anyone. Its table is ``[app.extensions.relayer]``; it needs its own funded Ethereum key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account
from pydantic import BaseModel, ConfigDict, Field
from web3.exceptions import Web3Exception

from bridge.withdrawals import onchain
from listeners import ConfigError, EventStore, Service, parse_config, register_listener
from listeners.ethereum import Chain


class RelayerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled key is an error, not ignored

    rpc_url: str = Field(description="the Ethereum RPC URL of the escrow's chain")
    chain_id: int = Field(gt=0, description="that chain's id (checked against the endpoint)")
    escrow: str = Field(description="the BridgeEscrow's address")
    private_key_file: str = Field(description="a file holding the relayer's hex key (it pays the gas)")
    poll_interval: float = Field(2.0, gt=0, le=3600, description="seconds between passes")
    max_gas_price_gwei: int | None = Field(
        None, gt=0, description="send nothing while the gas price is above this (None: no cap)"
    )


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


class Relayer:
    def __init__(self, service: Service, config: RelayerConfig, chain: Chain) -> None:
        self.service, self.config, self.chain = service, config, chain
        self.escrow = chain.contract("BridgeEscrow", config.escrow)
        self.next_batch = 0  # batches below this are on chain

    async def _idle(self) -> bool:
        """Whether the relayer may send now: none of its transactions pending, gas under the cap."""
        address = self.chain.account.address
        mined = await self.chain.w3.eth.get_transaction_count(address, "latest")
        if await self.chain.w3.eth.get_transaction_count(address, "pending") > mined:
            return False
        cap = self.config.max_gas_price_gwei
        return cap is None or await self.chain.w3.eth.gas_price <= cap * 10**9

    async def relay(self, session: aiohttp.ClientSession, api: str) -> None:
        """One pass: the escrow's missing set updates, then its missing signed batches."""
        onchain_nonce = int(await self.escrow.functions.valsetNonce().call())
        latest = await _get(session, f"{api}/v1/valsets/latest")
        for nonce in range(onchain_nonce + 1, int(latest["nonce"]) + 1):
            update = await _get(session, f"{api}/v1/valsets/{nonce}")
            if update["status"] != "signed" or not await self._idle():
                return
            receipt = await onchain.update_valset(
                self.chain, self.config.escrow, update, update["previous"], update["signatures"]
            )
            self.service.status.count("valset_updates_sent")
            self.service.logger.info(
                "validator set %d in 0x%s", nonce, bytes(receipt["transactionHash"]).hex()
            )
            onchain_nonce = nonce
        listed = await _get(session, f"{api}/v1/batches?from={self.next_batch}")
        for batch in listed["batches"]:
            on_chain = bytes(await self.escrow.functions.batchRoots(batch["batch"]).call()) != bytes(32)
            if on_chain:
                if batch["batch"] == self.next_batch:
                    self.next_batch += 1
                continue
            if batch["status"] != "signed" or batch["valset"]["nonce"] != onchain_nonce:
                return  # not signed yet, or under a set the escrow has not reached
            if not await self._idle():
                return
            receipt = await onchain.submit_batch(self.chain, self.config.escrow, batch)
            self.service.status.count("batches_sent")
            self.service.logger.info(
                "batch %d in 0x%s", batch["batch"], bytes(receipt["transactionHash"]).hex()
            )


def _key(config: RelayerConfig) -> str:
    try:
        key = Path(config.private_key_file).read_text().strip()
        return str(Account.from_key(key).key.hex())
    except OSError as exc:
        raise ConfigError(
            f"app.extensions.relayer.private_key_file: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    except (ValueError, TypeError):
        raise ConfigError("app.extensions.relayer.private_key_file: not a 32-byte hex private key") from None


@register_listener("relayer", config=RelayerConfig, every_node=True)
async def listen(service: Service, store: EventStore) -> None:
    if service.config is None:
        service.logger.info("no [app.extensions.relayer] table: not relaying on this node")
        return
    config = parse_config(service, RelayerConfig)
    chain = await Chain.connect(config.rpc_url, _key(config))
    try:
        if await chain.w3.eth.chain_id != config.chain_id:
            raise ConfigError(
                f"app.extensions.relayer.chain_id is {config.chain_id}, but {config.rpc_url} serves"
                " another chain"
            )
        relayer = Relayer(service, config, chain)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                try:
                    await relayer.relay(session, service.node_api)
                    service.status.problem("relay_failed", active=False)
                except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, Web3Exception) as exc:
                    # The node busy, the endpoint down, a transaction reverted: the next pass
                    # asks the escrow again, so nothing is sent twice.
                    service.logger.warning("relay pass failed: %r", exc)
                    service.status.problem("relay_failed")
                await asyncio.sleep(config.poll_interval)
    finally:
        await chain.close()
