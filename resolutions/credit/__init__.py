"""``credit_account``: credits an Ethereum deposit to its recipient's ledger balance, once.

The body names the deposit completely (chain, escrow, nonce, where it was mined, who sent
it, to whom, how much) in the canonical ABI encoding, so every validator that read the
same log broadcasts the same bytes. A deposit is identified by its *deposit key*
(chain id, escrow address, escrow nonce): the escrow's nonce is gapless and never reused,
so however many resolutions name the same deposit (a log re-mined in another block after a
reorg has a new block number and tx position, hence a new body), it is credited once.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from fractions import Fraction

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address

from resolutions import App, BlockContext, Resolution, ResolutionConfig, register_resolution

__all__ = ["CREDIT_ACCOUNT", "Deposit"]

CREDIT_ACCOUNT = "credit_account"

_TYPES = ("uint256", "address", "uint256", "bytes32", "uint256", "uint256", "address", "address", "uint256")


@dataclass(frozen=True)
class Deposit:
    chain_id: int
    escrow: str  # checksummed address
    nonce: int  # the escrow's gapless deposit counter
    tx_hash: bytes  # 32 bytes
    log_index: int
    block_number: int
    sender: str
    recipient: str
    amount: int

    def encode(self) -> bytes:
        return encode(_TYPES, astuple(self))

    @classmethod
    def decode(cls, body: bytes) -> Deposit:
        chain_id, escrow, nonce, tx_hash, log_index, block_number, sender, recipient, amount = decode(
            _TYPES, body
        )
        deposit = cls(
            chain_id,
            to_checksum_address(escrow),
            nonce,
            tx_hash,
            log_index,
            block_number,
            to_checksum_address(sender),
            to_checksum_address(recipient),
            amount,
        )
        if deposit.encode() != body:  # one deposit, one byte string
            raise ValueError("credit_account body is not in canonical form")
        return deposit

    @property
    def key(self) -> bytes:
        """The deposit key: (chain id, escrow, nonce)."""
        return encode(("uint256", "address", "uint256"), (self.chain_id, self.escrow, self.nonce))

    @property
    def account(self) -> str:
        """The recipient as a ledger account id."""
        return self.recipient.lower()


def credited_key(deposit_key: bytes) -> bytes:
    """Where ``resolve`` records a credited deposit: value = ledger height (8 bytes) + resolution id."""
    return b"credited:" + deposit_key


def tx_key(tx_hash: bytes, log_index: int) -> bytes:
    """Index from a deposit's transaction and log to its deposit key, for "where is my deposit"."""
    return b"tx:" + tx_hash + log_index.to_bytes(8, "big")


async def _resolve(app: App, resolution: Resolution, block: BlockContext) -> None:
    deposit = Deposit.decode(resolution.body)
    if await app.get(credited_key(deposit.key)) is not None:
        # Another resolution credited this deposit already (e.g. the same log before a reorg
        # moved it): record the duplicate, credit nothing.
        await app.set(b"duplicate:" + resolution.id, deposit.key)
        return
    await app.set(credited_key(deposit.key), block.height.to_bytes(8, "big") + resolution.id)
    await app.set(tx_key(deposit.tx_hash, deposit.log_index), deposit.key)
    await app.credit(deposit.account, deposit.amount)


register_resolution(
    CREDIT_ACCOUNT,
    ResolutionConfig(
        resolve=_resolve,
        # 2/3 of the power must have seen the deposit below their safety point.
        confirmation_threshold=Fraction(2, 3),
        # Voters are refunded if a third saw it: an honest minority on a soft fork is not fined.
        refund_threshold=Fraction(1, 3),
        # 600 blocks (2 minutes of solo blocks, longer on CometBFT); an expired deposit is
        # voted again by the validators that still hold it.
        expiration_period=600,
    ),
)
