"""``eth_deposits``: credits ERC20 deposits made to a BridgeEscrow contract.

Reads the escrow's ``Deposit`` logs with ``eth_getLogs`` up to a safety point (a number of
confirmations behind the head, or the chain's ``safe`` / ``finalized`` block) and
broadcasts each as a ``credit_account`` event. Configure it in ``config.toml``::

    [app.extensions.eth_deposits]
    rpc_url = "http://127.0.0.1:8545"          # or a list: failover in order
    rpc_quorum = 1                             # k > 1: k endpoints of the list must agree
    contract_address = "0x..."                 # the BridgeEscrow
    chain_id = 31337                           # checked against the endpoint at start
    starting_height = 0                        # the escrow's deployment block
    finality = "confirmations"                 # or "safe" / "finalized"
    required_confirmations = 12

See ``config.py`` for every key and its default.
"""

from __future__ import annotations

from listeners import EventStore, Service, register_listener
from listeners.eth_deposits.config import EthDepositsConfig
from listeners.eth_deposits.deposits import DEPOSIT_TOPIC, Scanner, decode_log
from listeners.eth_deposits.ethereum import EthClient, QuorumClient

__all__ = ["DEPOSIT_TOPIC", "ETH_DEPOSITS", "EthDepositsConfig", "decode_log"]

ETH_DEPOSITS = "eth_deposits"


@register_listener(ETH_DEPOSITS, config=EthDepositsConfig)
async def listen(service: Service, store: EventStore) -> None:
    if service.config is None:
        service.logger.info("no [app.extensions.%s] table: not running on this node", service.name)
        return
    config = EthDepositsConfig.parse(service.config, f"app.extensions.{service.name}")
    args = (config.request_timeout, service.status, service.logger)
    client = (
        EthClient(config.rpc_url, *args)
        if config.rpc_quorum == 1
        else QuorumClient(config.rpc_url, config.rpc_quorum, *args)
    )
    try:
        await Scanner(service, store, config, client).run()
    finally:
        await client.close()
