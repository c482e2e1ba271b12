"""``credit_account``: credits an Ethereum deposit to its recipient's ledger balance, once.

The body names the deposit completely (chain, escrow, nonce, where it was mined, who sent
it, to whom, how much) in the canonical ABI encoding, so every validator that read the
same log broadcasts the same bytes. A deposit is identified by its *deposit key*
(chain id, escrow address, escrow nonce): the escrow's nonce is gapless and never reused,
so however many resolutions name the same deposit (a log re-mined in another block after a
reorg has a new block number and tx position, hence a new body), it is credited once.

A reorg deeper than the safety point can also give a credited nonce to a *different*
deposit. A second resolution for a credited key is the same deposit (a ``duplicate:``,
nothing credited) when its (tx hash, recipient, amount) equal the credited one's; otherwise it
is a *replacement*: the chain now says the nonce is this deposit, so it is credited and the
old credit is recorded as *orphaned*: a liability (credited on the ledger, backed by no escrow
deposit any more), never debited, since its recipient may have spent it. An orphaned
deposit whose transaction is credited again under a new key (re-mined after the one that took
its nonce) is *reconciled*: its orphaned credit backs it, nothing is credited twice. The
order matters: if that re-mined deposit resolves *before* the replacement of its old nonce
(both in one ledger block, which runs them by id), nothing says yet that the old nonce
changed, so it is credited again, and the replacement then orphans its first credit: the
double credit ends as a recorded liability, never a silent one.

State (namespace ``credit_account``; every integer big-endian, fixed width):

- ``credited:<key>``: height (8) + resolution id (32) of the credit the key holds;
- ``deposit:<key>``: what that credit is: tx hash (32) + log index (8) + recipient (20) +
  amount (32);
- ``tx:<tx hash><log index (8)>``: the key (96), for "where is my deposit";
- ``duplicate:<resolution id>``: the key, for a resolution that credited nothing;
- ``orphaned:<tx hash (32)><recipient (20)><amount (32)>``: one 152-byte record per orphaned
  credit of that content: key (96) + log index (8) + height credited (8) + height orphaned (8)
  + resolution id (32); removed with its last record;
- ``orphaned_total``: number of records (8) + sum of their amounts (32); absent when zero.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from fractions import Fraction
from functools import lru_cache

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from resolutions import App, ResolutionConfig, ResolveContext, register_resolution

__all__ = ["CREDIT_ACCOUNT", "ORPHANED", "ORPHANED_TOTAL", "Deposit", "Orphan", "orphans"]

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


def described_key(deposit_key: bytes) -> bytes:
    """What the credit of a key is: value = tx hash (32) + log index (8) + recipient (20) + amount (32)."""
    return b"deposit:" + deposit_key


def tx_key(tx_hash: bytes, log_index: int) -> bytes:
    """Index from a deposit's transaction and log to its deposit key, for "where is my deposit"."""
    return b"tx:" + tx_hash + log_index.to_bytes(8, "big")


ORPHANED = b"orphaned:"
"""Prefix of the orphaned credits of one content: ``orphaned:<tx hash><recipient><amount>``."""
ORPHANED_TOTAL = b"orphaned_total"
"""Count (8 bytes) and amount (32 bytes) of the orphaned credits; absent when there is none."""
_RECORD = 96 + 8 + 8 + 8 + 32


@dataclass(frozen=True)
class Orphan:
    """A credit whose deposit key the chain gave to another deposit: still credited, unbacked."""

    deposit_key: bytes  # (chain id, escrow, nonce) it was credited under
    tx_hash: bytes
    log_index: int
    recipient: bytes  # 20 bytes
    amount: int
    credited_height: int
    orphaned_height: int
    resolution_id: bytes  # of the resolution that credited it


def orphans(key: bytes, value: bytes) -> list[Orphan]:
    """The records of one ``orphaned:`` entry (as ``kv_prefix`` returns it)."""
    content = key[len(ORPHANED) :]
    tx_hash, recipient, amount = content[:32], content[32:52], int.from_bytes(content[52:84], "big")
    out = []
    for i in range(0, len(value), _RECORD):
        r = value[i : i + _RECORD]
        out.append(
            Orphan(
                r[:96],
                tx_hash,
                int.from_bytes(r[96:104], "big"),
                recipient,
                amount,
                int.from_bytes(r[104:112], "big"),
                int.from_bytes(r[112:120], "big"),
                r[120:152],
            )
        )
    return out


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


async def _add_to_total(app: App, count: int, amount: int) -> None:
    raw = await app.get(ORPHANED_TOTAL)
    n = int.from_bytes(raw[:8], "big") + count if raw else count
    total = int.from_bytes(raw[8:], "big") + amount if raw else amount
    if n:
        await app.set(ORPHANED_TOTAL, n.to_bytes(8, "big") + total.to_bytes(32, "big"))
    else:
        await app.delete(ORPHANED_TOTAL)


async def _orphan(app: App, key: bytes, credited: bytes, described: bytes, height: int) -> None:
    """Record the credit ``credited`` (height + resolution id) of ``key``, which was the
    deposit ``described`` (tx hash, log index, recipient, amount), as orphaned at ``height``."""
    tx_hash, log_index, recipient, amount = described[:32], described[32:40], described[40:60], described[60:]
    where = ORPHANED + tx_hash + recipient + amount
    record = key + log_index + credited[:8] + height.to_bytes(8, "big") + credited[8:]
    await app.set(where, (await app.get(where) or b"") + record)
    await _add_to_total(app, 1, int.from_bytes(amount, "big"))


async def _reconcile(app: App, where: bytes, amount: int) -> bool:
    """Take one orphaned credit of this content (the latest), if there is one: it backs the
    deposit about to be recorded, which must then not be credited again."""
    records = await app.get(where)
    if not records:
        return False
    if len(records) > _RECORD:
        await app.set(where, records[:-_RECORD])
    else:
        await app.delete(where)
    await _add_to_total(app, -1, -amount)
    return True


async def _resolve(ctx: ResolveContext) -> None:
    app, resolution, height = ctx.app, ctx.resolution, ctx.block.height
    key, tx_hash, log_index, account, amount = _credit(resolution.body)
    recipient = bytes.fromhex(account[2:])
    described = tx_hash + log_index.to_bytes(8, "big") + recipient + amount.to_bytes(32, "big")
    credited = await app.get(credited_key(key))
    if credited is not None:
        previous = await app.get(described_key(key))
        # The same deposit (e.g. the same log before a reorg moved it; the tx hash implies the
        # sender), or a credit from before ``deposit:`` was kept: record the duplicate, credit
        # nothing.
        if previous is None or (previous[:32], previous[40:]) == (tx_hash, described[40:]):
            await app.set(b"duplicate:" + resolution.id, key)
            return
        # A reorg deeper than the safety point gave this nonce to another deposit: the old
        # credit stays with its recipient, unbacked, recorded as orphaned.
        await _orphan(app, key, credited, previous, height)
    await app.set(credited_key(key), height.to_bytes(8, "big") + resolution.id)
    await app.set(described_key(key), described)
    await app.set(tx_key(tx_hash, log_index), key)
    if not await _reconcile(app, ORPHANED + tx_hash + described[40:], amount):
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
        # Idempotent by deposit key (a second resolution is a `duplicate:` or a replacement,
        # decided by the stored state, not by the processed table), so processed ids can go
        # after ~a day of CometBFT blocks; the `credited:`, `deposit:` and `tx:` keys stay.
        keep_processed=100_000,
        # In a block, deposits resolve in (chain id, escrow, nonce) order: after a deep reorg
        # shifted deposits, a nonce is replaced before its old deposit is met again at the next.
        order=lambda body: body[:96],
    ),
)

# Registers "where is my deposit" (GET /v1/deposits/{tx_hash}) and the orphaned_credits
# readiness problem: imported last, it reads the names above.
from resolutions.credit import status as status  # noqa: E402
