"""``eth_claims``: marks withdrawals paid when the BridgeEscrow pays them.

A user of the public Ethereum listener (``listeners.ethereum``): it reads the escrow's
``Claimed(uint64 indexed id, uint64 indexed batchId, address indexed recipient, uint256
amount)`` logs up to the safety point and broadcasts each as a ``withdrawal_paid`` event
(body: ``resolutions.withdrawal_paid``). Configure it in ``config.toml``, like
``eth_deposits`` and usually with the same values::

    [app.extensions.eth_claims]
    rpc_url = "http://127.0.0.1:8545"          # or a list: failover in order
    contract_address = "0x..."                 # the BridgeEscrow
    chain_id = 31337                           # checked against the endpoint at start
    starting_height = 0                        # the escrow's deployment block
    required_confirmations = 12

See ``listeners/ethereum/config.py`` for every key and its default.
"""

from __future__ import annotations

from listeners import EventStore, Service, register_listener
from listeners.ethereum import ContractEvents, EthereumConfig, Log, listen_to_contract, topic
from resolutions.withdrawal_paid import WITHDRAWAL_PAID, PaidWithdrawal

__all__ = ["CLAIMED_TOPIC", "ETH_CLAIMS", "EVENTS", "EthClaimsConfig", "claimed_body"]

ETH_CLAIMS = "eth_claims"
CLAIMED_TOPIC = topic("Claimed(uint64,uint64,address,uint256)")


class EthClaimsConfig(EthereumConfig):
    """Ethereum claims from a BridgeEscrow (`listeners/eth_claims`): `contract_address` is the
    escrow, `starting_height` its deployment block. Every mistake here stops the node at start
    with a message naming the key."""


def _word(value: str) -> bytes:
    """One 32-byte ABI word from its 0x hex; ``ValueError`` for anything else."""
    raw = bytes.fromhex(value[2:]) if value[:2] == "0x" else b""
    if len(raw) != 32:
        raise ValueError(f"not a 32-byte word: {value!r:.80}")
    return raw


def claimed_body(log: Log, config: EthereumConfig) -> bytes | None:
    """The ``withdrawal_paid`` body of one of the escrow's Claimed logs; None for another log.
    A Claimed log that does not decode raises ``ValueError`` (the endpoint's fault)."""
    topics = log.get("topics") or []
    if (
        len(topics) != 4
        or str(topics[0]).lower() != CLAIMED_TOPIC
        or str(log.get("address", "")).lower() != config.contract_address.lower()
    ):
        return None
    recipient = _word(topics[3])
    if any(recipient[:12]):
        raise ValueError(f"not an address: {topics[3]!r:.80}")
    return PaidWithdrawal(
        id=int.from_bytes(_word(topics[1]), "big"),
        batch_id=int.from_bytes(_word(topics[2]), "big"),
        recipient=recipient[12:],
        amount=int.from_bytes(_word(log["data"]), "big"),
        tx_hash=_word(log["transactionHash"]),
        log_index=int(log["logIndex"], 16),
    ).encode()


EVENTS = ContractEvents(resolution=WITHDRAWAL_PAID, topics=(CLAIMED_TOPIC,), decode=claimed_body)


@register_listener(ETH_CLAIMS, config=EthClaimsConfig)
async def listen(service: Service, store: EventStore) -> None:
    await listen_to_contract(service, store, EVENTS, EthClaimsConfig)
