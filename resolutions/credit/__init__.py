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
from functools import lru_cache

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from resolutions import App, BlockContext, Resolution, ResolutionConfig, register_resolution

__all__ = ["CREDIT_ACCOUNT", "Deposit"]

CREDIT_ACCOUNT = "credit_account"

_TYPES = ("uint256", "address", "uint256", "bytes32", "uint256", "uint256", "address", "address", "uint256")
_SIZE = 32 * len(_TYPES)
_PAD = bytes(12)


@lru_cache(maxsize=4096)  # escrows and their users repeat: one keccak per address, not per vote
def _checksum(raw: bytes) -> str:
    return to_checksum_address(raw)


def _words(body: bytes) -> list[bytes]:
    """The nine words of a canonical body (addresses zero-padded), or ``ValueError``."""
    if len(body) != _SIZE or body[32:44] != _PAD or body[192:204] != _PAD or body[224:236] != _PAD:
        raise ValueError("credit_account body is not in canonical form")
    return [body[i : i + 32] for i in range(0, _SIZE, 32)]


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
        """The deposit of a canonical body; anything else raises ``ValueError``. Every field is
        one static 32-byte word, so the canonical encoding is exactly nine words with
        zero-padded addresses: checking that and slicing gives what eth_abi's decode and a
        re-encode would, at a tenth of the cost (it was most of a block's time)."""
        w = _words(body)
        return cls(
            int.from_bytes(w[0], "big"),
            _checksum(w[1][12:]),
            int.from_bytes(w[2], "big"),
            w[3],
            int.from_bytes(w[4], "big"),
            int.from_bytes(w[5], "big"),
            _checksum(w[6][12:]),
            _checksum(w[7][12:]),
            int.from_bytes(w[8], "big"),
        )

    @property
    def key(self) -> bytes:
        """The deposit key: (chain id, escrow, nonce), ABI-encoded (three static words)."""
        return (
            self.chain_id.to_bytes(32, "big")
            + _PAD
            + bytes.fromhex(self.escrow[2:])
            + self.nonce.to_bytes(32, "big")
        )

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


def _credit(body: bytes) -> tuple[bytes, bytes, int, str, int]:
    """``(d.key, d.tx_hash, d.log_index, d.account, d.amount)`` of ``d = Deposit.decode(body)``,
    read from the words: no checksummed addresses (a keccak each), as accounts are lowercase."""
    w = _words(body)
    return (
        w[0] + w[1] + w[2],
        w[3],
        int.from_bytes(w[4], "big"),
        "0x" + w[7][12:].hex(),
        int.from_bytes(w[8], "big"),
    )


async def _resolve(app: App, resolution: Resolution, block: BlockContext) -> None:
    key, tx_hash, log_index, account, amount = _credit(resolution.body)
    if await app.get(credited_key(key)) is not None:
        # Another resolution credited this deposit already (e.g. the same log before a reorg
        # moved it): record the duplicate, credit nothing.
        await app.set(b"duplicate:" + resolution.id, key)
        return
    await app.set(credited_key(key), block.height.to_bytes(8, "big") + resolution.id)
    await app.set(tx_key(tx_hash, log_index), key)
    await app.credit(account, amount)


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
        # Idempotent by deposit key (a second resolution is a `duplicate:`), so processed ids
        # can go after ~a day of CometBFT blocks; the `credited:` and `tx:` keys stay.
        keep_processed=100_000,
    ),
)
