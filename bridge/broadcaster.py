"""Turns stored events into vote transactions, and makes sure each vote lands.

An event counts as voted only when this validator's vote is in a committed block; until
then it is sent again after ``resend_timeout`` and after every restart. Events whose
resolution was processed are dropped. One transaction is in flight at a time, so nonces
never leave a gap; a batch carries up to ``max_votes_per_tx`` events. When no vote waits,
the validator's other duties (``duties``: its withdrawal signatures) go out the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bridge.eventstore import PENDING, VOTED, EventStore
from bridge.keys import NodeKey
from bridge.ledger.types import TxResult
from bridge.txs import Payload, Tx, Vote

log = logging.getLogger("bridge.broadcaster")


class LedgerView(Protocol):
    chain_id: str

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
        resend_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        duties: Duties | None = None,
    ) -> None:
        self._store, self._ledger, self._submit, self._key = store, ledger, submit, key
        self._duties = duties
        self.max_votes_per_tx = max_votes_per_tx
        self.resend_timeout = resend_timeout
        self._clock = clock
        self._inflight: tuple[int, float] | None = None  # (nonce, sent at)
        self.votes_sent = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._store.reset_sent()

    async def on_commit(self) -> None:
        """Run after every committed block: settle what landed, then send what did not."""
        async with self._lock:
            await self._reconcile()
            vote = await self._next_vote()
            if vote is not None:
                raw, nonce, ids = vote
                result = await self._submit(raw)
                if result.ok:
                    await self._sent(nonce, ids)
                else:
                    log.warning("vote transaction rejected: %s", result.log)
            elif (duty := await self._next_duty()) is not None:
                raw, nonce = duty
                result = await self._submit(raw)
                if result.ok:
                    self._inflight = (nonce, self._clock())
                else:
                    log.warning("%s transaction rejected: %s", Tx.decode(raw).type, result.log)

    async def proposal_votes(self, max_bytes: int) -> list[bytes]:
        """This validator's vote, for the block it is about to propose (no mempool round trip).

        Called from inside the engine's proposal handler, so it must never wait for
        :meth:`on_commit`, which may itself be waiting on the engine: when busy, it gives up.
        """
        if self._lock.locked():
            return []
        async with self._lock:
            vote = await self._next_vote()
            if vote is None or len(vote[0]) > max_bytes:
                return []
            await self._sent(vote[1], vote[2])
            return [vote[0]]

    async def _reconcile(self) -> None:
        ids = await self._store.sent_ids()
        if not ids:
            return
        status = await self._ledger.vote_status(ids, self._key.public)
        await self._store.remove([i for i in ids if status[i] == "processed"])
        await self._store.set_state([i for i in ids if status[i] == "voted"], VOTED)
        # Sent but not in the ledger (dropped, or its resolution expired): send again.
        await self._store.set_state([i for i in ids if status[i] == "absent"], PENDING)

    async def _next_vote(self) -> tuple[bytes, int, list[bytes]] | None:
        """The next signed vote transaction (raw, nonce, event ids), or None if there is
        nothing to send or the last one is neither included nor overdue."""
        now = self._clock()
        nonce = await self._ledger.nonce(self._key.public)
        if await self._busy(nonce):
            return None
        events = await self._store.select(PENDING, self.max_votes_per_tx, now - self.resend_timeout)
        if not events:
            return None
        status = await self._ledger.vote_status([e.id for e in events], self._key.public)
        await self._store.remove([e.id for e in events if status[e.id] == "processed"])
        # Already in the ledger (it landed just before a restart): track it, do not resend.
        await self._store.set_state([e.id for e in events if status[e.id] == "voted"], VOTED)
        events = [e for e in events if status[e.id] == "absent"]
        if not events:
            return None
        payload = Vote(tuple((e.type, e.body) for e in events)).encode()
        tx = Tx(self._ledger.chain_id, "vote", self._key.public, nonce, payload).sign_ed25519(self._key)
        return tx.encode(), nonce, [e.id for e in events]

    async def _busy(self, nonce: int) -> bool:
        """Whether the last transaction sent is neither included nor overdue."""
        inflight = self._inflight
        return (
            inflight is not None
            and inflight[0] >= nonce
            and self._clock() - inflight[1] < self.resend_timeout
        )

    async def _next_duty(self) -> tuple[bytes, int] | None:
        """The first duty still owed, as a signed transaction (raw, nonce); recomputed from
        the ledger each time, so one that landed is never sent again."""
        if self._duties is None:
            return None
        nonce = await self._ledger.nonce(self._key.public)
        if await self._busy(nonce) or not (duties := await self._duties()):
            return None
        payload = duties[0]
        tx = Tx(self._ledger.chain_id, payload.TX_TYPE, self._key.public, nonce, payload.encode())
        return tx.sign_ed25519(self._key).encode(), nonce

    async def _sent(self, nonce: int, ids: list[bytes]) -> None:
        now = self._clock()
        self._inflight = (nonce, now)
        self.votes_sent += len(ids)
        await self._store.mark_sent(ids, now)
