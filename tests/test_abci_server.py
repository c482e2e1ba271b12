"""The ABCI socket server: driven by a raw socket client, then by a real single-node CometBFT
(built by `make cometbft` into .tools/bin/cometbft)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.engines.abci import AbciServer, decode_response, encode_request
from bridge.engines.abci.server import parse_address
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
    ExecTxResult,
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
    ProposalStatus,
    QueryRequest,
    QueryResponse,
    Request,
    Response,
    Snapshot,
    VerifyVoteExtensionRequest,
    VerifyVoteExtensionResponse,
)
from bridge.engines.abci.wire import frame

ROOT = Path(__file__).resolve().parent.parent
COMETBFT = ROOT / ".tools" / "bin" / "cometbft"

# --- a tiny deterministic application ------------------------------------------------------


@dataclass
class Disk:
    """What the test application keeps across restarts (written only in Commit)."""

    height: int = 0
    app_hash: bytes = b""
    kv: dict[bytes, bytes] = field(default_factory=dict)
    hashes: dict[int, bytes] = field(default_factory=dict)  # height -> app hash


def parse_tx(tx: bytes) -> tuple[bytes, bytes] | None:
    key, sep, value = tx.partition(b"=")
    return (key, value) if sep and key else None


class KVApp:
    """txs are b"key=value"; app hash = sha256 chained over every tx so far (b"" before any)."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.calls: list[str] = []
        self.checked: list[bytes] = []
        self.finalized: list[tuple[int, tuple[bytes, ...]]] = []
        self.validators: list[tuple[bytes, int]] = []
        self.infos: list[InfoResponse] = []
        self._pending: tuple[int, bytes, dict[bytes, bytes]] | None = None

    async def info(self, req: InfoRequest) -> InfoResponse:
        self.calls.append("info")
        resp = InfoResponse("kv", "1", 0, self.disk.height, self.disk.app_hash)
        self.infos.append(resp)
        return resp

    async def init_chain(self, req: InitChainRequest) -> InitChainResponse:
        self.calls.append("init_chain")
        self.validators = [(v.pub_key.ed25519 if v.pub_key else b"", v.power) for v in req.validators]
        return InitChainResponse()

    async def query(self, req: QueryRequest) -> QueryResponse:
        self.calls.append("query")
        if req.path != "/key":
            return QueryResponse(code=2, log=f"unknown path {req.path!r}")
        value = self.disk.kv.get(req.data)
        if value is None:
            return QueryResponse(code=1, log="not found", key=req.data, height=self.disk.height)
        return QueryResponse(key=req.data, value=value, height=self.disk.height)

    async def check_tx(self, req: CheckTxRequest) -> CheckTxResponse:
        self.calls.append("check_tx")
        self.checked.append(req.tx)
        return CheckTxResponse() if parse_tx(req.tx) else CheckTxResponse(code=1, log="not key=value")

    async def prepare_proposal(self, req: PrepareProposalRequest) -> PrepareProposalResponse:
        self.calls.append("prepare_proposal")
        txs, size = [], 0
        for tx in req.txs:
            if parse_tx(tx) and size + len(tx) <= req.max_tx_bytes:
                txs.append(tx)
                size += len(tx)
        return PrepareProposalResponse(tuple(txs))

    async def process_proposal(self, req: ProcessProposalRequest) -> ProcessProposalResponse:
        self.calls.append("process_proposal")
        ok = all(parse_tx(tx) for tx in req.txs)
        return ProcessProposalResponse(ProposalStatus.ACCEPT if ok else ProposalStatus.REJECT)

    async def finalize_block(self, req: FinalizeBlockRequest) -> FinalizeBlockResponse:
        self.calls.append("finalize_block")
        self.finalized.append((req.height, req.txs))
        kv, app_hash, results = dict(self.disk.kv), self.disk.app_hash, []
        for tx in req.txs:
            parsed = parse_tx(tx)
            if parsed is None:
                results.append(ExecTxResult(code=1, log="not key=value"))
                continue
            kv[parsed[0]] = parsed[1]
            app_hash = hashlib.sha256(app_hash + len(tx).to_bytes(4, "big") + tx).digest()
            results.append(ExecTxResult())
        self._pending = (req.height, app_hash, kv)
        return FinalizeBlockResponse(tx_results=tuple(results), app_hash=app_hash)

    async def commit(self, req: CommitRequest) -> CommitResponse:
        self.calls.append("commit")
        assert self._pending is not None, "Commit without FinalizeBlock"
        height, app_hash, kv = self._pending
        self.disk.height, self.disk.app_hash, self.disk.kv = height, app_hash, kv
        self.disk.hashes[height] = app_hash
        self._pending = None
        return CommitResponse()


# --- a raw ABCI client, as CometBFT's socket client --------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, server: AbciServer) -> AsyncIterator[Client]:
        kind, host, port = parse_address(server.address)
        if kind == "unix":
            reader, writer = await asyncio.open_unix_connection(host)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def send(self, *reqs: Request) -> None:
        self.writer.write(b"".join(frame(encode_request(r)) for r in reqs))

    async def recv(self) -> Response:
        async with asyncio.timeout(10):
            size = shift = 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                size |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            return decode_response(await self.reader.readexactly(size))

    async def call(self, req: Request) -> Response:
        self.send(req, FlushRequest())
        resp = await self.recv()
        assert await self.recv() == FlushResponse()
        return resp

    async def at_eof(self) -> bool:
        async with asyncio.timeout(10):
            return await self.reader.read(1) == b""


@pytest.fixture
async def tcp_server() -> AsyncIterator[AbciServer]:
    async with AbciServer(KVApp(Disk()), "tcp://127.0.0.1:0") as server:
        yield server


async def test_pipelined_requests_are_answered_in_order(tcp_server: AbciServer) -> None:
    async with Client.connect(tcp_server) as client:
        client.send(
            InfoRequest(version="0.38.26"),
            CheckTxRequest(b"a=1"),
            CheckTxRequest(b"junk"),
            CheckTxRequest(b"b=2", type=1),
            EchoRequest("hello"),
            FlushRequest(),
        )
        answers = [await client.recv() for _ in range(6)]
    assert answers == [
        InfoResponse("kv", "1", 0, 0, b""),
        CheckTxResponse(),
        CheckTxResponse(code=1, log="not key=value"),
        CheckTxResponse(),
        EchoResponse("hello"),
        FlushResponse(),
    ]


async def test_server_answers_vote_extensions_and_snapshots_itself(tcp_server: AbciServer) -> None:
    async with Client.connect(tcp_server) as client:
        assert await client.call(ExtendVoteRequest(height=3)) == ExtendVoteResponse()
        assert await client.call(VerifyVoteExtensionRequest(height=3)) == VerifyVoteExtensionResponse(1)
        assert await client.call(ListSnapshotsRequest()) == ListSnapshotsResponse()
        assert await client.call(OfferSnapshotRequest()) == OfferSnapshotResponse(2)  # ABORT
        assert await client.call(ApplySnapshotChunkRequest()) == ApplySnapshotChunkResponse(2)
    assert tcp_server.app.calls == []  # type: ignore[attr-defined]


class SnapshotKVApp(KVApp):
    """A KVApp that serves one snapshot: the server hands it the snapshot requests."""

    async def list_snapshots(self, req: ListSnapshotsRequest) -> ListSnapshotsResponse:
        self.calls.append("list_snapshots")
        return ListSnapshotsResponse((Snapshot(height=4, format=1, chunks=1, hash=b"h" * 32),))

    async def offer_snapshot(self, req: OfferSnapshotRequest) -> OfferSnapshotResponse:
        self.calls.append("offer_snapshot")
        return OfferSnapshotResponse(1)

    async def load_snapshot_chunk(self, req: LoadSnapshotChunkRequest) -> LoadSnapshotChunkResponse:
        self.calls.append("load_snapshot_chunk")
        return LoadSnapshotChunkResponse(b"chunk %d" % req.chunk)

    async def apply_snapshot_chunk(self, req: ApplySnapshotChunkRequest) -> ApplySnapshotChunkResponse:
        self.calls.append("apply_snapshot_chunk")
        return ApplySnapshotChunkResponse(1)


async def test_an_app_with_snapshots_answers_the_snapshot_requests(tmp_path: Path) -> None:
    app = SnapshotKVApp(Disk())
    async with AbciServer(app, f"unix://{tmp_path}/app.sock") as server, Client.connect(server) as client:
        listed = await client.call(ListSnapshotsRequest())
        assert listed == ListSnapshotsResponse((Snapshot(height=4, format=1, chunks=1, hash=b"h" * 32),))
        assert await client.call(OfferSnapshotRequest()) == OfferSnapshotResponse(1)
        assert await client.call(LoadSnapshotChunkRequest(chunk=2)) == LoadSnapshotChunkResponse(b"chunk 2")
        assert await client.call(ApplySnapshotChunkRequest()) == ApplySnapshotChunkResponse(1)
    assert app.calls == ["list_snapshots", "offer_snapshot", "load_snapshot_chunk", "apply_snapshot_chunk"]


async def test_a_block_over_the_four_connections(tmp_path: Path) -> None:
    app = KVApp(Disk())
    async with AbciServer(app, f"unix://{tmp_path}/app.sock") as server:
        async with (
            Client.connect(server) as query,
            Client.connect(server) as snapshot,
            Client.connect(server) as mempool,
            Client.connect(server) as consensus,
        ):
            assert await query.call(InfoRequest()) == InfoResponse("kv", "1", 0, 0, b"")
            assert await snapshot.call(ListSnapshotsRequest()) == ListSnapshotsResponse()
            assert await consensus.call(InitChainRequest(chain_id="c")) == InitChainResponse()
            assert await mempool.call(CheckTxRequest(b"k=v")) == CheckTxResponse()
            prep = await consensus.call(PrepareProposalRequest(max_tx_bytes=100, txs=(b"k=v", b"bad")))
            assert prep == PrepareProposalResponse((b"k=v",))
            assert await consensus.call(ProcessProposalRequest(txs=(b"k=v",))) == ProcessProposalResponse(1)
            fin = await consensus.call(FinalizeBlockRequest(txs=(b"k=v",), height=1))
            assert isinstance(fin, FinalizeBlockResponse) and len(fin.tx_results) == 1 and fin.app_hash
            assert await consensus.call(CommitRequest()) == CommitResponse()
            answer = await query.call(QueryRequest(data=b"k", path="/key"))
            assert answer == QueryResponse(key=b"k", value=b"v", height=1)
            assert await query.call(InfoRequest()) == InfoResponse("kv", "1", 0, 1, fin.app_hash)
            assert server.connections == 4
    assert not (tmp_path / "app.sock").exists()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (frame(bytes.fromhex("aa0100")), r"unknown field\(s\) \[21\]"),  # v0.39 InsertTx
        (frame(bytes.fromhex("42020801")), "CheckTxRequest.tx: got a varint"),
        (frame(b"\x0a\x05ab"), "truncated"),
        (b"\xff\xff\xff\x7f", "exceeds the 1024-byte limit"),
    ],
)
async def test_bad_requests_get_an_exception_and_the_connection_closes(raw: bytes, error: str) -> None:
    async with AbciServer(KVApp(Disk()), "127.0.0.1:0", max_frame=1024) as server:
        async with Client.connect(server) as client, Client.connect(server) as other:
            client.writer.write(frame(encode_request(EchoRequest("before"))) + raw)
            assert await client.recv() == EchoResponse("before")
            answer = await client.recv()
            assert isinstance(answer, ExceptionResponse) and re.search(error, answer.error), answer
            assert await client.at_eof()
            assert await other.call(EchoRequest("still up")) == EchoResponse("still up")


class FailingApp(KVApp):
    async def check_tx(self, req: CheckTxRequest) -> CheckTxResponse:
        raise RuntimeError("disk on fire")

    async def commit(self, req: CommitRequest) -> CommitResponse:
        return InfoResponse()  # type: ignore[return-value]


async def test_application_errors_become_exceptions() -> None:
    async with AbciServer(FailingApp(Disk()), "127.0.0.1:0") as server:
        async with Client.connect(server) as client:
            client.send(CheckTxRequest(b"a=1"), FlushRequest())
            assert await client.recv() == ExceptionResponse("CheckTxRequest failed: disk on fire")
            assert await client.at_eof()
        async with Client.connect(server) as client:
            client.send(CommitRequest())
            answer = await client.recv()
            assert answer == ExceptionResponse(
                "CommitRequest failed: application answered CommitRequest with InfoResponse"
            )


class SlowApp(KVApp):
    def __init__(self) -> None:
        super().__init__(Disk())
        self.active = self.most_active = 0

    async def check_tx(self, req: CheckTxRequest) -> CheckTxResponse:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        await asyncio.sleep(0.005)
        self.active -= 1
        return CheckTxResponse()


async def test_application_calls_are_serialised_across_connections() -> None:
    app = SlowApp()
    async with AbciServer(app, "127.0.0.1:0") as server:
        async with Client.connect(server) as a, Client.connect(server) as b:
            for client in (a, b):
                client.send(*[CheckTxRequest(b"k=v")] * 5, FlushRequest())
            for client in (a, b):
                assert [await client.recv() for _ in range(6)] == [CheckTxResponse()] * 5 + [FlushResponse()]
    assert app.most_active == 1


def test_parse_address() -> None:
    assert parse_address("unix:///tmp/a.sock") == ("unix", "/tmp/a.sock", 0)
    assert parse_address("unix:a.sock") == ("unix", "a.sock", 0)
    assert parse_address("tcp://127.0.0.1:26658") == ("tcp", "127.0.0.1", 26658)
    assert parse_address("127.0.0.1:1") == ("tcp", "127.0.0.1", 1)
    with pytest.raises(ValueError, match="neither"):
        parse_address("localhost")


# --- against a real CometBFT ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], node: Node, timeout: float = 60
) -> None:
    """Polls ``check`` until it holds; fails naming ``what`` (with the node's log) at the deadline."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(
            f"timed out after {timeout}s waiting for {what}\n--- cometbft log tail ---\n{node.log_tail()}"
        )


class Node:
    """A single-validator CometBFT home whose process can be started and stopped."""

    def __init__(self, home: Path, proxy_app: str) -> None:
        self.home, self.proxy_app = home, proxy_app
        self.rpc = f"http://127.0.0.1:{free_port()}"
        self.p2p = f"tcp://127.0.0.1:{free_port()}"
        self.proc: asyncio.subprocess.Process | None = None
        self.log = home / "cometbft.log"
        self.session: aiohttp.ClientSession | None = None

    async def init(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(COMETBFT), "init", "--home", str(self.home),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        config = self.home / "config" / "config.toml"
        text = config.read_text()
        for key, value in {  # TOML values
            "timeout_propose": '"1s"',
            "timeout_prevote": '"200ms"',
            "timeout_precommit": '"200ms"',
            "timeout_commit": '"200ms"',
            "create_empty_blocks": "true",
            "create_empty_blocks_interval": '"0s"',
            "pex": "false",
        }.items():
            text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
            assert n == 1, key
        config.write_text(text)

    async def start(self) -> None:
        assert self.proc is None
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            str(COMETBFT), "start", "--home", str(self.home),
            "--proxy_app", self.proxy_app,
            "--rpc.laddr", self.rpc.replace("http://", "tcp://"),
            "--p2p.laddr", self.p2p,
            stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out.close()
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def close(self) -> None:
        await self.stop()
        if self.session is not None:
            await self.session.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    async def rpc_call(self, method: str, **params: Any) -> Any:
        assert self.session is not None
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self.session.post(self.rpc, json=body) as resp:
            answer = await resp.json(content_type=None)
        assert "error" not in answer, answer
        return answer["result"]

    async def status(self) -> dict[str, Any] | None:
        """sync_info, or None while the RPC is not up."""
        if self.proc is not None and self.proc.returncode is not None:
            pytest.fail(f"cometbft exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            result = await self.rpc_call("status")
        except (aiohttp.ClientError, TimeoutError):
            return None
        info: dict[str, Any] = result["sync_info"]
        return info

    async def height(self) -> int:
        info = await self.status()
        return int(info["latest_block_height"]) if info else 0

    async def wait_for_height(self, height: int) -> None:
        async def reached() -> bool:
            return await self.height() >= height

        await wait_until(f"block height {height}", reached, self)


def require_cometbft() -> None:
    if not os.access(COMETBFT, os.X_OK):
        pytest.fail(
            f"{COMETBFT} is missing: run `make cometbft` first (it builds the pinned CometBFT with Go)"
        )


@pytest.mark.e2e
async def test_real_cometbft_drives_the_server(tmp_path: Path) -> None:
    require_cometbft()
    home = tmp_path / "node"
    disk = Disk()
    app = KVApp(disk)
    server = AbciServer(app, f"unix://{tmp_path}/app.sock")
    node = Node(home, server.address)
    try:
        await node.init()
        await server.start()
        await node.start()

        # the handshake: Info, then InitChain with genesis' validator, then blocks
        await node.wait_for_height(3)
        assert server.connections == 4
        assert app.calls[0] == "info" and app.calls.count("init_chain") == 1
        key = json.loads((home / "config" / "priv_validator_key.json").read_text())["pub_key"]["value"]
        assert app.validators == [(base64.b64decode(key), 10)]
        assert {"prepare_proposal", "process_proposal", "finalize_block", "commit"} <= set(app.calls)

        # a tx goes through CheckTx, a block and Commit; the app hash moves into the next header
        tx = b"greeting=hello"
        sent = await node.rpc_call("broadcast_tx_sync", tx=base64.b64encode(tx).decode())
        assert sent["code"] == 0, sent
        rejected = await node.rpc_call("broadcast_tx_sync", tx=base64.b64encode(b"junk").decode())
        assert rejected["code"] == 1 and rejected["log"] == "not key=value"
        assert tx in app.checked and b"junk" in app.checked

        async def committed() -> bool:
            return disk.kv.get(b"greeting") == b"hello"

        await wait_until("the tx to be committed", committed, node)
        tx_height = next(h for h, txs in app.finalized if tx in txs)
        app_hash = disk.hashes[tx_height]
        assert app_hash != b""

        async def hash_in_header() -> bool:
            info = await node.status()
            return info is not None and info["latest_app_hash"] == app_hash.hex().upper()

        await wait_until("the new app hash in a block header", hash_in_header, node)
        answer = await node.rpc_call("abci_query", path="/key", data=b"greeting".hex())
        response = answer["response"]
        assert base64.b64decode(response["value"]) == b"hello"
        assert int(response["height"]) >= tx_height
        missing = (await node.rpc_call("abci_query", path="/key", data=b"nope".hex()))["response"]
        assert missing["code"] == 1 and missing["log"] == "not found"

        # restart with the app's state kept: Info reports the last height, no InitChain
        await node.stop()
        await server.close()
        stopped_at = disk.height
        app = server.app = KVApp(disk)
        await server.start()
        await node.start()
        await node.wait_for_height(stopped_at + 2)
        assert app.infos[0].last_block_height == stopped_at and app.infos[0].last_block_app_hash == app_hash
        assert "init_chain" not in app.calls
        assert app.finalized[0][0] == stopped_at + 1

        # restart with a fresh app: InitChain, then CometBFT replays every block from height 1
        await node.stop()
        await server.close()
        old_hashes, stopped_at = dict(disk.hashes), disk.height
        fresh = Disk()
        app = server.app = KVApp(fresh)
        await server.start()
        await node.start()
        await node.wait_for_height(stopped_at + 2)
        assert app.infos[0].last_block_height == 0
        assert app.calls.count("init_chain") == 1
        assert [h for h, _ in app.finalized[:stopped_at]] == list(range(1, stopped_at + 1))
        assert {h: fresh.hashes[h] for h in old_hashes} == old_hashes
        assert fresh.kv[b"greeting"] == b"hello"
    finally:
        await node.close()
        await server.close()
