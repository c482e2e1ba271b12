"""The CometBFT engine: real multi-validator networks.

The node serves the ledger over ABCI (a unix socket in the node's home) and supervises the
pinned ``cometbft`` binary as a child process: started after the ABCI server, stopped before
it, restarted together after a crash, and killed by the kernel if this process dies
(``PR_SET_PDEATHSIG``), so a SIGKILLed node never leaves an orphan behind. Transactions go in
through CometBFT's RPC ``broadcast_tx_sync``, never from inside an ABCI handler: commit
callbacks run on their own task, after the commit has been answered.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bridge import __version__
from bridge.engines.abci import AbciServer
from bridge.engines.abci.types import (
    ApplySnapshotChunkRequest,
    ApplySnapshotChunkResponse,
    CheckTxRequest,
    CheckTxResponse,
    CheckTxType,
    CommitRequest,
    CommitResponse,
    ExecTxResult,
    FinalizeBlockRequest,
    FinalizeBlockResponse,
    InfoRequest,
    InfoResponse,
    InitChainRequest,
    InitChainResponse,
    ListSnapshotsRequest,
    ListSnapshotsResponse,
    LoadSnapshotChunkRequest,
    LoadSnapshotChunkResponse,
    OfferSnapshotRequest,
    OfferSnapshotResponse,
    PrepareProposalRequest,
    PrepareProposalResponse,
    ProcessProposalRequest,
    ProcessProposalResponse,
    ProposalStatus,
    QueryRequest,
    QueryResponse,
    ValidatorUpdate,
)
from bridge.engines.abci.types import Snapshot as AbciSnapshot
from bridge.errors import TxCode
from bridge.ledger import Block, BlockResult, Genesis, Ledger, TxResult
from bridge.ledger.snapshots import FORMAT, Offer, Snapshot, Snapshots
from bridge.txs import Tx

log = logging.getLogger("bridge.engines.cometbft")

OnCommit = Callable[[BlockResult], Awaitable[None]]


def address(pubkey: bytes) -> bytes:
    """CometBFT's validator address: the first 20 bytes of sha256(ed25519 public key)."""
    return hashlib.sha256(pubkey).digest()[:20]


# Blocks a mempool transaction may wait behind a nonce gap before it is dropped.
MEMPOOL_MAX_WAIT = 100


class LedgerApplication:
    """The ledger behind CometBFT's ABCI connections (one app-wide lock is the server's),
    with its state-sync snapshots."""

    def __init__(
        self,
        ledger: Ledger,
        genesis: Genesis,
        committed: asyncio.Queue[BlockResult],
        snapshots: Snapshots | None = None,
        retain_blocks: int = 0,
    ) -> None:
        self.ledger, self.genesis, self._committed = ledger, genesis, committed
        self.snapshots, self.retain_blocks = snapshots, retain_blocks
        # The proposer's own votes, straight into its proposal: (max bytes) -> signed txs.
        self.injector: Callable[[int], Awaitable[list[bytes]]] | None = None
        self._result: BlockResult | None = None
        # When each mempool transaction waiting behind a nonce gap was first rechecked.
        self._waiting: dict[bytes, int] = {}

    async def info(self, req: InfoRequest) -> InfoResponse:
        height, app_hash = await self.ledger.info()
        return InfoResponse("bridge", __version__, 1, height, app_hash)

    async def init_chain(self, req: InitChainRequest) -> InitChainResponse:
        ours = sorted(self.genesis.validators)
        theirs = sorted((v.pub_key.ed25519, v.power) for v in req.validators if v.pub_key)
        if req.chain_id != self.genesis.chain_id or ours != theirs:
            raise ValueError(
                "CometBFT's genesis (chain id, validators) differs from the ledger's genesis.json"
            )
        return InitChainResponse(app_hash=await self.ledger.init_chain(self.genesis))

    async def query(self, req: QueryRequest) -> QueryResponse:
        if req.path == "/balance":
            account = req.data.decode(errors="replace").lower()
            return QueryResponse(
                value=str(await self.ledger.balance(account)).encode(), height=self.ledger.height
            )
        return QueryResponse(code=1, log="unknown path; the node's HTTP API answers queries")

    async def check_tx(self, req: CheckTxRequest) -> CheckTxResponse:
        result = await self.ledger.check_tx(req.tx)
        if result.ok and req.type == CheckTxType.RECHECK:
            result = await self._recheck(req.tx)
        return CheckTxResponse(code=int(result.code), log=result.log)

    async def _recheck(self, raw: bytes) -> TxResult:
        """CometBFT rechecks its mempool after every block; a transaction still waiting behind
        a nonce gap MEMPOOL_MAX_WAIT blocks later goes (CometBFT 0.38 has no mempool TTL), so
        gaps nobody fills cannot fill the mempool."""
        tx, height = Tx.decode(raw), self.ledger.height
        key = hashlib.sha256(raw).digest()
        if len(self._waiting) > 10_000:  # forget what left the mempool without a recheck (committed)
            self._waiting = {k: h for k, h in self._waiting.items() if height - h <= 2 * MEMPOOL_MAX_WAIT}
        if tx.nonce == await self.ledger.nonce(tx.signer):
            self._waiting.pop(key, None)
            return TxResult()
        since = self._waiting.setdefault(key, height)
        if height - since < MEMPOOL_MAX_WAIT:
            return TxResult()
        del self._waiting[key]
        return TxResult(TxCode.BAD_NONCE, f"waited {MEMPOOL_MAX_WAIT} blocks for nonce gap to be filled")

    async def prepare_proposal(self, req: PrepareProposalRequest) -> PrepareProposalResponse:
        injected = await self.injector(req.max_tx_bytes) if self.injector else []
        txs = await self.ledger.prepare_proposal(list(req.txs), req.max_tx_bytes, injected)
        return PrepareProposalResponse(tuple(txs))

    async def process_proposal(self, req: ProcessProposalRequest) -> ProcessProposalResponse:
        ok = await self.ledger.process_proposal(list(req.txs))
        return ProcessProposalResponse(ProposalStatus.ACCEPT if ok else ProposalStatus.REJECT)

    async def finalize_block(self, req: FinalizeBlockRequest) -> FinalizeBlockResponse:
        proposers = {address(k): k for k in self.ledger.validators}
        block = Block(req.height, req.time, proposers.get(req.proposer_address, b""), tuple(req.txs))
        result = self._result = await self.ledger.finalize_block(block)
        return FinalizeBlockResponse(
            tx_results=tuple(ExecTxResult(code=int(r.code), log=r.log) for r in result.tx_results),
            validator_updates=tuple(ValidatorUpdate.ed25519(k, p) for k, p in result.validator_updates),
            app_hash=result.app_hash,
        )

    async def commit(self, req: CommitRequest) -> CommitResponse:
        await self.ledger.commit()
        if self._result is not None:
            self._committed.put_nowait(self._result)  # handled after this answer, off the lock
            self._result = None
        height, snapshots = self.ledger.height, self.snapshots
        if snapshots is None or self.ledger.path is None:
            return CommitResponse()
        if snapshots.due(height):
            snapshots.take(self.ledger.path, height)
        # Blocks below the newest snapshot are not needed to join (state sync restores it).
        keep_from = min(snapshots.latest, height - self.retain_blocks) if self.retain_blocks else 0
        return CommitResponse(retain_height=max(0, keep_from))

    # -- state sync -- #

    async def list_snapshots(self, req: ListSnapshotsRequest) -> ListSnapshotsResponse:
        found = self.snapshots.list() if self.snapshots else []
        return ListSnapshotsResponse(tuple(AbciSnapshot(s.height, FORMAT, s.chunks, s.hash) for s in found))

    async def load_snapshot_chunk(self, req: LoadSnapshotChunkRequest) -> LoadSnapshotChunkResponse:
        if self.snapshots is None or req.format != FORMAT:
            return LoadSnapshotChunkResponse()
        return LoadSnapshotChunkResponse(await asyncio.to_thread(self.snapshots.chunk, req.height, req.chunk))

    async def offer_snapshot(self, req: OfferSnapshotRequest) -> OfferSnapshotResponse:
        offered = req.snapshot
        if self.snapshots is None or offered is None or self.ledger.path is None:
            return OfferSnapshotResponse(Offer.ABORT)
        snapshot = Snapshot(offered.height, offered.chunks, offered.hash)
        result = self.snapshots.offer(snapshot, offered.format, req.app_hash, self.ledger.height)
        log.info(
            "offered the snapshot of height %d in %d chunk(s): %s",
            offered.height,
            offered.chunks,
            result.name,
        )
        return OfferSnapshotResponse(result)

    async def apply_snapshot_chunk(self, req: ApplySnapshotChunkRequest) -> ApplySnapshotChunkResponse:
        assert self.snapshots is not None and self.ledger.path is not None  # offer_snapshot accepted
        restored = self.ledger.path.with_name("restored.sqlite")
        result, complete = await asyncio.to_thread(self.snapshots.apply, req.index, req.chunk, restored)
        if complete:
            await self.ledger.adopt(restored)
            log.info(
                "restored the snapshot of height %d (app hash %s)",
                self.ledger.height,
                self.ledger.app_hash.hex(),
            )
        return ApplySnapshotChunkResponse(result)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the node process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class CometEngine:
    def __init__(
        self,
        ledger: Ledger,
        genesis: Genesis,
        *,
        binary: str,
        home: Path,
        rpc_laddr: str,
        restart_delay: float = 1.0,
        snapshots: Snapshots | None = None,
        retain_blocks: int = 0,
    ) -> None:
        self.ledger, self.binary, self.home, self.rpc_laddr = ledger, binary, home, rpc_laddr
        self.rpc_url = "http://" + rpc_laddr.removeprefix("tcp://")
        self.restart_delay = restart_delay
        self.on_commit: list[OnCommit] = []
        self.caught_up = False
        self.mempool_size = 0
        self.crashes = 0
        self._committed: asyncio.Queue[BlockResult] = asyncio.Queue()
        self.app = LedgerApplication(ledger, genesis, self._committed, snapshots, retain_blocks)
        self._session: aiohttp.ClientSession | None = None

    @property
    def injector(self) -> Callable[[int], Awaitable[list[bytes]]] | None:
        return self.app.injector

    @injector.setter
    def injector(self, fn: Callable[[int], Awaitable[list[bytes]]] | None) -> None:
        self.app.injector = fn

    @property
    def abci_address(self) -> str:
        return f"unix://{self.home / 'abci.sock'}"

    async def _rpc(self, method: str, params: dict[str, Any]) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self._session.post(self.rpc_url, json=body) as response:
            data = await response.json(content_type=None)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]

    async def trust_point(self) -> dict[str, Any] | None:
        """This node's CometBFT RPC and its latest block's height and hash: where a
        state-syncing node's light client may start (None before the first block)."""
        try:
            async with asyncio.timeout(5):
                block = await self._rpc("block", {})
        except (aiohttp.ClientError, RuntimeError, TimeoutError):
            return None
        header = (block.get("block") or {}).get("header") or {}  # no block yet: "block": null
        height = int(header.get("height") or 0)
        if height < 1:
            return None
        return {"rpc": self.rpc_url, "trust_height": height, "trust_hash": block["block_id"]["hash"]}

    async def submit(self, raw: bytes) -> TxResult:
        try:
            result = await self._rpc("broadcast_tx_sync", {"tx": base64.b64encode(raw).decode()})
        except RuntimeError as exc:
            if "already exists in cache" in str(exc):
                # CometBFT remembers the transactions it saw: a replay of a committed one is
                # refused before CheckTx. Our own check says why (a used nonce), else it waits
                # in the mempool.
                checked = await self.ledger.check_tx(raw)
                return checked if not checked.ok else TxResult(TxCode.DUPLICATE, "already in the mempool")
            if "mempool is full" in str(exc):
                return TxResult(TxCode.MEMPOOL_FULL, "mempool is full; try again later")
            return TxResult(TxCode.INTERNAL, f"CometBFT did not take the transaction: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return TxResult(TxCode.INTERNAL, f"CometBFT did not take the transaction: {exc}")
        return TxResult(
            TxCode(result["code"]) if result["code"] in TxCode._value2member_map_ else TxCode.INTERNAL,
            result.get("log", ""),
        )

    async def _deliver_commits(self) -> None:
        while True:
            result = await self._committed.get()
            for callback in self.on_commit:
                await callback(result)

    async def _watch_status(self) -> None:
        while True:
            try:
                status = await self._rpc("status", {})
                unconfirmed = await self._rpc("num_unconfirmed_txs", {})
                self.caught_up = not status["sync_info"]["catching_up"]
                self.mempool_size = int(unconfirmed["n_txs"])
            except (aiohttp.ClientError, TimeoutError, RuntimeError, KeyError, ValueError):
                self.caught_up = False
            await asyncio.sleep(0.5)

    async def run(self) -> None:
        server = AbciServer(self.app, self.abci_address)
        await server.start()
        helpers = [asyncio.create_task(self._deliver_commits()), asyncio.create_task(self._watch_status())]
        try:
            while True:
                await self._run_cometbft()
                self.crashes += 1
                self.caught_up = False
                log.error("cometbft exited; restarting it in %.1fs", self.restart_delay)
                await asyncio.sleep(self.restart_delay)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await server.close()
            if self._session is not None:
                await self._session.close()

    async def _run_cometbft(self) -> None:
        """Run the child until it exits; on cancellation stop it with SIGTERM, then SIGKILL."""
        args = [
            self.binary,
            "start",
            "--home",
            str(self.home),
            "--proxy_app",
            self.abci_address,
            "--rpc.laddr",
            self.rpc_laddr,
        ]
        with (self.home / "cometbft.log").open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *args, stdout=out, stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
