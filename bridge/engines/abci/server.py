"""An asyncio ABCI 2.0 socket server for CometBFT v0.38.

CometBFT opens four connections (query, snapshot, mempool, consensus) to one address. Each
connection is served by one task that answers its requests strictly in order; application calls
from all connections are serialised by one app-wide lock, as in CometBFT's Go server. Responses
are written as they are made and the socket is drained at each Flush.

An error (a malformed or unknown request, a frame over the size cap, an application exception)
is answered with ``Response.exception`` and the connection is closed: CometBFT stops on either,
so the node must be restarted together with the application.

Never await a call into the same CometBFT (e.g. RPC ``broadcast_tx_sync``) from a handler: it
needs CheckTx on the mempool connection, which waits for the lock the handler holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from typing import Protocol, runtime_checkable

from bridge.engines.abci.codec import decode_request, encode_response
from bridge.engines.abci.types import (
    ApplySnapshotChunkRequest,
    ApplySnapshotChunkResponse,
    CheckTxRequest,
    CheckTxResponse,
    CommitRequest,
    CommitResponse,
    EchoRequest,
    EchoResponse,
    ExceptionResponse,
    ExtendVoteRequest,
    ExtendVoteResponse,
    FinalizeBlockRequest,
    FinalizeBlockResponse,
    FlushRequest,
    FlushResponse,
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
    QueryRequest,
    QueryResponse,
    Request,
    Response,
    SnapshotResult,
    VerifyStatus,
    VerifyVoteExtensionRequest,
    VerifyVoteExtensionResponse,
)
from bridge.engines.abci.wire import DecodeError, frame, read_frame

log = logging.getLogger(__name__)

MAX_FRAME = 64 << 20  # bytes; CometBFT's own limit is 2 GiB, a block is at most 100 MiB


class Application(Protocol):
    """What the server calls, under its lock. Vote extensions are answered by the server itself
    (empty extension, ACCEPT), and so are snapshots unless the application is also a
    :class:`SnapshotApplication` (no snapshots, ABORT any restoration)."""

    async def info(self, req: InfoRequest) -> InfoResponse: ...
    async def init_chain(self, req: InitChainRequest) -> InitChainResponse: ...
    async def query(self, req: QueryRequest) -> QueryResponse: ...
    async def check_tx(self, req: CheckTxRequest) -> CheckTxResponse: ...
    async def prepare_proposal(self, req: PrepareProposalRequest) -> PrepareProposalResponse: ...
    async def process_proposal(self, req: ProcessProposalRequest) -> ProcessProposalResponse: ...
    async def finalize_block(self, req: FinalizeBlockRequest) -> FinalizeBlockResponse: ...
    async def commit(self, req: CommitRequest) -> CommitResponse: ...


@runtime_checkable
class SnapshotApplication(Protocol):
    """An application that serves and restores state-sync snapshots."""

    async def list_snapshots(self, req: ListSnapshotsRequest) -> ListSnapshotsResponse: ...
    async def offer_snapshot(self, req: OfferSnapshotRequest) -> OfferSnapshotResponse: ...
    async def load_snapshot_chunk(self, req: LoadSnapshotChunkRequest) -> LoadSnapshotChunkResponse: ...
    async def apply_snapshot_chunk(self, req: ApplySnapshotChunkRequest) -> ApplySnapshotChunkResponse: ...


SNAPSHOT_REQUESTS = (
    ListSnapshotsRequest,
    OfferSnapshotRequest,
    LoadSnapshotChunkRequest,
    ApplySnapshotChunkRequest,
)


def _answer_locally(req: Request) -> Response | None:
    """Requests answered without the application (and without its lock)."""
    if isinstance(req, FlushRequest):
        return FlushResponse()
    if isinstance(req, EchoRequest):
        return EchoResponse(req.message)
    if isinstance(req, ExtendVoteRequest):
        return ExtendVoteResponse()
    if isinstance(req, VerifyVoteExtensionRequest):
        return VerifyVoteExtensionResponse(VerifyStatus.ACCEPT)
    if isinstance(req, ListSnapshotsRequest):
        return ListSnapshotsResponse()
    if isinstance(req, OfferSnapshotRequest):
        return OfferSnapshotResponse(SnapshotResult.ABORT)
    if isinstance(req, LoadSnapshotChunkRequest):
        return LoadSnapshotChunkResponse()
    if isinstance(req, ApplySnapshotChunkRequest):
        return ApplySnapshotChunkResponse(SnapshotResult.ABORT)
    return None


async def _call(app: Application, req: Request) -> Response:
    resp: Response
    expected: type
    if isinstance(req, InfoRequest):
        resp, expected = await app.info(req), InfoResponse
    elif isinstance(req, InitChainRequest):
        resp, expected = await app.init_chain(req), InitChainResponse
    elif isinstance(req, QueryRequest):
        resp, expected = await app.query(req), QueryResponse
    elif isinstance(req, CheckTxRequest):
        resp, expected = await app.check_tx(req), CheckTxResponse
    elif isinstance(req, PrepareProposalRequest):
        resp, expected = await app.prepare_proposal(req), PrepareProposalResponse
    elif isinstance(req, ProcessProposalRequest):
        resp, expected = await app.process_proposal(req), ProcessProposalResponse
    elif isinstance(req, FinalizeBlockRequest):
        resp, expected = await app.finalize_block(req), FinalizeBlockResponse
    elif isinstance(req, CommitRequest):
        resp, expected = await app.commit(req), CommitResponse
    elif isinstance(app, SnapshotApplication) and isinstance(req, ListSnapshotsRequest):
        resp, expected = await app.list_snapshots(req), ListSnapshotsResponse
    elif isinstance(app, SnapshotApplication) and isinstance(req, OfferSnapshotRequest):
        resp, expected = await app.offer_snapshot(req), OfferSnapshotResponse
    elif isinstance(app, SnapshotApplication) and isinstance(req, LoadSnapshotChunkRequest):
        resp, expected = await app.load_snapshot_chunk(req), LoadSnapshotChunkResponse
    elif isinstance(app, SnapshotApplication) and isinstance(req, ApplySnapshotChunkRequest):
        resp, expected = await app.apply_snapshot_chunk(req), ApplySnapshotChunkResponse
    else:  # pragma: no cover - every Request member is handled here or in _answer_locally
        raise TypeError(f"no handler for {type(req).__name__}")
    if type(resp) is not expected:
        raise TypeError(f"application answered {type(req).__name__} with {type(resp).__name__}")
    return resp


def parse_address(address: str) -> tuple[str, str, int]:
    """("unix", path, 0) or ("tcp", host, port) from "unix:///p", "unix:p", "tcp://h:p" or "h:p"."""
    if address.startswith("unix://"):
        return "unix", address.removeprefix("unix://"), 0
    if address.startswith("unix:"):
        return "unix", address.removeprefix("unix:"), 0
    host, sep, port = address.removeprefix("tcp://").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"ABCI address {address!r} is neither unix://PATH nor [tcp://]HOST:PORT")
    return "tcp", host or "127.0.0.1", int(port)


class AbciServer:
    def __init__(
        self, app: Application, address: str = "tcp://127.0.0.1:26658", *, max_frame: int = MAX_FRAME
    ) -> None:
        self.app = app
        # Requests the application answers that the server would otherwise answer itself.
        self._app_answers = SNAPSHOT_REQUESTS if isinstance(app, SnapshotApplication) else ()
        self.max_frame = max_frame
        self._kind, self._host, self._port = parse_address(address)
        self._lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """The listening address in CometBFT's ``proxy_app`` form (the real port once started)."""
        if self._kind == "unix":
            return f"unix://{self._host}"
        return f"tcp://{self._host}:{self._port}"

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        if self._kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(self._host).st_mode):
                    os.unlink(self._host)  # a stale socket from an earlier run
            self._server = await asyncio.start_unix_server(self._serve, self._host)
        else:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
            self._port = self._server.sockets[0].getsockname()[1]
        log.info("ABCI server listening on %s", self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
            if self._kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._host)

    async def __aenter__(self) -> AbciServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def handle(self, req: Request) -> Response:
        """One request's answer; application errors propagate."""
        local = None if isinstance(req, self._app_answers) else _answer_locally(req)
        if local is not None:
            return local
        async with self._lock:
            return await _call(self.app, req)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername") or "unix socket"
        log.debug("ABCI connection from %s", peer)
        try:
            while True:
                resp = await self._next_response(reader)
                if resp is None:
                    break
                try:
                    data = frame(encode_response(resp))
                except Exception as exc:  # a malformed value from the application
                    log.exception("cannot encode %s", type(resp).__name__)
                    resp = ExceptionResponse(f"cannot encode {type(resp).__name__}: {exc}")
                    data = frame(encode_response(resp))
                writer.write(data)
                if isinstance(resp, ExceptionResponse):
                    await writer.drain()
                    break
                if isinstance(resp, FlushResponse):
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.warning("ABCI connection from %s lost: %s", peer, exc)
        except asyncio.CancelledError:
            # close() cancels connections; ending quietly keeps asyncio's stream callback from
            # reporting the cancellation as an unhandled error (Python 3.11)
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.debug("ABCI connection from %s closed", peer)

    async def _next_response(self, reader: asyncio.StreamReader) -> Response | None:
        """Reads one request and answers it; None at the end of the stream."""
        try:
            payload = await read_frame(reader, self.max_frame)
            if payload is None:
                return None
            req = decode_request(payload)
        except DecodeError as exc:
            log.error("bad ABCI request, closing the connection: %s", exc)
            return ExceptionResponse(f"bad request: {exc}")
        try:
            return await self.handle(req)
        except Exception as exc:
            log.exception("ABCI %s failed, closing the connection", type(req).__name__)
            return ExceptionResponse(f"{type(req).__name__} failed: {exc}")
