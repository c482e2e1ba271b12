"""A fork's listener on the public Ethereum listener (`listeners.ethereum`), written with
public names and the test harness (`bridge.testing`) only: it reads a token's ERC20
`Transfer` and `Approval` logs from a real anvil chain, votes each transfer as a resolution
of its own, and a real solo node resolves them."""

from __future__ import annotations

from eth_account import Account

from bridge.testing import NodeHomeFactory, running_node
from listeners import EventStore, Service, register_listener
from listeners.ethereum import Chain, ContractEvents, EthereumConfig, Log, listen_to_contract, quantity, topic
from resolutions import ResolutionConfig, ResolveContext, register_resolution

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
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory
) -> None:
    """Written as a fork writes it: the harness's fixtures (bridge.testing), public names."""

    async def resolve(ctx: ResolveContext) -> None:
        await ctx.app.set(ctx.resolution.body, ctx.block.height.to_bytes(8, "big"))

    register_resolution("token_transfer", ResolutionConfig(resolve=resolve))

    @register_listener("token_transfers", config=EthereumConfig)
    async def listen(service: Service, store: EventStore) -> None:
        await listen_to_contract(service, store, EVENTS)

    address, block = await eth.deploy("TestToken", "Fork Token", "FT")
    token = eth.contract("TestToken", address)
    await eth.call(token.functions.mint(eth.account.address, 10**6))
    recipients = [Account.create().address for _ in range(3)]
    for i, recipient in enumerate(recipients):
        await eth.call(token.functions.transfer(recipient, 100 + i))
    await eth.call(token.functions.approve(recipients[0], 5))  # an Approval: read, not voted

    table = {
        "rpc_url": anvil_url,
        "contract_address": address,
        "chain_id": await eth.w3.eth.chain_id,
        "starting_height": block,
        "required_confirmations": 0,
        "poll_interval": 0.05,
    }
    deployer = bytes.fromhex(eth.account.address[2:])
    mint = bytes(20) + deployer + (10**6).to_bytes(32, "big")  # a Transfer from address zero
    expected = {mint} | {
        deployer + bytes.fromhex(r[2:]) + (100 + i).to_bytes(32, "big") for i, r in enumerate(recipients)
    }
    async with running_node(node_home({"token_transfers": table})) as node:

        async def resolved() -> bool:
            return len(await node.kv("token_transfer")) == 4

        await node.wait_until(resolved, timeout=30)
        assert set(await node.kv("token_transfer")) == expected
        assert node.listener("token_transfers")["counters"]["events_seen"] == 4
        assert len(await node.resolutions("confirmed", "token_transfer")) == 4
