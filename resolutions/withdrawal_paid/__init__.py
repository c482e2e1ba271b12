"""``withdrawal_paid``: records that the escrow paid a withdrawal (its ``Claimed`` log).

The body is fixed-width, so every validator that read the same log broadcasts the same
bytes (integers big-endian)::

    id (8) | batch id (8) | recipient (20) | amount (32) | Ethereum tx hash (32) | log index (8)

108 bytes; any other length fails the resolution. The escrow pays each id once, so the first
record of an id is kept: ``paid:<id (8)>`` -> the body. A second one for the same id (only a
claim re-mined at another log position after a reorg deeper than the safety point, or a
broken escrow, gives one) is kept as ``duplicate:<resolution id>`` -> its body and changes
nothing else. Within a block, claims resolve in withdrawal-id order.

The ledger's withdrawal status (``GET /v1/withdrawals/{id}``) reads ``paid:<id>`` to say
``"paid"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolutions import ResolutionConfig, ResolveContext, register_resolution

__all__ = ["BODY_SIZE", "WITHDRAWAL_PAID", "PaidWithdrawal", "paid_key"]

WITHDRAWAL_PAID = "withdrawal_paid"
BODY_SIZE = 8 + 8 + 20 + 32 + 32 + 8


@dataclass(frozen=True)
class PaidWithdrawal:
    id: int  # the withdrawal's ledger id (uint64)
    batch_id: int  # the batch it was claimed from (uint64)
    recipient: bytes  # 20 bytes
    amount: int  # uint256
    tx_hash: bytes  # 32 bytes: the claim's Ethereum transaction
    log_index: int  # the Claimed log's index in its block (uint64)

    def encode(self) -> bytes:
        """The body; ``ValueError`` for a field that does not fit its width."""
        if len(self.recipient) != 20 or len(self.tx_hash) != 32:
            raise ValueError("a recipient is 20 bytes and a tx hash 32")
        try:
            return (
                self.id.to_bytes(8, "big")
                + self.batch_id.to_bytes(8, "big")
                + self.recipient
                + self.amount.to_bytes(32, "big")
                + self.tx_hash
                + self.log_index.to_bytes(8, "big")
            )
        except OverflowError:  # negative, or too wide
            raise ValueError("ids and log index are uint64, the amount uint256") from None

    @classmethod
    def decode(cls, body: bytes) -> PaidWithdrawal:
        if len(body) != BODY_SIZE:
            raise ValueError(f"a withdrawal_paid body is {BODY_SIZE} bytes, not {len(body)}")
        return cls(
            int.from_bytes(body[0:8], "big"),
            int.from_bytes(body[8:16], "big"),
            body[16:36],
            int.from_bytes(body[36:68], "big"),
            body[68:100],
            int.from_bytes(body[100:108], "big"),
        )


def paid_key(withdrawal_id: int) -> bytes:
    """Where the payment of a withdrawal is kept: value = its body."""
    return b"paid:" + withdrawal_id.to_bytes(8, "big")


async def _resolve(ctx: ResolveContext) -> None:
    body = ctx.resolution.body
    key = paid_key(PaidWithdrawal.decode(body).id)
    if await ctx.app.get(key) is not None:
        await ctx.app.set(b"duplicate:" + ctx.resolution.id, body)
        return
    await ctx.app.set(key, body)


register_resolution(WITHDRAWAL_PAID, ResolutionConfig(resolve=_resolve, order=lambda body: body[:8]))
