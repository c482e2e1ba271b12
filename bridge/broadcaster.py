"""Turns stored events into vote transactions, and makes sure each vote lands.

An event counts as voted only when this validator's vote is in a committed block; until
then it is sent again after ``resend_timeout`` and after every restart. Events whose
resolution was processed are dropped. A batch carries up to ``max_votes_per_tx`` events,
and up to ``max_inflight`` batches wait in the mempool at once, with consecutive nonces (the
ledger admits nonces ahead of the next one); when the oldest is overdue the run is dropped and
sent again from the ledger's next nonce, so a lost transaction never leaves a gap for long.
When no vote waits and nothing is in flight, the validator's other duties (``duties``: its
withdrawal signatures) go out one at a time.

An event's first vote carries its body (a ``vote``); once the ledger has it, the others vote
by its 32-byte id (``vote_ids``), a tenth of the bytes. When more unknown events wait than one
transaction carries (a flood, a backfill), each validator introduces only its share of them
(by id, modulo the validators) and waits for the others' to open; one nobody introduced within
``resend_timeout`` it introduces itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from bridge.eventstore import PENDING, VOTED, Event, EventStore
from bridge.keys import NodeKey
from bridge.ledger.types import TxResult
from bridge.txs import Payload, Tx, Vote, VoteIds

log = logging.getLogger("bridge.broadcaster")
T = TypeVar("T")
LOOKAHEAD = 5  # transactions' worth of pending events read per pass, to find each kind of vote


class LedgerView(Protocol):
    chain_id: str
    validators: dict[bytes, int]

    async def nonce(self, signer: bytes) -> int: ...
    async def vote_status(self, ids: list[bytes], voter: bytes) -> dict[bytes, str]: ...


Submit = Callable[[bytes], Awaitable[TxResult]]
Duties = Callable[[], Awaitable[Sequence[Payload]]]


class Broadcaster:
    def __init__(
        self,
        store: EventStore,
        ledger: LedgerView,
        submit: Submit,
        key: NodeKey,
        *,
        max_votes_per_tx: int = 2000,
        max_inflight: int = 4,
        resend_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        duties: Duties | None = None,
    ) -> None:
        self._store, self._ledger, self._submit, self._key = store, ledger, submit, key
        self._duties = duties
        self.max_votes_per_tx, self.max_inflight = max_votes_per_tx, max_inflight
        self.resend_timeout = resend_timeout
        self._clock = clock
        self._inflight: dict[int, float] = {}  # nonce -> sent at, consecutive nonces
        self._held: dict[bytes, float] = {}  # unknown event -> since when it waits for others
        self.votes_sent = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._store.reset_sent()

    async def on_commit(self) -> None:
        """Run after every committed block: settle what landed, then send what did not."""
        async with self._lock:
            await self._reconcile()
            votes = await self._next_votes()
            for raw, nonce, ids in votes:
                result = await self._submit(raw)
                if not result.ok:
                    log.warning("vote transaction rejected: %s", result.log)
                    break
                await self._sent(nonce, ids)
            if not votes and (duty := await self._next_duty()) is not None:
                raw, nonce = duty
                result = await self._submit(raw)
                if result.ok:
                    self._inflight[nonce] = self._clock()
                else:
                    log.warning("%s transaction rejected: %s", Tx.decode(raw).type, result.log)

    async def proposal_votes(self, max_bytes: int) -> list[bytes]:
        """This validator's next vote, for the block it is about to propose (no mempool
        round trip).

        Called from inside the engine's proposal handler, so it must never wait for
        :meth:`on_commit`, which may itself be waiting on the engine: when busy, it gives up.
        """
        if self._lock.locked():
            return []
        async with self._lock:
            votes = await self._next_votes(most=1)
            if not votes or len(votes[0][0]) > max_bytes:
                return []
            raw, nonce, ids = votes[0]
            await self._sent(nonce, ids)
            return [raw]

    async def _reconcile(self) -> None:
        ids = await self._store.sent_ids()
        if not ids:
            return
        status = await self._ledger.vote_status(ids, self._key.public)
        await self._store.remove([i for i in ids if status[i] == "processed"])
        await self._store.set_state([i for i in ids if status[i] == "voted"], VOTED)
        # Sent but not in the ledger (dropped, or its resolution expired): send again.
        await self._store.set_state([i for i in ids if status[i] in ("open", "absent")], PENDING)

    async def _next_votes(self, most: int | None = None) -> list[tuple[bytes, int, list[bytes]]]:
        """The next signed vote transactions (raw, nonce, event ids), with consecutive
        nonces, as many as may join those in flight (at most ``most``); none if nothing waits."""
        now, limit = self._clock(), self.max_votes_per_tx
        if (next_nonce := await self._next_nonce()) is None:
            return []
        nonce, room = next_nonce
        events = await self._store.select(PENDING, limit * LOOKAHEAD, now - self.resend_timeout)
        if not events:
            return []
        status = await self._ledger.vote_status([e.id for e in events], self._key.public)
        await self._store.remove([e.id for e in events if status[e.id] == "processed"])
        # Already in the ledger (it landed just before a restart): track it, do not resend.
        await self._store.set_state([e.id for e in events if status[e.id] == "voted"], VOTED)
        # Introductions first: the other validators wait for them.
        bodies = self._introduce([e for e in events if status[e.id] == "absent"], now)
        opened = [e.id for e in events if status[e.id] == "open"]
        batches: list[tuple[Vote | VoteIds, list[bytes]]] = [
            *(
                (Vote(tuple((e.type, e.body) for e in part)), [e.id for e in part])
                for part in _parts(bodies, limit)
            ),
            *((VoteIds(tuple(part)), part) for part in _parts(opened, limit)),
        ]
        out = []
        for n, (payload, ids) in enumerate(batches[: room if most is None else min(room, most)], start=nonce):
            tx = Tx(self._ledger.chain_id, payload.TX_TYPE, self._key.public, n, payload.encode())
            out.append((tx.sign_ed25519(self._key).encode(), n, ids))
        return out

    def _introduce(self, unknown: list[Event], now: float) -> list[Event]:
        """The unknown events whose bodies this validator sends now: all of them while one
        transaction carries them (every validator does, so the event is voted a block
        sooner); beyond that its share, and those the others left unknown for too long."""
        if len(unknown) <= self.max_votes_per_tx:
            self._held.clear()
            return unknown
        validators = sorted(self._ledger.validators)
        if self._key.public not in validators:
            return unknown
        me, n = validators.index(self._key.public), len(validators)
        self._held = {e.id: self._held.get(e.id, now) for e in unknown}
        return [
            e
            for e in unknown
            if int.from_bytes(e.id[:8], "big") % n == me or now - self._held[e.id] >= self.resend_timeout
        ]

    async def _next_nonce(self, limit: int | None = None) -> tuple[int, int] | None:
        """The nonce of the next transaction and how many more may be sent, or None while
        ``limit`` (``max_inflight``) of them wait. Those the ledger counted are forgotten; if
        the oldest still waiting is overdue (dropped, or behind a gap), the whole run is: it
        is sent again from the ledger's next nonce, and any of it that lands after all only
        repeats votes."""
        committed = await self._ledger.nonce(self._key.public)
        inflight = self._inflight = {n: t for n, t in self._inflight.items() if n >= committed}
        if inflight and self._clock() - inflight[min(inflight)] >= self.resend_timeout:
            inflight.clear()
        room = (self.max_inflight if limit is None else limit) - len(inflight)
        if room <= 0:
            return None
        return (max(inflight) + 1 if inflight else committed), room

    async def _next_duty(self) -> tuple[bytes, int] | None:
        """The first duty still owed, as a signed transaction (raw, nonce); recomputed from
        the ledger each time, so one that landed is never sent again."""
        if self._duties is None:
            return None
        # One at a time: a duty is recomputed from the ledger, so while one is in flight the
        # same duty would be computed again.
        next_nonce = await self._next_nonce(limit=1)
        if next_nonce is None or not (duties := await self._duties()):
            return None
        nonce = next_nonce[0]
        payload = duties[0]
        tx = Tx(self._ledger.chain_id, payload.TX_TYPE, self._key.public, nonce, payload.encode())
        return tx.sign_ed25519(self._key).encode(), nonce

    async def _sent(self, nonce: int, ids: list[bytes]) -> None:
        now = self._clock()
        self._inflight[nonce] = now
        self.votes_sent += len(ids)
        await self._store.mark_sent(ids, now)


def _parts(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
