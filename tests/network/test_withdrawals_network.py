"""Withdrawals on four real CometBFT validators and a real escrow on anvil: deposit, credit,
withdraw, signed by the validators' signer services, posted and claimed; with one validator
down they are still signed (3 of 4 is more than 2/3) and paid; with two down nothing is
signed or paid, and both resume when the two return."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3.exceptions import ContractCustomError

from bridge.devnet.homes import POWER
from bridge.keys import account_id
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import eip712, onchain
from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain, revert_reason
from tests.eth.conftest import Anvil
from tests.network.conftest import Network, make_network

SIGNER_KEYS = [bytes([0x70 + i]) * 32 for i in range(4)]
USER = Account.from_key(b"\x63" * 32)


async def withdraw(net: Network, escrow: eip712.Domain, nonce: int, recipient: str, amount: int) -> None:
    signer = bytes.fromhex(USER.address[2:])
    tx = Tx(
        "bridge-devnet", "withdraw", signer, nonce, Withdraw(bytes.fromhex(recipient[2:]), amount).encode()
    )
    raw = tx.sign_eth(USER.key, escrow).encode()
    async with net.session.post(net.api(0) + "/v1/tx", json={"tx": raw.hex()}) as answer:
        assert answer.status == 200, await answer.text()


async def signed(net: Network, node: int, wid: int) -> dict[str, Any] | None:
    status: dict[str, Any] | None = await net.get(node, f"/v1/withdrawals/{wid}")
    return status if status is not None and status["status"] == "signed" else None


async def test_withdrawals_are_signed_by_two_thirds_with_one_down_and_wait_with_two_down(
    tmp_path: Path, anvil: Anvil, chain: Chain
) -> None:
    signers = [(Account.from_key(k).address, POWER) for k in SIGNER_KEYS]
    deployed = await deploy_bridge(chain, signers=signers)
    escrow = eip712.Domain(deployed["chain_id"], bytes.fromhex(deployed["escrow"][2:]))
    net = await make_network(tmp_path, anvil.url, deployed, escrow=escrow, signer_keys=SIGNER_KEYS)
    token = chain.contract("TestToken", deployed["token"])
    recipients = [Account.create().address for _ in range(3)]
    try:
        for i in range(4):
            net.start(i)

        async def up(nodes: list[int]) -> bool:
            statuses = await asyncio.gather(*(net.status(i) for i in nodes))
            return all(s and s["height"] >= 2 and s["caught_up"] for s in statuses)

        await net.wait(lambda: up([0, 1, 2, 3]), what="4 validators producing blocks")
        await deposit(chain, deployed["escrow"], 3000, USER.address)
        await anvil.mine(5)  # past the listeners' safety point
        user = account_id(bytes.fromhex(USER.address[2:]))

        async def credited() -> bool:
            return await net.balance(0, user) == 3000

        await net.wait(credited, what="the deposit credited")

        async def paid(wid: int, recipient: str, amount: int) -> dict[str, Any]:
            found: list[dict[str, Any]] = []

            async def is_signed() -> bool:
                status = await signed(net, 0, wid)
                found[:] = [status] if status else []
                return bool(found)

            await net.wait(is_signed, what=f"withdrawal {wid} signed")
            before = await token.functions.balanceOf(recipient).call()
            await onchain.submit_batch(chain, deployed["escrow"], found[0])
            await onchain.claim(chain, deployed["escrow"], found[0])
            assert await token.functions.balanceOf(recipient).call() == before + amount
            return found[0]

        # All four up.
        await withdraw(net, escrow, 0, recipients[0], 1000)
        first = await paid(0, recipients[0], 1000)
        with pytest.raises(ContractCustomError) as again:
            await onchain.claim(chain, deployed["escrow"], first)
        assert revert_reason(str(again.value.data)).startswith("AlreadyClaimed")

        # One of four down: 3 of 4 is more than 2/3, of the ledger and of the escrow's set.
        net.kill(3)
        await withdraw(net, escrow, 1, recipients[1], 500)
        second = await paid(1, recipients[1], 500)
        assert second["signed_power"] == str(3 * POWER)
        assert sum(sig == "0x" + "00" * 65 for sig in second["signatures"]) == 1  # the one down

        # Two of four down: the ledger cannot commit, so nothing is signed and nothing is paid.
        net.kill(2)
        await withdraw(net, escrow, 2, recipients[2], 200)
        await asyncio.sleep(5)  # a few block times of a healthy network: long enough to see nothing move
        assert await net.get(0, "/v1/withdrawals/2") is None
        assert await token.functions.balanceOf(recipients[2]).call() == 0

        # Both return: the withdrawal waiting in the mempool is executed, signed and paid.
        net.start(2)
        net.start(3)
        await net.wait(lambda: up([0, 1, 2, 3]), what="the network back at four")
        await paid(2, recipients[2], 200)
        assert await net.balance(0, user) == 3000 - 1000 - 500 - 200
        await net.same_app_hash([0, 1, 2, 3])
    finally:
        await net.close()
