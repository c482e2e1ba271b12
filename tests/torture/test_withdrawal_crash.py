"""Crash torture of the way back, on 4 CometBFT validators and a real escrow on anvil:
withdrawals, deposits and claims go on while random validators are SIGKILLed, one at a time,
and restarted. At the end every withdrawal is in the ledger once, signed, paid once to its
recipient (a second claim reverts), the four nodes agree, and each node's solvency check
finds the escrow holding exactly what the ledger owes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from eth_account import Account
from web3.exceptions import ContractCustomError

from bridge.devnet.homes import POWER
from bridge.keys import account_id
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import eip712, onchain
from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil
from tests.network.conftest import Network, make_network

pytestmark = [pytest.mark.torture, pytest.mark.e2e]

SEED = 4_100_013
KILLS = 5
PER_KILL = 3
NODES = [0, 1, 2, 3]
SIGNER_KEYS = [bytes([0xA0 + i]) * 32 for i in range(4)]
USER = Account.from_key(b"\x67" * 32)


async def test_withdrawals_and_claims_while_validators_are_killed(
    tmp_path: Any, anvil: Anvil, chain: Chain
) -> None:
    rng = random.Random(SEED)
    deployed = await deploy_bridge(chain, signers=[(Account.from_key(k).address, POWER) for k in SIGNER_KEYS])
    escrow_address = deployed["escrow"]
    escrow = eip712.Domain(deployed["chain_id"], bytes.fromhex(escrow_address[2:]))
    solvency = {"rpc_url": anvil.url, "chain_id": deployed["chain_id"], "escrow": escrow_address}
    net: Network = await make_network(
        tmp_path,
        anvil.url,
        deployed,
        escrow=escrow,
        signer_keys=SIGNER_KEYS,
        node_extensions={i: {"solvency": solvency | {"poll_interval": 0.2}} for i in NODES},
    )
    token = chain.contract("TestToken", deployed["token"])
    recipients = [Account.from_key(rng.randbytes(32)).address for _ in range(4)]
    user = account_id(bytes.fromhex(USER.address[2:]))
    sent: list[tuple[str, int]] = []  # (recipient, amount) by withdrawal id
    paid: set[int] = set()
    try:
        for i in NODES:
            net.start(i)

        async def up(nodes: list[int]) -> bool:
            statuses = await asyncio.gather(*(net.status(i) for i in nodes))
            return all(s and s["caught_up"] and s["height"] >= 2 for s in statuses)

        await net.wait(lambda: up(NODES), what="4 validators producing blocks")
        deposited = 10**6
        await deposit(chain, escrow_address, deposited, USER.address)
        await anvil.mine(3)

        async def credited(amount: int) -> bool:
            return await net.balance(0, user) == amount

        await net.wait(lambda: credited(deposited), what="the first deposit credited")

        async def claim_signed(node: int) -> None:
            """Claim every withdrawal whose batch is signed, posting the batch first if needed."""
            for wid in range(len(sent)):
                status = None if wid in paid else await net.get(node, f"/v1/withdrawals/{wid}")
                if status is None or status["status"] != "signed":
                    continue
                contract = chain.contract("BridgeEscrow", escrow_address)
                if bytes(await contract.functions.batchRoots(status["batch"]).call()) == bytes(32):
                    await onchain.submit_batch(chain, escrow_address, status)
                await onchain.claim(chain, escrow_address, status)
                paid.add(wid)

        for _ in range(KILLS):
            victim = rng.choice(NODES)
            others = [i for i in NODES if i != victim]
            net.kill(victim)
            for _ in range(PER_KILL):
                recipient, amount = rng.choice(recipients), rng.randrange(1, 10_000)
                tx = Tx(
                    "bridge-devnet",
                    "withdraw",
                    bytes.fromhex(USER.address[2:]),
                    len(sent),
                    Withdraw(bytes.fromhex(recipient[2:]), amount).encode(),
                )
                raw = tx.sign_eth(USER.key, escrow).encode()
                async with net.session.post(
                    net.api(rng.choice(others)) + "/v1/tx", json={"tx": raw.hex()}
                ) as r:
                    assert r.status == 200, await r.text()
                sent.append((recipient, amount))
            extra = rng.randrange(1, 1000)
            await deposit(chain, escrow_address, extra, USER.address)
            await anvil.mine(3)
            deposited += extra
            await claim_signed(others[0])  # claims go on with a validator down
            net.start(victim)
            await net.wait(lambda: up(NODES), what=f"node{victim} back")

        async def all_signed() -> bool:
            statuses = [await net.get(0, f"/v1/withdrawals/{wid}") for wid in range(len(sent))]
            return all(s is not None and s["status"] == "signed" for s in statuses)

        await net.wait(all_signed, what="every withdrawal signed")
        assert await net.get(0, f"/v1/withdrawals/{len(sent)}") is None  # none twice, none extra
        await claim_signed(0)
        assert paid == set(range(len(sent)))

        # Each recipient got exactly its withdrawals; a second claim is refused.
        for recipient in recipients:
            expected = sum(a for r, a in sent if r == recipient)
            assert await token.functions.balanceOf(recipient).call() == expected
        with pytest.raises(ContractCustomError):
            await onchain.claim(chain, escrow_address, await net.get(0, "/v1/withdrawals/0"))
        await net.wait(
            lambda: credited(deposited - sum(a for _, a in sent)), what="the last deposit credited"
        )
        await net.same_app_hash(NODES)

        async def solvent_everywhere() -> bool:
            for i in NODES:
                info = (await net.status(i) or {}).get("listeners", {}).get("solvency", {})
                if info.get("problems") or info.get("escrow_balance") != info.get("ledger_owes"):
                    return False
                if info.get("escrow_balance") is None:
                    return False
            return True

        await net.wait(solvent_everywhere, what="every node's solvency check: escrow == owed")
    finally:
        await net.close()
