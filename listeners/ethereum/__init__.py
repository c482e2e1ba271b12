"""``listeners.ethereum``: read one contract's events from Ethereum and vote on them.

The machinery of an EVM bridge's listener, public so that a fork's listener is a few lines:
``eth_getLogs`` in chunks that shrink when a provider refuses a range and grow back, a
safety point (confirmations, or the chain's ``safe`` / ``finalized`` block), each chunk's
events stored with the listener's progress in one transaction, the stored block hash checked
on every pass (a reorg deeper than the safety point rewinds the scan), failover across
``rpc_url`` or a quorum of them, and every malformed answer treated as that endpoint's
fault. A listener says what to read and how to decode it::

    from listeners import EventStore, Service, register_listener
    from listeners.ethereum import ContractEvents, EthereumConfig, Log, listen_to_contract, topic

    def decode(log: Log, config: EthereumConfig) -> bytes | None:
        return bytes.fromhex(log["data"][2:])  # the body your resolution reads

    EVENTS = ContractEvents("deliver_message", (topic("Message(uint256,bytes)"),), decode)

    @register_listener("messages", config=EthereumConfig)
    async def listen(service: Service, store: EventStore) -> None:
        await listen_to_contract(service, store, EVENTS)

Its ``[app.extensions.NAME]`` table is :class:`EthereumConfig` (subclass it to add keys).

For the tools around a listener (commands, devnet setup steps, tests): :class:`Chain`
deploys the committed artifacts (:func:`artifact`) and sends signed transactions,
:func:`revert_reason` names a custom error, and :func:`anvil` runs a local chain
(``ANVIL_KEY`` is its funded test key); :func:`add_key_arguments` and :func:`private_key`
give a command its key from a file, ``$ETH_PRIVATE_KEY`` or a keystore.
"""

from __future__ import annotations

from eth_utils.crypto import keccak

from listeners import EventStore, Service
from listeners.ethereum.anvil import ANVIL_KEY, ANVIL_NO_DISK, anvil, anvil_path
from listeners.ethereum.chain import ARTIFACTS, Chain, artifact, revert_reason
from listeners.ethereum.client import EthClient, QuorumClient, quantity
from listeners.ethereum.config import EthereumConfig
from listeners.ethereum.keys import add_key_arguments, private_key
from listeners.ethereum.scanner import ContractEvents, Log, Scanner

__all__ = [
    "ANVIL_KEY",
    "ANVIL_NO_DISK",
    "ARTIFACTS",
    "Chain",
    "ContractEvents",
    "EthereumConfig",
    "Log",
    "add_key_arguments",
    "anvil",
    "anvil_path",
    "artifact",
    "listen_to_contract",
    "private_key",
    "quantity",
    "revert_reason",
    "topic",
]


def topic(signature: str) -> str:
    """The first topic of an event's logs: keccak of its signature, e.g.
    ``topic("Transfer(address,address,uint256)")``, as 0x-prefixed lower-case hex."""
    return "0x" + keccak(text=signature).hex()


async def listen_to_contract(
    service: Service,
    store: EventStore,
    events: ContractEvents,
    config_model: type[EthereumConfig] = EthereumConfig,
) -> None:
    """Read ``events`` from the contract of this listener's table (validated with
    ``config_model``) and broadcast their bodies, forever. Without a table it logs that and
    returns (the listener is not configured on this node); a broken table, a wrong chain id
    or no code at the address stop the node with a message naming the key."""
    if service.config is None:
        service.logger.info("no [app.extensions.%s] table: not running on this node", service.name)
        return
    config = config_model.parse(service.config, f"app.extensions.{service.name}")
    args = (config.request_timeout, service.status, service.logger)
    client = (
        EthClient(config.rpc_url, *args)
        if config.rpc_quorum == 1
        else QuorumClient(config.rpc_url, config.rpc_quorum, *args)
    )
    try:
        await Scanner(service, store, config, client, events).run()
    finally:
        await client.close()
