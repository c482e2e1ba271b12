"""The scan loop: from the last stored block up to the safety point, chunk by chunk.

Each chunk's deposits, the chunk's last block and that block's hash are stored in one
event-store transaction, so a crash anywhere resumes exactly after the last stored chunk
and broadcasts nothing twice (broadcast is idempotent anyway). On every pass the stored
hash is checked against the chain: a mismatch is a reorg deeper than the safety point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from listeners import EventStore, Service
from listeners.eth_deposits.config import EthDepositsConfig
from listeners.eth_deposits.ethereum import EthClient, RangeTooLarge
from resolutions.credit import CREDIT_ACCOUNT, Deposit

DEPOSIT_TOPIC = "0x" + keccak(text="Deposit(uint256,address,address,uint256)").hex()
_LAST_BLOCK, _LAST_HASH, _CHECKPOINTS = b"last_block", b"last_hash", b"checkpoints"
_MAX_CHECKPOINTS = 64  # chunk ends remembered to find the last common block after a deep reorg
_PROGRESS_EVERY = 5.0  # seconds between progress lines in the log
# A reorg deeper than the safety point means the finality setting failed: /ready reports it
# this long after the last one, so a probe every few minutes sees it (the counter is exact).
_REORG_REPORTED_FOR = 600.0


def _deposit_topics(log: dict[str, Any], escrow: str) -> list[str] | None:
    """The four topics of one of the escrow's Deposit logs; None for any other log."""
    topics = log.get("topics") or []
    if (
        len(topics) != 4
        or topics[0].lower() != DEPOSIT_TOPIC
        or str(log.get("address", "")).lower() != escrow.lower()
        or log.get("removed")
    ):
        return None
    return list(topics)


def decode_log(log: dict[str, Any], chain_id: int, escrow: str) -> Deposit | None:
    """The deposit a raw log describes, or None if it is not one of the escrow's Deposit logs."""
    topics = _deposit_topics(log, escrow)
    if topics is None:
        return None
    return Deposit(
        chain_id=chain_id,
        escrow=escrow,
        nonce=int(topics[1], 16),
        tx_hash=bytes.fromhex(log["transactionHash"][2:]),
        log_index=int(log["logIndex"], 16),
        block_number=int(log["blockNumber"], 16),
        sender=to_checksum_address("0x" + topics[2][-40:]),
        recipient=to_checksum_address("0x" + topics[3][-40:]),
        amount=int(log["data"], 16),
    )


def deposit_bodies(logs: list[dict[str, Any]], chain_id: int, escrow: str) -> list[bytes]:
    """``decode_log(log, chain_id, escrow).encode()`` of each of ``logs`` that is a deposit, in
    order, without the Deposit objects (this runs for every log of a backfill).

    The body is the ABI encoding of static types, i.e. 32-byte words, and the log carries the
    nonce, sender, recipient and amount as such words already: they are copied as hex, not
    decoded and re-encoded, and a chunk of usual logs is turned into bytes at once (one
    ``bytes.fromhex`` per chunk, not per log). Anything unusual takes the general path.
    """
    address, pad = escrow.lower(), "0" * 24
    words = []
    try:
        for log in logs:
            topics = log["topics"]
            topic, nonce, sender, recipient = topics
            tx_hash, amount, index, number = (
                log["transactionHash"],
                log["data"],
                log["logIndex"],
                log["blockNumber"],
            )
            if not (
                type(topics) is list
                and topic == DEPOSIT_TOPIC
                and log["address"] == address
                and not log.get("removed")
                and len(nonce) == len(sender) == len(recipient) == len(tx_hash) == len(amount) == 66
                and 2 < len(index) <= 66
                and 2 < len(number) <= 66
                and f"{nonce[:2]}{sender[:2]}{recipient[:2]}{tx_hash[:2]}{amount[:2]}{index[:2]}{number[:2]}"
                == "0x0x0x0x0x0x0x"
            ):
                break
            words.append(
                f"{nonce[2:]}{tx_hash[2:]}{index[2:]:0>64}{number[2:]:0>64}"
                f"{pad}{sender[26:]}{pad}{recipient[26:]}{amount[2:]}"
            )
        else:
            raw = bytes.fromhex("".join(words))
            # fromhex skips whitespace: any would leave fewer bytes than 7 words a log.
            if len(raw) == 224 * len(logs):
                head = bytes.fromhex(f"{chain_id:064x}{escrow[2:]:0>64}")
                return [head + raw[i : i + 224] for i in range(0, len(raw), 224)]
    except (KeyError, TypeError, ValueError):
        pass  # not the usual shape, or not hex
    return [body for body in (deposit_body(log, chain_id, escrow) for log in logs) if body is not None]


def deposit_body(log: dict[str, Any], chain_id: int, escrow: str) -> bytes | None:
    """``decode_log(log, chain_id, escrow).encode()``, or None: the nonce, sender, recipient
    and amount words copied from the log when it has the usual shape (see
    :func:`deposit_bodies`)."""
    topics = _deposit_topics(log, escrow)
    if topics is None:
        return None
    _, nonce, sender, recipient = topics
    tx_hash, amount = log["transactionHash"], log["data"]
    if all(len(v) == 66 and v[:2] == "0x" for v in (nonce, sender, recipient, tx_hash, amount)):
        try:
            body = bytes.fromhex(
                f"{chain_id:064x}{escrow[2:]:0>64}{nonce[2:]}{tx_hash[2:]}{int(log['logIndex'], 16):064x}"
                f"{int(log['blockNumber'], 16):064x}{sender[-40:]:0>64}{recipient[-40:]:0>64}{amount[2:]}"
            )
            if len(body) == 288:  # fromhex skips whitespace; an index past 2**256 makes it longer
                return body
        except ValueError:
            pass  # not hex: the general path decides (and raises as it always did)
    deposit = decode_log(log, chain_id, escrow)
    return None if deposit is None else deposit.encode()


async def _cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait for them to end (done ones are left as they are)."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


class Scanner:
    def __init__(self, service: Service, store: EventStore, config: EthDepositsConfig, client: EthClient):
        self.service, self.store, self.config, self.client = service, store, config, client
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
            raise ValueError(
                f"{prefix}.chain_id: the RPC endpoint serves chain {served}, not {self.config.chain_id}"
            )
        if not await self.client.code(self.config.contract_address):
            raise ValueError(
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
        """The end block's (number, hash) and the deposit bodies of blocks start..end; (None, [])
        if the endpoint does not have the end block yet (it lags behind its own safety point).
        Logs are decoded as they arrive: one that cannot be read is the endpoint's fault."""
        # The end block's hash is read before the logs: a reorg in between leaves a stored hash
        # that the next pass finds non-canonical, so it is rescanned rather than missed.
        block = await self.client.block(end)
        if block is None:
            return None, []
        chain_id, escrow = self.config.chain_id, self.config.contract_address
        return block, await self.client.logs(
            escrow, DEPOSIT_TOPIC, start, end, lambda logs: deposit_bodies(logs, chain_id, escrow)
        )

    async def _store(self, end: int, block_hash: bytes, deposits: list[bytes], safe: int) -> None:
        """One chunk's deposits and progress, in one transaction."""
        self.checkpoints = [*self.checkpoints, (end, block_hash.hex())][-_MAX_CHECKPOINTS:]
        async with self.store.transaction() as tx:
            for body in deposits:
                await tx.broadcast(CREDIT_ACCOUNT, body)
            await self._save(tx, end, block_hash)
        self.status.count("deposits_seen", len(deposits))
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
                    block, deposits = await fetching
                except RangeTooLarge as exc:
                    self._refused(exc, start, end)
                    ahead = fetch(start)
                    continue
                if block is None:
                    break
                self.chunk = min(self.config.max_chunk_size, self.chunk + max(1, self.chunk // 4))
                ahead = fetch(end + 1) if end < safe else None
                del fetching  # its result is in ``deposits``: the next chunk's are on their way
                if storing is not None:
                    await storing  # the chunk before is stored first
                storing = asyncio.ensure_future(self._store(end, block[1], deposits, safe))
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
