"""``deliver_message``: a message that 2/3 of the validators saw sent to ``MessageBox`` on
Ethereum lands in its recipient's inbox on the ledger.

The body is ``nonce (32 bytes) | sender (20) | recipient (20) | payload``: fixed-width fields
first, so there is one encoding per message and every validator votes the same bytes.
The state this type keeps, in its own namespace:

- ``message:<nonce>`` -> the body, once delivered (a nonce is delivered once);
- ``inbox:<recipient><nonce>`` -> empty, the index ``GET /v1/messages/{address}`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resolutions import NodeReader, ResolutionConfig, ResolveContext, register_query, register_resolution

__all__ = ["DELIVER_MESSAGE", "MAX_PAYLOAD", "Message"]

DELIVER_MESSAGE = "deliver_message"
MAX_PAYLOAD = 1024  # MessageBox.MAX_PAYLOAD


@dataclass(frozen=True)
class Message:
    nonce: int
    sender: bytes  # 20 bytes
    recipient: bytes  # 20 bytes
    payload: bytes

    def encode(self) -> bytes:
        return self.nonce.to_bytes(32, "big") + self.sender + self.recipient + self.payload

    @classmethod
    def decode(cls, body: bytes) -> Message:
        if len(body) < 72 or len(body) > 72 + MAX_PAYLOAD:
            raise ValueError(f"a message body is 72 to {72 + MAX_PAYLOAD} bytes, not {len(body)}")
        return cls(int.from_bytes(body[:32], "big"), body[32:52], body[52:72], body[72:])


def _inbox(recipient: bytes) -> bytes:
    return b"inbox:" + recipient


async def _deliver(ctx: ResolveContext) -> None:
    message, app = Message.decode(ctx.resolution.body), ctx.app
    nonce = message.nonce.to_bytes(32, "big")
    # Seen again (say, a reorg moved its log): already delivered, nothing to do.
    if await app.get(b"message:" + nonce) is None:
        await app.set(b"message:" + nonce, ctx.resolution.body)
        await app.set(_inbox(message.recipient) + nonce, b"")


async def _inbox_query(node: NodeReader, params: Mapping[str, str]) -> list[dict[str, Any]]:
    """``GET /v1/messages/{address}``: the address's delivered messages, oldest first."""
    address = params["address"].lower()
    if len(address) != 42 or not address.startswith("0x"):
        raise ValueError("address: expected 0x and 40 hex digits")
    try:
        recipient = bytes.fromhex(address[2:])
    except ValueError:
        raise ValueError("address: expected 0x and 40 hex digits") from None
    out = []
    for key, _ in await node.prefix(DELIVER_MESSAGE, _inbox(recipient)):
        body = await node.get(DELIVER_MESSAGE, b"message:" + key[-32:])
        if body is not None:
            message = Message.decode(body)
            sender = "0x" + message.sender.hex()
            out.append({"nonce": message.nonce, "from": sender, "payload": message.payload.hex()})
    return out


register_resolution(
    DELIVER_MESSAGE,
    # Within a block, messages are delivered in nonce order (the body starts with it).
    ResolutionConfig(resolve=_deliver, order=lambda body: body[:32]),
)
register_query("messages/{address}", _inbox_query)
