"""A fork's listener on the public Ethereum listener (`listeners.ethereum`), written with
public names only: it reads the test token's ERC20 `Transfer` and `Approval` logs from a real
anvil chain, votes each transfer as a resolution of its own, and a real solo node resolves
them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account

from listeners import EventStore, Service, register_listener
from listeners.ethereum import ContractEvents, EthereumConfig, Log, listen_to_contract, quantity, topic
from resolutions import App, BlockContext, Resolution, ResolutionConfig, register_resolution
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import make_home, running

TRANSFER = topic("Transfer(address,address,uint256)")
APPROVAL = topic("Approval(address,address,uint256)")


def decode(log: Log, config: EthereumConfig) -> bytes | None:
    """(from, to, amount) of a Transfer log; approvals are read but not voted."""
    if log["topics"][0] != TRANSFER:
        return None
    sender, recipient = (bytes.fromhex(t[-40:]) for t in log["topics"][1:3])
    return sender + recipient + quantity(log["data"]).to_bytes(32, "big")


EVENTS = ContractEvents(resolution="token_transfer", topics=(TRANSFER, APPROVAL), decode=decode)


def test_the_generic_decoder_skips_removed_logs_and_what_decode_skips() -> None:
    config = EthereumConfig.parse(
        {"rpc_url": "http://127.0.0.1:1", "contract_address": "0x" + "11" * 20, "chain_id": 1}, "t"
    )
    log = {"topics": [TRANSFER, "0x" + "0" * 24 + "aa" * 20, "0x" + "0" * 24 + "bb" * 20], "data": hex(5)}
    body = bytes.fromhex("aa" * 20 + "bb" * 20) + (5).to_bytes(32, "big")
    approval = {**log, "topics": [APPROVAL, *log["topics"][1:]]}
    assert EVENTS.bodies([log, {**log, "removed": True}, approval, log], config) == [body, body]


async def test_a_fork_listener_reads_another_contract_and_its_votes_resolve(
    tmp_path: Path, anvil: Anvil, chain: Any, bridge: dict[str, Any]
) -> None:
    async def resolve(app: App, resolution: Resolution, block: BlockContext) -> None:
        await app.set(resolution.body, block.height.to_bytes(8, "big"))

    register_resolution("token_transfer", ResolutionConfig(resolve=resolve))

    @register_listener("token_transfers", config=EthereumConfig)
    async def listen(service: Service, store: EventStore) -> None:
        await listen_to_contract(service, store, EVENTS)

    token = chain.contract("TestToken", bridge["token"])
    recipients = [Account.create().address for _ in range(3)]
    for i, recipient in enumerate(recipients):
        await chain.call(token.functions.transfer(recipient, 100 + i))
    await chain.call(token.functions.approve(recipients[0], 5))  # an Approval: read, not voted

    home = make_home(tmp_path / "n", None)
    table = {
        "rpc_url": anvil.url,
        "contract_address": bridge["token"],
        "chain_id": bridge["chain_id"],
        "starting_height": 0,
        "required_confirmations": 0,
        "poll_interval": 0.05,
    }
    with (home / "config.toml").open("a") as config:
        config.write("\n[app.extensions.token_transfers]\n")
        config.writelines(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
    deployer = bytes.fromhex(chain.account.address[2:])
    expected = {
        deployer + bytes.fromhex(r[2:]) + (100 + i).to_bytes(32, "big") for i, r in enumerate(recipients)
    }
    async with running(home) as node:

        async def resolved() -> bool:
            return len(await node.ledger.kv_items("token_transfer", limit=100)) == 4

        await wait_for(resolved, timeout=30)
        bodies = {key for key, _ in await node.ledger.kv_items("token_transfer", limit=100)}
        # The three transfers, and the mint to the deployer (a Transfer from address zero).
        assert expected < bodies and len(bodies - expected) == 1
        (mint,) = bodies - expected
        assert mint[:40] == bytes(20) + deployer
        assert node.listener_status["token_transfers"].counters["events_seen"] == 4
