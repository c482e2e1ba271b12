"""Validator-set rotation on chain, on four CometBFT validators and an observer: the observer
joins and a validator leaves; each change is a new set that the set before it signs; relayed
to the escrow, the on-chain set follows. A batch signed only by the old set is refused after
the rotation, is signed again by the new set, and is paid; a withdrawal made after the
rotation is paid too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3.exceptions import ContractCustomError

from bridge.cli import main
from bridge.devnet.homes import POWER
from bridge.keys import account_id
from bridge.txs import Tx, Withdraw
from bridge.withdrawals import eip712, onchain
from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain, revert_reason
from tests.eth.conftest import Anvil
from tests.network.conftest import Network, make_network

SIGNER_KEYS = [bytes([0x90 + i]) * 32 for i in range(5)]  # four validators and the observer
USER = Account.from_key(b"\x64" * 32)
# anvil's second default account: funded, and not the deployer, so the relayer pays its own gas.
RELAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def cli(*argv: str) -> dict[str, Any]:
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


async def join(net: Network, node: int, approvers: tuple[int, ...]) -> None:
    """``node`` asks to join (its request registers its signing key, with a proof), and
    ``approvers`` approve once the request is in the ledger: all with the CLI."""
    home, api = str(net.homes[node]), net.api(node)
    asked = await asyncio.to_thread(
        cli, "validators", "join", "--home", home, "--node", api, "--power", str(POWER)
    )

    async def requested() -> bool:
        data = await net.get(0, "/v1/validators")
        return bool(data) and [r["id"] for r in data["requests"]] == [asked["request_id"]]

    await net.wait(requested, what="the join request")
    for i in approvers:
        args = (
            "validators",
            "approve",
            asked["request_id"],
            "--home",
            str(net.homes[i]),
            "--node",
            net.api(i),
        )
        await asyncio.to_thread(cli, *args)


async def withdraw(net: Network, escrow: eip712.Domain, nonce: int, recipient: str, amount: int) -> None:
    signer = bytes.fromhex(USER.address[2:])
    tx = Tx(
        "bridge-devnet", "withdraw", signer, nonce, Withdraw(bytes.fromhex(recipient[2:]), amount).encode()
    )
    async with net.session.post(
        net.api(0) + "/v1/tx", json={"tx": tx.sign_eth(USER.key, escrow).encode().hex()}
    ) as r:
        assert r.status == 200, await r.text()


async def test_rotation_reaches_the_escrow_and_old_signatures_stop_counting(
    tmp_path: Path, anvil: Anvil, chain: Chain
) -> None:
    signers = [(Account.from_key(k).address, POWER) for k in SIGNER_KEYS[:4]]
    deployed = await deploy_bridge(chain, signers=signers)
    escrow_address = deployed["escrow"]
    escrow = eip712.Domain(deployed["chain_id"], bytes.fromhex(escrow_address[2:]))
    net = await make_network(
        tmp_path, anvil.url, deployed, observers=1, join_bond=0, escrow=escrow, signer_keys=SIGNER_KEYS
    )
    contract = chain.contract("BridgeEscrow", escrow_address)
    token = chain.contract("TestToken", deployed["token"])
    recipients = [Account.create().address for _ in range(2)]
    try:
        for i in range(5):
            net.start(i)

        async def up(nodes: list[int]) -> bool:
            statuses = await asyncio.gather(*(net.status(i) for i in nodes))
            return all(s and s["height"] >= 2 and s["caught_up"] for s in statuses)

        await net.wait(lambda: up([0, 1, 2, 3, 4]), what="the network and its observer")
        await deposit(chain, escrow_address, 3000, USER.address)
        await anvil.mine(5)
        user = account_id(bytes.fromhex(USER.address[2:]))

        async def credited() -> bool:
            return await net.balance(0, user) == 3000

        await net.wait(credited, what="the deposit credited")

        async def withdrawal(wid: int, nonce: int) -> dict[str, Any]:
            """The withdrawal once signed under validator set ``nonce``."""
            found: list[dict[str, Any]] = []

            async def ready() -> bool:
                status = await net.get(0, f"/v1/withdrawals/{wid}")
                ok = (
                    status is not None and status["status"] == "signed" and status["valset"]["nonce"] == nonce
                )
                found[:] = [status] if ok else []
                return ok

            await net.wait(ready, what=f"withdrawal {wid} signed under set {nonce}")
            return found[0]

        async def valset(nonce: int) -> dict[str, Any]:
            found: list[dict[str, Any]] = []

            async def ready() -> bool:
                status = await net.get(0, f"/v1/valsets/{nonce}")
                found[:] = [status] if status is not None and status["status"] == "signed" else []
                return bool(found)

            await net.wait(ready, what=f"validator set {nonce} signed by the set before")
            return found[0]

        await withdraw(net, escrow, 0, recipients[0], 1000)
        before_rotation = await withdrawal(0, 0)  # signed by set 0, not posted

        # The observer joins (its join request registers its signing key, with a proof) ...
        await join(net, 4, approvers=(0, 1, 2))
        set1 = await valset(1)
        assert len(set1["signers"]) == 5 and set1["previous"]["nonce"] == 0
        # ... and validator 3 leaves: set 2, signed by set 1 (without the one leaving: 40 of 50).
        await asyncio.to_thread(cli, "validators", "leave", "--home", str(net.homes[3]), "--node", net.api(3))
        set2 = await valset(2)
        leaving = Account.from_key(SIGNER_KEYS[3]).address.lower()
        assert len(set2["signers"]) == 4 and leaving not in set2["signers"]

        # A relayer moves the escrow along, in order; the on-chain set follows the ledger's.
        for new in (set1, set2):
            await onchain.update_valset(chain, escrow_address, new, new["previous"], new["signatures"])
        assert await contract.functions.valsetNonce().call() == 2
        assert bytes(await contract.functions.checkpoint().call()) == eip712.checkpoint(
            2, [bytes.fromhex(a[2:]) for a in set2["signers"]], [int(p) for p in set2["powers"]]
        )

        # The batch signed by set 0 alone no longer counts on chain ...
        with pytest.raises(ContractCustomError) as refused:
            await onchain.submit_batch(chain, escrow_address, before_rotation)
        assert revert_reason(str(refused.value.data)).startswith("IncorrectCheckpoint")
        # ... the new set signs it again, and it is paid.
        again = await withdrawal(0, 2)
        await onchain.submit_batch(chain, escrow_address, again)
        await onchain.claim(chain, escrow_address, again)
        assert await token.functions.balanceOf(recipients[0]).call() == 1000

        # A withdrawal made after the rotation is paid.
        await withdraw(net, escrow, 1, recipients[1], 500)
        after = await withdrawal(1, 2)
        await onchain.submit_batch(chain, escrow_address, after)
        await onchain.claim(chain, escrow_address, after)
        assert await token.functions.balanceOf(recipients[1]).call() == 500
        await net.same_app_hash([0, 1, 2, 4])
    finally:
        await net.close()


async def test_the_relayer_moves_the_escrow_to_each_new_set_and_posts_batches(
    tmp_path: Path, anvil: Anvil, chain: Chain
) -> None:
    """The same rotation with node 0's built-in relayer: nobody relays by hand."""
    signers = [(Account.from_key(k).address, POWER) for k in SIGNER_KEYS[:4]]
    deployed = await deploy_bridge(chain, signers=signers)
    escrow_address = deployed["escrow"]
    escrow = eip712.Domain(deployed["chain_id"], bytes.fromhex(escrow_address[2:]))
    key_file = tmp_path / "relayer.key"
    key_file.write_text(RELAYER_KEY)
    relayer = {
        "rpc_url": anvil.url,
        "chain_id": deployed["chain_id"],
        "escrow": escrow_address,
        "private_key_file": str(key_file),
        "poll_interval": 0.2,
    }
    net = await make_network(
        tmp_path,
        anvil.url,
        deployed,
        observers=1,
        join_bond=0,
        escrow=escrow,
        signer_keys=SIGNER_KEYS,
        node_extensions={0: {"relayer": relayer}},
    )
    contract = chain.contract("BridgeEscrow", escrow_address)
    recipient = Account.create().address
    try:
        for i in range(5):
            net.start(i)

        async def up() -> bool:
            statuses = await asyncio.gather(*(net.status(i) for i in range(5)))
            return all(s and s["height"] >= 2 and s["caught_up"] for s in statuses)

        await net.wait(up, what="the network and its observer")
        await join(net, 4, approvers=(0, 1, 2))

        async def escrow_at(nonce: int) -> bool:
            return int(await contract.functions.valsetNonce().call()) == nonce

        await net.wait(lambda: escrow_at(1), what="the relayer to move the escrow to set 1")
        await deposit(chain, escrow_address, 700, USER.address)
        await anvil.mine(5)

        async def credited() -> bool:
            return await net.balance(0, account_id(bytes.fromhex(USER.address[2:]))) == 700

        await net.wait(credited, what="the deposit credited")
        await withdraw(net, escrow, 0, recipient, 300)

        async def posted() -> bool:
            return bytes(await contract.functions.batchRoots(0).call()) != bytes(32)

        await net.wait(posted, what="the relayer to post batch 0")
        status = await net.get(0, "/v1/withdrawals/0")
        assert status is not None and status["valset"]["nonce"] == 1
        await onchain.claim(chain, escrow_address, status)
        token = chain.contract("TestToken", deployed["token"])
        assert await token.functions.balanceOf(recipient).call() == 300
        relayed = (await net.status(0) or {})["listeners"]["relayer"]["counters"]
        assert relayed == {"valset_updates_sent": 1, "batches_sent": 1}
    finally:
        await net.close()
