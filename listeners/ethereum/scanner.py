"""The scan loop: from the last stored block up to the safety point, chunk by chunk.

Each chunk's events, the chunk's last block and that block's hash are stored in one
event-store transaction, so a crash anywhere resumes exactly after the last stored chunk
and broadcasts nothing twice (broadcast is idempotent anyway). On every pass the stored
hash is checked against the chain: a mismatch is a reorg deeper than the safety point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from listeners import ConfigError, EventStore, Service
from listeners.ethereum.client import EthClient, RangeTooLarge
from listeners.ethereum.config import EthereumConfig

Log = dict[str, Any]  # one entry of an eth_getLogs answer, as the provider sent it
_LAST_BLOCK, _LAST_HASH, _CHECKPOINTS = b"last_block", b"last_hash", b"checkpoints"
_MAX_CHECKPOINTS = 64  # chunk ends remembered to find the last common block after a deep reorg
_PROGRESS_EVERY = 5.0  # seconds between progress lines in the log
# A reorg deeper than the safety point means the finality setting failed: /ready reports it
# this long after the last one, so a probe every few minutes sees it (the counter is exact).
_REORG_REPORTED_FOR = 600.0


async def _cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait for them to end (done ones are left as they are)."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


@dataclass(frozen=True)
class ContractEvents:
    """What an Ethereum listener reads from its contract, and what it votes.

    ``decode(log, config)`` turns one log into the body of a ``resolution`` event, or None
    to skip it; it raises ``ValueError`` (or ``KeyError``, ``TypeError``...) for a log it
    cannot read, which counts as the endpoint's fault (the next endpoint is asked). Logs
    with ``removed: true`` never reach it. ``decode_chunk``, if set, decodes a whole answer
    at once (a fast path for backfills) and must give exactly what ``decode`` gives, log by
    log, removed logs left out.
    """

    resolution: str  # the resolution type every body is voted as
    topics: tuple[str, ...]  # topic0 of each event read: keccak of its signature (``topic()``)
    decode: Callable[[Log, EthereumConfig], bytes | None]
    decode_chunk: Callable[[list[Log], EthereumConfig], list[bytes]] | None = None

    def bodies(self, logs: list[Log], config: EthereumConfig) -> list[bytes]:
        """The bodies of a chunk's logs, in order."""
        if self.decode_chunk is not None:
            return self.decode_chunk(logs, config)
        out = []
        for log in logs:
            if not log.get("removed") and (body := self.decode(log, config)) is not None:
                out.append(body)
        return out


class Scanner:
    def __init__(
        self,
        service: Service,
        store: EventStore,
        config: EthereumConfig,
        client: EthClient,
        events: ContractEvents,
    ):
        self.service, self.store, self.config, self.client = service, store, config, client
        self.events = events
        self.log, self.status = service.logger, service.status
        self.chunk = config.block_sync_chunk_size
        self.last_block = config.starting_height - 1
        self.last_hash = b""
        self.checkpoints: list[tuple[int, str]] = []
        self._last_progress = 0.0
        self._deep_reorg_at: float | None = None
        self._rate_mark: tuple[float, int] | None = None

    async def load(self) -> None:
        raw = await self.store.get(_LAST_BLOCK)
        if raw is not None:
            self.last_block = int.from_bytes(raw, "big")
            self.last_hash = await self.store.get(_LAST_HASH) or b""
            saved = json.loads(await self.store.get(_CHECKPOINTS) or b"[]")
            self.checkpoints = [(int(n), str(h)) for n, h in saved]
            self.log.info("resuming after block %d", self.last_block)

    async def check_chain(self) -> None:
        """Fatal mismatches of configuration; transient RPC trouble is retried inside."""
        prefix = f"app.extensions.{self.service.name}"
        served = await self.client.chain_id()
        if served != self.config.chain_id:
            raise ConfigError(
                f"{prefix}.chain_id: the RPC endpoint serves chain {served}, not {self.config.chain_id}"
            )
        if not await self.client.code(self.config.contract_address):
            raise ConfigError(
                f"{prefix}.contract_address: no contract code at {self.config.contract_address} "
                f"on chain {served}"
            )

    async def safety_point(self) -> int:
        if self.config.finality == "confirmations":
            return await self.client.block_number() - self.config.required_confirmations
        block = await self.client.block(self.config.finality)
        return -1 if block is None else block[0]

    async def verify_progress(self) -> None:
        """Rewind to the last common block if the stored one is no longer canonical."""
        if not self.last_hash:
            return
        block = await self.client.block(self.last_block)
        if block is None or block[1] == self.last_hash:
            return  # canonical, or an endpoint that lags behind: look again next pass
        self.status.count("reorgs_beyond_safety")
        self.status.problem("reorg_beyond_safety")
        self._deep_reorg_at = time.monotonic()
        rewind_to = self.config.starting_height - 1
        for number, hash_hex in reversed(self.checkpoints[:-1]):
            found = await self.client.block(number)
            if found is not None and found[1].hex() == hash_hex:
                rewind_to = number
                break
        self.log.error(
            "block %d is no longer canonical (a reorg deeper than the safety point); rescanning after %d",
            self.last_block,
            rewind_to,
        )
        self.checkpoints = [c for c in self.checkpoints if c[0] <= rewind_to]
        block = await self.client.block(rewind_to) if rewind_to >= 0 else None
        async with self.store.transaction() as tx:
            await self._save(tx, rewind_to, block[1] if block else b"")

    async def _save(self, store: EventStore, block: int, block_hash: bytes) -> None:
        self.last_block, self.last_hash = block, block_hash
        if block < 0:
            await store.delete(_LAST_BLOCK)
        else:
            await store.set(_LAST_BLOCK, block.to_bytes(8, "big"))
        await store.set(_LAST_HASH, block_hash)
        await store.set(_CHECKPOINTS, json.dumps(self.checkpoints).encode())

    def _refused(self, exc: RangeTooLarge, start: int, end: int) -> None:
        previous = self.chunk
        if exc.suggested and exc.suggested[0] == start and exc.suggested[1] >= start:
            self.chunk = exc.suggested[1] - start + 1
        else:
            self.chunk = max(1, (end - start + 1) // 2)
        self.status.count("range_refusals")
        self.log.info(
            "provider refused %d blocks (%s); chunk %d -> %d", end - start + 1, exc, previous, self.chunk
        )

    async def _fetch(self, start: int, end: int) -> tuple[tuple[int, bytes] | None, list[bytes]]:
        """The end block's (number, hash) and the event bodies of blocks start..end; (None, [])
        if the endpoint does not have the end block yet (it lags behind its own safety point).
        Logs are decoded as they arrive: one that cannot be read is the endpoint's fault."""
        # The end block's hash is read before the logs: a reorg in between leaves a stored hash
        # that the next pass finds non-canonical, so it is rescanned rather than missed.
        block = await self.client.block(end)
        if block is None:
            return None, []
        config, events = self.config, self.events
        return block, await self.client.logs(
            config.contract_address, events.topics, start, end, lambda logs: events.bodies(logs, config)
        )

    async def _store(self, end: int, block_hash: bytes, bodies: list[bytes], safe: int) -> None:
        """One chunk's events and progress, in one transaction."""
        self.checkpoints = [*self.checkpoints, (end, block_hash.hex())][-_MAX_CHECKPOINTS:]
        async with self.store.transaction() as tx:
            for body in bodies:
                await tx.broadcast(self.events.resolution, body)
            await self._save(tx, end, block_hash)
        self.status.count("events_seen", len(bodies))
        self._progress(safe)

    async def scan(self, safe: int) -> None:
        """Scan chunk by chunk up to ``safe``, or until the endpoint lags behind its own safety point.

        Chunks are stored in order, one transaction each, but a backfill does not wait for one
        thing at a time: the next chunk is fetched while one is decoded, and the one before is
        still being written (in SQLite's thread). A chunk is stored once the one before it is;
        an error stops the scan with nothing stored past the last good chunk.
        """

        def fetch(start: int) -> tuple[int, int, asyncio.Task[Any]]:
            end = min(start + self.chunk - 1, safe)
            return start, end, asyncio.ensure_future(self._fetch(start, end))

        ahead: tuple[int, int, asyncio.Task[Any]] | None = fetch(self.last_block + 1)
        storing: asyncio.Future[None] | None = None
        try:
            while ahead is not None:
                start, end, fetching = ahead
                try:
                    block, bodies = await fetching
                except RangeTooLarge as exc:
                    self._refused(exc, start, end)
                    ahead = fetch(start)
                    continue
                if block is None:
                    break
                self.chunk = min(self.config.max_chunk_size, self.chunk + max(1, self.chunk // 4))
                ahead = fetch(end + 1) if end < safe else None
                del fetching  # its result is in ``bodies``: the next chunk's are on their way
                if storing is not None:
                    await storing  # the chunk before is stored first
                storing = asyncio.ensure_future(self._store(end, block[1], bodies, safe))
            if storing is not None:
                await storing
        finally:
            # Only after an error, a cancellation or a lagging endpoint is anything left running.
            await _cancel(storing, ahead[2] if ahead else None)

    def _progress(self, safe: int) -> None:
        now = time.monotonic()
        if self._rate_mark is None:
            self._rate_mark = (now, self.last_block)
        left = max(0, safe - self.last_block)
        elapsed = now - self._rate_mark[0]
        rate = (self.last_block - self._rate_mark[1]) / elapsed if elapsed > 0 else 0.0
        self.status.report(
            last_block=self.last_block,
            safe_block=safe,
            blocks_left=left,
            chunk_size=self.chunk,
            blocks_per_second=round(rate, 1),
            eta_seconds=round(left / rate) if rate > 0 else None,
        )
        if now - self._last_progress >= _PROGRESS_EVERY and left:
            self._last_progress = now
            self.log.info("backfill at block %d, %d left (%.0f blocks/s)", self.last_block, left, rate)
        if elapsed > 30:
            self._rate_mark = (now, self.last_block)

    async def run(self) -> None:
        await self.check_chain()
        await self.load()
        wake = asyncio.Event()
        heads = asyncio.create_task(self.client.watch_heads(wake))
        try:
            while True:
                await self.verify_progress()
                safe = await self.safety_point()
                # One safety point per pass: two requests a chunk while backfilling.
                if self.last_block < safe:
                    await self.scan(safe)
                if (
                    self._deep_reorg_at is not None
                    and time.monotonic() - self._deep_reorg_at > _REORG_REPORTED_FOR
                ):
                    self.status.problem("reorg_beyond_safety", active=False)
                    self._deep_reorg_at = None
                self._progress(safe)
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.poll_interval):  # not wait_for: see ethereum.py
                        await wake.wait()
        finally:
            heads.cancel()
            await asyncio.gather(heads, return_exceptions=True)
