"""The composition root: builds a node's parts from its home folder and runs them.

Data flows one way: listeners -> event store -> broadcaster -> engine -> ledger ->
resolutions. After every committed block the node settles votes, updates metrics and tells
the supervisor whether listeners should run.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import web

from bridge import api
from bridge.broadcaster import Broadcaster
from bridge.config import DATA_DIR, GENESIS_FILE, KEY_FILE, Settings, check_extensions, load_config
from bridge.engines.cometbft import CometEngine
from bridge.engines.solo import SoloEngine
from bridge.errors import ConfigError
from bridge.eventstore import PENDING, VOTED, EventStore
from bridge.explorer import History
from bridge.extensions import load_extensions
from bridge.keys import NodeKey
from bridge.ledger import BlockResult, Genesis, Ledger, TxResult
from bridge.ledger.snapshots import Snapshots
from bridge.metrics import ListenerCollector, Metrics
from bridge.sqlite import disk_full
from bridge.supervisor import Supervisor
from bridge.txs import Payload
from bridge.withdrawals.signer import Signer, load_key
from listeners import ConfigError as ListenerConfigError
from listeners import ListenerStatus, Service, registered_listeners, runs_on_every_node

log = logging.getLogger("bridge.node")

RECENT_TX_RESULTS = 100_000
BUNDLED_COMETBFT = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "cometbft"

# A full disk is the operator's to fix, not a bug: one line that says where and what to do,
# no traceback. SQLite rolled the failed transaction back, so a restart resumes from the last
# committed block and the last stored chunk (tests/test_durability.py).
DISK_FULL = (
    "stopping: %s cannot write to the databases in %s: database or disk is full. "
    "Free space on that disk and start the node again; it resumes from its last committed block"
)


class Engine(Protocol):
    """What the node needs of a consensus engine (solo or CometBFT)."""

    on_commit: list[Callable[[BlockResult], Awaitable[None]]]
    injector: Callable[[int], Awaitable[list[bytes]]] | None

    @property
    def caught_up(self) -> bool: ...
    @property
    def mempool_size(self) -> int: ...
    async def submit(self, raw: bytes) -> TxResult: ...
    async def run(self) -> None: ...


class Node:
    def __init__(self, home: Path, settings: Settings, genesis: Genesis, key: NodeKey) -> None:
        self.home, self.settings, self.genesis, self.key = home, settings, genesis, key
        self.metrics = Metrics()
        self.fatal: tuple[str, BaseException] | None = None
        self._stop = asyncio.Event()
        self.api_url = ""
        # One status per listener for the node's lifetime, so counters survive restarts.
        self.listener_status: dict[str, ListenerStatus] = {}
        self._committed = asyncio.Event()
        # The results of the latest transactions in blocks (by sha256 of the raw bytes), for
        # `GET /v1/txs/{hash}`: local to this node, and only the most recent ones.
        self.tx_results: OrderedDict[bytes, tuple[int, TxResult]] = OrderedDict()
        self.snapshots: Snapshots | None = None  # on CometBFT: the state-sync snapshots

    @classmethod
    def from_home(cls, home: Path) -> Node:
        return cls(home, load_config(home), Genesis.load(home / GENESIS_FILE), NodeKey.load(home / KEY_FILE))

    def stop(self) -> None:
        self._stop.set()

    def _on_fatal(self, name: str, exc: BaseException) -> None:
        self.fatal = (name, exc)
        self._stop.set()

    def _service(self, name: str) -> Service:
        return Service(
            name=name,
            logger=logging.getLogger(f"listeners.{name}"),
            extension_configs=self.settings.app.extensions,
            identity=self.key.public,
            chain_id=self.ledger.chain_id,
            status=self.listener_status.setdefault(name, ListenerStatus()),
            node_api=self.api_url,
        )

    async def _engine(self) -> Engine:
        s = self.settings
        if s.node.engine == "solo":
            await self.ledger.init_chain(self.genesis)
            return SoloEngine(
                self.ledger,
                self.key,
                block_interval=s.node.block_interval,
                max_block_bytes=s.node.max_block_bytes,
            )
        binary = s.cometbft.binary or shutil.which(str(BUNDLED_COMETBFT)) or shutil.which("cometbft")
        if not binary:
            raise ConfigError(
                f"cometbft.binary: no cometbft at {BUNDLED_COMETBFT} or on PATH (run `make cometbft`)"
            )
        folder = self.home / DATA_DIR / "snapshots"
        self.snapshots = Snapshots(folder, s.cometbft.snapshot_interval, s.cometbft.snapshot_keep)
        # CometBFT calls InitChain itself, with its own genesis, which must match ours.
        return CometEngine(
            self.ledger,
            self.genesis,
            binary=binary,
            home=self.home / s.cometbft.home,
            rpc_laddr=s.cometbft.rpc_laddr,
            snapshots=self.snapshots,
            retain_blocks=s.cometbft.retain_blocks,
        )

    @property
    def is_validator(self) -> bool:
        return self.key.public in self.ledger.validators

    async def _after_commit(self, result: BlockResult) -> None:
        for tx_hash, tx_result in zip(result.tx_hashes, result.tx_results, strict=True):
            self.tx_results[tx_hash] = (self.ledger.height, tx_result)
        while len(self.tx_results) > RECENT_TX_RESULTS:
            self.tx_results.popitem(last=False)
        lag = {
            name: int(status.info["blocks_left"])
            for name, status in self.listener_status.items()
            if isinstance(status.info.get("blocks_left"), int)
        }
        await self.history.record(self.ledger.height, self.ledger.time_ns, result.app_hash, result, lag)
        m = self.metrics
        m.height.set(self.ledger.height)
        for r in result.tx_results:
            m.txs.labels(code=r.code.name).inc()
        for _, rtype, status in result.resolved:
            m.resolutions.labels(type=rtype, status=status).inc()
        m.validator_power.set(self.ledger.validators.get(self.key.public, 0))
        self._committed.set()
        await self.supervisor.update(self.is_validator, self.engine.caught_up)

    def _signer_duties(self, signer: Signer) -> Callable[[], Awaitable[list[Payload]]]:
        """The signer's duties while the node is an active validator (the listeners' lifecycle)."""

        async def duties() -> list[Payload]:
            return list(await signer.duties()) if self.supervisor.active else []

        return duties

    async def _broadcast(self) -> None:
        """Settle and send votes after each commit, beside the engine rather than inside it,
        so a listener holding the store's lock never delays a block."""
        reported = 0  # votes also leave through proposals, between two passes here
        while True:
            await self._committed.wait()
            self._committed.clear()
            await self.broadcaster.on_commit()
            self.metrics.votes_sent.inc(self.broadcaster.votes_sent - reported)
            reported = self.broadcaster.votes_sent
            counts = await self.store.counts()
            for state in (PENDING, VOTED, *counts):  # a state with no events left reads 0, not stale
                self.metrics.events.labels(state=state).set(counts.get(state, 0))

    async def run(self) -> int:
        """Run until :meth:`stop` or a fatal listener error; returns the exit code."""
        load_extensions()
        check_extensions(self.settings)
        data = self.home / DATA_DIR
        s = self.settings
        self.ledger = await Ledger.open(data / "ledger.sqlite")
        self.store = await EventStore.open(data / "events.sqlite")
        self.history = await History.open(data / "explorer.sqlite")
        runner: web.AppRunner | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.ledger.chain_id and self.ledger.chain_id != self.genesis.chain_id:
                raise ConfigError(
                    f"data in {data} belongs to chain {self.ledger.chain_id!r}, "
                    f"but genesis says {self.genesis.chain_id!r}"
                )
            self.engine = await self._engine()
            eth_key = load_key(self.home, s.signer.key_file, s.signer.keystore, s.signer.password_file)
            signer = None if eth_key is None else Signer(self.ledger, self.key.public, eth_key)
            self.broadcaster = Broadcaster(
                self.store,
                self.ledger,
                self.engine.submit,
                self.key,
                max_votes_per_tx=s.broadcaster.max_votes_per_tx,
                max_inflight=s.broadcaster.max_inflight,
                resend_timeout=s.broadcaster.resend_timeout,
                duties=None if signer is None else self._signer_duties(signer),
            )
            listeners = registered_listeners()
            self.listener_status = {name: ListenerStatus() for name in listeners}
            self.supervisor = Supervisor(
                listeners,
                self.store,
                self._service,
                restart_policy=s.listeners.restart_policy,
                restart_max_delay=s.listeners.restart_max_delay,
                on_fatal=self._on_fatal,
                every_node=[name for name in listeners if runs_on_every_node(name)],
            )
            self.metrics.registry.register(
                ListenerCollector(
                    lambda: self.supervisor.states, lambda: self.supervisor.restarts, self.listener_status
                )
            )
            await self.broadcaster.start()
            self.engine.on_commit.append(self._after_commit)
            self.engine.injector = self.broadcaster.proposal_votes

            runner = api.create_runner(self)
            await runner.setup()
            site = web.TCPSite(runner, s.api.host, s.api.port)
            try:
                await site.start()
            except OSError as err:
                raise ConfigError(
                    f"cannot serve the API on {s.api.host}:{s.api.port} (api.host, api.port): {err.strerror}"
                ) from None
            port = runner.addresses[0][1]
            self.api_url = f"http://{s.api.host}:{port}"
            log.info(
                "node %s on chain %r at height %d; API on %s",
                self.key.public.hex()[:12],
                self.ledger.chain_id,
                self.ledger.height,
                self.api_url,
            )

            await self.supervisor.update(self.is_validator, self.engine.caught_up)
            tasks = [
                asyncio.create_task(self.engine.run(), name="engine"),
                asyncio.create_task(self._broadcast(), name="broadcaster"),
            ]
            stop_task = asyncio.create_task(self._stop.wait())
            await asyncio.wait({*tasks, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            for task in tasks:
                if task.done() and (exc := task.exception()) is not None:
                    if disk_full(exc):
                        log.error(DISK_FULL, task.get_name(), data)
                    else:
                        log.error("%s failed: %r", task.get_name(), exc, exc_info=exc)
                    return 1
            if self.fatal:
                if disk_full(self.fatal[1]):
                    log.error(DISK_FULL, f"listener {self.fatal[0]}", data)
                elif isinstance(self.fatal[1], ListenerConfigError):
                    log.error("stopping: listener %s is misconfigured: %s", *self.fatal)
                else:
                    log.error("stopping: listener %s failed: %s", self.fatal[0], self.fatal[1])
                return 1
            log.info("shutting down")
            return 0
        finally:
            if hasattr(self, "supervisor"):
                await self.supervisor.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.history.closing.set()  # the explorer's live streams end, so the API can stop
            if runner is not None:
                await runner.cleanup()
            await self.history.close()
            if self.snapshots is not None:
                await self.snapshots.wait()  # a snapshot being written is finished, not torn
            await self.store.close()
            await self.ledger.close()
