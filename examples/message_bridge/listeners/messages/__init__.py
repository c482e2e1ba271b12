"""``messages``: watches a ``MessageBox`` contract and votes each ``Message`` it emits as a
``deliver_message`` resolution. Everything Ethereum-specific (chunked ``eth_getLogs``,
confirmations, reorgs, failover, checkpoints) is the public ``listeners.ethereum``; this
package only says which event and how its log becomes a body.

Its table is ``[app.extensions.messages]`` with ``EthereumConfig``'s keys (``rpc_url``,
``contract_address``, ``chain_id``, ``starting_height``, ``required_confirmations``, ...).
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from resolutions.deliver_message import DELIVER_MESSAGE, MAX_PAYLOAD, Message

from listeners import EventStore, Service, register_listener
from listeners.ethereum import ContractEvents, EthereumConfig, Log, listen_to_contract, topic

__all__ = ["EVENTS", "MESSAGE_TOPIC", "decode"]

MESSAGE_TOPIC = topic("Message(uint256,address,address,bytes)")


def decode(log: Log, config: EthereumConfig) -> bytes | None:
    """The body of a ``Message`` log. A log that does not read as one raises ``ValueError``:
    the endpoint that served it is at fault, and the next one is asked."""
    nonce, sender, recipient = log["topics"][1:4]
    (payload,) = abi_decode(["bytes"], bytes.fromhex(log["data"][2:]))
    if len(payload) > MAX_PAYLOAD:  # the contract refuses these: the endpoint made it up
        raise ValueError(f"a {len(payload)}-byte payload; MessageBox allows {MAX_PAYLOAD}")
    sender_address, recipient_address = bytes.fromhex(sender[-40:]), bytes.fromhex(recipient[-40:])
    return Message(int(nonce, 16), sender_address, recipient_address, payload).encode()


EVENTS = ContractEvents(resolution=DELIVER_MESSAGE, topics=(MESSAGE_TOPIC,), decode=decode)


@register_listener("messages", config=EthereumConfig)
async def listen(service: Service, store: EventStore) -> None:
    await listen_to_contract(service, store, EVENTS)
