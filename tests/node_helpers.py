"""Shared builders for tests that run a real ledger, solo engine and event store."""

from __future__ import annotations

from pathlib import Path

from bridge.encoding import event_id
from bridge.engines.solo import SoloEngine
from bridge.eventstore import EventStore
from bridge.keys import NodeKey
from bridge.ledger import Genesis, Ledger

CHAIN_ID = "test-chain"


def node_key(n: int) -> NodeKey:
    """A deterministic validator key, distinct for each ``n``."""
    return NodeKey.from_seed(n.to_bytes(32, "big"))


def genesis(*validators: tuple[NodeKey, int], chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis(chain_id, tuple(sorted((k.public, p) for k, p in validators)))


async def open_ledger(path: Path, gen: Genesis) -> Ledger:
    ledger = await Ledger.open(path)
    await ledger.init_chain(gen)
    return ledger


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class NodeParts:
    """A ledger, a solo engine (blocks made by hand) and an event store in one folder."""

    def __init__(self, ledger: Ledger, engine: SoloEngine, store: EventStore) -> None:
        self.ledger, self.engine, self.store = ledger, engine, store

    @classmethod
    async def open(cls, home: Path, gen: Genesis, key: NodeKey) -> NodeParts:
        ledger = await open_ledger(home / "ledger.sqlite", gen)
        store = await EventStore.open(home / "events.sqlite")
        return cls(ledger, SoloEngine(ledger, key), store)

    async def close(self) -> None:
        await self.store.close()
        await self.ledger.close()

    async def blocks(self, n: int) -> None:
        for _ in range(n):
            await self.engine.make_block()

    async def status(self, event_type: str, body: bytes) -> str | None:
        """``pending``, ``confirmed``/``failed`` or ``None`` if the ledger never saw it."""
        rid = event_id(event_type, body).hex()
        for row in await self.ledger.list_resolutions(type_=event_type):
            if row["id"] == rid:
                return str(row["status"])
        return None
