"""The ledger's half of the way back (docs/withdrawals.md): withdrawals and their batches,
the validator set the escrow knows (its Ethereum signers), and the signatures validators
submit for both.

Everything lives in the key-value namespace ``@withdrawals`` (no resolution type can take
that name), so it is in the app hash like any other state. Integers are big-endian.

- ``signer:<pubkey>`` -> a validator's Ethereum signing address; ``address:<address>`` -> pubkey
- ``next_id``, ``next_batch``: counters; ``open``: the batch taking withdrawals, if any
- ``w:<id>`` -> batch id | recipient | amount | account (the debited one); ``by:<account>:<id>``
  indexes them by account
- ``b:<batch>`` -> opened at | withdrawals (id, recipient, amount)...; ``closed:<batch>`` ->
  root | total | closed at
- ``valset``: the newest set's nonce; ``vs:<nonce>`` -> its (address, power) pairs, sorted
- ``sig:<batch><nonce><pubkey>`` / ``vsig:<nonce><pubkey>`` -> signatures;
  ``power:<batch><nonce>`` / ``vpower:<nonce>`` -> the power that signed
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.encoding import Reader, Writer
from bridge.errors import TxCode, TxError
from bridge.withdrawals import eip712
from bridge.withdrawals.eip712 import Domain
from bridge.withdrawals.merkle import MerkleTree
from resolutions import App

NAMESPACE = "@withdrawals"
# A batch closes at the end of the block in which it holds BATCH_SIZE withdrawals, or in which
# its first withdrawal is BATCH_BLOCKS blocks old: a lone withdrawal waits at most that long,
# and a flood is signed in batches of BATCH_SIZE (one signature per validator each).
BATCH_SIZE = 256
BATCH_BLOCKS = 5
# Where the withdrawal_paid resolution type (a claims listener's votes) records the escrow's
# payments: ``paid:<id>`` -> id | batch id | recipient (20) | amount (32) | tx hash (32) |
# log index (8). Only :meth:`Withdrawals.status` reads it.
PAID_NAMESPACE = "withdrawal_paid"


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account_key(account: str) -> bytes:
    """The prefix of ``account``'s withdrawals in :data:`NAMESPACE` (each key ends with an id)."""
    return b"by:" + account.encode() + b":"


def passes(signed: int, total: int) -> bool:
    """Strictly more than 2/3, the escrow's rule (and CometBFT's)."""
    return total > 0 and 3 * signed > 2 * total


@dataclass(frozen=True)
class ValidatorSet:
    nonce: int
    members: tuple[tuple[bytes, int], ...]  # (Ethereum address, power), by address

    @property
    def signers(self) -> list[bytes]:
        return [a for a, _ in self.members]

    @property
    def powers(self) -> list[int]:
        return [p for _, p in self.members]

    @property
    def total(self) -> int:
        return sum(self.powers)

    def power_of(self, address: bytes) -> int:
        return dict(self.members).get(address, 0)

    def encode(self) -> bytes:
        w = Writer().u32(len(self.members))
        for address, power in self.members:
            w.raw(address).uint(power)
        return w.finish()

    @classmethod
    def decode(cls, nonce: int, raw: bytes) -> ValidatorSet:
        r = Reader(raw)
        return cls(nonce, tuple((r.fixed(20), r.uint()) for _ in range(r.u32())))


@dataclass(frozen=True)
class Entry:
    id: int
    recipient: bytes
    amount: int


@dataclass(frozen=True)
class Batch:
    id: int
    opened: int  # height
    entries: tuple[Entry, ...]
    root: bytes | None = None  # set once closed
    total: int = 0
    closed: int | None = None


class Withdrawals:
    """The withdrawal state of one block (``app`` is bound to :data:`NAMESPACE`; ``paid``, if
    given, to :data:`PAID_NAMESPACE`, for :meth:`status`)."""

    def __init__(self, app: App, escrow: Domain | None, paid: App | None = None) -> None:
        self.app, self.escrow, self.paid = app, escrow, paid

    async def _int(self, key: bytes) -> int | None:
        raw = await self.app.get(key)
        return None if raw is None else int.from_bytes(raw, "big")

    def _domain(self) -> Domain:
        if self.escrow is None:
            raise TxError(TxCode.INVALID_PAYLOAD, "this network has no escrow: withdrawals are off")
        return self.escrow

    # -- signing keys -- #

    async def signer(self, pubkey: bytes) -> bytes | None:
        return await self.app.get(b"signer:" + pubkey)

    async def register_signer(self, pubkey: bytes, address: bytes) -> None:
        """Bind a validator's ed25519 key to its Ethereum signing address; an address serves
        one key only."""
        owner = await self.app.get(b"address:" + address)
        if owner is not None and owner != pubkey:
            raise TxError(TxCode.INVALID_PAYLOAD, "that Ethereum signing address belongs to another key")
        previous = await self.signer(pubkey)
        if previous is not None and previous != address:
            await self.app.delete(b"address:" + previous)
        await self.app.set(b"signer:" + pubkey, address)
        await self.app.set(b"address:" + address, pubkey)

    # -- withdrawals and batches -- #

    async def withdraw(self, account: str, recipient: bytes, amount: int, height: int) -> int:
        """Debit ``account`` (balance namespace of ``app``) and add the withdrawal to the open
        batch; returns its id. ``TxError`` and nothing changed if the balance is short."""
        self._domain()
        try:
            await self.app.debit(account, amount)
        except ValueError as exc:
            raise TxError(TxCode.INSUFFICIENT_BALANCE, str(exc)) from None
        wid = await self._int(b"next_id") or 0
        await self.app.set(b"next_id", _u64(wid + 1))
        batch_id = await self._int(b"open")
        if batch_id is None:
            batch_id = await self.next_batch()
            await self.app.set(b"next_batch", _u64(batch_id + 1))
            await self.app.set(b"open", _u64(batch_id))
            raw = Writer().u64(height).finish()
        else:
            raw = await self.app.get(b"b:" + _u64(batch_id)) or b""
        await self.app.set(b"b:" + _u64(batch_id), raw + _u64(wid) + recipient + amount.to_bytes(32, "big"))
        record = Writer().u64(batch_id).raw(recipient).uint(amount).text(account).finish()
        await self.app.set(b"w:" + _u64(wid), record)
        await self.app.set(account_key(account) + _u64(wid), b"")
        return wid

    async def next_batch(self) -> int:
        """The id the next batch gets: batches ``0 .. next_batch() - 1`` exist."""
        return await self._int(b"next_batch") or 0

    async def batch(self, batch_id: int) -> Batch | None:
        raw = await self.app.get(b"b:" + _u64(batch_id))
        if raw is None:
            return None
        opened, body = int.from_bytes(raw[:8], "big"), raw[8:]
        entries = tuple(
            Entry(
                int.from_bytes(body[i : i + 8], "big"),
                body[i + 8 : i + 28],
                int.from_bytes(body[i + 28 : i + 60], "big"),
            )
            for i in range(0, len(body), 60)
        )
        closed = await self.app.get(b"closed:" + _u64(batch_id))
        if closed is None:
            return Batch(batch_id, opened, entries)
        return Batch(
            batch_id,
            opened,
            entries,
            closed[:32],
            int.from_bytes(closed[32:64], "big"),
            int.from_bytes(closed[64:], "big"),
        )

    def leaves(self, batch: Batch) -> list[bytes]:
        escrow = self._domain()
        return [eip712.withdrawal_leaf(escrow, batch.id, e.id, e.recipient, e.amount) for e in batch.entries]

    async def end_block(self, height: int, validators: dict[bytes, int]) -> None:
        """Close the open batch if it is due; start a new validator set if the ledger's changed."""
        if self.escrow is None:
            return
        batch_id = await self._int(b"open")
        if batch_id is not None:
            batch = await self.batch(batch_id)
            assert batch is not None  # "open" always names a stored batch
            if len(batch.entries) >= BATCH_SIZE or height - batch.opened >= BATCH_BLOCKS:
                root = MerkleTree(self.leaves(batch)).root
                total = sum(e.amount for e in batch.entries)
                await self.app.set(
                    b"closed:" + _u64(batch_id), root + total.to_bytes(32, "big") + _u64(height)
                )
                await self.app.delete(b"open")
        current = await self.valset()
        members = []
        for pubkey, power in sorted(validators.items()):
            address = await self.signer(pubkey)
            if address is not None:
                members.append((address, power))
        latest = tuple(sorted(members))
        if current is None or (latest and latest != current.members):
            nonce = 0 if current is None else current.nonce + 1
            await self.app.set(b"valset", _u64(nonce))
            await self.app.set(b"vs:" + _u64(nonce), ValidatorSet(nonce, latest).encode())

    async def valset(self, nonce: int | None = None) -> ValidatorSet | None:
        """The validator set of ``nonce`` (None: the newest)."""
        if nonce is None:
            nonce = await self._int(b"valset")
            if nonce is None:
                return None
        raw = await self.app.get(b"vs:" + _u64(nonce))
        return None if raw is None else ValidatorSet.decode(nonce, raw)

    # -- signatures -- #

    async def sign_batch(self, pubkey: bytes, batch_id: int, valset_nonce: int, signature: bytes) -> None:
        """Record a validator's signature of a closed batch under the newest set."""
        escrow = self._domain()
        batch = await self.batch(batch_id)
        if batch is None or batch.root is None:
            raise TxError(TxCode.INVALID_PAYLOAD, f"batch {batch_id} is not closed")
        valset = await self.valset()
        if valset is None or valset.nonce != valset_nonce:
            raise TxError(
                TxCode.INVALID_PAYLOAD,
                f"batches are signed under the newest validator set, not {valset_nonce}",
            )
        digest = eip712.batch_digest(escrow, batch_id, batch.root, batch.total, valset_nonce)
        key = _u64(batch_id) + _u64(valset_nonce)
        await self._add_signature(b"sig:" + key, b"power:" + key, pubkey, valset, digest, signature)

    async def sign_valset(self, pubkey: bytes, nonce: int, signature: bytes) -> None:
        """Record a signature of set ``nonce`` by a member of the set before it."""
        escrow = self._domain()
        new, old = await self.valset(nonce), await self.valset(nonce - 1) if nonce > 0 else None
        if new is None or old is None:
            raise TxError(TxCode.INVALID_PAYLOAD, f"no validator set {nonce} to sign (or it is the first)")
        digest = eip712.valset_digest(escrow, nonce, new.signers, new.powers)
        await self._add_signature(
            b"vsig:" + _u64(nonce), b"vpower:" + _u64(nonce), pubkey, old, digest, signature
        )

    async def _add_signature(
        self,
        prefix: bytes,
        power_key: bytes,
        pubkey: bytes,
        signers: ValidatorSet,
        digest: bytes,
        signature: bytes,
    ) -> None:
        address = await self.signer(pubkey)
        if address is None or signers.power_of(address) == 0:
            raise TxError(TxCode.NOT_VALIDATOR, "the signer is not in the validator set that signs this")
        if eip712.recover(digest, signature) != address:
            raise TxError(
                TxCode.BAD_SIGNATURE, "the signature is not by the validator's Ethereum signing key"
            )
        if await self.app.get(prefix + pubkey) is not None:
            raise TxError(TxCode.INVALID_PAYLOAD, "already signed")
        await self.app.set(prefix + pubkey, signature)
        signed = (await self._int(power_key) or 0) + signers.power_of(address)
        await self.app.set(power_key, signed.to_bytes(32, "big"))

    async def signed_power(self, batch_id: int, valset_nonce: int) -> int:
        return await self._int(b"power:" + _u64(batch_id) + _u64(valset_nonce)) or 0

    # -- what clients read -- #

    async def status(self, wid: int) -> dict[str, object] | None:
        """Where withdrawal ``wid`` is on its way back, with what a claim needs once its batch
        is signed: the Merkle proof, and the newest set's signatures (positional, ``v = 0``
        where a member has not signed), as ``submitBatch`` takes them. Once the escrow's
        payment is recorded (``paid``), ``"status": "paid"`` and where it was paid."""
        raw = await self.app.get(b"w:" + _u64(wid))
        if raw is None:
            return None
        body = None if self.paid is None else await self.paid.get(b"paid:" + _u64(wid))
        paid: dict[str, object] = (
            {}
            if body is None
            else {
                "status": "paid",
                "paid": {
                    "tx_hash": "0x" + body[68:100].hex(),
                    "log_index": int.from_bytes(body[100:108], "big"),
                    "amount": str(int.from_bytes(body[36:68], "big")),
                },
            }
        )
        r = Reader(raw)
        batch_id, recipient, amount, account = r.u64(), r.fixed(20), r.uint(), r.text()
        batch = await self.batch(batch_id)
        assert batch is not None  # a withdrawal's batch is stored with it
        out: dict[str, object] = {
            "id": wid,
            "account": account,
            "recipient": "0x" + recipient.hex(),
            "amount": str(amount),
            "batch": batch_id,
            "status": "debited",
        }
        if batch.root is None:
            return out | paid
        leaves = self.leaves(batch)
        leaf = leaves[[e.id for e in batch.entries].index(wid)]
        signing = await self.batch_status(batch_id)
        assert signing is not None  # the batch exists: it was read above
        del signing["withdrawals"]
        if signing["status"] == "signing":  # the withdrawal's step: in its batch, being signed
            signing["status"] = "in_batch"
        proof = ["0x" + p.hex() for p in MerkleTree(leaves).proof(leaf)]
        return out | signing | {"proof": proof} | paid

    async def valset_status(self, nonce: int) -> dict[str, object] | None:
        """Validator set ``nonce``, and what ``updateValidatorSet`` needs to move the escrow
        to it: the set before it and that set's signatures (positional, ``v = 0`` for none)."""
        new = await self.valset(nonce)
        if new is None:
            return None

        def members(s: ValidatorSet) -> dict[str, object]:
            return {
                "nonce": s.nonce,
                "signers": ["0x" + a.hex() for a in s.signers],
                "powers": [str(p) for p in s.powers],
            }

        out: dict[str, object] = members(new) | {"status": "first"}
        old = await self.valset(nonce - 1) if nonce > 0 else None
        if old is None:
            return out
        signatures = []
        for address in old.signers:
            pubkey = await self.app.get(b"address:" + address)
            sig = None if pubkey is None else await self.app.get(b"vsig:" + _u64(nonce) + pubkey)
            signatures.append("0x" + (sig or bytes(65)).hex())
        signed = await self._int(b"vpower:" + _u64(nonce)) or 0
        return out | {
            "status": "signed" if passes(signed, old.total) else "signing",
            "previous": members(old),
            "signed_power": str(signed),
            "total_power": str(old.total),
            "signatures": signatures,
        }

    async def batch_status(self, batch_id: int) -> dict[str, object] | None:
        """Batch ``batch_id`` and, once closed, what ``submitBatch`` takes: root, total, the
        newest set and its signatures (positional, ``v = 0`` where a member has not signed)."""
        batch = await self.batch(batch_id)
        if batch is None:
            return None
        total = sum(e.amount for e in batch.entries)
        out: dict[str, object] = {
            "batch": batch_id,
            "withdrawals": len(batch.entries),
            "status": "open",
            "total": str(total),
        }
        valset = await self.valset()
        if batch.root is None or valset is None:
            return out
        signed = await self.signed_power(batch_id, valset.nonce)
        signatures = []
        for address in valset.signers:
            pubkey = await self.app.get(b"address:" + address)
            key = b"sig:" + _u64(batch_id) + _u64(valset.nonce) + (pubkey or b"")
            sig = None if pubkey is None else await self.app.get(key)
            signatures.append("0x" + (sig or bytes(65)).hex())
        return out | {
            "status": "signed" if passes(signed, valset.total) else "signing",
            "root": "0x" + batch.root.hex(),
            "total": str(batch.total),
            "valset": {
                "nonce": valset.nonce,
                "signers": ["0x" + a.hex() for a in valset.signers],
                "powers": [str(p) for p in valset.powers],
            },
            "signed_power": str(signed),
            "total_power": str(valset.total),
            "signatures": signatures,
        }
