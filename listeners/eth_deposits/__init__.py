"""``eth_deposits``: credits ERC20 deposits made to a BridgeEscrow contract.

A user of the public Ethereum listener (``listeners.ethereum``): it reads the escrow's
``Deposit`` logs up to the safety point and broadcasts each as a ``credit_account`` event.
Configure it in ``config.toml``::

    [app.extensions.eth_deposits]
    rpc_url = "http://127.0.0.1:8545"          # or a list: failover in order
    rpc_quorum = 1                             # k > 1: k endpoints of the list must agree
    contract_address = "0x..."                 # the BridgeEscrow
    chain_id = 31337                           # checked against the endpoint at start
    starting_height = 0                        # the escrow's deployment block
    finality = "confirmations"                 # or "safe" / "finalized"
    required_confirmations = 12

See ``listeners/ethereum/config.py`` for every key and its default.

Around the listener, the escrow's tools (``escrow.py``: deploy, deposit, ``bridge devnet``'s
setup step) and its ``bridge`` subcommands (``commands.py``: ``contracts deploy``,
``deposit``, ``deposit-status``, ``demo``), registered through the public hooks.
"""

from __future__ import annotations

from listeners import EventStore, Service, register_listener
from listeners.eth_deposits import commands as commands  # registers the bridge subcommands
from listeners.eth_deposits.decode import DEPOSIT_TOPIC, decode_log, deposit_bodies, deposit_body
from listeners.eth_deposits.escrow import ETH_DEPOSITS, deploy_bridge, deposit
from listeners.ethereum import ContractEvents, EthereumConfig, listen_to_contract
from resolutions.credit import CREDIT_ACCOUNT

__all__ = [
    "DEPOSIT_TOPIC",
    "ETH_DEPOSITS",
    "EVENTS",
    "EthDepositsConfig",
    "decode_log",
    "deploy_bridge",
    "deposit",
]


class EthDepositsConfig(EthereumConfig):
    """Ethereum deposits into a BridgeEscrow (`listeners/eth_deposits`): `contract_address` is
    the escrow, `starting_height` its deployment block. Every mistake here stops the node at
    start with a message naming the key."""


EVENTS = ContractEvents(
    resolution=CREDIT_ACCOUNT,
    topics=(DEPOSIT_TOPIC,),
    decode=lambda log, config: deposit_body(log, config.chain_id, config.contract_address),
    # Backfills decode whole chunks at once; the same bytes (tests/eth/test_deposit_body.py).
    decode_chunk=lambda logs, config: deposit_bodies(logs, config.chain_id, config.contract_address),
)


@register_listener(ETH_DEPOSITS, config=EthDepositsConfig)
async def listen(service: Service, store: EventStore) -> None:
    await listen_to_contract(service, store, EVENTS, EthDepositsConfig)
