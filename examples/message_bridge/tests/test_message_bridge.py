"""The message bridge end to end: a real anvil chain with ``MessageBox``, the ``messages``
listener and the ``deliver_message`` resolution on a real solo node, read back over HTTP.
Written with the public harness (``bridge.testing``) and public names only."""

from __future__ import annotations

import aiohttp
import pytest
from eth_account import Account
from listeners.messages import EVENTS, MESSAGE_TOPIC
from resolutions.deliver_message import MAX_PAYLOAD, Message
from web3.exceptions import ContractCustomError

from bridge.testing import NodeHomeFactory, running_node
from listeners.ethereum import Chain, revert_reason


def test_a_message_log_becomes_its_body() -> None:
    log = {
        "topics": [MESSAGE_TOPIC, hex(7), "0x" + "0" * 24 + "aa" * 20, "0x" + "0" * 24 + "bb" * 20],
        # abi.encode(bytes("hi")): offset 32, length 2, the bytes padded to 32
        "data": "0x" + f"{32:064x}{2:064x}" + b"hi".hex().ljust(64, "0"),
    }
    body = Message(7, b"\xaa" * 20, b"\xbb" * 20, b"hi").encode()
    assert EVENTS.bodies([log, {**log, "removed": True}], None) == [body]  # type: ignore[arg-type]
    assert Message.decode(body) == Message(7, b"\xaa" * 20, b"\xbb" * 20, b"hi")
    with pytest.raises(ValueError, match="72 to"):
        Message.decode(body[:71])


async def test_messages_sent_on_ethereum_reach_their_inboxes(
    anvil_url: str, eth: Chain, node_home: NodeHomeFactory
) -> None:
    address, block = await eth.deploy("MessageBox")
    box = eth.contract("MessageBox", address)
    alice, bob = (Account.create().address for _ in range(2))
    for to, payload in ((alice, b"hello"), (bob, b"hi bob"), (alice, b"again")):
        await eth.call(box.functions.send(to, payload))
    with pytest.raises(ContractCustomError) as refused:  # the contract's cap
        await eth.call(box.functions.send(alice, b"x" * (MAX_PAYLOAD + 1)))
    assert revert_reason(str(refused.value.data)).startswith("PayloadTooLarge")

    table = {
        "rpc_url": anvil_url,
        "contract_address": address,
        "chain_id": await eth.w3.eth.chain_id,
        "starting_height": block,
        "required_confirmations": 0,
        "poll_interval": 0.05,
    }
    async with running_node(node_home({"messages": table})) as node:

        async def delivered() -> bool:
            return len(await node.resolutions("confirmed", "deliver_message")) == 3

        await node.wait_until(delivered, timeout=30)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.api_url}/v1/messages/{alice}") as answer:
                assert answer.status == 200
                inbox = await answer.json()
            async with http.get(f"{node.api_url}/v1/messages/0x1234") as answer:
                assert answer.status == 400
                assert "address" in (await answer.json())["error"]
        me = eth.account.address.lower()
        assert inbox == [
            {"nonce": 0, "from": me, "payload": b"hello".hex()},
            {"nonce": 2, "from": me, "payload": b"again".hex()},
        ]
        assert node.listener("messages")["counters"]["events_seen"] == 3
