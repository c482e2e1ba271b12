"""Turns stored events into vote transactions, and makes sure each vote lands.

An event counts as voted only when this validator's vote is in a committed block; until
then it is sent again after ``resend_timeout`` and after every restart. Events whose
resolution was processed are dropped. One vote transaction is in flight at a time, so
nonces never leave a gap; a batch carries up to ``max_votes_per_tx`` events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from bridge.eventstore import PENDING, VOTED, EventStore
from bridge.keys import NodeKey
from bridge.ledger.types import TxResult
from bridge.txs import Tx, Vote

log = logging.getLogger("bridge.broadcaster")


class LedgerView(Protocol):
    chain_id: str

    async def nonce(self, signer: bytes) -> int: ...
    async def vote_status(self, ids: list[bytes], voter: bytes) -> dict[bytes, str]: ...


Submit = Callable[[bytes], Awaitable[TxResult]]


class Broadcaster:
    def __init__(
        self,
        store: EventStore,
        ledger: LedgerView,
        submit: Submit,
        key: NodeKey,
        *,
        max_votes_per_tx: int = 500,
        resend_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._ledger, self._submit, self._key = store, ledger, submit, key
        self.max_votes_per_tx = max_votes_per_tx
        self.resend_timeout = resend_timeout
        self._clock = clock
        self._inflight: tuple[int, float] | None = None  # (nonce, sent at)
        self.votes_sent = 0

    async def start(self) -> None:
        await self._store.reset_sent()

    async def on_commit(self) -> None:
        """Run after every committed block: settle what landed, then send what did not."""
        await self._reconcile()
        await self._send()

    async def _reconcile(self) -> None:
        ids = await self._store.sent_ids()
        if not ids:
            return
        status = await self._ledger.vote_status(ids, self._key.public)
        await self._store.remove([i for i in ids if status[i] == "processed"])
        await self._store.set_state([i for i in ids if status[i] == "voted"], VOTED)
        # Sent but not in the ledger (dropped, or its resolution expired): send again.
        await self._store.set_state([i for i in ids if status[i] == "absent"], PENDING)

    async def _send(self) -> None:
        now = self._clock()
        nonce = await self._ledger.nonce(self._key.public)
        if self._inflight and self._inflight[0] >= nonce and now - self._inflight[1] < self.resend_timeout:
            return  # the last vote transaction is neither included nor overdue
        events = await self._store.select(PENDING, self.max_votes_per_tx, now - self.resend_timeout)
        if not events:
            return
        status = await self._ledger.vote_status([e.id for e in events], self._key.public)
        done = [e.id for e in events if status[e.id] == "processed"]
        await self._store.remove(done)
        # Already in the ledger (it landed just before a restart): track it, do not resend.
        await self._store.set_state([e.id for e in events if status[e.id] == "voted"], VOTED)
        events = [e for e in events if status[e.id] == "absent"]
        if not events:
            return
        tx = Tx(
            self._ledger.chain_id,
            "vote",
            self._key.public,
            nonce,
            Vote(tuple((e.type, e.body) for e in events)).encode(),
        ).sign_ed25519(self._key)
        result = await self._submit(tx.encode())
        if not result.ok:
            log.warning("vote transaction rejected: %s", result.log)
            return
        self._inflight = (nonce, now)
        self.votes_sent += len(events)
        await self._store.mark_sent([e.id for e in events], now)
