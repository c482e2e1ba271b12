"""Deploying contracts and sending transactions: ``Chain``, the committed artifacts, and
naming a revert's custom error. For command-line tools, tests and devnet setup steps (the
listener itself reads with ``listeners.ethereum.client``).

Transactions are signed locally (eth-account) and sent raw, so this works against any
JSON-RPC endpoint, not only a dev chain with unlocked accounts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

ARTIFACTS = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


@cache
def artifact(name: str) -> dict[str, Any]:
    """ABI and creation bytecode of a contract, from the committed build artifacts
    (``contracts/artifacts/<name>.json``)."""
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return data


@dataclass
class Chain:
    """A web3 connection and a signing account."""

    w3: AsyncWeb3[AsyncHTTPProvider]
    account: LocalAccount

    @classmethod
    async def connect(cls, rpc: str, private_key: str, timeout: float = 30.0) -> Chain:
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc, request_kwargs={"timeout": timeout}))
        return cls(w3, Account.from_key(private_key))

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    async def send(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Sign, send and wait for ``tx``; raises if it reverted."""
        tx.setdefault("from", self.account.address)
        tx.setdefault("nonce", await self.w3.eth.get_transaction_count(self.account.address, "pending"))
        tx.setdefault("chainId", await self.w3.eth.chain_id)
        if "gas" not in tx:
            tx["gas"] = int(await self.w3.eth.estimate_gas(tx) * 12 // 10)  # type: ignore[arg-type]
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            tx["gasPrice"] = await self.w3.eth.gas_price
        signed = self.account.sign_transaction(tx)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = dict(await self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120))
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    async def deploy(self, name: str, *args: Any) -> tuple[str, int]:
        """Deploy contract ``name`` (an artifact); returns (address, block number)."""
        a = artifact(name)
        contract = self.w3.eth.contract(abi=a["abi"], bytecode=a["bytecode"])
        receipt = await self.send(
            await contract.constructor(*args).build_transaction({"from": self.account.address})
        )
        return str(receipt["contractAddress"]), int(receipt["blockNumber"])

    def contract(self, name: str, address: str) -> Any:
        """The deployed contract ``name`` (an artifact) at ``address``."""
        return self.w3.eth.contract(address=self.w3.to_checksum_address(address), abi=artifact(name)["abi"])

    async def call(self, fn: Any) -> dict[str, Any]:
        """Send a contract function call as a transaction; returns its receipt."""
        return await self.send(await fn.build_transaction({"from": self.account.address}))


def revert_reason(data: str) -> str:
    """Name a custom error from its selector, using the ABIs of the committed artifacts."""
    for path in sorted(ARTIFACTS.glob("*.json")):
        for item in artifact(path.stem)["abi"]:
            if item.get("type") == "error":
                signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                if data.startswith("0x" + keccak(text=signature).hex()[:8]):
                    return f"{item['name']} ({data})"
    return data
