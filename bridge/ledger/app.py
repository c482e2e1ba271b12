"""The replicated ledger: an application with the shape of ABCI 2.0.

The same object runs under every engine (solo, the simulator, CometBFT). Its state lives
in one SQLite file, changes only in ``finalize_block`` and becomes durable only in
``commit``. Everything it computes is a function of the blocks it was given: no clock, no
randomness, no floats, every query ordered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never

import aiosqlite

from bridge import sqlite
from bridge.encoding import Writer, event_id
from bridge.errors import TxCode, TxError
from bridge.keys import account_id
from bridge.ledger import governance
from bridge.ledger.queries import Queries
from bridge.ledger.state import ResolutionRow, State, block_hash
from bridge.ledger.threshold import passes
from bridge.ledger.types import Block, BlockResult, Genesis, Outcome, TxResult
from bridge.ledger.withdrawals import NAMESPACE as WITHDRAWALS
from bridge.ledger.withdrawals import PAID_NAMESPACE, Withdrawals
from bridge.txs import (
    Approve,
    Join,
    Leave,
    Payload,
    Remove,
    SignBatch,
    SignValset,
    Transfer,
    Tx,
    Vote,
    VoteIds,
    Withdraw,
    claim_signer,
    decode_payload,
)
from bridge.withdrawals.eip712 import Domain
from resolutions import (
    BlockContext,
    Resolution,
    ResolutionConfig,
    ResolveContext,
    registered_resolutions,
    retired_at,
)

log = logging.getLogger("bridge.ledger")

RECHECK_KEY = ("", b"recheck")  # set when validator power changed: re-examine every pending id

# Bounds a hostile validator meets (the network's constants: every node must use the same).
# A block executes at most this many votes (about a third of a second of ledger work).
MAX_VOTES_PER_BLOCK = 10_000
# A validator's first votes create resolutions that stay until confirmed or expired; beyond
# this many of its own still pending, its votes that would create more are refused (its
# votes for resolutions others created still count), so a flood cannot fill the tables.
MAX_PENDING_PER_VALIDATOR = 10_000
# A signer's transactions are accepted up to this many nonces past its next one: a gap that
# is never filled holds at most this many of its transactions in a mempool.
MAX_NONCE_AHEAD = 64
GOVERNANCE = frozenset((governance.JOIN, governance.REMOVE))  # voted with join, approve and remove


def _peek(raw: bytes) -> tuple[bytes, int, int] | None:
    """(signer, nonce, votes carried) of a transaction, or None if it does not decode."""
    try:
        tx = Tx.decode(raw)
        payload = decode_payload(tx)
    except TxError:
        return None
    return tx.signer, tx.nonce, len(payload.events) if isinstance(payload, Vote | VoteIds) else 0


def _order(config: ResolutionConfig, body: bytes) -> bytes:
    """Where a resolution goes among those of its type in a block (then by id)."""
    if config.order is None:
        return b""
    try:
        return config.order(body)
    except Exception:  # a plug-in's failure on a hostile body must not stop the block
        return b""


@dataclass
class _BlockRun:
    """One block's execution: made by ``finalize_block``, passed to what it runs."""

    ctx: BlockContext
    types: Mapping[str, ResolutionConfig]  # the resolution types in force at this height
    touched: dict[bytes, None] = field(default_factory=dict)  # ids voted for, in vote order
    # Each validator votes for the same events: their ids are hashed once a block.
    ids: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    votes: int = 0  # votes executed so far (MAX_VOTES_PER_BLOCK)
    senders: list[tuple[str, bytes]] = field(default_factory=list)  # BlockResult.senders
    opened: dict[str, int] = field(default_factory=dict)  # new resolutions per type


class LedgerApp:
    """The :class:`resolutions.App` a resolve function receives, bound to one namespace."""

    def __init__(self, state: State, namespace: str, height: int) -> None:
        self._state, self._ns, self._height = state, namespace, height

    async def balance(self, account: str) -> int:
        return await self._state.balance(account)

    async def credit(self, account: str, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"cannot credit a negative amount ({amount})")
        if amount:
            await self._state.set_balance(account, await self._state.balance(account) + amount)
            self._state.moved(account, amount)

    async def debit(self, account: str, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"cannot debit a negative amount ({amount})")
        balance = await self._state.balance(account)
        if balance < amount:
            raise ValueError(f"balance of {account} is {balance}, less than {amount}")
        if amount:
            await self._state.set_balance(account, balance - amount)
            self._state.moved(account, -amount)

    async def get(self, key: bytes) -> bytes | None:
        return await self._state.kv_get(self._ns, key)

    async def set(self, key: bytes, value: bytes) -> None:
        await self._state.kv_set(self._ns, key, value)

    async def delete(self, key: bytes) -> None:
        await self._state.kv_delete(self._ns, key)

    async def validator_power(self, pubkey: bytes) -> int:
        return (await self._state.validators()).get(pubkey, 0)

    async def set_validator_power(self, pubkey: bytes, power: int) -> None:
        if len(pubkey) != 32 or not 0 <= power < 2**63:
            raise ValueError("a validator is a 32-byte ed25519 key with a power in [0, 2**63)")
        validators = await self._state.validators()
        if power == 0 and set(validators) <= {pubkey}:
            raise ValueError("cannot remove the last validator")
        since = await self._state.validator_since(pubkey)
        if power == 0 and since is not None:
            # The tenure ends: a pending request to remove it must not outlive it and
            # remove the key's next tenure.
            rid = event_id(governance.REMOVE, governance.remove_body(pubkey, since))
            if await self._state.pending_ids([rid]):
                await self._state.remove_resolutions([rid])
        await self._state.set_power(pubkey, power, self._height)
        await self._state.kv_set(*RECHECK_KEY, b"\x01")


class Ledger(Queries):
    def __init__(
        self, db: sqlite3.Connection, view: sqlite3.Connection, reader: aiosqlite.Connection
    ) -> None:
        self._attach(db, view, reader)
        self.path: Path | None = None  # the database's file (None: not opened from one)
        self.chain_id = ""
        self.height = 0
        self.app_hash = b""
        self.vote_fee = 0
        self.join_bond = 0
        self.validators: dict[bytes, int] = {}  # committed set
        self.time_ns = 0  # time of the last committed block
        self.expiration_periods: dict[str, int] = {}  # the genesis' overrides
        self.escrow: Domain | None = None  # the genesis' escrow: withdrawals are on
        self._pending: tuple[int, bytes, int] | None = None

    def _attach(self, db: sqlite3.Connection, view: sqlite3.Connection, reader: aiosqlite.Connection) -> None:
        self._db, self._view, self._reader = db, view, reader
        self.state = State(db)
        # Committed state only: point reads for check_tx and queries on ``view``; the API's
        # scans on ``reader``, in aiosqlite's thread, so a long one never stalls the loop.
        self.view = State(view)

    @staticmethod
    async def _connect(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection, aiosqlite.Connection]:
        db = sqlite.connect_sync(path)
        await State(db).create()
        return db, sqlite.connect_sync(path, readonly=True), await sqlite.connect(path, readonly=True)

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        ledger = cls(*await cls._connect(path))
        ledger.path = path
        await ledger._load()
        return ledger

    async def adopt(self, restored: Path) -> None:
        """Make the state in ``restored`` (a snapshot, see :mod:`bridge.ledger.snapshots`)
        this ledger's: for a node that has committed nothing yet, instead of replaying blocks."""
        if self.path is None or self.height != 0:
            raise RuntimeError("only an empty ledger opened from a file adopts a snapshot")
        await self.close()
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        restored.replace(self.path)
        self._attach(*await self._connect(self.path))
        await self._load()

    async def close(self) -> None:
        await self.state.rollback()  # an uncommitted block is discarded, as in a crash
        await self._reader.close()
        self._view.close()
        self._db.close()

    async def _load(self) -> None:
        s = self.state
        self.chain_id = ((await s.get_meta("chain_id")) or b"").decode()
        self.height = int.from_bytes((await s.get_meta("height")) or b"", "big")
        self.app_hash = (await s.get_meta("app_hash")) or b""
        self.vote_fee = int.from_bytes((await s.get_meta("vote_fee")) or b"", "big")
        self.join_bond = int.from_bytes((await s.get_meta("join_bond")) or b"", "big")
        self.time_ns = int.from_bytes((await s.get_meta("time_ns")) or b"", "big")
        self.expiration_periods = json.loads((await s.get_meta("expiration_periods")) or b"{}")
        if escrow := await s.get_meta("escrow"):
            self.escrow = Domain(int.from_bytes(escrow[20:], "big"), escrow[:20])
        self.validators = await s.validators()

    # -- ABCI: info and genesis -- #

    async def info(self) -> tuple[int, bytes]:
        """Last committed height and app hash (0 and b"" before ``init_chain``)."""
        return self.height, self.app_hash

    async def init_chain(self, genesis: Genesis) -> bytes:
        if self.chain_id:
            if self.chain_id != genesis.chain_id:
                raise ValueError(f"ledger belongs to chain {self.chain_id!r}, not {genesis.chain_id!r}")
            return self.app_hash
        s = self.state
        await s.begin()
        for pubkey, power in genesis.validators:
            await s.set_power(pubkey, power, 0)
        for account, balance in genesis.accounts:
            await s.set_balance(account, balance)
        params = Writer().text(genesis.chain_id).uint(genesis.vote_fee).u32(len(genesis.expiration_periods))
        for event_type, blocks in genesis.expiration_periods:
            params.text(event_type).u64(blocks)
        if genesis.join_bond:  # last and only when set: the genesis hashes of free joins stay
            params.uint(genesis.join_bond)
        if genesis.escrow:  # the same: only a network with the way back hashes these
            params.raw(genesis.escrow.escrow).uint(genesis.escrow.chain_id)
            await s.set_meta("escrow", genesis.escrow.escrow + genesis.escrow.chain_id.to_bytes(32, "big"))
        withdrawals = Withdrawals(LedgerApp(s, WITHDRAWALS, 0), genesis.escrow)
        for pubkey, address in genesis.signers:
            await withdrawals.register_signer(pubkey, address)
        await withdrawals.end_block(0, dict(genesis.validators))  # validator set 0: the escrow's first
        app_hash = block_hash(params.finish(), 0, s.log)
        await s.set_meta("expiration_periods", json.dumps(dict(genesis.expiration_periods)).encode())
        await s.set_meta("chain_id", genesis.chain_id.encode())
        await s.set_meta("vote_fee", genesis.vote_fee.to_bytes(32, "big"))
        if genesis.join_bond:
            await s.set_meta("join_bond", genesis.join_bond.to_bytes(32, "big"))
        await s.set_meta("height", (0).to_bytes(8, "big"))
        await s.set_meta("app_hash", app_hash)
        await s.commit()
        await self._load()
        return app_hash

    # -- ABCI: mempool -- #

    def _authenticate(self, raw: bytes) -> tuple[Tx, Payload]:
        tx = Tx.decode(raw)
        if tx.chain_id != self.chain_id:
            raise TxError(
                TxCode.WRONG_CHAIN, f"transaction is for chain {tx.chain_id!r}, not {self.chain_id!r}"
            )
        payload = decode_payload(tx)  # first: a user's signature is over the decoded fields
        if not tx.verify(self.escrow):
            raise TxError(TxCode.BAD_SIGNATURE, "signature does not match the signer")
        return tx, payload

    async def check_tx(self, raw: bytes) -> TxResult:
        """Validate against committed state. Nonces up to MAX_NONCE_AHEAD above the next one
        are accepted: the mempool holds them until the gap is filled."""
        try:
            tx, payload = self._authenticate(raw)
            expected = await self.view.nonce(tx.signer)
            if tx.nonce < expected:
                raise TxError(TxCode.BAD_NONCE, f"nonce {tx.nonce} was already used; next is {expected}")
            if tx.nonce >= expected + MAX_NONCE_AHEAD:
                raise TxError(
                    TxCode.BAD_NONCE,
                    f"nonce {tx.nonce} is too far ahead: the next is {expected}, at most "
                    f"{MAX_NONCE_AHEAD - 1} more may wait",
                )
            if payload.BY_VALIDATOR and tx.signer not in self.validators:
                raise TxError(TxCode.NOT_VALIDATOR, f"{tx.type} must be signed by a validator")
            match payload:
                case Vote():
                    self._check_types(payload, registered_resolutions(self.height + 1))
                case Transfer(amount=amount) | Withdraw(amount=amount):
                    if isinstance(payload, Withdraw) and self.escrow is None:
                        raise TxError(
                            TxCode.INVALID_PAYLOAD, "this network has no escrow: withdrawals are off"
                        )
                    balance = await self.view.balance(account_id(tx.signer))
                    if balance < amount:
                        raise TxError(
                            TxCode.INSUFFICIENT_BALANCE, f"balance {balance} is less than the amount {amount}"
                        )
                case Join():
                    if len(tx.signer) != 32 or tx.signer in self.validators:
                        raise TxError(
                            TxCode.INVALID_PAYLOAD, "join needs an ed25519 key that is not a validator yet"
                        )
                    balance = await self.view.balance(account_id(tx.signer))
                    if balance < self.join_bond:
                        raise TxError(
                            TxCode.INSUFFICIENT_BALANCE,
                            f"a join request locks a bond of {self.join_bond};"
                            f" the key's account holds {balance}",
                        )
                case VoteIds() | Approve() | Remove() | Leave() | SignBatch() | SignValset():
                    pass  # checked against the state they meet when they execute
                case _:
                    assert_never(payload)
        except TxError as exc:
            return TxResult(exc.code, str(exc))
        return TxResult()

    @staticmethod
    def _check_types(vote: Vote, known: Mapping[str, ResolutionConfig]) -> None:
        for event_type, _ in vote.events:
            if event_type not in known:
                raise TxError(TxCode.UNKNOWN_TYPE, f"no resolution type {event_type!r}")
            if event_type in GOVERNANCE:
                # Only a candidate's own join (or a remove of a sitting validator) creates these.
                raise TxError(TxCode.INVALID_PAYLOAD, f"{event_type} is voted with join, approve and remove")

    # -- ABCI: proposals -- #

    async def prepare_proposal(
        self, txs: list[bytes], max_tx_bytes: int, injected: list[bytes] | None = None
    ) -> list[bytes]:
        """The proposer's own ``injected`` votes first, then mempool transactions taken in
        turn from each signer (one signer's backlog cannot crowd out the others), within the
        byte cap and the block's vote budget; what is left out waits for the next block.
        Only each signer's run of consecutive nonces from its next one is proposed: a
        transaction behind a gap would fail (a block must not carry free failures)."""
        queues: dict[bytes, dict[int, tuple[bytes, bytes, int]]] = {}
        for raw in [*(injected or []), *txs]:
            if (peeked := _peek(raw)) is not None:
                signer, nonce, n = peeked
                queues.setdefault(signer, {}).setdefault(nonce, (signer, raw, n))
        runs: dict[bytes, list[tuple[bytes, bytes, int]]] = {}
        for signer, by_nonce in queues.items():
            nonce, run = await self.view.nonce(signer), runs.setdefault(signer, [])
            while nonce in by_nonce:
                run.append(by_nonce[nonce])
                nonce += 1
        mine = {p[0] for raw in injected or [] if (p := _peek(raw))}
        first = [t for signer, run in runs.items() if signer in mine for t in run]
        rest = [run for signer, run in runs.items() if signer not in mine]
        turns = [t for turn in itertools.zip_longest(*rest) for t in turn if t is not None]
        out: list[bytes] = []
        size = votes = 0
        left_out: set[bytes] = set()  # a signer's later transactions would follow a gap
        for signer, raw, n in [*first, *turns]:
            if signer in left_out or size + len(raw) > max_tx_bytes or votes + n > MAX_VOTES_PER_BLOCK:
                left_out.add(signer)
                continue
            out.append(raw)
            size += len(raw)
            votes += n
        return out

    async def process_proposal(self, txs: list[bytes]) -> bool:
        """Reject only what no honest proposer sends: undecodable or unsigned bytes.
        Transactions that fail on state (a stale nonce) get an error code in the block."""
        try:
            for raw in txs:
                self._authenticate(raw)
        except TxError as exc:
            log.warning("rejecting proposal: %s", exc)
            return False
        return True

    # -- ABCI: execution -- #

    async def finalize_block(self, block: Block) -> BlockResult:
        if block.height != self.height + 1:
            raise ValueError(f"expected block {self.height + 1}, got {block.height}")
        s = self.state
        await s.rollback()  # a block executed but never committed is executed again
        await s.begin()
        before = await s.validators()
        ctx = BlockContext(block.height, block.time_ns, block.proposer, self.chain_id)
        run = _BlockRun(ctx, registered_resolutions(block.height))
        hashes = tuple(hashlib.sha256(raw).digest() for raw in block.txs)
        delivered = zip(block.txs, hashes, strict=True)
        results = tuple([await self._deliver(raw, tx_hash, run) for raw, tx_hash in delivered])
        resolved = await self._end_block(run)
        after = await s.validators()
        updates = tuple(
            (k, after.get(k, 0))
            for k in sorted(before.keys() | after.keys())
            if before.get(k, 0) != after.get(k, 0)
        )
        app_hash = block_hash(self.app_hash, block.height, s.log)
        self._pending = (block.height, app_hash, block.time_ns)
        return BlockResult(
            results,
            updates,
            app_hash,
            resolved,
            hashes,
            movements=tuple(s.movements),
            senders=tuple(run.senders),
            opened=tuple(sorted(run.opened.items())),
        )

    async def commit(self) -> None:
        if self._pending is None:
            raise RuntimeError("commit without a finalized block")
        height, app_hash, time_ns = self._pending
        # A commit that fails (a full disk) discards the block: it must be executed again,
        # never committed half (SQLite may already have rolled the transaction back).
        self._pending = None
        try:
            await self.state.set_meta("height", height.to_bytes(8, "big"))
            await self.state.set_meta("app_hash", app_hash)
            await self.state.set_meta("time_ns", time_ns.to_bytes(8, "big"))
            await self.state.commit()
        except BaseException:
            await self.state.rollback()
            raise
        self.height, self.app_hash, self.time_ns, self._pending = height, app_hash, time_ns, None
        self.validators = await self.state.validators()

    async def _deliver(self, raw: bytes, tx_hash: bytes, run: _BlockRun) -> TxResult:
        try:
            tx, payload = self._authenticate(raw)
        except TxError as exc:
            run.senders.append(("", b""))
            return TxResult(exc.code, str(exc))
        run.senders.append((tx.type, tx.signer))
        self.state.cause = (tx.type, tx_hash)
        expected = await self.state.nonce(tx.signer)
        if tx.nonce != expected:
            return TxResult(TxCode.BAD_NONCE, f"nonce {tx.nonce}, expected {expected}")
        # A signed transaction consumes its nonce even when it fails, so it cannot be
        # replayed later when it might succeed.
        await self.state.set_nonce(tx.signer, expected + 1)
        try:
            async with self.state.savepoint():
                await self._execute(tx, payload, run)
        except TxError as exc:
            return TxResult(exc.code, str(exc))
        return TxResult()

    async def _execute(self, tx: Tx, payload: Payload, run: _BlockRun) -> None:
        s, ctx = self.state, run.ctx
        validators = await s.validators()
        if payload.BY_VALIDATOR and tx.signer not in validators:
            raise TxError(TxCode.NOT_VALIDATOR, f"{tx.type} must be signed by a validator")
        match payload:
            case Vote(events=events):
                self._check_types(payload, run.types)
                if run.votes + len(events) > MAX_VOTES_PER_BLOCK:
                    raise TxError(TxCode.BLOCK_FULL, f"the block already holds {run.votes} votes")
                run.votes += len(events)
                await self._vote(tx.signer, list(dict.fromkeys(events)), run)
            case VoteIds(ids=ids):
                if run.votes + len(ids) > MAX_VOTES_PER_BLOCK:
                    raise TxError(TxCode.BLOCK_FULL, f"the block already holds {run.votes} votes")
                run.votes += len(ids)
                unique = list(dict.fromkeys(ids))
                types = await s.pending_types(unique)
                # Only open resolutions of the types in force (validator requests are voted
                # with approve and remove), in the transaction's order.
                votable = run.types.keys() - GOVERNANCE
                opened = [i for i in unique if types.get(i) in votable]
                await self._add_votes(tx.signer, opened, run)
            case Transfer(to=to, amount=amount):
                app = LedgerApp(s, "", ctx.height)
                try:
                    await app.debit(account_id(tx.signer), amount)
                except ValueError as exc:
                    raise TxError(TxCode.INSUFFICIENT_BALANCE, str(exc)) from None
                await app.credit(account_id(to), amount)
            case Join(power=power, signer=signer, proof=proof):
                if len(tx.signer) != 32 or tx.signer in validators:
                    raise TxError(
                        TxCode.INVALID_PAYLOAD, "join needs an ed25519 key that is not a validator yet"
                    )
                if signer:
                    if claim_signer(self.chain_id, tx.signer, proof) != signer:
                        raise TxError(
                            TxCode.BAD_SIGNATURE, "the signer's proof is not its signature of the claim"
                        )
                    await self._withdrawals(ctx).register_signer(tx.signer, signer)
                elif self.escrow is not None:
                    raise TxError(
                        TxCode.INVALID_PAYLOAD, "join needs an Ethereum signing address on this network"
                    )
                body = governance.join_body(tx.signer, power, tx.nonce)
                rid = await self._create(governance.JOIN, body, tx.signer, run)
                if self.join_bond:
                    try:
                        await LedgerApp(s, "", ctx.height).debit(account_id(tx.signer), self.join_bond)
                    except ValueError as exc:
                        raise TxError(
                            TxCode.INSUFFICIENT_BALANCE, f"cannot lock the join bond: {exc}"
                        ) from None
                    await LedgerApp(s, governance.JOIN, ctx.height).set(
                        governance.bond_key(rid), governance.amount(self.join_bond)
                    )
            case Approve(request_id=rid):
                rows = await s.resolutions([rid])
                if rid not in rows or rows[rid].type not in GOVERNANCE:
                    raise TxError(TxCode.INVALID_PAYLOAD, "no pending validator request with that id")
                await self._vote(tx.signer, [(rows[rid].type, rows[rid].body)], run)
            case Remove(pubkey=pubkey):
                since = await s.validator_since(pubkey)
                if since is None:
                    raise TxError(TxCode.INVALID_PAYLOAD, "the key to remove is not a validator")
                await self._vote(tx.signer, [(governance.REMOVE, governance.remove_body(pubkey, since))], run)
            case Withdraw(recipient=recipient, amount=amount):
                await self._withdrawals(ctx).withdraw(account_id(tx.signer), recipient, amount, ctx.height)
            case SignBatch(batch_id=batch_id, valset_nonce=nonce, signature=signature):
                await self._withdrawals(ctx).sign_batch(tx.signer, batch_id, nonce, signature)
            case SignValset(nonce=nonce, signature=signature):
                await self._withdrawals(ctx).sign_valset(tx.signer, nonce, signature)
            case Leave():
                if set(validators) == {tx.signer}:
                    raise TxError(TxCode.INVALID_PAYLOAD, "the last validator cannot leave")
                await LedgerApp(s, "", ctx.height).set_validator_power(tx.signer, 0)
            case _:
                assert_never(payload)

    def committed_withdrawals(self) -> Withdrawals:
        """The withdrawal state as committed (read-only use: the API, the signer service),
        with the ``withdrawal_paid`` records for its status."""
        paid = LedgerApp(self.view, PAID_NAMESPACE, self.height)
        return Withdrawals(LedgerApp(self.view, WITHDRAWALS, self.height), self.escrow, paid)

    def _withdrawals(self, ctx: BlockContext) -> Withdrawals:
        return Withdrawals(LedgerApp(self.state, WITHDRAWALS, ctx.height), self.escrow)

    async def _create(self, event_type: str, body: bytes, proposer: bytes, run: _BlockRun) -> bytes:
        rid = event_id(event_type, body)
        if not await self.state.processed_ids([rid]) and not await self.state.pending_ids([rid]):
            expiration = run.ctx.height + self._period(event_type, run)
            await self.state.add_resolutions([ResolutionRow(rid, event_type, body, proposer, expiration)])
            run.opened[event_type] = run.opened.get(event_type, 0) + 1
        return rid

    async def _vote(self, voter: bytes, events: list[tuple[str, bytes]], run: _BlockRun) -> None:
        """Add ``voter``'s vote to each event, creating resolutions on first sight. Votes for
        processed ids and repeated votes are no-ops."""
        s, ctx = self.state, run.ctx
        known = run.ids
        ids = [known.get(e) or known.setdefault(e, event_id(*e)) for e in events]
        processed = await s.processed_ids(ids)
        pending = await s.pending_ids(ids)
        new = [
            ResolutionRow(i, t, b, voter, ctx.height + self._period(t, run))
            for i, (t, b) in zip(ids, events, strict=True)
            if i not in processed and i not in pending
        ]
        if new and await s.pending_created_by(voter) + len(new) > MAX_PENDING_PER_VALIDATOR:
            raise TxError(
                TxCode.TOO_MANY_PENDING,
                f"{len(new)} new resolutions would exceed {MAX_PENDING_PER_VALIDATOR} pending ones created"
                " by this validator",
            )
        await self._add_votes(voter, [i for i in ids if i not in processed], run, new)

    async def _add_votes(
        self, voter: bytes, ids: list[bytes], run: _BlockRun, new: list[ResolutionRow] | None = None
    ) -> None:
        """``voter``'s votes for ``ids`` (pending, or ``new`` ones created here) it has not
        cast yet, with their fees."""
        s = self.state
        voted = await s.voted_ids(ids, voter)
        votes = [i for i in ids if i not in voted]
        if self.vote_fee and votes:
            try:
                await LedgerApp(s, "", run.ctx.height).debit(account_id(voter), self.vote_fee * len(votes))
            except ValueError as exc:
                raise TxError(TxCode.INSUFFICIENT_BALANCE, f"cannot pay vote fees: {exc}") from None
        await s.add_resolutions(new or [])
        for row in new or []:
            run.opened[row.type] = run.opened.get(row.type, 0) + 1
        await s.add_votes(votes, voter)
        run.touched.update(dict.fromkeys(votes))

    # -- end of block -- #

    def _period(self, event_type: str, run: _BlockRun) -> int:
        return self.expiration_periods.get(event_type) or run.types[event_type].expiration_period

    async def _end_block(self, run: _BlockRun) -> tuple[tuple[bytes, str, Outcome], ...]:
        s, ctx, registry = self.state, run.ctx, run.types
        validators = await s.validators()
        total = sum(validators.values())
        candidates = list(run.touched)
        if await s.kv_get(*RECHECK_KEY):
            candidates = await s.all_pending_ids()
            await s.kv_delete(*RECHECK_KEY)
        rows = await s.resolutions(candidates)
        voters = await s.voters(list(rows))

        # Select every confirmed resolution before running any: a resolve may change
        # validator power, which must not move thresholds within this block.
        confirmed: list[Resolution] = []
        for rid, row in rows.items():
            approved = sum(validators.get(v, 0) for v in voters[rid])
            if row.type in registry and passes(approved, total, registry[row.type].confirmation_threshold):
                confirmed.append(
                    Resolution(
                        rid, row.type, row.body, row.proposer, row.expiration, approved, tuple(voters[rid])
                    )
                )
        confirmed.sort(key=lambda r: (r.type, _order(registry[r.type], r.body), r.id))

        outcomes: list[tuple[bytes, str, Outcome]] = []
        processed: list[tuple[bytes, str, bytes, int, str, str]] = []
        for res in confirmed:
            s.cause = (res.type, res.id)
            status, error = Outcome.CONFIRMED, ""
            try:
                async with s.savepoint():
                    await registry[res.type].resolve(
                        ResolveContext(LedgerApp(s, res.type, ctx.height), res, ctx)
                    )
            except sqlite3.Error:  # this node's disk, not the resolution: never a local "failed"
                raise
            except Exception as exc:  # a plug-in's failure must not stop the block
                status, error = Outcome.FAILED, type(exc).__name__
                log.warning(
                    "resolve of %s %s failed at height %d: %r", res.type, res.id.hex(), ctx.height, exc
                )
            await self._refund(res.voters)
            outcomes.append((res.id, res.type, status))
            # Logged in place (the app hash depends on the order), inserted once below:
            # no resolve can read the processed table.
            done = (res.id, res.type, res.body, ctx.height, status, error)
            s.log.append(s.processed_entry(done))
            processed.append(done)
        await s.mark_processed(processed, logged=True)
        await s.remove_resolutions([r.id for r in confirmed])

        expired = await s.expired(ctx.height, retired_at(ctx.height))
        if expired and self.vote_fee:
            expired_voters = await s.voters([r.id for r in expired])
            before = registered_resolutions(ctx.height - 1)  # a type retired now: its last config
            for row in expired:
                s.cause = (row.type, row.id)
                approved = sum(validators.get(v, 0) for v in expired_voters[row.id])
                config = registry.get(row.type) or before[row.type]
                if passes(approved, total, config.refund_threshold):
                    await self._refund(expired_voters[row.id])
        for row in expired:
            s.cause = (row.type, row.id)
            if row.type == governance.JOIN:  # the candidate gets its bond back
                await governance.release_bond(LedgerApp(s, governance.JOIN, ctx.height), row.id, row.body)
        await s.remove_resolutions([r.id for r in expired])
        outcomes.extend((r.id, r.type, Outcome.EXPIRED) for r in expired)

        for name, config in registry.items():
            if config.keep_processed is not None and ctx.height > config.keep_processed:
                await s.prune_processed(name, ctx.height - config.keep_processed)
        await self._withdrawals(ctx).end_block(ctx.height, await s.validators())
        return tuple(outcomes)

    async def _refund(self, voters: tuple[bytes, ...] | list[bytes]) -> None:
        if self.vote_fee:
            app = LedgerApp(self.state, "", 0)
            for voter in voters:
                await app.credit(account_id(voter), self.vote_fee)
